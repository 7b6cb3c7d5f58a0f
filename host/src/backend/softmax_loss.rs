//! Softmax losses in one pass per row, with their own backward: the forward KL between two
//! tempered softmaxes and hard-label cross-entropy. The plain composition (log-softmax, exp,
//! subtract, multiply, mask, sum) makes about ten passes and as many tensors over `[N, C]`; for
//! a `[B·L, V]` language-model batch those dominate the loss.
use super::kernel::f32_slice as f32_rows;
use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Device, Layout, Result, Shape, Tensor, D};

/// `logsumexp(x/τ)` of one row; NaN for a row without a finite entry.
fn logsumexp_row(x: &[f32], inv_tau: f32) -> f32 {
    let m = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) * inv_tau;
    if m == f32::NEG_INFINITY {
        return f32::NAN;
    }
    let s: f32 = x.iter().map(|&v| (v * inv_tau - m).exp()).sum();
    m + s.ln()
}

/// `x/τ − logsumexp(x/τ)` into `out` (one row).
fn log_softmax_row(x: &[f32], inv_tau: f32, out: &mut [f32]) {
    let lse = logsumexp_row(x, inv_tau);
    out.iter_mut().zip(x).for_each(|(o, &v)| *o = v * inv_tau - lse);
}

/// Row count and width of `[…, C]` logits.
fn rows_of(l: &Layout) -> Result<(usize, usize)> {
    let c = *l.dims().last().ok_or_else(|| candle_core::Error::Msg("softmax loss: a scalar has no classes".into()))?;
    Ok((l.shape().elem_count() / c.max(1), c))
}

/// Per-row `KL(softmax(p/τ) ‖ softmax(q/τ))` with `0·log 0 = 0`; `[…, C]` → `[…]`.
struct KlRows {
    tau: f64,
}

/// One row's tempered `log p` and `log q`, into the buffers.
fn log_probs_row(p: &[f32], q: &[f32], tau: f64, lp: &mut [f32], lq: &mut [f32]) {
    let it = (1.0 / tau) as f32;
    log_softmax_row(p, it, lp);
    log_softmax_row(q, it, lq);
}

/// `Σ p·(log p − log q)` from log-probabilities, with `0·log 0 = 0`.
fn kl_of(lp: &[f32], lq: &[f32]) -> f32 {
    lp.iter().zip(lq).map(|(&a, &b)| if a == f32::NEG_INFINITY { 0.0 } else { a.exp() * (a - b) }).sum()
}

impl CustomOp2 for KlRows {
    fn name(&self) -> &'static str {
        "retort-kl-rows"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (p, q) = (f32_rows(s1, l1, "p logits")?, f32_rows(s2, l2, "q logits")?);
        let (n, c) = rows_of(l1)?;
        let (mut lp, mut lq) = (vec![0f32; c], vec![0f32; c]);
        let out = (0..n)
            .map(|r| {
                log_probs_row(&p[r * c..][..c], &q[r * c..][..c], self.tau, &mut lp, &mut lq);
                kl_of(&lp, &lq)
            })
            .collect();
        Ok((CpuStorage::F32(out), Shape::from(&l1.dims()[..l1.dims().len() - 1])))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        super::cuda::kl_rows(s1, l1, s2, l2, self.tau)
    }

    fn bwd(&self, p: &Tensor, q: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let gp = if p.track_op() {
            Some(p.apply_op3_no_bwd(q, &grad, &KlRowsGrad { tau: self.tau, wrt_p: true })?)
        } else {
            None
        };
        let gq = if q.track_op() {
            Some(p.apply_op3_no_bwd(q, &grad, &KlRowsGrad { tau: self.tau, wrt_p: false })?)
        } else {
            None
        };
        Ok((gp, gq))
    }
}

/// The gradient of [`KlRows`] with respect to one side, from `(p, q, grad)`:
/// q: `g·(softmax(q/τ) − softmax(p/τ))/τ`; p: `g·p_c·(log p_c − log q_c − KL)/τ`.
struct KlRowsGrad {
    tau: f64,
    wrt_p: bool,
}

