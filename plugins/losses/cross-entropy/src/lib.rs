//! `cross-entropy`: the task loss on hard labels, with optional label smoothing; labels < 0
//! (−100) and masked positions are ignored, and sequences reduce as a token mean. Soft (teacher or
//! augmenter) and mixed targets too.
use retort_sdk::{
    export_plugins, functional as f, params, Batch, Ctx, DType, Error, LossPlugin, Plugin, Result, Tensor,
};
use serde::{Deserialize, Serialize};

/// What the student is matched against.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug, Default)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// The hard labels.
    #[default]
    Hard,
    /// A distribution: batch `targets` (e.g. mixed labels from an augmenter), else softmax(teacher/τ).
    Soft,
    /// soft_weight·soft + (1 − soft_weight)·hard.
    Mixed,
}

/// Parameters of `cross-entropy`.
#[params]
pub struct Config {
    /// ε in [0, 1): target is (1−ε)·one-hot + ε/C (Szegedy et al. 2016)
    pub label_smoothing: f64,
    /// "hard" (labels), "soft" (batch targets, else softmax(teacher/τ)) or "mixed"
    #[param(default = Target::Hard)]
    pub target: Target,
    /// τ for soft targets from the teacher (student log-probs at the same τ)
    #[param(default = 1.0)]
    pub temperature: f64,
    /// weight of the soft part for target = "mixed"
    #[param(default = 0.5)]
    pub soft_weight: f64,
}

/// The plugin instance.
pub struct CrossEntropy {
    cfg: Config,
}

impl Plugin for CrossEntropy {
    const NAME: &'static str = "cross-entropy";
    const SUMMARY: &'static str = "Cross-entropy of the student's logits against hard labels, mean over \
        valid rows (labels ≥ 0 and mask = 1). Inputs: student, labels, optional mask.";
    type Config = Config;

    fn new(_ctx: Ctx, cfg: Config) -> Result<Self> {
        if !(0.0..=1.0).contains(&cfg.soft_weight) || cfg.temperature <= 0.0 {
            return Err(Error::config("cross-entropy: need soft_weight in [0, 1] and temperature > 0"));
        }
        if !(0.0..1.0).contains(&cfg.label_smoothing) {
            return Err(Error::config(format!(
                "cross-entropy: label_smoothing must be in [0, 1), got {}",
                cfg.label_smoothing
            )));
        }
        Ok(CrossEntropy { cfg })
    }
}

impl CrossEntropy {
    fn soft(&self, batch: &Batch, zs: &Tensor) -> Result<Tensor> {
        f::reduce_rows(&self.soft_rows(batch, zs)?, batch.get("mask").as_ref())
    }

    /// `H(q, softmax(z/τ))` per row, `q` the batch `targets` or the softened teacher.
    fn soft_rows(&self, batch: &Batch, zs: &Tensor) -> Result<Tensor> {
        let tau = self.cfg.temperature;
        let q = match batch.get("targets") {
            Some(t) => f::rows(&t)?,
            None => f::log_probs(&f::rows(&batch.tensor("teacher")?)?.detach()?, tau)?.exp()?,
        };
        f::cross_entropy_rows(&q, &f::log_probs(zs, tau)?)
    }
}

impl LossPlugin for CrossEntropy {
    fn loss(&mut self, batch: &Batch) -> Result<Tensor> {
        let zs = f::rows(&batch.tensor("student")?)?;
        match self.cfg.target {
            Target::Hard => {}
            Target::Soft => return self.soft(batch, &zs),
            Target::Mixed => {
                let w = self.cfg.soft_weight;
                let hard = self.hard(batch, &zs)?;
                return self.soft(batch, &zs)?.affine(w, 0.0)? + hard.affine(1.0 - w, 0.0)?;
            }
        }
        self.hard(batch, &zs)
    }

    /// Per sample for `[B, C]` logits without a mask (an ignored label's row is 0); sequences
    /// decline (their reduction is a token mean).
    fn loss_rows(&mut self, batch: &Batch) -> Result<Option<Tensor>> {
        let zs = batch.tensor("student")?;
        if zs.rank() != 2 || batch.get("mask").is_some() {
            return Ok(None);
        }
        let zs = f::rows(&zs)?;
        let rows = match self.cfg.target {
            Target::Hard => self.hard_rows(batch, &zs)?,
            Target::Soft => self.soft_rows(batch, &zs)?,
            Target::Mixed => {
                let w = self.cfg.soft_weight;
                (self.soft_rows(batch, &zs)?.affine(w, 0.0)? + self.hard_rows(batch, &zs)?.affine(1.0 - w, 0.0)?)?
            }
        };
        Ok(Some(rows))
    }
}

impl CrossEntropy {
    fn hard(&self, batch: &Batch, zs: &Tensor) -> Result<Tensor> {
        let labels = batch.tensor("labels")?;
        let rows = self.smoothed_rows(zs, &labels)?;
        let mut valid = f::valid_mask(&labels)?;
        if let Some(m) = batch.get("mask") {
            valid = valid.mul(&m.flatten_all()?.to_dtype(DType::F32)?)?;
        }
        f::reduce_rows(&rows, Some(&valid))
    }

    /// Hard-label CE per row with label smoothing, ignored labels' rows 0.
    fn hard_rows(&self, batch: &Batch, zs: &Tensor) -> Result<Tensor> {
        let labels = batch.tensor("labels")?;
        self.smoothed_rows(zs, &labels)?.mul(&f::valid_mask(&labels)?)
    }

    /// `(1−ε)·CE + ε·mean(−log q)` per row (plain CE when ε = 0).
    fn smoothed_rows(&self, zs: &Tensor, labels: &Tensor) -> Result<Tensor> {
        let eps = self.cfg.label_smoothing;
        if eps > 0.0 {
            let log_q = f::log_probs(zs, 1.0)?;
            let uniform = log_q.mean(-1)?.neg()?;
            f::hard_ce_rows(&log_q, labels)?.affine(1.0 - eps, 0.0)? + uniform.affine(eps, 0.0)?
        } else {
            zs.cross_entropy_rows(labels)
        }
    }
}

export_plugins! {
    loss: [CrossEntropy],
}
