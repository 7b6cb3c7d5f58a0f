//! Max pooling as a candle custom op on CPU f32. The forward records where each window's maximum
//! was, so the backward is one scatter of the gradient (candle's goes through upsample + compare,
//! and recomputing the argmax in the backward costs a mispredicted branch per window).
use std::sync::{Arc, Mutex};

use super::kernel::f32_slice as slice;
use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Result, Shape, Tensor};

/// Max pooling without padding. Each window's first maximum (rows scanned in order) is the output
/// and receives the gradient; its index within the plane is kept for the backward.
struct MaxPool {
    k: (usize, usize),
    s: (usize, usize),
    argmax: Mutex<Option<Arc<Vec<u32>>>>,
}

/// Planes (N·C), input height and width, output height and width.
fn dims(k: (usize, usize), s: (usize, usize), l: &Layout) -> Result<(usize, usize, usize, usize, usize)> {
    let (n, c, h, w) = l.shape().dims4()?;
    if h < k.0 || w < k.1 {
        candle_core::bail!("max_pool2d: window {k:?} larger than input {:?}", l.dims());
    }
    if h * w > u32::MAX as usize {
        candle_core::bail!("max_pool2d: planes of {h}×{w} are too large");
    }
    Ok((n * c, h, w, (h - k.0) / s.0 + 1, (w - k.1) / s.1 + 1))
}

impl CustomOp1 for MaxPool {
    fn name(&self) -> &'static str {
        "retort-max-pool2d"
    }

    fn cpu_fwd(&self, st: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = slice(st, l, "input")?;
        let (planes, h, w, ho, wo) = dims(self.k, self.s, l)?;
        let mut out = Vec::with_capacity(planes * ho * wo);
        let mut arg = Vec::with_capacity(planes * ho * wo);
        for plane in x.chunks_exact(h * w).take(planes) {
            if self.k == (2, 2) && self.s == (2, 2) {
                pool2(plane, w, ho, wo, &mut out, &mut arg);
                continue;
            }
            for oy in 0..ho {
                for ox in 0..wo {
                    let base = oy * self.s.0 * w + ox * self.s.1;
                    let (mut bv, mut bi) = (plane[base], base);
                    for dy in 0..self.k.0 {
                        let r = base + dy * w;
                        for (dx, &v) in plane[r..r + self.k.1].iter().enumerate() {
                            // Selects rather than branches: which element wins is data-dependent.
                            let better = v > bv;
                            bi = if better { r + dx } else { bi };
                            bv = if better { v } else { bv };
                        }
                    }
                    out.push(bv);
                    arg.push(bi as u32);
                }
            }
        }
        if let Ok(mut slot) = self.argmax.lock() {
            *slot = Some(Arc::new(arg));
        }
        let d = l.dims();
        Ok((CpuStorage::F32(out), Shape::from((d[0], d[1], ho, wo))))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let argmax = self.argmax.lock().ok().and_then(|a| a.clone());
        let Some(argmax) = argmax else {
            candle_core::bail!("max_pool2d backward: the forward's argmax is missing");
        };
        let (_, _, h, w) = x.dims4()?;
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&Scatter { argmax, plane: h * w, input: x.shape().clone() })?))
    }
}

/// The 2×2, stride-2 forward of one plane (the common case), two rows at a time.
fn pool2(plane: &[f32], w: usize, ho: usize, wo: usize, out: &mut Vec<f32>, arg: &mut Vec<u32>) {
    for oy in 0..ho {
        let (i0, i1) = (2 * oy * w, (2 * oy + 1) * w);
        let (r0, r1) = (&plane[i0..i0 + 2 * wo], &plane[i1..i1 + 2 * wo]);
        for (ox, (top, bottom)) in r0.chunks_exact(2).zip(r1.chunks_exact(2)).enumerate() {
            let (mut bv, mut bi) = (top[0], i0 + 2 * ox);
            for (v, i) in [(top[1], i0 + 2 * ox + 1), (bottom[0], i1 + 2 * ox), (bottom[1], i1 + 2 * ox + 1)] {
                let better = v > bv;
                bi = if better { i } else { bi };
                bv = if better { v } else { bv };
            }
            out.push(bv);
            arg.push(bi as u32);
        }
    }
}

/// The backward of [`MaxPool`]: each output gradient added at its window's recorded maximum.
struct Scatter {
    argmax: Arc<Vec<u32>>,
    plane: usize,
    input: Shape,
}

impl CustomOp1 for Scatter {
    fn name(&self) -> &'static str {
        "retort-max-pool2d-grad"
    }

    fn cpu_fwd(&self, st: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = slice(st, l, "gradient")?;
        if g.len() != self.argmax.len() {
            candle_core::bail!("max_pool2d backward: gradient {:?} does not match the forward", l.dims());
        }
        let (_, _, ho, wo) = l.shape().dims4()?;
        let mut gx = vec![0f32; self.input.elem_count()];
        let per = (ho * wo).max(1);
        for ((dst, gs), idx) in
            gx.chunks_exact_mut(self.plane).zip(g.chunks_exact(per)).zip(self.argmax.chunks_exact(per))
        {
            for (&gv, &i) in gs.iter().zip(idx) {
                dst[i as usize] += gv;
            }
        }
        Ok((CpuStorage::F32(gx), self.input.clone()))
    }
}

