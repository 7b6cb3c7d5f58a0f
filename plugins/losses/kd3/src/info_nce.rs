//! `info-nce`: KD³'s contrastive instance alignment (Tang et al. 2023; methods spec §4.3 (c),
//! [unverified] reconstruction): embeddings `v` (clean pass) and `v̂` (perturbed pass) through an
//! optional linear projection head (made at the first step, trained with the term's objective),
//! L2-normalised, and `L = −(1/B) Σ_b log softmax_j(⟨v_b, v̂_j⟩/τ_c)[b]`.
use retort_sdk::{ctx::init, functional::l2_normalize, params, Batch, Ctx, LossPlugin, Plugin, Result, Tensor};

/// Parameters of `info-nce`.
#[params]
pub struct Config {
    /// τ_c, the contrastive temperature [unverified: 0.1 to 0.5]
    #[param(default = 0.1, gt = 0.0)]
    pub temperature: f64,
    /// width of the linear projection head (0: none, the embeddings as given)
    pub projection: usize,
}

/// The InfoNCE loss.
pub struct InfoNce {
    ctx: Ctx,
    cfg: Config,
    head: Option<(Tensor, Tensor)>,
}

impl Plugin for InfoNce {
    const NAME: &'static str = "info-nce";
    const SUMMARY: &'static str = "InfoNCE instance alignment (KD³, Tang et al. 2023): anchor and positive \
        embeddings [B, D] through an optional projection head, L2-normalised; cross-entropy of each anchor against \
        its own positive among the batch's at τ_c. Inputs: anchor, positive (map them from taps).";
    type Config = Config;
    fn new(ctx: Ctx, cfg: Config) -> Result<Self> {
        Ok(InfoNce { ctx, cfg, head: None })
    }
}

impl InfoNce {
    fn project(&mut self, v: &Tensor) -> Result<Tensor> {
        if self.cfg.projection == 0 {
            return Ok(v.clone());
        }
        if self.head.is_none() {
            let d = v.dim(1)?;
            let w = self.ctx.var("head.weight", &[self.cfg.projection, d], init::fan_in_uniform(d))?;
            let b = self.ctx.var("head.bias", &[self.cfg.projection], init::fan_in_uniform(d))?;
            self.head = Some((w, b));
        }
        match &self.head {
            Some((w, b)) => v.linear(w, Some(b)),
            None => Ok(v.clone()),
        }
    }

    /// Per sample: `−log softmax_j(⟨v_b, v̂_j⟩/τ)[b]`.
    fn rows(&mut self, batch: &Batch) -> Result<Tensor> {
        let a = batch.tensor("anchor")?.flatten_from(1)?;
        let p = batch.tensor("positive")?.flatten_from(1)?;
        let (a, p) = (l2_normalize(&self.project(&a)?)?, l2_normalize(&self.project(&p)?)?);
        let logits = a.matmul(&p.t()?)?.affine(1.0 / self.cfg.temperature, 0.0)?;
        let n = logits.dim(0)?;
        let own: Vec<u32> = (0..n as u32).collect();
        logits.cross_entropy_rows(&self.ctx.tensor(&own, &[n])?)
    }
}

impl LossPlugin for InfoNce {
    fn loss(&mut self, batch: &Batch) -> Result<Tensor> {
        self.rows(batch)?.mean_all()
    }
    fn loss_rows(&mut self, batch: &Batch) -> Result<Option<Tensor>> {
        Ok(Some(self.rows(batch)?))
    }
}
