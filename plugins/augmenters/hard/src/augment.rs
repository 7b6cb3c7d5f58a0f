//! The two adversarial augmenters.
use retort_sdk::{ctx::init, params, AugmenterPlugin, Batch, Ctx, Error, Plugin, Result, Tensor};
use serde::{Deserialize, Serialize};

/// Where the affine parameters come from.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug, Default)]
#[serde(rename_all = "snake_case")]
pub enum Conditioning {
    /// One learned distribution for every image.
    #[default]
    Global,
    /// μ and log σ from a linear map of the image (zero-initialised: the identity at first).
    Input,
}

/// The batch split every HARD augmenter makes: `k` augmented copies of the first `k` samples
/// replace the last `k`.
struct Split {
    b: usize,
    k: usize,
}

impl Split {
    fn of(batch: &Batch, fraction: f64) -> Result<Split> {
        let b = batch.tensor("input")?.dim(0)?;
        Ok(Split { b, k: ((b as f64) * fraction).floor() as usize })
    }

    /// The outputs: `input` with the augmented rows in place, `labels` and `ids` to match, and the
    /// `source` / `augmented` taps.
    fn outputs(&self, ctx: &Ctx, batch: &Batch, augmented: &Tensor) -> Result<Vec<(String, Tensor)>> {
        let (b, k) = (self.b, self.k);
        let x = batch.tensor("input")?;
        let order: Vec<u32> = (0..(b - k) as u32).chain(0..k as u32).collect();
        let order = ctx.tensor(&order, &[b])?;
        let input = Tensor::cat(&[&x.narrow(0, 0, b - k)?, augmented], 0)?;
        let source: Vec<u32> = (0..k as u32).collect();
        let rows: Vec<u32> = ((b - k) as u32..b as u32).collect();
        ctx.tap("source", &ctx.tensor(&source, &[k])?)?;
        ctx.tap("augmented", &ctx.tensor(&rows, &[k])?)?;
        let mut out = vec![
            ("input".to_string(), input),
            ("labels".to_string(), batch.tensor("labels")?.index_select(&order, 0)?),
        ];
        if let Some(ids) = batch.get("ids") {
            out.push(("ids".to_string(), ids.index_select(&order, 0)?));
        }
        Ok(out)
    }
}

fn check_fraction(name: &str, f: f64) -> Result<()> {
    if (0.0..=0.5).contains(&f) {
        Ok(())
    } else {
        Err(Error::config(format!(
            "{name}: aug_fraction must be in [0, 0.5] (each augmented sample's source stays in the batch), got {f}"
        )))
    }
}

/// Parameters of `hard-affine`.
#[params]
pub struct AffineConfig {
    /// fraction f ≤ 0.5 of the batch replaced by augmented copies of the first f·B samples [unverified: 0.5]
    #[param(default = 0.5)]
    pub aug_fraction: f64,
    /// initial σ of the noise on θ (0 with learn_sigma = false: deterministic θ = θ₀ + μ)
    #[param(default = 0.1, ge = 0.0)]
    pub sigma_init: f64,
    /// learn σ (as log σ) along with μ
    #[param(default = true)]
    pub learn_sigma: bool,
    /// learn only the translation entries of θ (the toy shift task)
    pub translate_only: bool,
    /// "global" (one distribution) or "input" (μ, log σ linear in the image)
    #[param(default = Conditioning::Global)]
    pub conditioning: Conditioning,
}

/// The affine distribution's parameters; the weights only when input-conditioned, log σ only
/// when learned.
#[derive(Clone)]
struct AffineParams {
    mu_weight: Option<Tensor>,
    mu_bias: Tensor,
    log_sigma_weight: Option<Tensor>,
    log_sigma_bias: Option<Tensor>,
}

/// The learned affine augmenter.
pub struct HardAffine {
    ctx: Ctx,
    cfg: AffineConfig,
    params: Option<AffineParams>,
}

impl Plugin for HardAffine {
    const NAME: &'static str = "hard-affine";
    const SUMMARY: &'static str = "HARD-Affine (Nix et al. 2023): a learned distribution over 2×3 affine maps \
        θ = θ₀ + μ + σ⊙ε (global or input-conditioned) applied with affine_grid/grid_sample to a fraction of the \
        batch; train it adversarially with `optimize` and `hard-adversarial`. Replaces input, labels, ids; taps \
        theta, source, augmented.";
    type Config = AffineConfig;
    fn new(ctx: Ctx, cfg: AffineConfig) -> Result<Self> {
        check_fraction("hard-affine", cfg.aug_fraction)?;
        if cfg.learn_sigma && cfg.sigma_init <= 0.0 {
            return Err(Error::config("hard-affine: learn_sigma needs sigma_init > 0"));
        }
        Ok(HardAffine { ctx, cfg, params: None })
    }
}

