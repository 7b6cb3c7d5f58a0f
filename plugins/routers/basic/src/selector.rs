//! `selector`: KD³'s teacher–student dynamic instance selection (Tang et al. 2023; methods spec
//! §4.3 (a), [unverified] reconstruction) as a router. `p_c = (1−η_t)·p_T + η_t·p_S` with η_t
//! ramping linearly from `eta_start` to `eta_end` over `ramp_epochs`; a sample is kept iff
//! `max_c p_c ≥ tau_sel`, its pseudo-label is `argmax_c p_c`, its weight `max_c p_c` (or 1) when
//! kept and 0 otherwise. It taps `keep`, `pseudo_labels` and `weight`; the host weights every
//! term with `weight` and gives the terms `pseudo_labels` as `labels`. The route is uniform.
use retort_sdk::{params, Batch, Ctx, DType, Plugin, Result, RouterPlugin, Tensor};
use serde::{Deserialize, Serialize};

/// A kept sample's weight.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug, Default)]
#[serde(rename_all = "snake_case")]
pub enum Weighting {
    /// `max_c p_c`.
    #[default]
    Confidence,
    /// 1.
    One,
}

/// Parameters of `selector`.
#[params]
pub struct SelectorConfig {
    /// τ_sel: keep a sample when its combined confidence reaches this [unverified: 0.9]
    #[param(default = 0.9)]
    pub tau_sel: f64,
    /// η at epoch 1 (the student's share of the combined prediction)
    #[param(default = 0.0, ge = 0.0, le = 1.0)]
    pub eta_start: f64,
    /// η after the ramp [unverified: 0.5]
    #[param(default = 0.5, ge = 0.0, le = 1.0)]
    pub eta_end: f64,
    /// epochs over which η ramps linearly (0: η = eta_end throughout)
    #[param(default = 10.0, ge = 0.0)]
    pub ramp_epochs: f64,
    /// a kept sample's weight: "confidence" (max p_c) or "one"
    #[param(default = Weighting::Confidence)]
    pub weight: Weighting,
}

/// The instance selector.
pub struct Selector {
    ctx: Ctx,
    cfg: SelectorConfig,
}

impl Plugin for Selector {
    const NAME: &'static str = "selector";
    const SUMMARY: &'static str = "KD³ dynamic instance selection (Tang et al. 2023): p_c = (1−η)·p_T + η·p_S with η \
        ramping over epochs; keep iff max p_c ≥ τ_sel, pseudo-label argmax p_c, weight max p_c. Taps keep, \
        pseudo_labels, weight (the host applies them to every term). Inputs: teachers [T, B, C] (mean), student.";
    type Config = SelectorConfig;
    fn new(ctx: Ctx, cfg: SelectorConfig) -> Result<Self> {
        Ok(Selector { ctx, cfg })
    }
}

impl Selector {
    /// η in `epoch` (counted from 1).
    pub fn eta(&self, epoch: f64) -> f64 {
        let c = &self.cfg;
        if c.ramp_epochs <= 0.0 {
            return c.eta_end;
        }
        let t = ((epoch - 1.0) / c.ramp_epochs).clamp(0.0, 1.0);
        c.eta_start + (c.eta_end - c.eta_start) * t
    }
}

impl RouterPlugin for Selector {
    fn route(&mut self, batch: &Batch) -> Result<Tensor> {
        let teachers = batch.tensor("teachers")?;
        let (t, b) = (teachers.dim(0)?, teachers.dim(1)?);
        let eta = self.eta(batch.scalar("epoch").unwrap_or(1.0));
        let pt = teachers.to_dtype(DType::F32)?.softmax(-1)?.mean(0)?;
        let ps = batch.tensor("student")?.detach()?.to_dtype(DType::F32)?.softmax(-1)?;
        let pc = pt.affine(1.0 - eta, 0.0)?.add(&ps.affine(eta, 0.0)?)?;
        let conf = pc.max(-1)?;
        let keep = conf.ge(&self.ctx.full(&[b], self.cfg.tau_sel, DType::F32)?)?.to_dtype(DType::F32)?;
        let weight = match self.cfg.weight {
            Weighting::Confidence => conf.mul(&keep)?,
            Weighting::One => keep.clone(),
        };
        self.ctx.tap("keep", &keep)?;
        self.ctx.tap("pseudo_labels", &pc.argmax(-1)?)?;
        self.ctx.tap("weight", &weight)?;
        self.ctx.full(&[b, t], 1.0 / t as f64, DType::F32)
    }
}
