//! DKD (Zhao et al., CVPR 2022): KD decoupled into target-class (TCKD) and non-target-class (NCKD)
//! terms, with the non-target classes masked exactly.
use retort_sdk::{functional as f, params, Batch, Ctx, DType, Error, LossPlugin, Plugin, Result, Tensor};

/// Parameters of `dkd`.
#[params]
pub struct Config {
    /// weight of the target-class term TCKD (1.0)
    #[param(default = 1.0)]
    pub alpha: f64,
    /// weight of the non-target term NCKD (8.0 CIFAR; 0.5–2.0 ImageNet)
    #[param(default = 8.0)]
    pub beta: f64,
    /// τ (4 CIFAR, 1 ImageNet)
    #[param(default = 4.0)]
    pub temperature: f64,
    /// weight of hard-label CE inside this loss (0 to use a separate cross-entropy term)
    #[param(default = 1.0)]
    pub ce_weight: f64,
    /// linear warm-up of the DKD term over epochs (20 CIFAR, 1 ImageNet; 0 = none)
    #[param(default = 20.0)]
    pub warmup_epochs: f64,
}

/// The plugin instance.
pub struct Dkd {
    ctx: Ctx,
    cfg: Config,
}

impl Plugin for Dkd {
    const NAME: &'static str = "dkd";
    const SUMMARY: &'static str = "Decoupled KD (Zhao et al., CVPR 2022): ce_weight·CE + min(epoch/warmup, 1)·τ²·\
        (α·TCKD + β·NCKD); non-target classes masked exactly (no −1000 trick). Inputs: student, teacher, labels; \
        number epoch (from 1).";
    type Config = Config;
    fn new(ctx: Ctx, cfg: Config) -> Result<Self> {
        if cfg.temperature <= 0.0 {
            return Err(Error::config("dkd: temperature must be > 0"));
        }
        Ok(Dkd { ctx, cfg })
    }
}

impl Dkd {
    /// Per sample: `τ²·w·(α·TCKD_b + β·NCKD_b) + ce_weight·CE_b`, 0 for an ignored label; and the
    /// valid-row mask (the scalar loss is the mean over valid rows).
    fn rows(&mut self, batch: &Batch) -> Result<(Tensor, Tensor)> {
        let tau = self.cfg.temperature;
        let zs = f::rows(&batch.tensor("student")?)?;
        let zt = f::rows(&batch.tensor("teacher")?)?.detach()?;
        let labels = batch.tensor("labels")?;
        let classes = zs.dim(-1)?;
        let valid = f::valid_mask(&labels)?;
        let y = labels.flatten_all()?.to_dtype(DType::I64)?.clamp(0.0, (classes - 1) as f64)?;
        let gt = y.one_hot(classes)?;
        let neg_inf = self.ctx.full(&[1], f64::NEG_INFINITY, DType::F32)?;
        let parts = |z: &Tensor| -> Result<(Tensor, Tensor)> {
            let zt = z.affine(1.0 / tau, 0.0)?;
            let lp = zt.log_softmax(-1)?;
            let target = lp.mul(&gt)?.sum(-1)?;
            let rest = gt.where_cond(&neg_inf, &lp)?.logsumexp(-1)?;
            let log_b = Tensor::stack(&[&target, &rest], -1)?;
            let log_hat = gt.where_cond(&neg_inf, &zt)?.log_softmax(-1)?;
            Ok((log_b, log_hat))
        };
        let (bs, hs) = parts(&zs)?;
        let (bt, ht) = parts(&zt)?;
        let warm = if self.cfg.warmup_epochs > 0.0 {
            (batch.epoch().max(1) as f64 / self.cfg.warmup_epochs).min(1.0)
        } else {
            1.0
        };
        let s = tau * tau * warm;
        let tckd = f::kl_rows(&bt, &bs)?.affine(s * self.cfg.alpha, 0.0)?;
        let nckd = f::kl_rows(&ht, &hs)?.affine(s * self.cfg.beta, 0.0)?;
        let mut rows = tckd.add(&nckd)?;
        if self.cfg.ce_weight != 0.0 {
            let ce = f::hard_ce_rows(&zs.log_softmax(-1)?, &labels)?;
            rows = rows.add(&ce.affine(self.cfg.ce_weight, 0.0)?)?;
        }
        Ok((rows.mul(&valid)?, valid))
    }
}

impl LossPlugin for Dkd {
    fn loss(&mut self, batch: &Batch) -> Result<Tensor> {
        let (rows, valid) = self.rows(batch)?;
        f::reduce_rows(&rows, Some(&valid))
    }

    /// Per sample (an ignored label's row is 0, so the rows' mean equals the loss when every
    /// label is valid).
    fn loss_rows(&mut self, batch: &Batch) -> Result<Option<Tensor>> {
        Ok(Some(self.rows(batch)?.0))
    }
}