impl CustomOp3 for KlRowsGrad {
    fn name(&self) -> &'static str {
        "retort-kl-rows-grad"
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
        let (p, q, g) = (f32_rows(s1, l1, "p logits")?, f32_rows(s2, l2, "q logits")?, f32_rows(s3, l3, "gradient")?);
        let (n, c) = rows_of(l1)?;
        let it = (1.0 / self.tau) as f32;
        let (mut lp, mut lq) = (vec![0f32; c], vec![0f32; c]);
        let mut out = vec![0f32; n * c];
        for (r, dst) in out.chunks_exact_mut(c.max(1)).enumerate().take(n) {
            log_probs_row(&p[r * c..][..c], &q[r * c..][..c], self.tau, &mut lp, &mut lq);
            let gr = g[r] * it;
            if self.wrt_p {
                // Only the teacher-side gradient needs the row's KL.
                let kl = kl_of(&lp, &lq);
                for ((d, &a), &b) in dst.iter_mut().zip(&lp).zip(&lq) {
                    *d = if a == f32::NEG_INFINITY { 0.0 } else { gr * a.exp() * (a - b - kl) };
                }
            } else {
                for ((d, &a), &b) in dst.iter_mut().zip(&lp).zip(&lq) {
                    *d = gr * (b.exp() - a.exp());
                }
            }
        }
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        super::cuda::kl_rows_grad(s1, l1, s2, l2, s3, l3, self.tau, self.wrt_p)
    }
}

/// Hard-label cross-entropy per row, `−log softmax(z)[y]`, 0 for labels < 0; `[…, C]` → `[…]`.
struct CeRows;

impl CustomOp2 for CeRows {
    fn name(&self) -> &'static str {
        "retort-ce-rows"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let z = f32_rows(s1, l1, "logits")?;
        let y = labels(s2, l2)?;
        let (n, c) = rows_of(l1)?;
        let mut out = Vec::with_capacity(n);
        for r in 0..n {
            let row = &z[r * c..][..c];
            out.push(match class(y[r], c)? {
                Some(k) => logsumexp_row(row, 1.0) - row[k],
                None => 0.0,
            });
        }
        Ok((CpuStorage::F32(out), Shape::from(&l1.dims()[..l1.dims().len() - 1])))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        super::cuda::ce_rows(s1, l1, s2, l2)
    }

    fn bwd(&self, z: &Tensor, y: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let gz = if z.track_op() { Some(z.apply_op3_no_bwd(y, &grad.contiguous()?, &CeRowsGrad)?) } else { None };
        Ok((gz, None))
    }
}

fn labels<'a>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [i64]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::I64(v), Some((a, b))) => Ok(&v[a..b]),
        _ => candle_core::bail!("cross-entropy: labels must be contiguous i64"),
    }
}

/// The class a label names, `None` for an ignored row (label < 0).
fn class(y: i64, c: usize) -> Result<Option<usize>> {
    match usize::try_from(y) {
        Err(_) => Ok(None),
        Ok(k) if k < c => Ok(Some(k)),
        Ok(k) => candle_core::bail!("cross-entropy: label {k} out of range for {c} classes"),
    }
}

/// `g·(softmax(z) − onehot(y))` per row, zero rows for ignored labels (the backward of [`CeRows`]).
struct CeRowsGrad;

impl CustomOp3 for CeRowsGrad {
    fn name(&self) -> &'static str {
        "retort-ce-rows-grad"
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
        let (z, y, g) = (f32_rows(s1, l1, "logits")?, labels(s2, l2)?, f32_rows(s3, l3, "gradient")?);
        let (n, c) = rows_of(l1)?;
        let mut out = vec![0f32; n * c];
        for (r, dst) in out.chunks_exact_mut(c.max(1)).enumerate().take(n) {
            let Some(k) = class(y[r], c)? else { continue };
            log_softmax_row(&z[r * c..][..c], 1.0, dst);
            dst.iter_mut().for_each(|d| *d = g[r] * d.exp());
            dst[k] -= g[r];
        }
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        super::cuda::ce_rows_grad(s1, l1, s2, l2, s3, l3)
    }
}

/// Whether the one-pass kernels serve these operands: f32 on the CPU, or on CUDA in a CUDA build.
fn fused_ok(xs: &[&Tensor]) -> bool {
    let device_ok = |d: &Device| d.is_cpu() || cfg!(feature = "cuda") && d.is_cuda();
    xs.iter().all(|x| device_ok(x.device()) && x.dtype() == DType::F32)
}

/// Per-row `KL(softmax(p/τ) ‖ softmax(q/τ))` over the last dim: fused on CPU f32, the plain
/// composition elsewhere.
pub fn kl_rows(p: &Tensor, q: &Tensor, tau: f64) -> Result<Tensor> {
    if p.dims() != q.dims() || p.rank() == 0 {
        candle_core::bail!("kl rows: logits {:?} and {:?} must have one shape of rank ≥ 1", p.dims(), q.dims());
    }
    if !(tau > 0.0 && tau.is_finite()) {
        candle_core::bail!("kl rows: temperature must be > 0, got {tau}");
    }
    if fused_ok(&[p, q]) {
        return p.contiguous()?.apply_op2(&q.contiguous()?, KlRows { tau });
    }
    let lp = log_softmax_last(&p.affine(1.0 / tau, 0.0)?)?;
    let lq = log_softmax_last(&q.affine(1.0 / tau, 0.0)?)?;
    let pe = lp.exp()?;
    let term = (&pe * (&lp - &lq)?)?;
    pe.gt(0.0)?.where_cond(&term, &pe.zeros_like()?)?.sum(D::Minus1)
}

