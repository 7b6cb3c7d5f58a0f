//! DHO (dual-head optimisation, 2025): CE on one student head, KD on another head over labelled and
//! unlabelled inputs; the model side is the `mlp` plugin's `dual_head` option.
use retort_sdk::{functional as f, params, Batch, Ctx, Error, LossPlugin, Plugin, Result, Tensor};

/// Parameters of `dho`.
#[params]
pub struct Config {
    /// weight λ of the CE head (0.5)
    #[param(default = 0.5)]
    pub lambda: f64,
    /// τ of the KD terms (2)
    #[param(default = 2.0)]
    pub temperature: f64,
    /// student tap holding the KD head's logits when the batch has no student_kd
    #[param(default = "logits_kd")]
    pub kd_tap: String,
}

/// The plugin instance.
pub struct Dho {
    ctx: Ctx,
    cfg: Config,
}

impl Plugin for Dho {
    const NAME: &'static str = "dho";
    const SUMMARY: &'static str =
        "DHO (2025): λ·CE(h_ce, y) + (1−λ)·[KD(h_kd, zᵗ) + KD(h_kd,u, zᵗ_u)], KD = τ²·batchmean \
        KL at τ. h_ce = student; h_kd = batch student_kd or the student's tap kd_tap (mlp dual_head); the \
        unlabelled pair student_kd_unlabeled / teacher_unlabeled is optional. Inference mixes the heads \
        (mlp dho_alpha, dho_beta), to be tuned on validation data, never on test data.";
    type Config = Config;
    fn new(ctx: Ctx, cfg: Config) -> Result<Self> {
        if !(0.0..=1.0).contains(&cfg.lambda) || cfg.temperature <= 0.0 {
            return Err(Error::config("dho: need λ in [0, 1] and τ > 0"));
        }
        Ok(Dho { ctx, cfg })
    }
}

impl Dho {
    fn kd(&self, zs: &Tensor, zt: &Tensor) -> Result<Tensor> {
        let tau = self.cfg.temperature;
        let rows = f::kl_rows(&f::log_probs(&f::rows(&zt.detach()?)?, tau)?, &f::log_probs(&f::rows(zs)?, tau)?)?;
        rows.mean_all()?.affine(tau * tau, 0.0)
    }
}

impl LossPlugin for Dho {
    fn loss(&mut self, batch: &Batch) -> Result<Tensor> {
        let h_ce = f::rows(&batch.tensor("student")?)?;
        let h_kd = match batch.get("student_kd") {
            Some(t) => t,
            None => self.ctx.feature("student", &self.cfg.kd_tap)?.ok_or_else(|| {
                Error::invalid(format!("dho: no student_kd in the batch and no student tap `{}`", self.cfg.kd_tap))
            })?,
        };
        let ce = f::reduce_rows(&f::hard_ce_rows(&h_ce.log_softmax(-1)?, &batch.tensor("labels")?)?, None)?;
        let mut kd = self.kd(&h_kd, &batch.tensor("teacher")?)?;
        if let (Some(su), Some(tu)) = (batch.get("student_kd_unlabeled"), batch.get("teacher_unlabeled")) {
            kd = (kd + self.kd(&su, &tu)?)?;
        }
        ce.affine(self.cfg.lambda, 0.0)? + kd.affine(1.0 - self.cfg.lambda, 0.0)?
    }
}