impl HardAffine {
    fn params(&mut self, d: usize) -> Result<AffineParams> {
        if let Some(p) = &self.params {
            return Ok(p.clone());
        }
        let ctx = &self.ctx;
        let input = self.cfg.conditioning == Conditioning::Input;
        let ls = self.cfg.sigma_init.max(1e-12).ln();
        let learn = self.cfg.learn_sigma;
        let p = AffineParams {
            mu_weight: if input { Some(ctx.var("mu.weight", &[6, d], init::constant(0.0))?) } else { None },
            mu_bias: ctx.var("mu.bias", &[6], init::constant(0.0))?,
            log_sigma_weight: if input && learn {
                Some(ctx.var("log_sigma.weight", &[6, d], init::constant(0.0))?)
            } else {
                None
            },
            log_sigma_bias: if learn { Some(ctx.var("log_sigma.bias", &[6], init::constant(ls))?) } else { None },
        };
        self.params = Some(p.clone());
        Ok(p)
    }
}

impl AugmenterPlugin for HardAffine {
    fn augment(&mut self, batch: &Batch) -> Result<Vec<(String, Tensor)>> {
        let split = Split::of(batch, self.cfg.aug_fraction)?;
        let x = batch.tensor("input")?;
        let dims = x.dims();
        if dims.len() != 4 {
            return Err(Error::invalid(format!("hard-affine: input {dims:?} is not [B, C, H, W]")));
        }
        let (k, h, w) = (split.k, dims[2], dims[3]);
        if k == 0 {
            return Ok(Vec::new());
        }
        let src = x.narrow(0, 0, k)?;
        let flat = src.flatten_from(1)?;
        let AffineParams { mu_weight: wm, mu_bias: bm, log_sigma_weight: wl, log_sigma_bias: bl } =
            self.params(flat.dim(1)?)?;
        let affine = |wt: &Option<Tensor>, b: &Tensor| -> Result<Tensor> {
            match wt {
                Some(wt) => flat.linear(wt, Some(b)),
                None => b.reshape(&[1, 6])?.broadcast_as(&[k, 6]),
            }
        };
        let mu = affine(&wm, &bm)?;
        let mut delta = mu;
        if let Some(bl) = &bl {
            let sigma = affine(&wl, bl)?.exp()?;
            delta = delta.add(&sigma.mul(&self.ctx.randn(0.0, 1.0, &[k, 6])?)?)?;
        } else if self.cfg.sigma_init > 0.0 {
            delta = delta.add(&self.ctx.randn(0.0, self.cfg.sigma_init, &[k, 6])?)?;
        }
        if self.cfg.translate_only {
            let m = self.ctx.tensor(&[0f32, 0.0, 1.0, 0.0, 0.0, 1.0], &[1, 6])?;
            delta = delta.broadcast_mul(&m)?;
        }
        let identity = self.ctx.tensor(&[1f32, 0.0, 0.0, 0.0, 1.0, 0.0], &[1, 6])?;
        let theta = delta.broadcast_add(&identity)?.reshape(&[k, 2, 3])?;
        let theta = self.ctx.tap("theta", &theta)?;
        // Sample around the background (the batch minimum), so uncovered pixels are background.
        let bg = x.flatten_all()?.min_keepdim(0)?.detach()?.reshape(&[1, 1, 1, 1])?;
        let warped = src.broadcast_sub(&bg)?.grid_sample(&theta.affine_grid(h, w)?)?.broadcast_add(&bg)?;
        split.outputs(&self.ctx, batch, &warped.to_dtype(x.dtype()?)?)
    }
}

/// Parameters of `pixel-adversarial`.
#[params]
pub struct PixelConfig {
    /// fraction f ≤ 0.5 of the batch replaced by perturbed copies of the first f·B samples
    #[param(default = 0.5)]
    pub aug_fraction: f64,
    /// the largest change per pixel, in input units: x̂ = x + ε·tanh(δ)
    #[param(default = 0.5, gt = 0.0)]
    pub epsilon: f64,
}

/// One learned perturbation for every image, trained adversarially.
pub struct PixelAdversarial {
    ctx: Ctx,
    cfg: PixelConfig,
    delta: Option<Tensor>,
}

impl Plugin for PixelAdversarial {
    const NAME: &'static str = "pixel-adversarial";
    const SUMMARY: &'static str = "Pixel-space adversarial baseline for HARD: x̂ = x + ε·tanh(δ) with one learned δ \
        for every image, applied to a fraction of the batch; train it with `optimize` and `hard-adversarial`. \
        Replaces input, labels, ids; taps source, augmented.";
    type Config = PixelConfig;
    fn new(ctx: Ctx, cfg: PixelConfig) -> Result<Self> {
        check_fraction("pixel-adversarial", cfg.aug_fraction)?;
        Ok(PixelAdversarial { ctx, cfg, delta: None })
    }
}

impl AugmenterPlugin for PixelAdversarial {
    fn augment(&mut self, batch: &Batch) -> Result<Vec<(String, Tensor)>> {
        let split = Split::of(batch, self.cfg.aug_fraction)?;
        if split.k == 0 {
            return Ok(Vec::new());
        }
        let x = batch.tensor("input")?;
        let mut shape = x.dims();
        shape[0] = 1;
        let delta = match &self.delta {
            Some(d) => d.clone(),
            None => {
                let d = self.ctx.var("delta", &shape, init::constant(0.0))?;
                self.delta = Some(d.clone());
                d
            }
        };
        let bump = delta.tanh()?.affine(self.cfg.epsilon, 0.0)?;
        let perturbed = x.narrow(0, 0, split.k)?.broadcast_add(&bump.to_dtype(x.dtype()?)?)?;
        split.outputs(&self.ctx, batch, &perturbed)
    }
}
