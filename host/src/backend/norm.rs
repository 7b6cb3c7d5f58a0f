//! Softmax over the last dim and layer normalisation as single host ops with their own backward,
//! for contiguous CPU f32: the compositions (max, sub, exp, sum, div; mean, sub, sqr, mean, sqrt,
//! div, mul, add) each allocate and record five to nine graph nodes, which dominated a small GPT's
//! step after its matmuls. Same values; other devices and dtypes use the composition.
use super::{fused::with_data, kernel::f32_slice};
use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Device, Layout, Result, Shape, Tensor};

/// Softmax of each last-dim row; −∞ entries (masked attention) get probability 0.
struct SoftmaxLast;

fn softmax_rows(x: &[f32], n: usize) -> Vec<f32> {
    let mut out = vec![0f32; x.len()];
    for (row, dst) in x.chunks_exact(n).zip(out.chunks_exact_mut(n)) {
        let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0f32;
        for (d, &v) in dst.iter_mut().zip(row) {
            *d = (v - m).exp();
            sum += *d;
        }
        let inv = 1.0 / sum;
        dst.iter_mut().for_each(|d| *d *= inv);
    }
    out
}

impl CustomOp1 for SoftmaxLast {
    fn name(&self) -> &'static str {
        "retort-softmax-last"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s, l, "input")?;
        let n = l.dims().last().copied().unwrap_or(1).max(1);
        Ok((CpuStorage::F32(softmax_rows(x, n)), l.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad.contiguous()?.apply_op2_no_bwd(res, &SoftmaxGrad)?))
    }
}

/// `y·(g − Σ g·y)` per row (the backward of [`SoftmaxLast`]).
struct SoftmaxGrad;

impl CustomOp2 for SoftmaxGrad {
    fn name(&self) -> &'static str {
        "retort-softmax-grad"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = f32_slice(s1, l1, "gradient")?;
        let y = f32_slice(s2, l2, "output")?;
        let n = l1.dims().last().copied().unwrap_or(1).max(1);
        let mut out = vec![0f32; g.len()];
        for ((gr, yr), dst) in g.chunks_exact(n).zip(y.chunks_exact(n)).zip(out.chunks_exact_mut(n)) {
            let dot: f32 = gr.iter().zip(yr).map(|(a, b)| a * b).sum();
            for ((d, &gv), &yv) in dst.iter_mut().zip(gr).zip(yr) {
                *d = yv * (gv - dot);
            }
        }
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// Softmax over the last dim: the fused op on CPU f32, the composition elsewhere.
pub fn softmax_last(x: &Tensor) -> Result<Option<Tensor>> {
    if matches!(x.device(), Device::Cpu) && x.dtype() == DType::F32 && x.rank() > 0 {
        return Ok(Some(x.contiguous()?.apply_op1(SoftmaxLast)?));
    }
    Ok(None)
}

/// Layer norm over the last dim: `(x − μ)/√(σ² + ε)·w + b`, σ² biased.
struct LayerNorm {
    eps: f32,
}

/// Each row's mean and 1/√(σ² + ε).
fn row_stats(row: &[f32], eps: f32) -> (f32, f32) {
    let n = row.len() as f32;
    let mean = row.iter().sum::<f32>() / n;
    let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    (mean, 1.0 / (var + eps).sqrt())
}

impl CustomOp3 for LayerNorm {
    fn name(&self) -> &'static str {
        "retort-layer-norm"
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
        let w = f32_slice(s2, l2, "weight")?;
        let b = f32_slice(s3, l3, "bias")?;
        let n = w.len().max(1);
        let mut out = vec![0f32; x.len()];
        for (row, dst) in x.chunks_exact(n).zip(out.chunks_exact_mut(n)) {
            let (mean, rstd) = row_stats(row, self.eps);
            for (k, d) in dst.iter_mut().enumerate() {
                *d = (row[k] - mean) * rstd * w[k] + b[k];
            }
        }
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (x, w, grad) = (x.contiguous()?, w.contiguous()?, grad.contiguous()?);
        // Read in place: the operands of a fused CPU op are contiguous f32 on the CPU.
        let (dx, dw, db) =
            with_data(&x, |xv| with_data(&w, |wv| with_data(&grad, |gv| layer_norm_grads(xv, wv, gv, self.eps))))???;
        let dev = x.device();
        let dx = Tensor::from_vec(dx, x.shape(), dev)?;
        let dw = Tensor::from_vec(dw, w.shape(), dev)?;
        let db = Tensor::from_vec(db, w.shape(), dev)?;
        Ok((Some(dx), Some(dw), Some(db)))
    }
}

