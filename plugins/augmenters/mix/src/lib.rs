//! Batch mixing for KD (methods spec §3): `mixup` (one λ ~ Beta(α, α) per batch, each sample with a
//! partner), `cutmix` (a box of the partner pasted in, λ recomputed from the clipped box), and
//! MIX-KD's `pmu` / `fmu` (per-sample λ ~ Beta(a, a) over two random permutations; PMU leaves a
//! part of the batch unmixed). Each sets the mixed `input`, the mixed one-hot `targets` (read by
//! `cross-entropy` `target = "soft"` and `mixstd`), the permuted `labels` and `ids` where samples
//! moved, and `mix_a`, `mix_b`, `mix_lambda` (sample i = λ_i·x[a_i] + (1−λ_i)·x[b_i]) for a stage
//! with `teacher_target = "mix_outputs"`.
use retort_sdk::{
    export_plugins, params, random as draw, AugmenterPlugin, Batch, Ctx, DType, Error, Plugin, Result, Tensor,
};
use serde::{Deserialize, Serialize};

/// Who a sample is mixed with.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug, Default)]
#[serde(rename_all = "snake_case")]
pub enum Pairing {
    /// A random permutation of the batch.
    #[default]
    Permute,
    /// The batch reversed (timm's `flip(0)`).
    Flip,
}

/// How PMU picks its unmixed samples.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug, Default)]
#[serde(rename_all = "snake_case")]
pub enum Sampling {
    /// ⌊p·B⌋ indices uniformly with replacement (the official code: ≈ 1 − e^{−p} unmixed).
    #[default]
    WithReplacement,
    /// Exactly ⌊p·B⌋ distinct samples unmixed (what the README describes).
    ExactFraction,
}

/// The mixed batch every mixer returns.
struct Mixed {
    a: Vec<u32>,
    b: Vec<u32>,
    lambda: Vec<f64>,
    /// The mixed input, when it is not the per-sample blend of x[a] and x[b] (CutMix's box).
    input: Option<Tensor>,
}

/// Builds the augmenter's outputs from a mixing of `batch`.
fn outputs(ctx: &Ctx, batch: &Batch, classes: usize, m: Mixed) -> Result<Vec<(String, Tensor)>> {
    let x = batch.tensor("input")?;
    let labels = batch.tensor("labels")?;
    let n = m.a.len();
    let a = ctx.tensor(&m.a, &[n])?;
    let b = ctx.tensor(&m.b, &[n])?;
    let lam: Vec<f32> = m.lambda.iter().map(|&l| l as f32).collect();
    let lam = ctx.tensor(&lam, &[n])?;
    let col = |t: &Tensor, rank: usize| -> Result<Tensor> {
        let mut shape = vec![1; rank];
        shape[0] = n;
        t.reshape(&shape)
    };
    let blend = |t: &Tensor| -> Result<Tensor> {
        let l = col(&lam, t.rank())?;
        t.index_select(&a, 0)?.broadcast_mul(&l)?.add(&t.index_select(&b, 0)?.broadcast_mul(&l.affine(-1.0, 1.0)?)?)
    };
    let input = match m.input {
        Some(x) => x,
        None => blend(&x)?,
    };
    let onehot = labels.to_dtype(DType::I64)?.clamp(0.0, (classes - 1) as f64)?.one_hot(classes)?;
    let mut out = vec![
        ("input".to_string(), input),
        ("targets".to_string(), blend(&onehot)?),
        ("labels".to_string(), labels.index_select(&a, 0)?),
        ("mix_a".to_string(), a.clone()),
        ("mix_b".to_string(), b),
        ("mix_lambda".to_string(), lam),
    ];
    if let Some(ids) = batch.get("ids") {
        out.push(("ids".to_string(), ids.index_select(&a, 0)?));
    }
    Ok(out)
}

fn partners(ctx: &Ctx, pairing: Pairing, n: usize) -> Result<Vec<u32>> {
    match pairing {
        Pairing::Permute => draw::permutation(ctx, n),
        Pairing::Flip => Ok((0..n as u32).rev().collect()),
    }
}

fn check_alpha(name: &str, key: &str, v: f64) -> Result<()> {
    if v > 0.0 && v.is_finite() {
        Ok(())
    } else {
        Err(Error::config(format!("{name}: {key} must be > 0, got {v}")))
    }
}

