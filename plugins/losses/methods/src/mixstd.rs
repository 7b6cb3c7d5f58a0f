//! MIXSTD (MIX-KD, Choi et al., WACV 2023): logit standardisation instead of a temperature, with a
//! CE on (possibly mixed) soft labels.
use retort_sdk::{functional as f, params, Batch, Ctx, LossPlugin, Plugin, Result, Tensor};

/// Parameters of `mixstd`.
#[params]
pub struct Config {
    /// weight of the CE term (0.1)
    #[param(default = 0.1)]
    pub gamma: f64,
    /// weight of the KD term (0.9)
    #[param(default = 0.9)]
    pub alpha: f64,
}

/// The plugin instance.
pub struct MixStd {
    cfg: Config,
}

impl Plugin for MixStd {
    const NAME: &'static str = "mixstd";
    const SUMMARY: &'static str =
        "MIXSTD (MIX-KD, Choi et al., WACV 2023): γ·CE(ỹ, softmax(zˢ/σˢ)) + α·KL(softmax(zᵗ/σᵗ) \
        ‖ softmax(zˢ/σˢ)), σ = per-sample unbiased std of the logits, batch mean, no τ². Scale-invariant in both \
        networks' logits. ỹ = batch targets (mixed soft labels from an augmenter) or one-hot labels. Inputs: \
        student, teacher, labels or targets.";
    type Config = Config;
    fn new(_ctx: Ctx, cfg: Config) -> Result<Self> {
        Ok(MixStd { cfg })
    }
}

fn standardised_log_probs(z: &Tensor) -> Result<Tensor> {
    z.div(&z.std_keepdim(-1)?.clamp(1e-12, f64::INFINITY)?)?.log_softmax(-1)
}

impl LossPlugin for MixStd {
    fn loss(&mut self, batch: &Batch) -> Result<Tensor> {
        let rows = self.loss_rows(batch)?.ok_or_else(|| retort_sdk::Error::invalid("mixstd: no rows"))?;
        rows.mean_all()
    }

    /// Per sample: `γ·CE_b + α·KL_b` on standardised logits.
    fn loss_rows(&mut self, batch: &Batch) -> Result<Option<Tensor>> {
        let zs = f::rows(&batch.tensor("student")?)?;
        let zt = f::rows(&batch.tensor("teacher")?)?.detach()?;
        let (ls, lt) = (standardised_log_probs(&zs)?, standardised_log_probs(&zt)?);
        let cls = match batch.get("targets") {
            Some(t) => f::cross_entropy_rows(&f::rows(&t)?, &ls)?,
            None => f::hard_ce_rows(&ls, &batch.tensor("labels")?)?,
        };
        let kd = f::kl_rows(&lt, &ls)?;
        Ok(Some(cls.affine(self.cfg.gamma, 0.0)?.add(&kd.affine(self.cfg.alpha, 0.0)?)?))
    }
}
