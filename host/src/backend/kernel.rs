//! What the fused CPU kernels share: borrowing a contiguous f32 operand, a strided gemm call,
//! and the bias gradient (a sum over everything but the channel).
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape};

/// The contiguous f32 data of a custom op's operand; `what` names it in the error.
pub fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(v), Some((a, b))) => Ok(&v[a..b]),
        _ => candle_core::bail!("fused op: {what} must be contiguous f32"),
    }
}

/// gemm's parallelism for candle's current thread count.
fn parallelism() -> gemm::Parallelism {
    match candle_core::utils::get_num_threads() {
        n if n > 1 => gemm::Parallelism::Rayon(n),
        _ => gemm::Parallelism::None,
    }
}

/// `dst[m×n] (= dst if acc) + lhs[m×k]·rhs[k×n]` with explicit (row, column) strides.
#[allow(clippy::too_many_arguments)]
pub fn gemm_acc(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    (dst_rs, dst_cs): (usize, usize),
    acc: bool,
    lhs: &[f32],
    (lhs_rs, lhs_cs): (usize, usize),
    rhs: &[f32],
    (rhs_rs, rhs_cs): (usize, usize),
) {
    // SAFETY: callers pass slices covering the strided m×k, k×n and m×n extents.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            dst_cs as isize,
            dst_rs as isize,
            acc,
            lhs.as_ptr(),
            lhs_cs as isize,
            lhs_rs as isize,
            rhs.as_ptr(),
            rhs_cs as isize,
            rhs_rs as isize,
            if acc { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            parallelism(),
        )
    }
}

/// `[N, C, …]` → `[C]`: the sum over everything but dim 1, i.e. a bias gradient (linear:
/// `[rows, C]`; conv: `[N, C, H, W]`). One contiguous pass where candle's strided reduction over
/// dim 0 (or dims 0, 2, 3) walks the tensor with a stride.
pub struct BiasGrad;

impl CustomOp1 for BiasGrad {
    fn name(&self) -> &'static str {
        "retort-bias-grad"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = f32_slice(s, l, "gradient")?;
        let d = l.dims();
        if d.len() < 2 {
            candle_core::bail!("bias gradient: needs [N, C, …], got {d:?}");
        }
        let (c, inner) = (d[1], d[2..].iter().product::<usize>().max(1));
        let mut out = vec![0f32; c];
        if inner == 1 {
            add_rows(&mut out, g);
        } else {
            for block in g.chunks_exact((c * inner).max(1)) {
                for (o, plane) in out.iter_mut().zip(block.chunks_exact(inner)) {
                    *o += sum8(plane);
                }
            }
        }
        Ok((CpuStorage::F32(out), Shape::from(c)))
    }
}

/// Adds every `dst.len()`-wide row of `g` into `dst` (column sums; vectorises across the row).
pub fn add_rows(dst: &mut [f32], g: &[f32]) {
    for row in g.chunks_exact(dst.len().max(1)) {
        dst.iter_mut().zip(row).for_each(|(d, v)| *d += v);
    }
}

/// The largest absolute elementwise difference of two f32 tensors (the fused-op tests' measure).
#[cfg(test)]
pub fn max_diff(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

/// A sum in eight independent lanes (vectorised; a sequential f32 sum is not).
fn sum8(v: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let mut chunks = v.chunks_exact(8);
    for c in &mut chunks {
        for (a, x) in acc.iter_mut().zip(c) {
            *a += x;
        }
    }
    acc.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>()
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::BiasGrad;

    #[test]
    fn bias_grad_matches_candle_sums() {
        let d = Device::Cpu;
        let g2 = Tensor::randn(0f32, 1.0, (37, 13), &d).unwrap();
        let a = g2.apply_op1_no_bwd(&BiasGrad).unwrap().to_vec1::<f32>().unwrap();
        let b = g2.sum(0).unwrap().to_vec1::<f32>().unwrap();
        assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-4));
        let g4 = Tensor::randn(0f32, 1.0, (3, 5, 7, 9), &d).unwrap();
        let a = g4.apply_op1_no_bwd(&BiasGrad).unwrap().to_vec1::<f32>().unwrap();
        let b = g4.sum((0, 2, 3)).unwrap().to_vec1::<f32>().unwrap();
        assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-4));
        assert!(Tensor::zeros(4, candle_core::DType::F32, &d).unwrap().apply_op1_no_bwd(&BiasGrad).is_err());
    }
}