/// Parameters of `mixup`.
#[params]
pub struct MixupConfig {
    /// α of λ ~ Beta(α, α), one λ per batch (0.2 ImageNet, 1.0 CIFAR)
    #[param(default = 1.0)]
    pub alpha: f64,
    /// the partner of each sample: "permute" (a random permutation) or "flip" (the batch reversed, timm)
    #[param(default = Pairing::Permute)]
    pub pairing: Pairing,
    /// number of classes of the one-hot targets
    #[param(default = 10, ge = 1)]
    pub classes: usize,
}

/// Mixup (Zhang et al. 2018).
pub struct Mixup {
    ctx: Ctx,
    cfg: MixupConfig,
}

impl Plugin for Mixup {
    const NAME: &'static str = "mixup";
    const SUMMARY: &'static str = "Mixup (Zhang et al. 2018): x̃ = λx + (1−λ)x_j, ỹ likewise, one λ ~ Beta(α, α) per \
        batch. Sets input, targets, mix_a/mix_b/mix_lambda.";
    type Config = MixupConfig;
    fn new(ctx: Ctx, cfg: MixupConfig) -> Result<Self> {
        check_alpha("mixup", "alpha", cfg.alpha)?;
        Ok(Mixup { ctx, cfg })
    }
}

impl AugmenterPlugin for Mixup {
    fn augment(&mut self, batch: &Batch) -> Result<Vec<(String, Tensor)>> {
        let n = batch.tensor("labels")?.dim(0)?;
        let lambda = draw::betas(&self.ctx, self.cfg.alpha, 1)?[0];
        let b = partners(&self.ctx, self.cfg.pairing, n)?;
        let m = Mixed { a: (0..n as u32).collect(), b, lambda: vec![lambda; n], input: None };
        outputs(&self.ctx, batch, self.cfg.classes, m)
    }
}

/// Parameters of `cutmix`.
#[params]
pub struct CutmixConfig {
    /// β of λ ~ Beta(β, β)
    #[param(default = 1.0)]
    pub beta: f64,
    /// the partner of each sample: "permute" or "flip"
    #[param(default = Pairing::Permute)]
    pub pairing: Pairing,
    /// number of classes of the one-hot targets
    #[param(default = 10, ge = 1)]
    pub classes: usize,
}

/// CutMix (Yun et al. 2019).
pub struct Cutmix {
    ctx: Ctx,
    cfg: CutmixConfig,
}

impl Plugin for Cutmix {
    const NAME: &'static str = "cutmix";
    const SUMMARY: &'static str = "CutMix (Yun et al. 2019): a box of side √(1−λ)·(H, W) with a uniform centre, \
        clipped, pasted from the partner; λ = 1 − box/(H·W). Sets input, targets, mix_a/mix_b/mix_lambda.";
    type Config = CutmixConfig;
    fn new(ctx: Ctx, cfg: CutmixConfig) -> Result<Self> {
        check_alpha("cutmix", "beta", cfg.beta)?;
        Ok(Cutmix { ctx, cfg })
    }
}

/// The clipped box `[y0, y1) × [x0, x1)` for λ and a centre, and the λ it gives.
pub fn cutmix_box(h: usize, w: usize, lambda: f64, cy: f64, cx: f64) -> ([usize; 4], f64) {
    let cut = (1.0 - lambda).max(0.0).sqrt();
    let (rh, rw) = ((h as f64 * cut) as i64, (w as f64 * cut) as i64);
    let (cy, cx) = ((cy * h as f64) as i64, (cx * w as f64) as i64);
    let clip = |v: i64, hi: usize| v.clamp(0, hi as i64) as usize;
    let (y0, y1) = (clip(cy - rh / 2, h), clip(cy + rh / 2, h));
    let (x0, x1) = (clip(cx - rw / 2, w), clip(cx + rw / 2, w));
    let area = ((y1 - y0) * (x1 - x0)) as f64;
    ([y0, y1, x0, x1], 1.0 - area / (h * w) as f64)
}

impl AugmenterPlugin for Cutmix {
    fn augment(&mut self, batch: &Batch) -> Result<Vec<(String, Tensor)>> {
        let x = batch.tensor("input")?;
        let dims = x.dims();
        if dims.len() != 4 {
            return Err(Error::invalid(format!("cutmix: input {dims:?} is not [B, C, H, W]")));
        }
        let (n, h, w) = (dims[0], dims[2], dims[3]);
        let lambda = draw::betas(&self.ctx, self.cfg.beta, 1)?[0];
        let c = draw::uniforms(&self.ctx, 2)?;
        let ([y0, y1, x0, x1], lambda) = cutmix_box(h, w, lambda, c[0], c[1]);
        let b = partners(&self.ctx, self.cfg.pairing, n)?;
        let mut mask = vec![0f32; h * w];
        for r in y0..y1 {
            mask[r * w + x0..r * w + x1].iter_mut().for_each(|m| *m = 1.0);
        }
        let mask = self.ctx.tensor(&mask, &[1, 1, h, w])?;
        let partner = x.index_select(&self.ctx.tensor(&b, &[n])?, 0)?;
        let input = x.broadcast_mul(&mask.affine(-1.0, 1.0)?)?.add(&partner.broadcast_mul(&mask)?)?;
        let m = Mixed { a: (0..n as u32).collect(), b, lambda: vec![lambda; n], input: Some(input) };
        outputs(&self.ctx, batch, self.cfg.classes, m)
    }
}