/// Max pooling: fused on CPU f32, candle's elsewhere.
pub fn max_pool2d(x: &Tensor, k: (usize, usize), s: (usize, usize)) -> Result<Tensor> {
    if matches!(x.device(), Device::Cpu) && x.dtype() == DType::F32 && x.rank() == 4 {
        let op = MaxPool { k, s: (s.0.max(1), s.1.max(1)), argmax: Mutex::new(None) };
        x.contiguous()?.apply_op1(op)
    } else {
        x.max_pool2d_with_stride(k, s)
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor, Var};

    use super::*;
    use crate::backend::kernel::max_diff;

    /// Values against candle; gradients against finite differences (candle 0.11's own max-pool
    /// backward scales the gradient by 1/(kh·kw), so it is not a reference). Even and odd sizes,
    /// overlapping windows.
    #[test]
    fn max_pool_values_and_gradients() {
        let d = Device::Cpu;
        // Distinct values at least 2/n apart, in a scrambled order: a ±1e-3 finite-difference probe
        // never changes which element of a window is the maximum (random data sometimes did).
        let distinct = |shape: (usize, usize, usize, usize)| {
            let n = shape.0 * shape.1 * shape.2 * shape.3;
            let v: Vec<f32> = (0..n).map(|i| 2.0 * ((i * 7919) % n) as f32 / n as f32 - 1.0).collect();
            Var::from_tensor(&Tensor::from_vec(v, shape, &d).unwrap()).unwrap()
        };
        let even = distinct((2, 3, 8, 6));
        let odd = distinct((1, 2, 7, 5));
        for (x, k, s) in [(&even, (2, 2), (2, 2)), (&even, (3, 3), (2, 2)), (&odd, (2, 2), (2, 2))] {
            let a = max_pool2d(x.as_tensor(), k, s).unwrap();
            let b = x.as_tensor().max_pool2d_with_stride(k, s).unwrap();
            assert_eq!(max_diff(&a, &b), 0.0);
            let t = Tensor::randn(0f32, 1.0, a.dims(), &d).unwrap();
            let f = |v: &Tensor| -> f32 {
                (max_pool2d(v, k, s).unwrap() * &t).unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap()
            };
            let g = (&a * &t).unwrap().sum_all().unwrap().backward().unwrap();
            let g = g.get(x.as_tensor()).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let base = x.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            for i in (0..base.len()).step_by(7) {
                let (mut p, mut m) = (base.clone(), base.clone());
                p[i] += 1e-3;
                m[i] -= 1e-3;
                let sh = x.as_tensor().dims();
                let num = (f(&Tensor::from_vec(p, sh, &d).unwrap()) - f(&Tensor::from_vec(m, sh, &d).unwrap())) / 2e-3;
                assert!((num - g[i]).abs() < 2e-2, "{k:?} {s:?} [{i}]: numeric {num}, backward {}", g[i]);
            }
        }
    }

    /// A non-contiguous input (a transposed view): values and gradient as for its contiguous copy.
    #[test]
    fn non_contiguous_input() {
        let d = Device::Cpu;
        let base = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 3, 6, 8), &d).unwrap()).unwrap();
        let view = base.as_tensor().transpose(2, 3).unwrap();
        let copy = Var::from_tensor(&view.contiguous().unwrap()).unwrap();
        let (a, b) =
            (max_pool2d(&view, (2, 2), (2, 2)).unwrap(), max_pool2d(copy.as_tensor(), (2, 2), (2, 2)).unwrap());
        assert_eq!(
            a.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            b.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        );
        let ga = a.sum_all().unwrap().backward().unwrap();
        let gb = b.sum_all().unwrap().backward().unwrap();
        let ga = ga.get(base.as_tensor()).unwrap().transpose(2, 3).unwrap().flatten_all().unwrap();
        let gb = gb.get(copy.as_tensor()).unwrap().flatten_all().unwrap();
        assert_eq!(ga.to_vec1::<f32>().unwrap(), gb.to_vec1::<f32>().unwrap());
    }

    /// Ties (ReLU zeros): the whole gradient goes to the window's first maximum only.
    #[test]
    fn ties_send_the_gradient_to_the_first_maximum() {
        let d = Device::Cpu;
        let x = Var::from_tensor(&Tensor::zeros((1, 1, 2, 4), DType::F32, &d).unwrap()).unwrap();
        let y = max_pool2d(x.as_tensor(), (2, 2), (2, 2)).unwrap();
        let g = y.sum_all().unwrap().backward().unwrap();
        let g = g.get(x.as_tensor()).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(g, vec![1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    }
}
