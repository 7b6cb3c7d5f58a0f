//! Swing distillation (privacy-preserving KD, 2022): per-token temperature from how likely a token
//! carries private information, and seeded noise on the teacher's soft targets. No public code:
//! the detector, the score→temperature rule and the noise are knobs.
use retort_sdk::{functional as f, params, Batch, Ctx, DType, Error, LossPlugin, Plugin, Result, Tensor};
use serde::{Deserialize, Serialize};

/// Where the per-token temperatures come from.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug, Default)]
#[serde(rename_all = "snake_case")]
pub enum TemperatureRule {
    /// [U] τᵢ = tau_min + (tau_max − tau_min)·scoreᵢ from batch `privacy_scores` in [0, 1]
    /// (more private → higher τ); τ = tau_min when absent.
    #[default]
    PrivacyScore,
    /// Batch `temperatures` ([N]) as given.
    Given,
}

/// Parameters of `swing`.
#[params]
pub struct Config {
    /// "privacy_score" [U] (linear from tau_min to tau_max) or "given" (batch temperatures)
    #[param(default = TemperatureRule::PrivacyScore)]
    pub temperature_rule: TemperatureRule,
    /// temperature of a non-private token [U]
    #[param(default = 1.0)]
    pub tau_min: f64,
    /// temperature of a surely private token [U]
    #[param(default = 4.0)]
    pub tau_max: f64,
    /// std of Gaussian noise added to teacher logits [U] (0 = none)
    pub noise_std: f64,
    /// scale each token's KL by τᵢ² [U]
    pub tau_squared: bool,
}

/// The plugin instance.
pub struct Swing {
    ctx: Ctx,
    cfg: Config,
}

impl Plugin for Swing {
    const NAME: &'static str = "swing";
    const SUMMARY: &'static str = "Swing distillation (2022): token mean of KL(pᵗ‖pˢ) at per-token temperature τᵢ, \
        with Gaussian noise of std noise_std on the teacher logits from the plugin's seeded, checkpointed RNG \
        stream. Unverified [U]: detector, score→τ rule, noise form and scale, τ². Inputs: student, teacher, \
        optional mask, privacy_scores or temperatures.";
    type Config = Config;
    fn new(ctx: Ctx, cfg: Config) -> Result<Self> {
        if cfg.tau_min <= 0.0 || cfg.tau_max < cfg.tau_min || cfg.noise_std < 0.0 {
            return Err(Error::config("swing: need 0 < tau_min ≤ tau_max and noise_std ≥ 0"));
        }
        Ok(Swing { ctx, cfg })
    }
}

impl LossPlugin for Swing {
    fn loss(&mut self, batch: &Batch) -> Result<Tensor> {
        let zs = f::rows(&batch.tensor("student")?)?;
        let mut zt = f::rows(&batch.tensor("teacher")?)?.detach()?;
        let n = zs.dim(0)?;
        let tau = match self.cfg.temperature_rule {
            TemperatureRule::Given => batch.tensor("temperatures")?.flatten_all()?.to_dtype(DType::F32)?,
            TemperatureRule::PrivacyScore => match batch.get("privacy_scores") {
                Some(s) => s
                    .flatten_all()?
                    .to_dtype(DType::F32)?
                    .clamp(0.0, 1.0)?
                    .affine(self.cfg.tau_max - self.cfg.tau_min, self.cfg.tau_min)?,
                None => self.ctx.full(&[n], self.cfg.tau_min, DType::F32)?,
            },
        };
        if self.cfg.noise_std > 0.0 {
            zt = zt.add(&self.ctx.randn(0.0, self.cfg.noise_std, &zt.dims())?)?;
        }
        let col = tau.unsqueeze(1)?;
        let log_ps = zs.div(&col)?.log_softmax(-1)?;
        let log_pt = zt.div(&col)?.log_softmax(-1)?;
        let mut rows = f::kl_rows(&log_pt, &log_ps)?;
        if self.cfg.tau_squared {
            rows = rows.mul(&tau.sqr()?)?;
        }
        f::reduce_rows(&rows, batch.get("mask").as_ref())
    }
}
