//! Fused host ops with their own backward (candle custom ops): fewer passes and allocations than
//! the plain candle composition, same values. Used through the op table (`nn::LINEAR`, `RELU`).
use super::grad_sink;
use super::kernel::{add_rows, f32_slice, gemm_acc, BiasGrad};
use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Device, Layout, Result, Shape, Storage, Tensor};

/// `y = x·wᵀ + b` for x `[…, in]`, w `[out, in]`, b `[out]`. Backward writes the weight gradient
/// in w's own layout (no transposed accumulate) and skips the input gradient when the input is
/// data rather than part of the graph (the first layer).
struct Linear;

impl CustomOp3 for Linear {
    fn name(&self) -> &'static str {
        "retort-linear"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s1, l1, "input")?;
        let b = f32_slice(s3, l3, "bias")?;
        let CpuStorage::F32(wv) = s2 else { candle_core::bail!("fused linear: weight must be f32") };
        let (out, inp) = l2.shape().dims2()?;
        let dims = l1.dims();
        let m = x.len() / inp.max(1);
        let mut dst = Vec::with_capacity(m * out);
        for _ in 0..m {
            dst.extend_from_slice(b);
        }
        let ws = l2.stride();
        let w = &wv[l2.start_offset()..];
        // The bias rows are the gemm's initial value (accumulate); w in its own strides.
        gemm_acc(m, out, inp, &mut dst, (out, 1), true, x, (inp, 1), w, (ws[1], ws[0]));
        let mut shape = dims.to_vec();
        if let Some(last) = shape.last_mut() {
            *last = out;
        }
        Ok((CpuStorage::F32(dst), Shape::from(shape)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (out, inp) = w.dims2()?;
        let g = grad.reshape(((), out))?.contiguous()?;
        let gx = if x.track_op() { Some(g.matmul(w)?.reshape(x.shape())?) } else { None };
        let gw = if w.track_op() && !sink_weight_grad(w, &g, x, (out, inp))? {
            Some(g.t()?.matmul(&x.reshape(((), inp))?)?)
        } else {
            None
        };
        let gb = if b.track_op() && !sink_bias_grad(b, &g)? { Some(g.apply_op1_no_bwd(&BiasGrad)?) } else { None };
        Ok((gx, gw, gb))
    }
}

/// Runs `f` on the contiguous f32 data of a CPU tensor (no copy).
pub(super) fn with_data<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    match (&*storage, layout.contiguous_offsets()) {
        (Storage::Cpu(CpuStorage::F32(v)), Some((a, b))) => Ok(f(&v[a..b])),
        _ => candle_core::bail!("fused op backward: operand must be contiguous CPU f32"),
    }
}

/// `gw (+)= gᵀ·x` by one gemm into the gradient sink, when a sinking backward runs and w is a leaf
/// parameter; false when the gradient has to go back to candle.
fn sink_weight_grad(w: &Tensor, g: &Tensor, x: &Tensor, (out, inp): (usize, usize)) -> Result<bool> {
    if !(w.is_variable() && grad_sink::active()) {
        return Ok(false);
    }
    let x = x.reshape(((), inp))?.contiguous()?;
    let rows = x.dim(0)?;
    with_data(g, |gd| {
        with_data(&x, |xd| {
            grad_sink::sink(w, |dst, acc| {
                gemm_acc(out, inp, rows, dst, (inp, 1), acc, gd, (1, out), xd, (inp, 1));
            })
        })
    })?
}

/// The bias gradient (column sums of g) into the sink, as [`sink_weight_grad`].
fn sink_bias_grad(b: &Tensor, g: &Tensor) -> Result<bool> {
    if !(b.is_variable() && grad_sink::active()) {
        return Ok(false);
    }
    with_data(g, |gd| {
        grad_sink::sink(b, |dst, acc| {
            if !acc {
                dst.fill(0.0);
            }
            add_rows(dst, gd);
        })
    })
}

/// `x·wᵀ + b` (b optional): the fused op on CPU f32, the plain composition elsewhere.
pub fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    let (out, inp) = w.dims2()?;
    if x.dims().last() != Some(&inp) || b.is_some_and(|b| b.dims() != [out]) {
        candle_core::bail!(
            "linear: input {:?}, weight {:?}, bias {:?} do not fit",
            x.dims(),
            w.dims(),
            b.map(|b| b.dims().to_vec())
        );
    }
    let fused = matches!(x.device(), Device::Cpu) && [x.dtype(), w.dtype()].iter().all(|d| *d == DType::F32);
    if !fused {
        let y = x.broadcast_matmul(&w.t()?)?;
        return match b {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        };
    }
    let zeros;
    let b = match b {
        Some(b) => b.to_dtype(DType::F32)?,
        None => {
            zeros = Tensor::zeros(out, DType::F32, x.device())?;
            zeros
        }
    };
    x.contiguous()?.apply_op3(w, &b.contiguous()?, Linear)
}

/// ReLU whose backward is one pass (`grad · [y > 0]`) instead of candle's six ops.
struct Relu;

