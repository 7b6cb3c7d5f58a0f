//! MST-Distill's router (methods spec §1.4): `gate-net` and its `load-balance` loss.
//!
//! `gate-net`: `g = softmax(Linear_{2C→T}(Linear_{C→2C}(z_S)))` on the student's logits (not
//! detached; no nonlinearity between the layers, as in the official code), tapped as `gate`.
//! The route the host weights the teachers with depends on `mode`: `topk_hard` (official) 1/k on
//! each sample's top-k teachers, from the indices only, so the KD term gives the router no
//! gradient; `soft_weighted` (official) `g` detached; `soft_weighted_gate_grad` (not official) `g`
//! in the graph, so the router learns from the KD term. Its parameters are created at the first
//! step (their sizes come from the batch) and train with the first trained slot.
//!
//! `load-balance` reads the gate (`inputs = { gate = "<router slot>.gate" }`), `ḡ = mean_b g_b`:
//! `kl` (default) `(1/T)·KL(u‖ḡ)` (the 1/T of a batchmean over a 1-D tensor, kept), or `cv`
//! `std_unbiased(I)/mean(I)` with `I_t = Σ_b g_{b,t}`.
use retort_sdk::ctx::init;
use retort_sdk::{export_plugins, params, Batch, Ctx, DType, Error, LossPlugin, Plugin, Result, RouterPlugin, Tensor};
use serde::{Deserialize, Serialize};

/// How the gate becomes the route.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug, Default)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// 1/k on each sample's top-k teachers (indices only; official).
    #[default]
    TopkHard,
    /// The gate probabilities, detached (official soft mode).
    SoftWeighted,
    /// The gate probabilities in the graph (not official: the router learns from the KD term).
    SoftWeightedGateGrad,
}

/// Parameters of `gate-net`.
#[params]
pub struct GateConfig {
    /// teachers per sample in `topk_hard` (1 ≤ k ≤ T)
    #[param(default = 1)]
    pub k: usize,
    /// "topk_hard" (official), "soft_weighted" (official, gate detached) or "soft_weighted_gate_grad"
    #[param(default = Mode::TopkHard)]
    pub mode: Mode,
}

/// The router instance; its two layers are made at the first step.
pub struct GateNet {
    ctx: Ctx,
    cfg: GateConfig,
    layers: Option<[Tensor; 4]>,
}

impl Plugin for GateNet {
    const NAME: &'static str = "gate-net";
    const SUMMARY: &'static str = "MST-Distill GateNet (Li et al. 2025): softmax of two stacked linear layers \
        (C→2C→T, no nonlinearity) on the student's logits; route = top-k (1/k each, official), the gate \
        detached, or the gate in the graph. Taps `gate`. Inputs: student [B, C], teachers [T, B, C].";
    type Config = GateConfig;
    fn new(ctx: Ctx, cfg: GateConfig) -> Result<Self> {
        if cfg.k == 0 {
            return Err(Error::config("gate-net: k must be ≥ 1"));
        }
        Ok(GateNet { ctx, cfg, layers: None })
    }
}

impl GateNet {
    /// The layers for `c` classes and `t` teachers, made on first use.
    fn layers(&mut self, c: usize, t: usize) -> Result<[Tensor; 4]> {
        if let Some(l) = &self.layers {
            return Ok(l.clone());
        }
        let ctx = &self.ctx;
        let l = [
            ctx.var("fc1.weight", &[2 * c, c], init::fan_in_uniform(c))?,
            ctx.var("fc1.bias", &[2 * c], init::fan_in_uniform(c))?,
            ctx.var("fc2.weight", &[t, 2 * c], init::fan_in_uniform(2 * c))?,
            ctx.var("fc2.bias", &[t], init::fan_in_uniform(2 * c))?,
        ];
        self.layers = Some(l.clone());
        Ok(l)
    }
}

impl RouterPlugin for GateNet {
    fn route(&mut self, batch: &Batch) -> Result<Tensor> {
        let z = batch.tensor("student")?;
        let t = batch.tensor("teachers")?.dim(0)?;
        if self.cfg.k > t {
            return Err(Error::invalid(format!("gate-net: k = {} but the stage has {t} teachers", self.cfg.k)));
        }
        let [w1, b1, w2, b2] = self.layers(z.dim(1)?, t)?;
        let g = z.linear(&w1, Some(&b1))?.linear(&w2, Some(&b2))?.softmax(-1)?;
        let g = self.ctx.tap("gate", &g)?;
        match self.cfg.mode {
            Mode::SoftWeighted => g.detach(),
            Mode::SoftWeightedGateGrad => Ok(g),
            Mode::TopkHard => {
                // k rounds of argmax, each pick pushed below every probability: 1/k per pick.
                let mut left = g.detach()?;
                let mut route: Option<Tensor> = None;
                for _ in 0..self.cfg.k {
                    let pick = left.argmax(-1)?.one_hot(t)?;
                    left = left.sub(&pick.affine(2.0, 0.0)?)?;
                    route = Some(match route {
                        Some(r) => r.add(&pick)?,
                        None => pick,
                    });
                }
                let route = route.ok_or_else(|| Error::invalid("gate-net: k = 0"))?;
                route.affine(1.0 / self.cfg.k as f64, 0.0)?.to_dtype(DType::F32)
            }
        }
    }
}

/// How the load is balanced.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug, Default)]
#[serde(rename_all = "lowercase")]
pub enum LbMode {
    /// `(1/T)·KL(u‖ḡ)` (official default).
    #[default]
    Kl,
    /// `std_unbiased(I)/mean(I)`, `I_t = Σ_b g_{b,t}` (not squared).
    Cv,
}

/// Parameters of `load-balance`.
#[params]
pub struct LbConfig {
    /// "kl" (default) or "cv"
    #[param(default = LbMode::Kl)]
    pub mode: LbMode,
}

/// The load-balancing loss of a gate.
pub struct LoadBalance {
    cfg: LbConfig,
}

impl Plugin for LoadBalance {
    const NAME: &'static str = "load-balance";
    const SUMMARY: &'static str = "MST-Distill's load-balancing loss on a router's gate probabilities [B, T]: \
        (1/T)·KL(uniform ‖ mean_b g) or std_unbiased(Σ_b g)/mean(Σ_b g). Inputs: gate (map it from \
        `<router slot>.gate`).";
    type Config = LbConfig;
    fn new(_ctx: Ctx, cfg: LbConfig) -> Result<Self> {
        Ok(LoadBalance { cfg })
    }
}

impl LossPlugin for LoadBalance {
    fn loss(&mut self, batch: &Batch) -> Result<Tensor> {
        let g = batch.tensor("gate")?;
        let t = g.dim(1)? as f64;
        match self.cfg.mode {
            LbMode::Kl => {
                // (1/T)·Σ_t (1/T)·(log(1/T) − log ḡ_t)
                g.mean(0)?.log()?.affine(-1.0, -t.ln())?.sum_all()?.affine(1.0 / (t * t), 0.0)
            }
            LbMode::Cv => {
                let load = g.sum(0)?;
                let mean = load.mean_all()?;
                let var = load.sub(&mean)?.sqr()?.sum_all()?.affine(1.0 / (t - 1.0).max(1.0), 0.0)?;
                var.sqrt()?.div(&mean)
            }
        }
    }
}

export_plugins! {
    loss: [LoadBalance],
    router: [GateNet],
}
