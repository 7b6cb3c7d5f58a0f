//! The optimizer updates as one kernel launch per parameter, in place, with the moments as
//! device tensors beside the parameter (the CPU's fused pass in `train::optim` does the same
//! arithmetic on host vectors).
use candle_core::cuda_backend::cudarc::driver::PushKernelArg;
use candle_core::cuda_backend::WrapErr;
use candle_core::{CpuStorage, CudaStorage, InplaceOp2, Layout, Result, Storage, Tensor};

use super::{elementwise, f32_view, function};

/// The scalars of one AdamW step, precomputed on the host as the CPU pass computes them.
#[derive(Clone, Copy)]
struct Adamw {
    b1: f32,
    b2: f32,
    eps: f32,
    decay: f32,
    step: f32,
    c2s: f32,
}

/// The scalars of one SGD step.
#[derive(Clone, Copy)]
struct Sgd {
    lr: f32,
    mu: f32,
    wd: f32,
    first: bool,
    nesterov: bool,
}

enum Rule {
    Adamw(Adamw),
    Sgd(Sgd),
}

/// An update of the parameter (the in-place operand) from the gradient (the second operand), with
/// the moments held here: the kernel writes them through their device pointers, which is sound
/// because nothing else reads or writes a parameter's moments during its update.
struct Update {
    rule: Rule,
    m: Option<Tensor>,
    v: Option<Tensor>,
}

/// The device data of moment `t` (contiguous f32 of the parameter's length).
fn moment(t: &Tensor, n: usize) -> Result<(candle_core::StorageRef<'_>, std::ops::Range<usize>)> {
    let (s, l) = t.storage_and_layout();
    let (a, b) = l
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg("optimizer: moments must be contiguous".into()))?;
    if b - a != n {
        candle_core::bail!("optimizer: moment has {} elements, parameter {n}", b - a);
    }
    Ok((s, a..b))
}

fn cuda(s: &Storage) -> Result<&CudaStorage> {
    match s {
        Storage::Cuda(c) => Ok(c),
        _ => candle_core::bail!("optimizer: moments must live on the parameter's CUDA device"),
    }
}

impl InplaceOp2 for Update {
    fn name(&self) -> &'static str {
        "retort-optimizer-step-cuda"
    }

    fn cpu_fwd(&self, _: &mut CpuStorage, _: &Layout, _: &CpuStorage, _: &Layout) -> Result<()> {
        candle_core::bail!("the CUDA optimizer update got CPU tensors (the CPU uses the fused host pass)")
    }

    fn cuda_fwd(&self, s1: &mut CudaStorage, l1: &Layout, s2: &CudaStorage, l2: &Layout) -> Result<()> {
        let dev = s1.device.clone();
        let g = f32_view(s2, l2, "gradient")?;
        let (a, b) = l1
            .contiguous_offsets()
            .ok_or_else(|| candle_core::Error::Msg("optimizer: non-contiguous parameter".into()))?;
        let n = b - a;
        if g.len() != n {
            candle_core::bail!("optimizer: parameter has {n} elements, gradient {}", g.len());
        }
        let mut w = s1.as_cuda_slice_mut::<f32>()?.slice_mut(a..b);
        let n64 = n as i64;
        let stream = dev.cuda_stream();
        match self.rule {
            Rule::Adamw(h) => {
                let (Some(m), Some(v)) = (&self.m, &self.v) else { candle_core::bail!("adamw: moments missing") };
                let ((ms, mr), (vs, vr)) = (moment(m, n)?, moment(v, n)?);
                let mv = cuda(&ms)?.as_cuda_slice::<f32>()?.slice(mr);
                let vv = cuda(&vs)?.as_cuda_slice::<f32>()?.slice(vr);
                let f = function(&dev, "retort_adamw_f32")?;
                let mut bld = stream.launch_builder(&f);
                bld.arg(&mut w).arg(&g).arg(&mv).arg(&vv).arg(&n64);
                bld.arg(&h.b1).arg(&h.b2).arg(&h.eps).arg(&h.decay).arg(&h.step).arg(&h.c2s);
                // SAFETY: w, g, m and v each hold n f32 values; the kernel touches only those.
                unsafe { bld.launch(elementwise(n)) }.w()?;
            }
            Rule::Sgd(h) => {
                let (first, nesterov) = (h.first as i32, h.nesterov as i32);
                let held = self.m.as_ref().map(|m| moment(m, n)).transpose()?;
                let buf = match &held {
                    Some((s, r)) => Some(cuda(s)?.as_cuda_slice::<f32>()?.slice(r.clone())),
                    None => None,
                };
                let null = 0u64;
                let f = function(&dev, "retort_sgd_f32")?;
                let mut bld = stream.launch_builder(&f);
                bld.arg(&mut w).arg(&g);
                match &buf {
                    Some(b) => bld.arg(b),
                    None => bld.arg(&null),
                };
                bld.arg(&n64).arg(&h.lr).arg(&h.mu).arg(&h.wd).arg(&first).arg(&nesterov);
                // SAFETY: w, g (and the buffer, when momentum is on) hold n f32 values.
                unsafe { bld.launch(elementwise(n)) }.w()?;
            }
        }
        Ok(())
    }
}

/// One fused AdamW update of `w` (in place) with gradient `g`, moments `m`, `v` (device tensors
/// of `w`'s length), at learning rate `lr`, optimizer step `t` (from 1).
#[allow(clippy::too_many_arguments)]
pub fn adamw(
    w: &Tensor,
    g: &Tensor,
    m: &Tensor,
    v: &Tensor,
    lr: f32,
    (b1, b2, eps, wd): (f32, f32, f32, f32),
    t: u64,
) -> Result<()> {
    let t = t as i32;
    let (c1, c2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
    let rule = Rule::Adamw(Adamw { b1, b2, eps, decay: 1.0 - lr * wd, step: lr / c1, c2s: c2.sqrt() });
    w.inplace_op2(&g.contiguous()?, &Update { rule, m: Some(m.clone()), v: Some(v.clone()) })
}

/// One fused SGD update of `w` with gradient `g` and momentum buffer `buf` (needed when
/// `mu ≠ 0`); `first` marks the optimizer's first step (the buffer starts as the gradient).
pub fn sgd(
    w: &Tensor,
    g: &Tensor,
    buf: Option<&Tensor>,
    lr: f32,
    (mu, wd, nesterov): (f32, f32, bool),
    first: bool,
) -> Result<()> {
    let rule = Rule::Sgd(Sgd { lr, mu, wd, first, nesterov });
    w.inplace_op2(&g.contiguous()?, &Update { rule, m: buf.cloned(), v: None })
}
