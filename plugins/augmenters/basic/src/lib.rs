//! Simple augmenters: `gaussian-noise` (input + N(0, σ²), from the plugin's seeded, checkpointed
//! RNG stream) and `class-weights` (a per-sample weight from the sample's label, for imbalanced
//! data: the host weights every per-sample loss with it).
use retort_sdk::{export_plugins, params, AugmenterPlugin, Batch, Ctx, Error, Plugin, Result, Tensor};

/// Parameters of `gaussian-noise`.
#[params]
pub struct NoiseConfig {
    /// standard deviation σ ≥ 0 of the noise added to the (normalised) input
    #[param(default = 0.1)]
    pub sigma: f64,
}

/// Adds Gaussian noise to the input.
pub struct GaussianNoise {
    ctx: Ctx,
    cfg: NoiseConfig,
}

impl Plugin for GaussianNoise {
    const NAME: &'static str = "gaussian-noise";
    const SUMMARY: &'static str = "Adds N(0, σ²) noise to the batch input (seeded from the run; σ = 0 leaves it \
        unchanged). Replaces: input.";
    type Config = NoiseConfig;
    fn new(ctx: Ctx, cfg: NoiseConfig) -> Result<Self> {
        if !(cfg.sigma >= 0.0 && cfg.sigma.is_finite()) {
            return Err(Error::config(format!("gaussian-noise: sigma must be ≥ 0, got {}", cfg.sigma)));
        }
        Ok(GaussianNoise { ctx, cfg })
    }
}

impl AugmenterPlugin for GaussianNoise {
    fn augment(&mut self, batch: &Batch) -> Result<Vec<(String, Tensor)>> {
        if self.cfg.sigma == 0.0 {
            return Ok(Vec::new());
        }
        let x = batch.tensor("input")?;
        let noise = self.ctx.randn(0.0, self.cfg.sigma, &x.dims())?;
        Ok(vec![("input".into(), x.add(&noise)?)])
    }
}

/// Parameters of `class-weights`.
#[params]
pub struct ClassWeightsConfig {
    /// one weight ≥ 0 per class (index = label)
    pub weights: Vec<f64>,
}

/// A per-sample weight from the label.
pub struct ClassWeights {
    ctx: Ctx,
    cfg: ClassWeightsConfig,
}

impl Plugin for ClassWeights {
    const NAME: &'static str = "class-weights";
    const SUMMARY: &'static str = "Per-sample weight = weights[label] (class re-weighting); the host applies it to \
        every per-sample loss. Sets: sample_weight.";
    type Config = ClassWeightsConfig;
    fn new(ctx: Ctx, cfg: ClassWeightsConfig) -> Result<Self> {
        if cfg.weights.is_empty() || cfg.weights.iter().any(|w| !(*w >= 0.0 && w.is_finite())) {
            return Err(Error::config(format!(
                "class-weights: need one finite weight ≥ 0 per class, got {:?}",
                cfg.weights
            )));
        }
        Ok(ClassWeights { ctx, cfg })
    }
}

impl AugmenterPlugin for ClassWeights {
    fn augment(&mut self, batch: &Batch) -> Result<Vec<(String, Tensor)>> {
        let w: Vec<f32> = self.cfg.weights.iter().map(|&w| w as f32).collect();
        let table = self.ctx.tensor(&w, &[w.len()])?;
        let labels = batch.tensor("labels")?;
        Ok(vec![("sample_weight".into(), table.index_select(&labels, 0)?)])
    }
}

export_plugins! {
    augmenter: [GaussianNoise, ClassWeights],
}
