//! `cross-entropy`: the task loss on hard labels, with optional label smoothing; labels < 0
//! (−100) and masked positions are ignored, and sequences reduce as a token mean.
use retort_sdk::{export_plugins, functional as f, Batch, Ctx, DType, Error, LossPlugin, Plugin, Result, Tensor};
use serde::{Deserialize, Serialize};

/// Parameters of `cross-entropy`.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub label_smoothing: f64,
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

    fn param_docs() -> &'static [(&'static str, &'static str)] {
        &[("label_smoothing", "ε in [0, 1): target is (1−ε)·one-hot + ε/C (Szegedy et al. 2016)")]
    }

    fn new(_ctx: Ctx, cfg: Config) -> Result<Self> {
        if !(0.0..1.0).contains(&cfg.label_smoothing) {
            return Err(Error::config(format!(
                "cross-entropy: label_smoothing must be in [0, 1), got {}",
                cfg.label_smoothing
            )));
        }
        Ok(CrossEntropy { cfg })
    }
}

impl LossPlugin for CrossEntropy {
    fn loss(&mut self, batch: &Batch) -> Result<Tensor> {
        let zs = f::rows(&batch.tensor("student")?)?;
        let labels = batch.tensor("labels")?;
        let log_q = f::log_probs(&zs, 1.0)?;
        let mut rows = f::hard_ce_rows(&log_q, &labels)?;
        let eps = self.cfg.label_smoothing;
        if eps > 0.0 {
            let uniform = log_q.mean(-1)?.neg()?;
            rows = (rows.affine(1.0 - eps, 0.0)? + uniform.affine(eps, 0.0)?)?;
        }
        let mut valid = f::valid_mask(&labels)?;
        if let Some(m) = batch.get("mask") {
            valid = valid.mul(&m.flatten_all()?.to_dtype(DType::F32)?)?;
        }
        f::reduce_rows(&rows, Some(&valid))
    }
}

export_plugins! {
    loss: [CrossEntropy],
}
