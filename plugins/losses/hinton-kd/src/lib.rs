//! `hinton-kd`: forward KL between temperature-softened teacher and student distributions
//! (Hinton, Vinyals & Dean 2015), scaled by τ², optionally mixed with hard-label CE.
use retort_sdk::{
    export_plugins, functional as f, functional::ValueForm, params, Batch, Ctx, Error, LossPlugin, Plugin, Result,
    Tensor,
};

/// Parameters of `hinton-kd`.
#[params]
pub struct Config {
    /// softening temperature τ > 0 applied to both distributions
    #[param(default = 4.0)]
    pub temperature: f64,
    /// weight α of the KD term; (1−α) goes to hard-label CE at τ = 1 (1.0: KD only)
    #[param(default = 1.0)]
    pub alpha: f64,
    /// multiply the KD term by τ² (Hinton; LLM codebases use false)
    #[param(default = true)]
    pub tau_squared: bool,
    /// reported value: "kl" (KL form) or "ce" (cross-entropy form, same gradient)
    #[param(default = ValueForm::Kl)]
    pub value_form: ValueForm,
    /// keep the teacher in the graph so the term trains it too (MST-Distill's co-training, whose six KL terms are none detached); needs a joint stage
    pub teacher_grad: bool,
}

/// The plugin instance.
pub struct HintonKd {
    cfg: Config,
}

impl Plugin for HintonKd {
    const NAME: &'static str = "hinton-kd";
    const SUMMARY: &'static str = "Forward KL(teacher‖student) at temperature τ, times τ², plus (1−α)·CE \
        (Hinton, Vinyals & Dean 2015, 'Distilling the Knowledge in a Neural Network'). Inputs: student, \
        teacher, labels (when α < 1), optional mask for [B, L, V] sequences (token mean).";
    type Config = Config;

    fn new(_ctx: Ctx, cfg: Config) -> Result<Self> {
        if !(cfg.temperature > 0.0 && cfg.temperature.is_finite()) {
            return Err(Error::config(format!("hinton-kd: temperature must be > 0, got {}", cfg.temperature)));
        }
        if !(0.0..=1.0).contains(&cfg.alpha) {
            return Err(Error::config(format!("hinton-kd: alpha must be in [0, 1], got {}", cfg.alpha)));
        }
        Ok(HintonKd { cfg })
    }
}

impl HintonKd {
    /// The teacher's logits as rows, detached unless `teacher_grad`.
    fn teacher(&self, batch: &Batch) -> Result<Tensor> {
        let zt = f::rows(&batch.tensor("teacher")?)?;
        if self.cfg.teacher_grad {
            Ok(zt)
        } else {
            zt.detach()
        }
    }

    /// Per-row KD values; with `teacher_grad` through log-probabilities, which differentiate in
    /// both arguments (the fused op's backward reaches the student only).
    fn rows(&self, zt: &Tensor, zs: &Tensor) -> Result<Tensor> {
        let tau = self.cfg.temperature;
        match (self.cfg.teacher_grad, self.cfg.value_form) {
            (true, form) => f::teacher_target_rows(&f::log_probs(zt, tau)?, &f::log_probs(zs, tau)?, form),
            (false, form) => f::teacher_target_logit_rows(zt, zs, tau, form),
        }
    }
}

impl LossPlugin for HintonKd {
    fn loss(&mut self, batch: &Batch) -> Result<Tensor> {
        let tau = self.cfg.temperature;
        let zs = f::rows(&batch.tensor("student")?)?;
        let zt = self.teacher(batch)?;
        let mask = batch.get("mask");
        let rows = self.rows(&zt, &zs)?;
        let scale = if self.cfg.tau_squared { tau * tau } else { 1.0 };
        let kd = f::reduce_rows(&rows, mask.as_ref())?.affine(scale * self.cfg.alpha, 0.0)?;
        if self.cfg.alpha >= 1.0 {
            return Ok(kd);
        }
        let labels = batch.tensor("labels")?;
        let ce_rows = zs.cross_entropy_rows(&labels)?;
        let valid = match &mask {
            Some(m) => m.flatten_all()?.to_dtype(retort_sdk::DType::F32)?.mul(&f::valid_mask(&labels)?)?,
            None => f::valid_mask(&labels)?,
        };
        let ce = f::reduce_rows(&ce_rows, Some(&valid))?;
        kd + ce.affine(1.0 - self.cfg.alpha, 0.0)?
    }

    /// Per sample for `[B, C]` logits without a mask: `α·τ²·KL_b + (1−α)·CE_b` (an ignored label's
    /// CE is 0); sequences decline (their reduction is a token mean).
    fn loss_rows(&mut self, batch: &Batch) -> Result<Option<Tensor>> {
        let zs = batch.tensor("student")?;
        if zs.rank() != 2 || batch.get("mask").is_some() {
            return Ok(None);
        }
        let zs = f::rows(&zs)?;
        let tau = self.cfg.temperature;
        let zt = self.teacher(batch)?;
        let scale = if self.cfg.tau_squared { tau * tau } else { 1.0 };
        let kd = self.rows(&zt, &zs)?.affine(scale * self.cfg.alpha, 0.0)?;
        if self.cfg.alpha >= 1.0 {
            return Ok(Some(kd));
        }
        let ce = zs.cross_entropy_rows(&batch.tensor("labels")?)?;
        Ok(Some((kd + ce.affine(1.0 - self.cfg.alpha, 0.0)?)?))
    }
}

export_plugins! {
    loss: [HintonKd],
}
