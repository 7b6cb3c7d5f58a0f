//! SinKD (Cui et al. 2024), as in the official code: an entropic optimal-transport distance between
//! the batch's student and teacher distributions, with gradients through the Sinkhorn iterations.
use retort_sdk::{functional as f, params, Batch, Ctx, Error, LossPlugin, Plugin, Result, Tensor};
use serde::{Deserialize, Serialize};

/// When to iterate in log space.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogDomain {
    /// Log space when ε < 0.05 (where exp(−W/ε) would underflow).
    #[default]
    Auto,
    Always,
    Never,
}

/// Parameters of `sinkd`.
#[params]
pub struct Config {
    /// τ_s of both softmaxes (2, hard-coded in the official code)
    #[param(default = 2.0)]
    pub temperature: f64,
    /// entropic regularisation ε (0.1)
    #[param(default = 0.1)]
    pub epsilon: f64,
    /// Sinkhorn iterations, each a row then a column normalisation (20)
    #[param(default = 20)]
    pub iterations: usize,
    /// c: 0.001 (GLUE) or 0.0008 (T0/GPT-Neo)
    #[param(default = 0.001)]
    pub scale: f64,
    /// "auto" (when ε < 0.05), "always" or "never"
    #[param(default = LogDomain::Auto)]
    pub log_domain: LogDomain,
}

/// The plugin instance.
pub struct SinKd {
    cfg: Config,
}

impl Plugin for SinKd {
    const NAME: &'static str = "sinkd";
    const SUMMARY: &'static str = "SinKD (Cui et al. 2024): c·Σ P∘W with W_ij = ‖qˢᵢ − qᵗⱼ‖₁ over the batch and P \
        from Sinkhorn normalisation of exp(−W/ε) (log-domain for small ε). Needs batch ≥ 2. Note: the released \
        GLUE trainer never adds this term with the authors' own flags. Inputs: student, teacher.";
    type Config = Config;
    fn new(_ctx: Ctx, cfg: Config) -> Result<Self> {
        if cfg.epsilon <= 0.0 || cfg.temperature <= 0.0 {
            return Err(Error::config("sinkd: epsilon and temperature must be > 0"));
        }
        Ok(SinKd { cfg })
    }
}

impl LossPlugin for SinKd {
    fn loss(&mut self, batch: &Batch) -> Result<Tensor> {
        let zs = f::rows(&batch.tensor("student")?)?;
        let zt = f::rows(&batch.tensor("teacher")?)?.detach()?;
        if zs.dim(0)? < 2 {
            return Err(Error::invalid("sinkd: needs a batch of at least 2 rows"));
        }
        let qs = f::log_probs(&zs, self.cfg.temperature)?.exp()?;
        let qt = f::log_probs(&zt, self.cfg.temperature)?.exp()?;
        let w = qs.unsqueeze(1)?.sub(&qt.unsqueeze(0)?)?.abs()?.sum(-1)?;
        let log = match self.cfg.log_domain {
            LogDomain::Always => true,
            LogDomain::Never => false,
            LogDomain::Auto => self.cfg.epsilon < 0.05,
        };
        let p = if log {
            let mut l = w.affine(-1.0 / self.cfg.epsilon, 0.0)?;
            for _ in 0..self.cfg.iterations {
                l = l.sub(&l.logsumexp_keepdim(1)?)?;
                l = l.sub(&l.logsumexp_keepdim(0)?)?;
            }
            l.exp()?
        } else {
            let mut p = w.affine(-1.0 / self.cfg.epsilon, 0.0)?.exp()?;
            for _ in 0..self.cfg.iterations {
                p = p.div(&p.sum_keepdim(1)?)?;
                p = p.div(&p.sum_keepdim(0)?)?;
            }
            p
        };
        p.mul(&w)?.sum_all()?.affine(self.cfg.scale, 0.0)
    }
}