/// Parameters of `pmu` and `fmu`.
#[params]
pub struct PmuConfig {
    /// a of the per-sample λ ~ Beta(a, a) (1.0: uniform; the paper also tries 0.2, 0.4)
    #[param(default = 1.0)]
    pub beta_a: f64,
    /// PMU: ⌊p·B⌋ draws set λ = 1 (unmixed); FMU ignores it
    #[param(default = 0.9, ge = 0.0, le = 1.0)]
    pub partmixup: f64,
    /// "with_replacement" (the official code: ≈ 1 − e^{−p} of the batch unmixed) or "exact_fraction"
    #[param(default = Sampling::WithReplacement)]
    pub sampling: Sampling,
    /// number of classes of the one-hot targets
    #[param(default = 10, ge = 1)]
    pub classes: usize,
}

/// MIX-KD's partial (PMU) or full (FMU) mixup with per-sample λ.
pub struct Pmu {
    ctx: Ctx,
    cfg: PmuConfig,
    partial: bool,
}

impl Pmu {
    fn mix(&mut self, batch: &Batch) -> Result<Vec<(String, Tensor)>> {
        let n = batch.tensor("labels")?.dim(0)?;
        let (rp1, rp2) = (draw::permutation(&self.ctx, n)?, draw::permutation(&self.ctx, n)?);
        let mut lambda = draw::betas(&self.ctx, self.cfg.beta_a, n)?;
        if self.partial {
            let k = (n as f64 * self.cfg.partmixup).floor() as usize;
            let keep: Vec<usize> = match self.cfg.sampling {
                Sampling::WithReplacement => {
                    draw::uniforms(&self.ctx, k)?.into_iter().map(|u| ((u * n as f64) as usize).min(n - 1)).collect()
                }
                Sampling::ExactFraction => {
                    draw::permutation(&self.ctx, n)?.into_iter().take(k).map(|i| i as usize).collect()
                }
            };
            for i in keep {
                lambda[i] = 1.0;
            }
        }
        outputs(&self.ctx, batch, self.cfg.classes, Mixed { a: rp1, b: rp2, lambda, input: None })
    }
}

impl Plugin for Pmu {
    const NAME: &'static str = "pmu";
    const SUMMARY: &'static str = "MIX-KD partial mixup (Choi et al. 2023): per-sample λ ~ Beta(a, a) over two random \
        permutations, ⌊p·B⌋ samples (drawn with replacement, as the code does, or exactly) left unmixed. Sets \
        input, labels, ids, targets, mix_a/mix_b/mix_lambda.";
    type Config = PmuConfig;
    fn new(ctx: Ctx, cfg: PmuConfig) -> Result<Self> {
        check_alpha("pmu", "beta_a", cfg.beta_a)?;
        Ok(Pmu { ctx, cfg, partial: true })
    }
}

impl AugmenterPlugin for Pmu {
    fn augment(&mut self, batch: &Batch) -> Result<Vec<(String, Tensor)>> {
        self.mix(batch)
    }
}

/// FMU: PMU with every sample mixed.
pub struct Fmu(Pmu);

impl Plugin for Fmu {
    const NAME: &'static str = "fmu";
    const SUMMARY: &'static str = "MIX-KD full mixup: per-sample λ ~ Beta(a, a) over two random permutations, every \
        sample mixed. Sets input, labels, ids, targets, mix_a/mix_b/mix_lambda.";
    type Config = PmuConfig;
    fn new(ctx: Ctx, cfg: PmuConfig) -> Result<Self> {
        check_alpha("fmu", "beta_a", cfg.beta_a)?;
        Ok(Fmu(Pmu { ctx, cfg, partial: false }))
    }
}

impl AugmenterPlugin for Fmu {
    fn augment(&mut self, batch: &Batch) -> Result<Vec<(String, Tensor)>> {
        self.0.mix(batch)
    }
}

export_plugins! {
    augmenter: [Mixup, Cutmix, Pmu, Fmu],
}
