//! The augmenter's objective: maximise teacher–student disagreement on the augmented samples while
//! the teacher still recognises them.
use retort_sdk::{functional as f, params, Batch, Ctx, DType, Error, LossPlugin, Plugin, Result, Tensor};
use serde::{Deserialize, Serialize};

/// What keeps the augmented samples valid for the teacher.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug, Default)]
#[serde(rename_all = "snake_case")]
pub enum TeacherReg {
    /// `KL(p_T(x) ‖ p_T(x̂))`: the teacher's prediction on x̂ stays its prediction on x.
    #[default]
    KlToClean,
    /// `CE(z_T(x̂), y)`: the teacher still gets x̂ right.
    CeToLabel,
}

/// Parameters of `hard-adversarial`.
#[params]
pub struct Config {
    /// τ of the disagreement KL (times τ²)
    #[param(default = 4.0, gt = 0.0)]
    pub temperature: f64,
    /// λ_T, weight of the teacher-consistency term [unverified]
    #[param(default = 1.0, ge = 0.0)]
    pub lambda_t: f64,
    /// "kl_to_clean" (default) or "ce_to_label"
    #[param(default = TeacherReg::KlToClean)]
    pub teacher_reg: TeacherReg,
    /// λ_θ, weight of ‖θ − θ₀‖² (needs a `theta` input)
    #[param(default = 0.0, ge = 0.0)]
    pub lambda_theta: f64,
}

/// HARD's augmenter objective (minimised by the augmenter's optimizer).
pub struct HardAdversarial {
    ctx: Ctx,
    cfg: Config,
}

impl Plugin for HardAdversarial {
    const NAME: &'static str = "hard-adversarial";
    const SUMMARY: &'static str = "HARD's augmenter objective: −τ²·KL(p_T(x̂) ‖ p_S(x̂)) + λ_T·(KL(p_T(x) ‖ p_T(x̂)) or \
        CE(z_T(x̂), y)) + λ_θ·‖θ − θ₀‖², over the augmented rows. Inputs: teacher and student logits (in the graph: \
        a frozen teacher, `peer.<student>`), source and augmented row indices and theta (the augmenter's taps), labels.";
    type Config = Config;
    fn new(ctx: Ctx, cfg: Config) -> Result<Self> {
        Ok(HardAdversarial { ctx, cfg })
    }
}

impl LossPlugin for HardAdversarial {
    fn loss(&mut self, batch: &Batch) -> Result<Tensor> {
        let tau = self.cfg.temperature;
        let zt = f::rows(&batch.tensor("teacher")?)?;
        let zs = f::rows(&batch.tensor("student")?)?;
        let aug = batch.tensor("augmented")?.to_dtype(DType::U32)?;
        let src = batch.tensor("source")?.to_dtype(DType::U32)?;
        if aug.dim(0)? == 0 {
            return self.ctx.zeros(&[]);
        }
        let (t_aug, s_aug) = (zt.index_select(&aug, 0)?, zs.index_select(&aug, 0)?);
        let disagree = f::kl_rows(&f::log_probs(&t_aug, tau)?, &f::log_probs(&s_aug, tau)?)?.mean_all()?;
        let reg = match self.cfg.teacher_reg {
            TeacherReg::KlToClean => {
                let clean = zt.index_select(&src, 0)?.detach()?;
                f::kl_rows(&clean.log_softmax(-1)?, &t_aug.log_softmax(-1)?)?.mean_all()?
            }
            TeacherReg::CeToLabel => {
                let y = batch.tensor("labels")?.index_select(&aug, 0)?;
                f::hard_ce_rows(&t_aug.log_softmax(-1)?, &y)?.mean_all()?
            }
        };
        let mut total = disagree.affine(-tau * tau, 0.0)?.add(&reg.affine(self.cfg.lambda_t, 0.0)?)?;
        if self.cfg.lambda_theta > 0.0 {
            let theta = batch.tensor("theta").map_err(|_| {
                Error::invalid(
                    "hard-adversarial: lambda_theta > 0 needs `theta` (inputs = { theta = \"<augmenter>.theta\" })",
                )
            })?;
            let k = theta.dim(0)?;
            let identity = self.ctx.tensor(&[1f32, 0.0, 0.0, 0.0, 1.0, 0.0], &[1, 2, 3])?.broadcast_as(&[k, 2, 3])?;
            let penalty = theta.sub(&identity)?.sqr()?.sum_all()?.affine(1.0 / k as f64, 0.0)?;
            total = total.add(&penalty.affine(self.cfg.lambda_theta, 0.0)?)?;
        }
        Ok(total)
    }
}
