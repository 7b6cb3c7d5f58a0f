//! BD-KD (Amara et al.): the student's loss mixes forward and reverse KL per sample, weighted by the
//! entropy gap between student and teacher. No public code: the weight rule is a knob.
use retort_sdk::{functional as f, params, Batch, Ctx, Error, LossPlugin, Plugin, Result, Tensor};
use serde::{Deserialize, Serialize};

/// How the per-sample weights are chosen.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug, Default)]
#[serde(rename_all = "snake_case")]
pub enum WeightRule {
    /// [U] w_r = σ(κ·(H(pˢ) − H(pᵗ))), w_f = 1 − w_r: a plausible parametric default, not the paper's.
    #[default]
    EntropyGap,
    /// Read `w_forward` and `w_reverse` ([N]) from the batch (wiring checks, external schedulers).
    Given,
}

/// Parameters of `bd-kd`.
#[params]
pub struct Config {
    /// τ [U]
    #[param(default = 1.0)]
    pub temperature: f64,
    /// "entropy_gap" [U] placeholder σ(κ·(H(pˢ)−H(pᵗ))) or "given" (batch w_forward, w_reverse)
    #[param(default = WeightRule::EntropyGap)]
    pub weight_rule: WeightRule,
    /// slope κ of the entropy-gap rule [U]
    #[param(default = 1.0)]
    pub kappa: f64,
    /// add the hard-label CEᵢ inside the loss (as in the paper's student objective)
    #[param(default = true)]
    pub include_ce: bool,
}

/// The plugin instance.
pub struct BdKd {
    ctx: Ctx,
    cfg: Config,
}

impl Plugin for BdKd {
    const NAME: &'static str = "bd-kd";
    const SUMMARY: &'static str = "BD-KD (Amara et al.), student loss: R_B[CEᵢ + τ²(w_f,ᵢ·KL(pᵗ‖pˢ) + \
        w_r,ᵢ·KL(pˢ‖pᵗ))] with weights from the entropy gap under stop-gradient. Unverified [U]: the weight rule \
        (default σ(κ·ΔH) is a placeholder), τ; the teacher's own RKL loss of online KD is not part of this plugin. \
        Inputs: student, teacher, labels.";
    type Config = Config;
    fn new(ctx: Ctx, cfg: Config) -> Result<Self> {
        if cfg.temperature <= 0.0 {
            return Err(Error::config("bd-kd: temperature must be > 0"));
        }
        Ok(BdKd { ctx, cfg })
    }
}

impl LossPlugin for BdKd {
    fn loss(&mut self, batch: &Batch) -> Result<Tensor> {
        let rows = self.loss_rows(batch)?.ok_or_else(|| retort_sdk::Error::invalid("bd-kd: no rows"))?;
        f::reduce_rows(&rows, None)
    }

    /// Per sample: `τ²·(w_f·FKL_b + w_r·RKL_b)` (+ `CE_b`).
    fn loss_rows(&mut self, batch: &Batch) -> Result<Option<Tensor>> {
        let tau = self.cfg.temperature;
        let zs = f::rows(&batch.tensor("student")?)?;
        let zt = f::rows(&batch.tensor("teacher")?)?.detach()?;
        let (log_ps, log_pt) = (f::log_probs(&zs, tau)?, f::log_probs(&zt, tau)?);
        let fkl = f::kl_rows(&log_pt, &log_ps)?;
        let rkl = f::kl_rows(&log_ps, &log_pt)?;
        let (wf, wr) = match self.cfg.weight_rule {
            WeightRule::Given => (batch.tensor("w_forward")?.flatten_all()?, batch.tensor("w_reverse")?.flatten_all()?),
            WeightRule::EntropyGap => {
                let ent = |lp: &Tensor| -> Result<Tensor> { f::cross_entropy_rows(&lp.exp()?, lp) };
                let gap = ent(&log_ps.detach()?)?.sub(&ent(&log_pt)?)?;
                let wr = gap.affine(self.cfg.kappa, 0.0)?.sigmoid()?;
                (wr.affine(-1.0, 1.0)?, wr)
            }
        };
        self.ctx.metric("w_reverse_mean", wr.mean_all()?.to_scalar::<f64>()?);
        let mut rows = (fkl.mul(&wf)? + rkl.mul(&wr)?)?.affine(tau * tau, 0.0)?;
        if self.cfg.include_ce {
            rows = (rows + f::hard_ce_rows(&zs.log_softmax(-1)?, &batch.tensor("labels")?)?)?;
        }
        Ok(Some(rows))
    }
}