/// Per-row hard-label cross-entropy over the last dim (labels `[…]`, any integer dtype; < 0 ignored
/// with value 0): fused on CPU f32 and CUDA, the plain composition elsewhere. A label past the
/// classes is an error on the CPU and a NaN row on CUDA (no host round trip to check it there;
/// the trainer's loss check catches the NaN).
pub fn ce_rows(z: &Tensor, labels: &Tensor) -> Result<Tensor> {
    let rows = &z.dims()[..z.rank().saturating_sub(1)];
    if z.rank() == 0 || labels.elem_count() != rows.iter().product::<usize>() {
        candle_core::bail!("cross-entropy rows: logits {:?} and labels {:?} do not fit", z.dims(), labels.dims());
    }
    let y = labels.to_dtype(DType::I64)?.reshape(rows)?.contiguous()?;
    if fused_ok(&[z]) {
        return z.contiguous()?.apply_op2(&y, CeRows);
    }
    let c = z.dims()[z.rank() - 1];
    let valid = y.ge(0i64)?;
    let safe = valid.where_cond(&y, &y.zeros_like()?)?;
    if safe.flatten_all()?.max(0)?.to_scalar::<i64>()? >= c as i64 {
        candle_core::bail!("cross-entropy: a label is out of range for {c} classes");
    }
    let lz = log_softmax_last(z)?;
    let picked = lz.gather(&safe.unsqueeze(D::Minus1)?, D::Minus1)?.squeeze(D::Minus1)?;
    (valid.to_dtype(z.dtype())? * picked)?.neg()
}

/// Log-softmax over `dim` as candle tensor ops, max-shifted (the table's `LOG_SOFTMAX` and the
/// unfused fallbacks here; the host has no candle-nn dependency).
pub fn log_softmax(x: &Tensor, dim: usize) -> Result<Tensor> {
    let s = x.broadcast_sub(&x.max_keepdim(dim)?.detach())?;
    s.broadcast_sub(&s.exp()?.sum_keepdim(dim)?.log()?)
}