/// The input, weight and bias gradients of [`LayerNorm`] from its input, weight and output gradient.
fn layer_norm_grads(xv: &[f32], wv: &[f32], gv: &[f32], eps: f32) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let n = wv.len().max(1);
    let (mut dx, mut dw, mut db) = (vec![0f32; xv.len()], vec![0f32; n], vec![0f32; n]);
    let mut gh = vec![0f32; n];
    for ((row, g), dst) in xv.chunks_exact(n).zip(gv.chunks_exact(n)).zip(dx.chunks_exact_mut(n)) {
        let (mean, rstd) = row_stats(row, eps);
        let (mut m1, mut m2) = (0f32, 0f32);
        for k in 0..n {
            let xh = (row[k] - mean) * rstd;
            gh[k] = g[k] * wv[k];
            m1 += gh[k];
            m2 += gh[k] * xh;
            dw[k] += g[k] * xh;
            db[k] += g[k];
        }
        let (m1, m2) = (m1 / n as f32, m2 / n as f32);
        for k in 0..n {
            let xh = (row[k] - mean) * rstd;
            dst[k] = rstd * (gh[k] - m1 - xh * m2);
        }
    }
    (dx, dw, db)
}

/// Layer norm over the last dim with weight and bias `[D]`: the fused op on CPU f32, `None` where
/// the caller composes it.
pub fn layer_norm(x: &Tensor, w: &Tensor, b: &Tensor, eps: f64) -> Result<Option<Tensor>> {
    let d = x.dims().last().copied().unwrap_or(0);
    let cpu_f32 = |t: &Tensor| matches!(t.device(), Device::Cpu) && t.dtype() == DType::F32;
    if !(cpu_f32(x) && cpu_f32(w) && cpu_f32(b)) || w.dims() != [d] || b.dims() != [d] {
        return Ok(None);
    }
    Ok(Some(x.contiguous()?.apply_op3(&w.contiguous()?, &b.contiguous()?, LayerNorm { eps: eps as f32 })?))
}

#[cfg(test)]
mod tests {
    use candle_core::{Tensor, Var};

    use super::*;
    use crate::backend::kernel::max_diff;

    #[test]
    fn softmax_matches_the_composition_with_masked_entries() {
        let d = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f32, 2.0, (3, 4, 6), &d).unwrap()).unwrap();
        let mask: Vec<f32> = (0..24).map(|k| if k % 6 > k / 6 + 1 { f32::NEG_INFINITY } else { 0.0 }).collect();
        let mask = Tensor::from_vec(mask, (4, 6), &d).unwrap();
        let z = x.as_tensor().broadcast_add(&mask).unwrap();
        let w = Tensor::randn(0f32, 1.0, (3, 4, 6), &d).unwrap();
        let fused = softmax_last(&z).unwrap().unwrap();
        let e = z.broadcast_sub(&z.max_keepdim(2).unwrap()).unwrap().exp().unwrap();
        let plain = e.broadcast_div(&e.sum_keepdim(2).unwrap()).unwrap();
        assert!(max_diff(&fused, &plain) < 1e-6);
        let ga = (fused * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let gb = (plain * &w).unwrap().sum_all().unwrap().backward().unwrap();
        assert!(max_diff(ga.get(x.as_tensor()).unwrap(), gb.get(x.as_tensor()).unwrap()) < 1e-5);
    }

    #[test]
    fn layer_norm_matches_the_composition() {
        let d = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(1f32, 3.0, (2, 5, 16), &d).unwrap()).unwrap();
        let w = Var::from_tensor(&Tensor::randn(1f32, 0.5, 16, &d).unwrap()).unwrap();
        let b = Var::from_tensor(&Tensor::randn(0f32, 0.5, 16, &d).unwrap()).unwrap();
        let t = Tensor::randn(0f32, 1.0, (2, 5, 16), &d).unwrap();
        let fused = layer_norm(x.as_tensor(), w.as_tensor(), b.as_tensor(), 1e-5).unwrap().unwrap();
        let xs = x.as_tensor();
        let xc = xs.broadcast_sub(&xs.mean_keepdim(2).unwrap()).unwrap();
        let var = xc.sqr().unwrap().mean_keepdim(2).unwrap();
        let plain = xc
            .broadcast_div(&(var + 1e-5).unwrap().sqrt().unwrap())
            .unwrap()
            .broadcast_mul(w.as_tensor())
            .unwrap()
            .broadcast_add(b.as_tensor())
            .unwrap();
        assert!(max_diff(&fused, &plain) < 1e-5);
        let ga = (fused * &t).unwrap().sum_all().unwrap().backward().unwrap();
        let gb = (plain * &t).unwrap().sum_all().unwrap().backward().unwrap();
        for v in [&x, &w, &b] {
            let (a, c) = (ga.get(v.as_tensor()).unwrap(), gb.get(v.as_tensor()).unwrap());
            assert!(max_diff(a, c) < 1e-4, "gradient differs by {}", max_diff(a, c));
        }
    }
}
