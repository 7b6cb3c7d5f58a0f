//! The divergence plugins.
use retort_sdk::{functional as f, params, Batch, Ctx, LossPlugin, Plugin, Result, Tensor};

use retort_sdk::functional::ValueForm;

use crate::common::{check_tau, check_unit, finish, log_mix, pair, per_sample, Pair};

/// Parameters of `reverse-kl`, `jensen-shannon` and `total-variation`.
#[params]
pub struct BasicConfig {
    /// temperature τ applied to both distributions (1 in the LLM codebases)
    #[param(default = 1.0, gt = 0.0)]
    pub temperature: f64,
    /// multiply by τ² (Hinton's scaling; off in DistiLLM, TAID, TRL)
    pub tau_squared: bool,
}

/// Parameters of `skew-kl`.
#[params]
pub struct SkewConfig {
    /// temperature τ applied to both distributions (1 in the LLM codebases)
    #[param(default = 1.0, gt = 0.0)]
    pub temperature: f64,
    /// multiply by τ² (Hinton's scaling; off in DistiLLM, TAID, TRL)
    pub tau_squared: bool,
    /// skew α in [0, 1]: the teacher's share of the mixture (0: forward KL)
    #[param(default = 0.1, ge = 0.0, le = 1.0)]
    pub alpha: f64,
    /// "kl" or "ce" (−Σ pᵗ log mix; same gradient)
    #[param(default = ValueForm::Kl)]
    pub value_form: ValueForm,
}

/// Parameters of `skew-reverse-kl`.
#[params]
pub struct SkewReverseConfig {
    /// temperature τ applied to both distributions (1 in the LLM codebases)
    #[param(default = 1.0, gt = 0.0)]
    pub temperature: f64,
    /// multiply by τ² (Hinton's scaling; off in DistiLLM, TAID, TRL)
    pub tau_squared: bool,
    /// skew α in [0, 1]: the student's share of the mixture (0: reverse KL)
    #[param(default = 0.1, ge = 0.0, le = 1.0)]
    pub alpha: f64,
}

/// Parameters of `generalized-jsd`.
#[params]
pub struct GjsdConfig {
    /// temperature τ applied to both distributions (1 in the LLM codebases)
    #[param(default = 1.0, gt = 0.0)]
    pub temperature: f64,
    /// multiply by τ² (Hinton's scaling; off in DistiLLM, TAID, TRL)
    pub tau_squared: bool,
    /// β in [0, 1]: weight of the teacher in the mixture M (TRL default 0.5)
    #[param(default = 0.5, ge = 0.0, le = 1.0)]
    pub beta: f64,
}

/// KL(pˢ‖pᵗ): mode-seeking; keeps the student entropy term.
pub struct ReverseKl {
    cfg: BasicConfig,
}

impl Plugin for ReverseKl {
    const NAME: &'static str = "reverse-kl";
    const SUMMARY: &'static str = "Reverse KL(student‖teacher), mode-seeking (as in MiniLLM/DistiLLM/TAID's RKL). \
        Inputs: student, teacher, optional mask.";
    type Config = BasicConfig;
    fn new(_ctx: Ctx, cfg: BasicConfig) -> Result<Self> {
        check_tau(Self::NAME, cfg.temperature)?;
        Ok(ReverseKl { cfg })
    }
}

impl Rows for ReverseKl {
    fn tau(&self) -> (f64, bool) {
        (self.cfg.temperature, self.cfg.tau_squared)
    }
    fn rows(&self, p: &Pair) -> Result<Tensor> {
        f::kl_rows(&p.log_ps, &p.log_pt)
    }
}

/// ½KL(pᵗ‖M) + ½KL(pˢ‖M) with M = ½(pᵗ + pˢ).
pub struct JensenShannon {
    cfg: BasicConfig,
}

impl Plugin for JensenShannon {
    const NAME: &'static str = "jensen-shannon";
    const SUMMARY: &'static str = "Jensen–Shannon divergence ½KL(pᵗ‖M) + ½KL(pˢ‖M), M = ½(pᵗ+pˢ) \
        (= generalized-jsd with β = 0.5). Inputs: student, teacher, optional mask.";
    type Config = BasicConfig;
    fn new(_ctx: Ctx, cfg: BasicConfig) -> Result<Self> {
        check_tau(Self::NAME, cfg.temperature)?;
        Ok(JensenShannon { cfg })
    }
}

fn gjsd_rows(p: &Pair, beta: f64) -> Result<Tensor> {
    let log_m = log_mix(beta, &p.log_pt, &p.log_ps)?;
    let a = f::kl_rows(&p.log_pt, &log_m)?.affine(beta, 0.0)?;
    let b = f::kl_rows(&p.log_ps, &log_m)?.affine(1.0 - beta, 0.0)?;
    a + b
}

impl Rows for JensenShannon {
    fn tau(&self) -> (f64, bool) {
        (self.cfg.temperature, self.cfg.tau_squared)
    }
    fn rows(&self, p: &Pair) -> Result<Tensor> {
        gjsd_rows(p, 0.5)
    }
}

/// ½Σ|pᵗ − pˢ|.
pub struct TotalVariation {
    cfg: BasicConfig,
}

impl Plugin for TotalVariation {
    const NAME: &'static str = "total-variation";
    const SUMMARY: &'static str = "Total variation distance ½Σ|pᵗ−pˢ| (TAID's TVD baseline); subgradient \
        sign(0) = 0 at ties. Inputs: student, teacher, optional mask.";
    type Config = BasicConfig;
    fn new(_ctx: Ctx, cfg: BasicConfig) -> Result<Self> {
        check_tau(Self::NAME, cfg.temperature)?;
        Ok(TotalVariation { cfg })
    }
}