/// [`log_softmax`] over the last dim.
fn log_softmax_last(x: &Tensor) -> Result<Tensor> {
    log_softmax(x, x.rank().saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor, Var};

    use super::*;
    use crate::backend::kernel::max_diff;

    /// The unfused reference: log-softmax, exp, subtract, multiply, mask, sum.
    fn kl_plain(p: &Tensor, q: &Tensor, tau: f64) -> Tensor {
        let lp = log_softmax_last(&p.affine(1.0 / tau, 0.0).unwrap()).unwrap();
        let lq = log_softmax_last(&q.affine(1.0 / tau, 0.0).unwrap()).unwrap();
        let pe = lp.exp().unwrap();
        let term = (&pe * (&lp - &lq).unwrap()).unwrap();
        pe.gt(0.0).unwrap().where_cond(&term, &pe.zeros_like().unwrap()).unwrap().sum(D::Minus1).unwrap()
    }

    #[test]
    fn kl_rows_matches_the_composition() {
        let d = Device::Cpu;
        for (shape, tau) in
            [(vec![1usize, 1usize], 1.0), (vec![7, 5], 4.0), (vec![2, 3, 33], 2.0), (vec![64, 100], 20.0)]
        {
            let p = Var::from_tensor(&Tensor::randn(0f32, 3.0, shape.as_slice(), &d).unwrap()).unwrap();
            let q = Var::from_tensor(&Tensor::randn(0f32, 3.0, shape.as_slice(), &d).unwrap()).unwrap();
            let w = Tensor::randn(0f32, 1.0, &shape[..shape.len() - 1], &d).unwrap();
            let a = kl_rows(p.as_tensor(), q.as_tensor(), tau).unwrap();
            let b = kl_plain(p.as_tensor(), q.as_tensor(), tau);
            assert_eq!(a.dims(), b.dims());
            assert!(max_diff(&a, &b) < 1e-5, "value {shape:?} τ {tau}");
            let ga = (&a * &w).unwrap().sum_all().unwrap().backward().unwrap();
            let gb = (&b * &w).unwrap().sum_all().unwrap().backward().unwrap();
            for v in [&p, &q] {
                assert!(max_diff(ga.get(v.as_tensor()).unwrap(), gb.get(v.as_tensor()).unwrap()) < 1e-5, "{shape:?}");
            }
        }
    }

    #[test]
    fn kl_rows_masked_vocabulary_and_views() {
        let d = Device::Cpu;
        // −inf teacher logits (a masked vocabulary entry): 0·log 0 = 0, no NaN in value or gradient.
        let p = Tensor::new(&[[1f32, f32::NEG_INFINITY, 0.5], [0.0, 2.0, f32::NEG_INFINITY]], &d).unwrap();
        let q = Var::from_tensor(&Tensor::new(&[[0.3f32, 0.1, -0.2], [1.0, 0.0, 0.5]], &d).unwrap()).unwrap();
        let a = kl_rows(&p, q.as_tensor(), 2.0).unwrap();
        let b = kl_plain(&p, q.as_tensor(), 2.0);
        assert!(max_diff(&a, &b) < 1e-6);
        let ga = a.sum_all().unwrap().backward().unwrap();
        let gb = b.sum_all().unwrap().backward().unwrap();
        assert!(max_diff(ga.get(q.as_tensor()).unwrap(), gb.get(q.as_tensor()).unwrap()) < 1e-6);
        // Non-contiguous inputs (transposed views), teacher side detached: only q gets a gradient.
        let pt = Tensor::randn(0f32, 1.0, (9, 4), &d).unwrap();
        let qt = Var::from_tensor(&Tensor::randn(0f32, 1.0, (9, 4), &d).unwrap()).unwrap();
        let (pv, qv) = (pt.t().unwrap(), qt.as_tensor().t().unwrap());
        let a = kl_rows(&pv, &qv, 3.0).unwrap();
        let b = kl_plain(&pv, &qv, 3.0);
        assert!(max_diff(&a, &b) < 1e-6);
        let ga = a.sum_all().unwrap().backward().unwrap();
        let gb = b.sum_all().unwrap().backward().unwrap();
        assert!(max_diff(ga.get(qt.as_tensor()).unwrap(), gb.get(qt.as_tensor()).unwrap()) < 1e-6);
        assert!(ga.get(&pt).is_none());
        assert!(kl_rows(&pt, &qv, 1.0).is_err(), "shape mismatch");
        assert!(kl_rows(&pt, qt.as_tensor(), 0.0).is_err(), "τ = 0");
    }

    #[test]
    fn ce_rows_matches_the_composition() {
        let d = Device::Cpu;
        let zt = Var::from_tensor(&Tensor::randn(0f32, 2.0, (11, 6), &d).unwrap()).unwrap();
        let z = zt.as_tensor().t().unwrap(); // [6, 11], non-contiguous
        let y = Tensor::new(&[3i64, -100, 0, 10, 5, 7], &d).unwrap();
        let w = Tensor::randn(0f32, 1.0, 6, &d).unwrap();
        let a = ce_rows(&z, &y).unwrap();
        // Reference: the same math in plain ops, ignored rows zeroed by a mask.
        let valid = Tensor::new(&[1f32, 0., 1., 1., 1., 1.], &d).unwrap();
        let safe = Tensor::new(&[3i64, 0, 0, 10, 5, 7], &d).unwrap();
        let lz = log_softmax_last(&z).unwrap();
        let b =
            (lz.gather(&safe.unsqueeze(1).unwrap(), 1).unwrap().squeeze(1).unwrap() * &valid).unwrap().neg().unwrap();
        assert!(max_diff(&a, &b) < 1e-5);
        assert_eq!(a.to_vec1::<f32>().unwrap()[1], 0.0, "label −100 is ignored");
        let ga = (&a * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let gb = (&b * &w).unwrap().sum_all().unwrap().backward().unwrap();
        assert!(max_diff(ga.get(zt.as_tensor()).unwrap(), gb.get(zt.as_tensor()).unwrap()) < 1e-5);
        // 3-D logits with u32 labels; a label past the classes is an error, not a silent read.
        let z3 = Tensor::randn(0f32, 1.0, (2, 3, 4), &d).unwrap();
        let y3 = Tensor::new(&[[0u32, 1, 2], [3, 0, 1]], &d).unwrap();
        assert_eq!(ce_rows(&z3, &y3).unwrap().dims(), &[2, 3]);
        let bad = Tensor::new(&[[0u32, 1, 4], [3, 0, 1]], &d).unwrap();
        assert!(ce_rows(&z3, &bad).unwrap_err().to_string().contains("out of range"));
        assert!(ce_rows(&z3, &Tensor::new(&[0u32, 1], &d).unwrap()).is_err());
    }
}
