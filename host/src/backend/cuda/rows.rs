//! Launches of the row kernels (softmax-KL and softmax-CE, forward and backward) and of the
//! dropout mask; the CPU counterparts are in `backend::softmax_loss` and `backend::table`.
use candle_core::cuda_backend::cudarc::driver::PushKernelArg;
use candle_core::cuda_backend::WrapErr;
use candle_core::{CpuStorage, CudaStorage, CustomOp1, Layout, Result, Shape, Tensor};

use super::{elementwise, f32_view, function, output, per_row};

/// Rows and width of `[…, C]` logits.
fn rows(l: &Layout) -> Result<(usize, usize)> {
    let c = *l.dims().last().ok_or_else(|| candle_core::Error::Msg("softmax loss: a scalar has no classes".into()))?;
    Ok((l.shape().elem_count() / c.max(1), c))
}

/// `[…, C]` → `[…]`.
fn row_shape(l: &Layout) -> Shape {
    Shape::from(&l.dims()[..l.dims().len() - 1])
}

/// Per-row tempered KL of two `[…, C]` logit tensors (see `softmax_loss::kl_rows`).
pub fn kl_rows(s1: &CudaStorage, l1: &Layout, s2: &CudaStorage, l2: &Layout, tau: f64) -> Result<(CudaStorage, Shape)> {
    let dev = &s1.device;
    let (p, q) = (f32_view(s1, l1, "p logits")?, f32_view(s2, l2, "q logits")?);
    let (n, c) = rows(l1)?;
    let out = output(dev, n)?;
    let f = function(dev, "retort_kl_rows_f32")?;
    let (n64, c64, it) = (n as i64, c as i64, (1.0 / tau) as f32);
    let stream = dev.cuda_stream();
    let mut b = stream.launch_builder(&f);
    b.arg(&p).arg(&q).arg(&out).arg(&n64).arg(&c64).arg(&it);
    // SAFETY: p and q hold n·c f32 values, out n; the kernel reads and writes only those.
    unsafe { b.launch(per_row(n)) }.w()?;
    Ok((CudaStorage::wrap_cuda_slice(out, dev.clone()), row_shape(l1)))
}

/// The gradient of [`kl_rows`] with respect to p (`wrt_p`) or q, from `(p, q, grad)`.
#[allow(clippy::too_many_arguments)]
pub fn kl_rows_grad(
    s1: &CudaStorage,
    l1: &Layout,
    s2: &CudaStorage,
    l2: &Layout,
    s3: &CudaStorage,
    l3: &Layout,
    tau: f64,
    wrt_p: bool,
) -> Result<(CudaStorage, Shape)> {
    let dev = &s1.device;
    let (p, q, g) = (f32_view(s1, l1, "p logits")?, f32_view(s2, l2, "q logits")?, f32_view(s3, l3, "gradient")?);
    let (n, c) = rows(l1)?;
    let out = output(dev, n * c)?;
    let f = function(dev, "retort_kl_rows_grad_f32")?;
    let (n64, c64, it, side) = (n as i64, c as i64, (1.0 / tau) as f32, wrt_p as i32);
    let stream = dev.cuda_stream();
    let mut b = stream.launch_builder(&f);
    b.arg(&p).arg(&q).arg(&g).arg(&out).arg(&n64).arg(&c64).arg(&it).arg(&side);
    // SAFETY: p, q and out hold n·c f32 values, g n.
    unsafe { b.launch(per_row(n)) }.w()?;
    Ok((CudaStorage::wrap_cuda_slice(out, dev.clone()), l1.shape().clone()))
}

/// The contiguous i64 labels of a cross-entropy call.
fn labels<'a>(s: &'a CudaStorage, l: &Layout) -> Result<candle_core::cuda_backend::cudarc::driver::CudaView<'a, i64>> {
    let (a, b) = l
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg("cross-entropy: labels must be contiguous i64".into()))?;
    Ok(s.as_cuda_slice::<i64>()?.slice(a..b))
}

