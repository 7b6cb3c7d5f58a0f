//! `ensemble`: a teacher that combines the stage's model teachers (`teachers`, `[T, B, C]`) into
//! one set of logits: the mean (or a weighted mean) of their logits, or of their probabilities
//! (returned as log-probabilities, which are logits of the averaged distribution).
use retort_sdk::{export_plugins, params, Batch, Ctx, Error, Plugin, Result, TeacherPlugin, Tensor};
use serde::{Deserialize, Serialize};

/// What is averaged.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug, Default)]
#[serde(rename_all = "lowercase")]
pub enum Over {
    /// The teachers' logits.
    #[default]
    Logits,
    /// The teachers' softmax probabilities (at temperature 1).
    Probs,
}

/// Parameters of `ensemble`.
#[params]
pub struct Config {
    /// "logits" (mean of logits) or "probs" (mean of probabilities, returned as log-probabilities)
    #[param(default = Over::Logits)]
    pub over: Over,
    /// one non-negative weight per teacher, in the stage's `teachers` order (normalised to sum 1);
    /// empty: the plain mean
    pub weights: Vec<f64>,
}

/// The plugin instance.
pub struct Ensemble {
    ctx: Ctx,
    cfg: Config,
}

impl Plugin for Ensemble {
    const NAME: &'static str = "ensemble";
    const SUMMARY: &'static str = "Ensemble teacher: the (weighted) mean of the stage's model teachers' logits, \
        or of their probabilities returned as log-probabilities. Inputs: teachers [T, B, C].";
    type Config = Config;

    fn new(ctx: Ctx, cfg: Config) -> Result<Self> {
        if cfg.weights.iter().any(|w| !(*w >= 0.0 && w.is_finite())) {
            return Err(Error::config(format!("ensemble: weights must be finite and ≥ 0, got {:?}", cfg.weights)));
        }
        if !cfg.weights.is_empty() && cfg.weights.iter().sum::<f64>() <= 0.0 {
            return Err(Error::config("ensemble: the weights sum to 0"));
        }
        Ok(Ensemble { ctx, cfg })
    }
}

impl TeacherPlugin for Ensemble {
    fn logits(&mut self, batch: &Batch) -> Result<Tensor> {
        let t = batch.tensor("teachers")?;
        let n = t.dim(0)?;
        let parts = match self.cfg.over {
            Over::Logits => t.detach()?,
            Over::Probs => t.detach()?.softmax(-1)?,
        };
        let mean = if self.cfg.weights.is_empty() {
            parts.mean(0)?
        } else {
            if self.cfg.weights.len() != n {
                return Err(Error::invalid(format!(
                    "ensemble: {} weights for {n} teachers (one per entry of the stage's `teachers`)",
                    self.cfg.weights.len()
                )));
            }
            let total: f64 = self.cfg.weights.iter().sum();
            let w: Vec<f32> = self.cfg.weights.iter().map(|w| (w / total) as f32).collect();
            parts.mul(&self.ctx.tensor(&w, &[n, 1, 1])?)?.sum(0)?
        };
        match self.cfg.over {
            Over::Logits => Ok(mean),
            Over::Probs => mean.log(),
        }
    }
}

export_plugins! {
    teacher: [Ensemble],
}