impl CustomOp1 for Relu {
    fn name(&self) -> &'static str {
        "retort-relu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s, l, "input")?;
        Ok((CpuStorage::F32(x.iter().map(|&v| v.max(0.0)).collect()), l.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad.contiguous()?.apply_op2_no_bwd(res, &ReluGrad)?))
    }
}

/// `grad · [y > 0]` in one pass (the backward of [`Relu`]).
struct ReluGrad;

impl CustomOp2 for ReluGrad {
    fn name(&self) -> &'static str {
        "retort-relu-grad"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = f32_slice(s1, l1, "gradient")?;
        let y = f32_slice(s2, l2, "output")?;
        let out = g.iter().zip(y).map(|(&g, &y)| if y > 0.0 { g } else { 0.0 }).collect();
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// ReLU: the fused op on contiguous CPU f32, candle's elsewhere.
pub fn relu(x: &Tensor) -> Result<Tensor> {
    if matches!(x.device(), Device::Cpu) && x.dtype() == DType::F32 {
        x.contiguous()?.apply_op1(Relu)
    } else {
        x.relu()
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor, Var};

    use super::*;
    use crate::backend::kernel::max_diff;

    /// Value and gradients against the plain composition, on several shapes, with a transposed
    /// (non-contiguous) weight and a non-contiguous input.
    #[test]
    fn linear_matches_the_composition() {
        let d = Device::Cpu;
        for (batch, inp, out) in [(1usize, 1usize, 1usize), (7, 5, 3), (128, 64, 33), (3, 200, 17)] {
            let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (batch, inp), &d).unwrap()).unwrap();
            let w = Var::from_tensor(&Tensor::randn(0f32, 1.0, (out, inp), &d).unwrap()).unwrap();
            let b = Var::from_tensor(&Tensor::randn(0f32, 1.0, out, &d).unwrap()).unwrap();
            let target = Tensor::randn(0f32, 1.0, (batch, out), &d).unwrap();
            let fused = linear(x.as_tensor(), w.as_tensor(), Some(b.as_tensor())).unwrap();
            let plain =
                x.as_tensor().matmul(&w.as_tensor().t().unwrap()).unwrap().broadcast_add(b.as_tensor()).unwrap();
            assert!(max_diff(&fused, &plain) < 1e-4, "value {batch}x{inp}x{out}");
            let loss = |y: &Tensor| (y * &target).unwrap().sum_all().unwrap();
            let gf = loss(&fused).backward().unwrap();
            let gp = loss(&plain).backward().unwrap();
            for v in [&x, &w, &b] {
                let (a, c) = (gf.get(v.as_tensor()).unwrap(), gp.get(v.as_tensor()).unwrap());
                assert_eq!(a.dims(), c.dims());
                assert!(max_diff(a, c) < 1e-4, "gradient {batch}x{inp}x{out}");
            }
        }
        // Non-contiguous weight (a transposed view) and input (a narrowed view), 3-D input, no bias.
        let wt = Var::from_tensor(&Tensor::randn(0f32, 1.0, (6, 4), &d).unwrap()).unwrap();
        let w = wt.as_tensor().t().unwrap();
        let xb = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 3, 10), &d).unwrap()).unwrap();
        let x = xb.as_tensor().narrow(2, 2, 6).unwrap();
        let fused = linear(&x, &w, None).unwrap();
        let plain = x.broadcast_matmul(&w.t().unwrap()).unwrap();
        assert_eq!(fused.dims(), &[2, 3, 4]);
        assert!(max_diff(&fused, &plain) < 1e-4);
        let gf = fused.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        let gp = plain.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        for v in [&wt, &xb] {
            assert!(max_diff(gf.get(v.as_tensor()).unwrap(), gp.get(v.as_tensor()).unwrap()) < 1e-3);
        }
    }

    #[test]
    fn linear_skips_the_gradient_of_plain_data() {
        let d = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (4, 3), &d).unwrap();
        let w = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 3), &d).unwrap()).unwrap();
        let g = linear(&x, w.as_tensor(), None).unwrap().sum_all().unwrap().backward().unwrap();
        assert!(g.get(&x).is_none());
        assert!(g.get(w.as_tensor()).is_some());
    }

    #[test]
    fn relu_matches_candle() {
        let d = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (33, 17), &d).unwrap()).unwrap();
        let t = Tensor::randn(0f32, 1.0, (33, 17), &d).unwrap();
        let view = x.as_tensor().t().unwrap();
        let (a, b) = (relu(&view).unwrap(), view.relu().unwrap());
        assert!(max_diff(&a, &b) == 0.0);
        let ga = (a * t.t().unwrap()).unwrap().sum_all().unwrap().backward().unwrap();
        let gb = (b * t.t().unwrap()).unwrap().sum_all().unwrap().backward().unwrap();
        assert!(max_diff(ga.get(x.as_tensor()).unwrap(), gb.get(x.as_tensor()).unwrap()) == 0.0);
    }
}
