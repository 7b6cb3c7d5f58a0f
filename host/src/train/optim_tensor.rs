//! The optimizer update written with tensor ops, for parameters on any device (CUDA included):
//! the same SGD and AdamW as the fused CPU pass, with the moments kept as tensors beside the
//! parameter. On the CPU the fused pass is used; tests run this path there against it.
use candle_core::{Tensor, Var};

use super::optim::ParamState;
use crate::config::OptimizerSection;

/// One parameter's moments as tensors on its device (`None` until the first update).
#[derive(Default, Clone)]
pub struct Moments {
    pub m: Option<Tensor>,
    pub v: Option<Tensor>,
}

impl Moments {
    /// The moments as host vectors, for a checkpoint (`None` when this path never ran).
    pub fn to_state(&self) -> candle_core::Result<Option<ParamState>> {
        let host = |t: &Option<Tensor>| -> candle_core::Result<Vec<f32>> {
            t.as_ref().map(|t| t.flatten_all()?.to_vec1::<f32>()).unwrap_or(Ok(Vec::new()))
        };
        if self.m.is_none() && self.v.is_none() {
            return Ok(None);
        }
        Ok(Some(ParamState { m: host(&self.m)?, v: host(&self.v)? }))
    }
}

/// A moment from a checkpoint (`saved`, moved out) if it fits `w`, else none.
fn restored(saved: &mut Vec<f32>, w: &Tensor) -> candle_core::Result<Option<Tensor>> {
    if saved.len() != w.elem_count() {
        return Ok(None);
    }
    let t = Tensor::from_slice(saved, w.shape(), w.device())?;
    saved.clear();
    Ok(Some(t))
}

/// One update of `var` with gradient `g` at learning rate `lr`, step `step` (from 1) of the
/// optimizer. `saved` holds moments restored from a checkpoint until they move to the device.
pub fn update(
    kind: &OptimizerSection,
    var: &Var,
    g: &Tensor,
    saved: &mut ParamState,
    mo: &mut Moments,
    lr: f64,
    step: u64,
) -> candle_core::Result<()> {
    let w = var.as_tensor();
    let g = g.to_dtype(w.dtype())?;
    if mo.m.is_none() {
        mo.m = restored(&mut saved.m, w)?;
    }
    if mo.v.is_none() {
        mo.v = restored(&mut saved.v, w)?;
    }
    match *kind {
        OptimizerSection::Sgd { momentum, nesterov, weight_decay, .. } => {
            let d = if weight_decay != 0.0 { (&g + w.affine(weight_decay, 0.0)?)? } else { g };
            if momentum == 0.0 {
                return var.set(&(w - d.affine(lr, 0.0)?)?);
            }
            // PyTorch: the buffer starts as the first gradient.
            let buf = match (&mo.m, step) {
                (Some(b), s) if s > 1 => (b.affine(momentum, 0.0)? + &d)?,
                _ => d.clone(),
            };
            let upd = if nesterov { (&d + buf.affine(momentum, 0.0)?)? } else { buf.clone() };
            var.set(&(w - upd.affine(lr, 0.0)?)?)?;
            mo.m = Some(buf);
        }
        OptimizerSection::Adamw { beta1, beta2, eps, weight_decay, .. } => {
            let m = match &mo.m {
                Some(m) => (m.affine(beta1, 0.0)? + g.affine(1.0 - beta1, 0.0)?)?,
                None => g.affine(1.0 - beta1, 0.0)?,
            };
            let g2 = g.sqr()?;
            let v = match &mo.v {
                Some(v) => (v.affine(beta2, 0.0)? + g2.affine(1.0 - beta2, 0.0)?)?,
                None => g2.affine(1.0 - beta2, 0.0)?,
            };
            let t = step as i32;
            let (c1, c2) = (1.0 - beta1.powi(t), 1.0 - beta2.powi(t));
            let denom = v.sqrt()?.affine(1.0 / c2.sqrt(), eps)?;
            let new = (w.affine(1.0 - lr * weight_decay, 0.0)? - (m.div(&denom)?).affine(lr / c1, 0.0)?)?;
            var.set(&new)?;
            (mo.m, mo.v) = (Some(m), Some(v));
        }
    }
    Ok(())
}

/// A moment for `w` on its device: restored from a checkpoint when one fits, else zeros.
#[cfg(feature = "cuda")]
fn moment_or_zeros(slot: &mut Option<Tensor>, saved: &mut Vec<f32>, w: &Tensor) -> candle_core::Result<Tensor> {
    if slot.is_none() {
        *slot = match restored(saved, w)? {
            Some(t) => Some(t),
            None => Some(Tensor::zeros(w.shape(), w.dtype(), w.device())?),
        };
    }
    slot.clone().ok_or_else(|| candle_core::Error::Msg("optimizer: moment missing".into()))
}

/// The same update as [`update`] as one CUDA kernel launch per parameter (moments as device
/// tensors, updated in place with the parameter).
#[cfg(feature = "cuda")]
pub fn update_cuda(
    kind: &OptimizerSection,
    var: &Var,
    g: &Tensor,
    saved: &mut ParamState,
    mo: &mut Moments,
    lr: f64,
    step: u64,
) -> candle_core::Result<()> {
    use crate::backend::cuda;
    let w = var.as_tensor();
    let g = g.to_dtype(w.dtype())?;
    match *kind {
        OptimizerSection::Sgd { momentum, nesterov, weight_decay, .. } => {
            let buf = if momentum != 0.0 { Some(moment_or_zeros(&mut mo.m, &mut saved.m, w)?) } else { None };
            // PyTorch: the buffer starts as the first gradient.
            let first = step == 1;
            cuda::sgd(w, &g, buf.as_ref(), lr as f32, (momentum as f32, weight_decay as f32, nesterov), first)
        }
        OptimizerSection::Adamw { beta1, beta2, eps, weight_decay, .. } => {
            let m = moment_or_zeros(&mut mo.m, &mut saved.m, w)?;
            let v = moment_or_zeros(&mut mo.v, &mut saved.v, w)?;
            let h = (beta1 as f32, beta2 as f32, eps as f32, weight_decay as f32);
            cuda::adamw(w, &g, &m, &v, lr as f32, h, step)
        }
    }
}
