//! Simple augmenters: `gaussian-noise` (input + N(0, σ²), from the plugin's seeded, checkpointed
//! RNG stream), `shift` (each image moved by up to ±j pixels, the loader's `jitter` as a plugin)
//! and `class-weights` (a per-sample weight from the sample's label, for imbalanced
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

/// Parameters of `shift`.
#[params]
pub struct ShiftConfig {
    /// the largest shift in pixels, each direction (the loader's `jitter`)
    #[param(default = 2)]
    pub pixels: usize,
}

/// Moves each image by a random (dy, dx) ∈ [−j, j]², filling with the image's minimum (the
/// background of normalised MNIST-like images).
pub struct Shift {
    ctx: Ctx,
    cfg: ShiftConfig,
}

impl Plugin for Shift {
    const NAME: &'static str = "shift";
    const SUMMARY: &'static str = "Random translation of each image by up to ±j pixels in each direction (input         jitter as an augmenter), the uncovered border filled with the image's minimum. Replaces: input.";
    type Config = ShiftConfig;
    fn new(ctx: Ctx, cfg: ShiftConfig) -> Result<Self> {
        Ok(Shift { ctx, cfg })
    }
}

impl AugmenterPlugin for Shift {
    fn augment(&mut self, batch: &Batch) -> Result<Vec<(String, Tensor)>> {
        let j = self.cfg.pixels;
        let x = batch.tensor("input")?;
        let dims = x.dims();
        if j == 0 || dims.len() != 4 {
            return Ok(Vec::new());
        }
        let (n, c, h, w) = (dims[0], dims[1], dims[2], dims[3]);
        let (hp, wp) = (h + 2 * j, w + 2 * j);
        // Pad with each image's minimum, then gather the shifted window.
        let fill = x.flatten_from(1)?.min_keepdim(1)?.reshape(&[n, 1, 1, 1])?;
        let side = fill.broadcast_as(&[n, c, h, j])?;
        let wide = Tensor::cat(&[&side, &x, &side], 3)?;
        let band = fill.broadcast_as(&[n, c, j, wp])?;
        let padded = Tensor::cat(&[&band, &wide, &band], 2)?.reshape(&[n, c * hp * wp])?;
        let draws = self.ctx.rand(0.0, 1.0, &[2 * n])?.to_vec1::<f32>()?;
        let span = (2 * j + 1) as f32;
        let mut idx = Vec::with_capacity(n * c * h * w);
        for b in 0..n {
            let dy = ((draws[2 * b] * span) as usize).min(2 * j);
            let dx = ((draws[2 * b + 1] * span) as usize).min(2 * j);
            for ch in 0..c {
                for r in 0..h {
                    for col in 0..w {
                        idx.push((ch * hp * wp + (r + dy) * wp + col + dx) as u32);
                    }
                }
            }
        }
        let idx = self.ctx.tensor(&idx, &[n, c * h * w])?;
        Ok(vec![("input".into(), padded.gather(&idx, 1)?.reshape(&[n, c, h, w])?)])
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
    augmenter: [GaussianNoise, Shift, ClassWeights],
}
