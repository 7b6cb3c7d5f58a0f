//! `cached`: an offline teacher (methods spec capability OFF). `retort teacher cache RUN_DIR` writes
//! a trained model's top-k logits per training sample (`values`, `indices`, the row's log-sum-exp
//! `lse`, and the samples' dataset `ids`); this teacher looks each batch sample up by its `ids`
//! and returns log-probabilities: `v_i − lse` for the k cached classes, and the tail mass
//! `1 − Σ p_i` spread evenly over the other classes.
//!
//! `topk-kd`: KD renormalised over the teacher's top-k classes plus one tail bucket,
//! `τ²·KL(p ‖ q)` over k + 1 buckets, `q_tail = Σ_{j ∉ top-k} q_j`. Exact for any teacher at τ = 1
//! (the same value from a live teacher and from its cache); at τ ≠ 1 the teacher's tail is
//! tempered as if its mass were spread evenly over its classes, which is all a cache knows of it
//! (so a live teacher and its cache still agree).
mod cache;

use retort_sdk::{
    export_plugins, functional as f, params, Batch, Ctx, DType, Error, LossPlugin, Plugin, Result, Tensor,
};

use cache::Cache;

/// Parameters of `cached`.
#[params]
pub struct CachedConfig {
    /// the cache file from `retort teacher cache` (relative to the working directory)
    pub file: String,
}

/// The offline teacher.
pub struct Cached {
    ctx: Ctx,
    cache: Cache,
}

impl Plugin for Cached {
    const NAME: &'static str = "cached";
    const SUMMARY: &'static str = "Offline teacher from a top-k logit cache (`retort teacher cache`): per sample \
        (looked up by `ids`) the cached classes' log-probabilities and the tail mass spread over the rest. \
        Inputs: ids. Pair it with `topk-kd`.";
    type Config = CachedConfig;
    fn new(ctx: Ctx, cfg: CachedConfig) -> Result<Self> {
        if cfg.file.is_empty() {
            return Err(Error::config("cached: set `file` to a cache written by `retort teacher cache`"));
        }
        let cache = Cache::load(std::path::Path::new(&cfg.file)).map_err(Error::config)?;
        Ok(Cached { ctx, cache })
    }
}

impl retort_sdk::TeacherPlugin for Cached {
    fn logits(&mut self, batch: &Batch) -> Result<Tensor> {
        let ids = batch.tensor("ids")?.to_vec1::<u32>()?;
        let out = self.cache.log_probs(&ids).map_err(Error::invalid)?;
        if self.cache.sequences {
            self.ctx.tensor(&out, &[ids.len(), self.cache.tokens, self.cache.classes])
        } else {
            self.ctx.tensor(&out, &[ids.len(), self.cache.classes])
        }
    }
}

/// Parameters of `topk-kd`.
#[params]
pub struct TopkConfig {
    /// teacher classes kept per sample; the rest form one tail bucket (use the cache's k)
    #[param(default = 5, ge = 1)]
    pub k: usize,
    /// temperature τ > 0 (exact at 1; otherwise the teacher's tail is tempered as if spread evenly over its classes)
    #[param(default = 1.0)]
    pub temperature: f64,
    /// multiply by τ²
    #[param(default = true)]
    pub tau_squared: bool,
}

/// KD over the teacher's top-k classes plus a tail bucket.
pub struct TopkKd {
    ctx: Ctx,
    cfg: TopkConfig,
}

impl Plugin for TopkKd {
    const NAME: &'static str = "topk-kd";
    const SUMMARY: &'static str = "KD renormalised over the teacher's top-k classes plus one tail bucket: \
        τ²·KL(p ‖ q) over k + 1 buckets (offline teachers that keep k logits). Inputs: student, teacher [B, C].";
    type Config = TopkConfig;
    fn new(ctx: Ctx, cfg: TopkConfig) -> Result<Self> {
        if !(cfg.temperature > 0.0 && cfg.temperature.is_finite()) {
            return Err(Error::config(format!("topk-kd: temperature must be > 0, got {}", cfg.temperature)));
        }
        Ok(TopkKd { ctx, cfg })
    }
}

impl LossPlugin for TopkKd {
    fn loss(&mut self, batch: &Batch) -> Result<Tensor> {
        // Sequences: a mean over the tokens the mask keeps.
        f::reduce_rows(&self.token_rows(batch)?, batch.get("mask").as_ref())
    }

    fn loss_rows(&mut self, batch: &Batch) -> Result<Option<Tensor>> {
        if batch.tensor("student")?.rank() != 2 || batch.get("mask").is_some() {
            return Ok(None);
        }
        self.token_rows(batch).map(Some)
    }
}

impl TopkKd {
    /// The per-row values over every row of `[B, C]` or `[B, L, C]` logits (`[N]`).
    fn token_rows(&mut self, batch: &Batch) -> Result<Tensor> {
        let zs = f::rows(&batch.tensor("student")?)?;
        let zt = f::rows(&batch.tensor("teacher")?)?.detach()?;
        let (b, c) = (zs.dim(0)?, zs.dim(1)?);
        let tau = self.cfg.temperature;
        let scale = if self.cfg.tau_squared { tau * tau } else { 1.0 };
        if self.cfg.k >= c {
            return f::teacher_target_logit_rows(&zt, &zs, tau, f::ValueForm::Kl)?.affine(scale, 0.0);
        }
        let lt = zt.log_softmax(-1)?;
        // The k most probable teacher classes of each row (k rounds of argmax).
        let mut left = lt.clone();
        let mut sel = self.ctx.zeros(&[b, c])?;
        for _ in 0..self.cfg.k {
            let pick = left.argmax(-1)?.one_hot(c)?;
            left = left.sub(&pick.affine(1e30, 0.0)?)?;
            sel = sel.add(&pick)?;
        }
        let keep = sel.gt(&self.ctx.full(&[b, c], 0.5, DType::F32)?)?;
        // Teacher buckets: the kept classes, and the tail mass spread evenly over the other
        // classes (all that a cache knows of them), tempered class by class, then summed.
        // log Σ_tail p from the tail's own log-probabilities: 1 − Σ_kept p cancels to nothing in
        // f32 when the kept classes hold all but 1e-8 of the mass, and at τ = 20 that tail matters.
        let neg_inf = self.ctx.full(&[b, c], f64::NEG_INFINITY, DType::F32)?;
        let tail_mass = keep.where_cond(&neg_inf, &lt)?.logsumexp_keepdim(-1)?;
        let spread = tail_mass.affine(1.0, -((c - self.cfg.k) as f64).ln())?;
        let even = keep.where_cond(&lt, &spread.broadcast_as(&[b, c])?)?;
        let lp = even.affine(1.0 / tau, 0.0)?.log_softmax(-1)?;
        let tail = keep.where_cond(&neg_inf, &lp)?.logsumexp_keepdim(-1)?;
        let teacher = Tensor::cat(&[&keep.where_cond(&lp, &neg_inf)?, &tail], -1)?;
        // Student buckets at τ: every class, and the log-mass of the classes outside the top-k.
        let ls = f::log_probs(&zs, tau)?;
        let s_tail = keep.where_cond(&neg_inf, &ls)?.logsumexp_keepdim(-1)?;
        let student = Tensor::cat(&[&ls, &s_tail], -1)?;
        f::kl_rows(&teacher, &student)?.affine(scale, 0.0)
    }
}

export_plugins! {
    loss: [TopkKd],
    teacher: [Cached],
}
