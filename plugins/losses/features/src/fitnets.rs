//! `fitnets`: FitNets' hint loss (Romero et al. 2015; methods spec §5.1). A regressor r maps the
//! student's guided feature to the teacher's hint feature's shape, made at the first step from the
//! two shapes and trained with the student's objective: for maps (ConvReg) a 3×3 stride-2 conv when
//! `H_s = 2H_t`, a 4×4 stride-2 transposed conv when `2H_s = H_t`, a `(1+H_s−H_t)×(1+W_s−W_t)` conv
//! when `H_s ≥ H_t`, each followed by batch norm and (by default) ReLU; for vectors a linear map.
//! `single_stage` (the toolboxes'): `β·MSE(r(f_S), f_T)`, β = 100; `two_stage` (the paper's hint
//! stage): `½‖r(f_S) − f_T‖²` per sample, for a stage that trains the student up to the guided layer.
use retort_sdk::{
    ctx::init,
    nn::{BatchNorm, Linear},
    params, Batch, Ctx, Error, LossPlugin, Plugin, Result, Tensor,
};
use serde::{Deserialize, Serialize};

use crate::taps::feature;

/// Which recipe.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug, Default)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// `β·MSE`, next to the task loss (RepDistiller, mdistiller).
    #[default]
    SingleStage,
    /// `½‖·‖²` per sample: the paper's first stage.
    TwoStage,
}

/// Parameters of `fitnets`.
#[params]
pub struct Config {
    /// the student's guided tap (f2, the middle stage, in both toolboxes)
    #[param(default = "f2".to_string())]
    pub student_tap: String,
    /// the teacher's hint tap
    #[param(default = "f2".to_string())]
    pub teacher_tap: String,
    /// β of single_stage (100 in both toolboxes)
    #[param(default = 100.0)]
    pub beta: f64,
    /// "single_stage" (β·MSE) or "two_stage" (½‖·‖², the paper's hint stage)
    #[param(default = Mode::SingleStage)]
    pub mode: Mode,
    /// ReLU after the regressor (the teacher's hints are post-ReLU)
    #[param(default = true)]
    pub relu: bool,
}

/// The regressor r.
enum Regressor {
    Conv { weight: Tensor, stride: usize, padding: usize, transpose: bool, bn: BatchNorm },
    Linear(Linear),
}

/// The hint loss.
pub struct FitNets {
    ctx: Ctx,
    cfg: Config,
    reg: Option<Regressor>,
}

impl Plugin for FitNets {
    const NAME: &'static str = "fitnets";
    const SUMMARY: &'static str = "FitNets hint loss (Romero et al. 2015): a regressor (ConvReg for maps, linear \
        for vectors; made at the first step, trained with the student) maps the student's guided feature onto the \
        teacher's hint, β·MSE (single_stage) or ½‖·‖² (two_stage). Inputs: student_feature / teacher_feature, or \
        the taps student_tap / teacher_tap.";
    type Config = Config;
    fn new(ctx: Ctx, cfg: Config) -> Result<Self> {
        Ok(FitNets { ctx, cfg, reg: None })
    }
}

/// How ConvReg maps a `(H_s, W_s)` map onto `(H_t, W_t)`: (kernel h, kernel w, stride, padding,
/// transposed), or `None` when it cannot.
pub fn conv_reg_plan(hs: usize, ws: usize, ht: usize, wt: usize) -> Option<(usize, usize, usize, usize, bool)> {
    if hs == 2 * ht {
        Some((3, 3, 2, 1, false))
    } else if 2 * hs == ht {
        Some((4, 4, 2, 1, true))
    } else if hs >= ht && ws >= wt {
        Some((1 + hs - ht, 1 + ws - wt, 1, 0, false))
    } else {
        None
    }
}

impl FitNets {
    fn build(&self, s: &Tensor, t: &Tensor) -> Result<Regressor> {
        match (s.dims().as_slice(), t.dims().as_slice()) {
            (&[_, cs, hs, ws], &[_, ct, ht, wt]) => {
                let (kh, kw, stride, padding, transpose) = conv_reg_plan(hs, ws, ht, wt).ok_or_else(|| {
                    Error::invalid(format!(
                        "fitnets: no regressor maps a {hs}×{ws} student map onto a {ht}×{wt} hint (ConvReg handles \
                         H_s = 2H_t, 2H_s = H_t and H_s ≥ H_t)"
                    ))
                })?;
                let fan_in = cs * kh * kw;
                let shape = if transpose { [cs, ct, kh, kw] } else { [ct, cs, kh, kw] };
                let weight = self.ctx.var("reg.conv.weight", &shape, init::fan_in_uniform(fan_in))?;
                let bn = BatchNorm::new(&self.ctx, "reg.bn", ct, 1e-5, 0.1)?;
                Ok(Regressor::Conv { weight, stride, padding, transpose, bn })
            }
            (&[_, ds], &[_, dt]) => Ok(Regressor::Linear(Linear::new(&self.ctx, "reg.linear", ds, dt, true)?)),
            (a, b) => Err(Error::invalid(format!(
                "fitnets: the guided feature {a:?} and the hint {b:?} must both be maps [B, C, H, W] or both vectors [B, D]"
            ))),
        }
    }

    /// Per sample: the mean (single_stage, before β) or half the sum (two_stage) of squared errors.
    fn rows(&mut self, batch: &Batch) -> Result<Tensor> {
        let s = feature(&self.ctx, batch, "fitnets", Some("student_feature"), "student", &self.cfg.student_tap)?;
        let t = feature(&self.ctx, batch, "fitnets", Some("teacher_feature"), "teacher", &self.cfg.teacher_tap)?;
        if self.reg.is_none() {
            self.reg = Some(self.build(&s, &t)?);
        }
        let train = batch.is_training();
        let mut u = match &self.reg {
            Some(Regressor::Conv { weight, stride, padding, transpose, bn }) => {
                let y = if *transpose {
                    s.conv_transpose2d(weight, *padding, 0, *stride)?
                } else {
                    s.conv2d(weight, *padding, *stride, 1, 1)?
                };
                bn.forward(&y, train)?
            }
            Some(Regressor::Linear(l)) => l.forward(&s)?,
            None => return Err(Error::invalid("fitnets: no regressor")),
        };
        if self.cfg.relu {
            u = u.relu()?;
        }
        if u.dims() != t.dims() {
            return Err(Error::invalid(format!(
                "fitnets: the regressor gives {:?} for the hint {:?} (the shapes changed after the first step)",
                u.dims(),
                t.dims()
            )));
        }
        let sq = u.sub(&t)?.sqr()?.flatten_from(1)?;
        match self.cfg.mode {
            Mode::SingleStage => sq.mean(1),
            Mode::TwoStage => sq.sum(1)?.affine(0.5, 0.0),
        }
    }

    fn scale(&self) -> f64 {
        match self.cfg.mode {
            Mode::SingleStage => self.cfg.beta,
            Mode::TwoStage => 1.0,
        }
    }
}

impl LossPlugin for FitNets {
    fn loss(&mut self, batch: &Batch) -> Result<Tensor> {
        let k = self.scale();
        self.rows(batch)?.mean_all()?.affine(k, 0.0)
    }
    fn loss_rows(&mut self, batch: &Batch) -> Result<Option<Tensor>> {
        let k = self.scale();
        Ok(Some(self.rows(batch)?.affine(k, 0.0)?))
    }
}