impl Rows for TotalVariation {
    fn tau(&self) -> (f64, bool) {
        (self.cfg.temperature, self.cfg.tau_squared)
    }
    fn rows(&self, p: &Pair) -> Result<Tensor> {
        p.log_pt.exp()?.sub(&p.log_ps.exp()?)?.abs()?.sum(-1)?.affine(0.5, 0.0)
    }
}

/// KL(pᵗ ‖ αpᵗ + (1−α)pˢ) (DistiLLM's skew KL).
pub struct SkewKl {
    cfg: SkewConfig,
}

impl Plugin for SkewKl {
    const NAME: &'static str = "skew-kl";
    const SUMMARY: &'static str = "Skew KL: KL(pᵗ ‖ αpᵗ + (1−α)pˢ), gradient through the mixture (DistiLLM, \
        Ko et al. 2024). The official code reports the CE form (value_form = \"ce\"). Inputs: student, teacher, \
        optional mask.";
    type Config = SkewConfig;
    fn new(_ctx: Ctx, cfg: SkewConfig) -> Result<Self> {
        check_tau(Self::NAME, cfg.temperature)?;
        check_unit(Self::NAME, "alpha", cfg.alpha)?;
        Ok(SkewKl { cfg })
    }
}

impl Rows for SkewKl {
    fn tau(&self) -> (f64, bool) {
        (self.cfg.temperature, self.cfg.tau_squared)
    }
    fn rows(&self, p: &Pair) -> Result<Tensor> {
        f::teacher_target_rows(&p.log_pt, &log_mix(self.cfg.alpha, &p.log_pt, &p.log_ps)?, self.cfg.value_form)
    }
}

/// KL(pˢ ‖ (1−α)pᵗ + αpˢ) (DistiLLM's skew reverse KL).
pub struct SkewReverseKl {
    cfg: SkewReverseConfig,
}

impl Plugin for SkewReverseKl {
    const NAME: &'static str = "skew-reverse-kl";
    const SUMMARY: &'static str = "Skew reverse KL: KL(pˢ ‖ (1−α)pᵗ + αpˢ), full KL form (DistiLLM, Ko et al. \
        2024). Inputs: student, teacher, optional mask.";
    type Config = SkewReverseConfig;
    fn new(_ctx: Ctx, cfg: SkewReverseConfig) -> Result<Self> {
        check_tau(Self::NAME, cfg.temperature)?;
        check_unit(Self::NAME, "alpha", cfg.alpha)?;
        Ok(SkewReverseKl { cfg })
    }
}

impl Rows for SkewReverseKl {
    fn tau(&self) -> (f64, bool) {
        (self.cfg.temperature, self.cfg.tau_squared)
    }
    fn rows(&self, p: &Pair) -> Result<Tensor> {
        f::kl_rows(&p.log_ps, &log_mix(1.0 - self.cfg.alpha, &p.log_pt, &p.log_ps)?)
    }
}

/// β·KL(pᵗ‖M) + (1−β)·KL(pˢ‖M), M = βpᵗ + (1−β)pˢ (GKD).
pub struct GeneralizedJsd {
    cfg: GjsdConfig,
}

impl Plugin for GeneralizedJsd {
    const NAME: &'static str = "generalized-jsd";
    const SUMMARY: &'static str = "Generalized JSD β·KL(pᵗ‖M) + (1−β)·KL(pˢ‖M), M = βpᵗ + (1−β)pˢ (GKD, \
        Agarwal et al. 2024). End points follow TRL: β = 0 is forward KL(pᵗ‖pˢ), β = 1 reverse KL(pˢ‖pᵗ), \
        unscaled. DistiLLM js_distance(lam=0.9) and TAID JS(teacher_weight=0.1) equal β = 0.1.";
    type Config = GjsdConfig;
    fn new(_ctx: Ctx, cfg: GjsdConfig) -> Result<Self> {
        check_tau(Self::NAME, cfg.temperature)?;
        check_unit(Self::NAME, "beta", cfg.beta)?;
        Ok(GeneralizedJsd { cfg })
    }
}

impl Rows for GeneralizedJsd {
    fn tau(&self) -> (f64, bool) {
        (self.cfg.temperature, self.cfg.tau_squared)
    }
    fn rows(&self, p: &Pair) -> Result<Tensor> {
        match self.cfg.beta {
            b if b <= 0.0 => f::kl_rows(&p.log_pt, &p.log_ps),
            b if b >= 1.0 => f::kl_rows(&p.log_ps, &p.log_pt),
            b => gjsd_rows(p, b),
        }
    }
}

/// A divergence given by its per-row values `[N]` (before τ²): `loss` reduces them (a token mean
/// under a mask) and `loss_rows` returns them per sample for `[B, C]` logits.
trait Rows {
    /// (τ, whether to multiply by τ²).
    fn tau(&self) -> (f64, bool);
    fn rows(&self, p: &Pair) -> Result<Tensor>;
}

macro_rules! row_losses {
    ($($t:ty),*) => {$(
        impl LossPlugin for $t {
            fn loss(&mut self, batch: &Batch) -> Result<Tensor> {
                let (tau, sq) = self.tau();
                let p = pair(batch, tau)?;
                finish(&self.rows(&p)?, &p, tau, sq)
            }
            fn loss_rows(&mut self, batch: &Batch) -> Result<Option<Tensor>> {
                let (tau, sq) = self.tau();
                per_sample(batch, tau, sq, |p| self.rows(p))
            }
        }
    )*};
}

row_losses!(ReverseKl, JensenShannon, TotalVariation, SkewKl, SkewReverseKl, GeneralizedJsd);
