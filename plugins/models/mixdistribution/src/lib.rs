//! `mixdistribution`: KD³'s MixDistribution (Tang et al. 2023; methods spec §4.3 (c), [unverified]
//! reconstruction), a model plugin meant to be installed as a tap rewrite on a student's
//! intermediate map `F` `[B, C, H, W]`: per sample and channel the spatial mean μ and std σ
//! (ε-stabilised), a batch permutation π and `λ_b ~ Beta(α, α)`, then
//! `F̃ = σ̃ ⊙ (F − μ)/σ + μ̃` with `μ̃ = λμ + (1−λ)μ_π`, `σ̃ = λσ + (1−λ)σ_π` (MixStyle-like: the
//! content kept, its distribution changed). In evaluation mode, or with probability 1 − p, it is
//! the identity.
use retort_sdk::{export_plugins, params, Batch, Ctx, Error, ModelPlugin, Plugin, Result, Tensor};

/// Parameters of `mixdistribution`.
#[params]
pub struct Config {
    /// α of λ ~ Beta(α, α) (MixStyle's default 0.1) [unverified]
    #[param(default = 0.1, gt = 0.0)]
    pub alpha: f64,
    /// probability that a training batch is perturbed
    #[param(default = 1.0, ge = 0.0, le = 1.0)]
    pub p: f64,
    /// ε added to the variance before the square root
    #[param(default = 1e-6, gt = 0.0)]
    pub eps: f64,
    /// a fixed λ for every sample instead of Beta draws (tests, ablations); negative: draw
    #[param(default = -1.0)]
    pub lambda: f64,
}

/// The MixDistribution rewrite.
pub struct MixDistribution {
    ctx: Ctx,
    cfg: Config,
}

impl Plugin for MixDistribution {
    const NAME: &'static str = "mixdistribution";
    const SUMMARY: &'static str = "KD³ MixDistribution (Tang et al. 2023): per-channel spatial mean and std of a \
        feature map mixed with a permuted sample's (λ ~ Beta(α, α)), F̃ = σ̃·(F − μ)/σ + μ̃; identity in evaluation. \
        Install it as a tap rewrite; taps lambda and perm.";
    type Config = Config;
    fn new(ctx: Ctx, cfg: Config) -> Result<Self> {
        Ok(MixDistribution { ctx, cfg })
    }
}

impl ModelPlugin for MixDistribution {
    fn forward(&mut self, batch: &Batch) -> Result<Tensor> {
        let f = batch.tensor("input")?;
        let dims = f.dims();
        if dims.len() != 4 {
            return Err(Error::invalid(format!("mixdistribution: input {dims:?} is not [B, C, H, W]")));
        }
        let n = dims[0];
        if !batch.is_training() || n < 2 || self.ctx.rand(0.0, 1.0, &[1])?.to_vec1::<f32>()?[0] as f64 >= self.cfg.p {
            return Ok(f);
        }
        let mu = f.mean_keepdim(vec![2i64, 3])?;
        let var = f.var_biased_keepdim(vec![2i64, 3])?;
        let sigma = var.affine(1.0, self.cfg.eps)?.sqrt()?;
        let normed = f.broadcast_sub(&mu)?.broadcast_div(&sigma)?;
        let keys = self.ctx.rand(0.0, 1.0, &[n])?.to_vec1::<f32>()?;
        let mut perm: Vec<u32> = (0..n as u32).collect();
        perm.sort_by(|&a, &b| keys[a as usize].total_cmp(&keys[b as usize]));
        let lambda: Vec<f32> = if self.cfg.lambda >= 0.0 {
            vec![self.cfg.lambda as f32; n]
        } else {
            retort_sdk::random::betas(&self.ctx, self.cfg.alpha, n)?.into_iter().map(|l| l as f32).collect()
        };
        let perm = self.ctx.tensor(&perm, &[n])?;
        let l = self.ctx.tensor(&lambda, &[n, 1, 1, 1])?;
        self.ctx.tap("lambda", &l)?;
        self.ctx.tap("perm", &perm)?;
        let mix = |s: &Tensor| -> Result<Tensor> {
            s.broadcast_mul(&l)?.add(&s.index_select(&perm, 0)?.broadcast_mul(&l.affine(-1.0, 1.0)?)?)
        };
        normed.broadcast_mul(&mix(&sigma)?)?.broadcast_add(&mix(&mu)?)
    }
}

export_plugins! {
    model: [MixDistribution],
}