/// Per-row hard-label cross-entropy (see `softmax_loss::ce_rows`); a label ≥ C gives NaN.
pub fn ce_rows(s1: &CudaStorage, l1: &Layout, s2: &CudaStorage, l2: &Layout) -> Result<(CudaStorage, Shape)> {
    let dev = &s1.device;
    let (z, y) = (f32_view(s1, l1, "logits")?, labels(s2, l2)?);
    let (n, c) = rows(l1)?;
    let out = output(dev, n)?;
    let f = function(dev, "retort_ce_rows_f32")?;
    let (n64, c64) = (n as i64, c as i64);
    let stream = dev.cuda_stream();
    let mut b = stream.launch_builder(&f);
    b.arg(&z).arg(&y).arg(&out).arg(&n64).arg(&c64);
    // SAFETY: z holds n·c f32 values, y n labels, out n.
    unsafe { b.launch(per_row(n)) }.w()?;
    Ok((CudaStorage::wrap_cuda_slice(out, dev.clone()), row_shape(l1)))
}

/// The gradient of [`ce_rows`] with respect to the logits, from `(z, y, grad)`.
pub fn ce_rows_grad(
    s1: &CudaStorage,
    l1: &Layout,
    s2: &CudaStorage,
    l2: &Layout,
    s3: &CudaStorage,
    l3: &Layout,
) -> Result<(CudaStorage, Shape)> {
    let dev = &s1.device;
    let (z, y, g) = (f32_view(s1, l1, "logits")?, labels(s2, l2)?, f32_view(s3, l3, "gradient")?);
    let (n, c) = rows(l1)?;
    let out = output(dev, n * c)?;
    let f = function(dev, "retort_ce_rows_grad_f32")?;
    let (n64, c64) = (n as i64, c as i64);
    let stream = dev.cuda_stream();
    let mut b = stream.launch_builder(&f);
    b.arg(&z).arg(&y).arg(&g).arg(&out).arg(&n64).arg(&c64);
    // SAFETY: z and out hold n·c f32 values, y and g n.
    unsafe { b.launch(per_row(n)) }.w()?;
    Ok((CudaStorage::wrap_cuda_slice(out, dev.clone()), l1.shape().clone()))
}

/// Dropout's mask for a tensor: `1/(1−p)` where kept (probability `1 − p`), else 0, drawn on the
/// device by a counter-based generator seeded by `seed`.
struct DropoutMask {
    p: f64,
    seed: u64,
}

impl CustomOp1 for DropoutMask {
    fn name(&self) -> &'static str {
        "retort-dropout-mask"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        candle_core::bail!("the CUDA dropout mask got a CPU tensor (the CPU draws masks from the plugin RNG)")
    }

    fn cuda_fwd(&self, s: &CudaStorage, l: &Layout) -> Result<(CudaStorage, Shape)> {
        let dev = &s.device;
        let n = l.shape().elem_count();
        let out = output(dev, n)?;
        let f = function(dev, "retort_dropout_mask_f32")?;
        let (n64, keep, scale) = (n as i64, (1.0 - self.p) as f32, (1.0 / (1.0 - self.p)) as f32);
        let stream = dev.cuda_stream();
        let mut b = stream.launch_builder(&f);
        b.arg(&out).arg(&n64).arg(&keep).arg(&scale).arg(&self.seed);
        // SAFETY: out holds n f32 values, all written.
        unsafe { b.launch(elementwise(n)) }.w()?;
        Ok((CudaStorage::wrap_cuda_slice(out, dev.clone()), l.shape().clone()))
    }
}

/// A dropout mask (f32, `x`'s shape) for CUDA tensor `x` with drop probability `p`.
pub fn dropout_mask(x: &Tensor, p: f64, seed: u64) -> Result<Tensor> {
    x.apply_op1_no_bwd(&DropoutMask { p, seed })
}
