//! Fused 2-D convolution (im2col + gemm, forward and both gradients, bias in the same op) as
//! candle custom ops on CPU f32. Candle's own conv backward builds the kernel gradient as a
//! convolution over transposed tensors; this does each gradient as one gemm per chunk of samples.
use super::kernel::{f32_slice as slice, gemm_acc, BiasGrad};
use super::scratch::Scratch;
use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Device, Layout, Result, Shape, Tensor};

/// Geometry of one convolution.
#[derive(Clone, Copy, Debug)]
struct Geom {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    o: usize,
    kh: usize,
    kw: usize,
    pad: usize,
    stride: usize,
    ho: usize,
    wo: usize,
}

impl Geom {
    fn k(&self) -> usize {
        self.c * self.kh * self.kw
    }
    fn p(&self) -> usize {
        self.ho * self.wo
    }

    fn padded(&self) -> (usize, usize) {
        (self.h + 2 * self.pad, self.w + 2 * self.pad)
    }

    /// Copies one sample `[C, H, W]` into `buf` with `pad` zeros around each plane, so that every
    /// window row is a plain slice (no bounds tests in the column loops). Only the interior is
    /// written, so the zero border is laid once per buffer size, not once per sample.
    fn pad_into(&self, x: &[f32], buf: &mut Vec<f32>) {
        let (hp, wp) = self.padded();
        if buf.len() != self.c * hp * wp {
            buf.clear();
            buf.resize(self.c * hp * wp, 0.0);
        }
        for (src, dst) in x.chunks_exact(self.h * self.w).zip(buf.chunks_exact_mut(hp * wp)) {
            for (r, row) in src.chunks_exact(self.w).enumerate() {
                dst[(r + self.pad) * wp + self.pad..][..self.w].copy_from_slice(row);
            }
        }
    }

    /// Writes one padded sample (from [`Geom::pad_into`]) as columns `p·off .. p·(off+1)` of `cols`
    /// (`[C·kh·kw, stride]`).
    fn im2col(&self, xp: &[f32], cols: &mut [f32], stride: usize, off: usize) {
        let (hp, wp) = self.padded();
        let p = self.p();
        for c in 0..self.c {
            let plane = &xp[c * hp * wp..][..hp * wp];
            for ky in 0..self.kh {
                for kx in 0..self.kw {
                    let row = &mut cols[((c * self.kh + ky) * self.kw + kx) * stride + off * p..][..p];
                    for (oy, out) in row.chunks_exact_mut(self.wo).enumerate() {
                        let src = &plane[(oy * self.stride + ky) * wp + kx..];
                        if self.stride == 1 {
                            copy_short(out, &src[..self.wo]);
                        } else {
                            for (ox, v) in out.iter_mut().enumerate() {
                                *v = src[ox * self.stride];
                            }
                        }
                    }
                }
            }
        }
    }

    /// Adds columns `p·off .. p·(off+1)` of `cols` into one padded sample gradient (`buf`, zeroed
    /// here), then writes its interior to `gx` (`[C, H, W]`).
    fn col2im(&self, cols: &[f32], buf: &mut Vec<f32>, gx: &mut [f32], stride: usize, off: usize) {
        let (hp, wp) = self.padded();
        let p = self.p();
        buf.clear();
        buf.resize(self.c * hp * wp, 0.0);
        for c in 0..self.c {
            let plane = &mut buf[c * hp * wp..][..hp * wp];
            for ky in 0..self.kh {
                for kx in 0..self.kw {
                    let row = &cols[((c * self.kh + ky) * self.kw + kx) * stride + off * p..][..p];
                    for (oy, src) in row.chunks_exact(self.wo).enumerate() {
                        let dst = &mut plane[(oy * self.stride + ky) * wp + kx..];
                        if self.stride == 1 {
                            dst[..self.wo].iter_mut().zip(src).for_each(|(d, s)| *d += s);
                        } else {
                            for (ox, v) in src.iter().enumerate() {
                                dst[ox * self.stride] += v;
                            }
                        }
                    }
                }
            }
        }
        for (src, dst) in buf.chunks_exact(hp * wp).zip(gx.chunks_exact_mut(self.h * self.w)) {
            for (r, row) in dst.chunks_exact_mut(self.w).enumerate() {
                row.copy_from_slice(&src[(r + self.pad) * wp + self.pad..][..self.w]);
            }
        }
    }
}

/// A short copy without a call into `memcpy` (window rows are a few dozen floats): 8-wide
/// blocks, the tail as one more block overlapping the last (same values written twice).
#[inline(always)]
fn copy_short(dst: &mut [f32], src: &[f32]) {
    let n = dst.len().min(src.len());
    if n < 8 {
        dst[..n].iter_mut().zip(src).for_each(|(d, s)| *d = *s);
        return;
    }
    let mut i = 0;
    while i + 8 <= n {
        dst[i..i + 8].copy_from_slice(&src[i..i + 8]);
        i += 8;
    }
    if i < n {
        dst[n - 8..n].copy_from_slice(&src[n - 8..n]);
    }
}

/// Samples per gemm: enough columns (≈ 2,048) for gemm to run at speed, few enough to keep the
/// column buffer small.
fn chunk(g: &Geom) -> usize {
    (2048 / g.p().max(1)).clamp(1, g.n.max(1))
}

/// `[N, O, P]` (per-sample blocks) ↔ `[O, n·P]` (one gemm operand) for samples `s0..s0+n`.
fn gather(src: &[f32], o: usize, p: usize, s0: usize, n: usize, dst: &mut [f32]) {
    for si in 0..n {
        for oi in 0..o {
            dst[oi * n * p + si * p..][..p].copy_from_slice(&src[((s0 + si) * o + oi) * p..][..p]);
        }
    }
}

/// The inverse of [`gather`], adding the channel's bias on the way when there is one.
fn scatter(src: &[f32], o: usize, p: usize, s0: usize, n: usize, bias: Option<&[f32]>, dst: &mut [f32]) {
    for si in 0..n {
        for oi in 0..o {
            let (d, s) = (&mut dst[((s0 + si) * o + oi) * p..][..p], &src[oi * n * p + si * p..][..p]);
            match bias {
                Some(b) => d.iter_mut().zip(s).for_each(|(d, s)| *d = s + b[oi]),
                None => d.copy_from_slice(s),
            }
        }
    }
}

fn geom(x: &Layout, w: &Layout, pad: usize, stride: usize) -> Result<Geom> {
    let (n, c, h, wd) = x.shape().dims4()?;
    let (o, c2, kh, kw) = w.shape().dims4()?;
    if c != c2 || h + 2 * pad < kh || wd + 2 * pad < kw {
        candle_core::bail!("conv2d: input {:?} and kernel {:?} do not fit", x.dims(), w.dims());
    }
    let ho = (h + 2 * pad - kh) / stride + 1;
    let wo = (wd + 2 * pad - kw) / stride + 1;
    Ok(Geom { n, c, h, w: wd, o, kh, kw, pad, stride, ho, wo })
}

/// Convolution forward (`bias` per output channel), im2col + gemm over chunks of samples.
fn forward(g: &Geom, x: &[f32], w: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    let (k, p, cs, plane) = (g.k(), g.p(), chunk(g), g.c * g.h * g.w);
    let mut cols = Scratch::take(k * cs * p);
    let mut xp = Vec::new();
    let mut tmp = Scratch::take(g.o * cs * p);
    let mut out = vec![0f32; g.n * g.o * p];
    for s0 in (0..g.n).step_by(cs) {
        let n = cs.min(g.n - s0);
        for si in 0..n {
            g.pad_into(&x[(s0 + si) * plane..][..plane], &mut xp);
            g.im2col(&xp, &mut cols, n * p, si);
        }
        gemm_acc(g.o, n * p, k, &mut tmp, (n * p, 1), false, w, (k, 1), &cols, (n * p, 1));
        scatter(&tmp, g.o, p, s0, n, bias, &mut out);
    }
    out
}

/// Input and kernel gradients of a convolution, each only when its tensor is in the graph.
fn grads(pad: usize, stride: usize, x: &Tensor, w: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
    let gx = if x.track_op() {
        Some(grad.apply_op2_no_bwd(w, &ConvGradInput { pad, stride, x: x.dims4()? })?)
    } else {
        None
    };
    let gw = if w.track_op() {
        Some(x.apply_op2_no_bwd(grad, &ConvGradKernel { pad, stride, w: w.dims4()? })?)
    } else {
        None
    };
    Ok((gx, gw))
}

/// Convolution: `(x, w)` as a `CustomOp2`, `(x, w, bias)` as a `CustomOp3` (bias added in the
/// output pass, its gradient one pass over the output gradient). Backward through
/// [`ConvGradInput`], [`ConvGradKernel`] and [`BiasGrad`].
struct Conv {
    pad: usize,
    stride: usize,
}

impl CustomOp2 for Conv {
    fn name(&self) -> &'static str {
        "retort-conv2d"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = geom(l1, l2, self.pad, self.stride)?;
        let out = forward(&g, slice(s1, l1, "input")?, slice(s2, l2, "kernel")?, None);
        Ok((CpuStorage::F32(out), Shape::from((g.n, g.o, g.ho, g.wo))))
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        grads(self.pad, self.stride, x, w, &grad.contiguous()?)
    }
}

impl CustomOp3 for Conv {
    fn name(&self) -> &'static str {
        "retort-conv2d-bias"
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
        let g = geom(l1, l2, self.pad, self.stride)?;
        let b = slice(s3, l3, "bias")?;
        if b.len() != g.o {
            candle_core::bail!("conv2d: bias of {} for {} output channels", b.len(), g.o);
        }
        let out = forward(&g, slice(s1, l1, "input")?, slice(s2, l2, "kernel")?, Some(b));
        Ok((CpuStorage::F32(out), Shape::from((g.n, g.o, g.ho, g.wo))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let (gx, gw) = grads(self.pad, self.stride, x, w, &grad)?;
        let gb = if b.track_op() { Some(grad.apply_op1_no_bwd(&BiasGrad)?) } else { None };
        Ok((gx, gw, gb))
    }
}

/// Input gradient: per sample, Wᵀ·g then col2im.
struct ConvGradInput {
    pad: usize,
    stride: usize,
    x: (usize, usize, usize, usize),
}

impl CustomOp2 for ConvGradInput {
    fn name(&self) -> &'static str {
        "retort-conv2d-grad-input"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (g_out, w) = (slice(s1, l1, "gradient")?, slice(s2, l2, "kernel")?);
        let xl = Layout::contiguous(self.x);
        let g = geom(&xl, l2, self.pad, self.stride)?;
        let (k, p, cs, plane) = (g.k(), g.p(), chunk(&g), g.c * g.h * g.w);
        let mut gch = Scratch::take(g.o * cs * p);
        let mut dcols = Scratch::take(k * cs * p);
        let mut buf = Vec::new();
        let mut gx = vec![0f32; g.n * plane];
        for s0 in (0..g.n).step_by(cs) {
            let n = cs.min(g.n - s0);
            gather(g_out, g.o, p, s0, n, &mut gch);
            gemm_acc(k, n * p, g.o, &mut dcols, (n * p, 1), false, w, (1, k), &gch, (n * p, 1));
            for si in 0..n {
                g.col2im(&dcols, &mut buf, &mut gx[(s0 + si) * plane..][..plane], n * p, si);
            }
        }
        Ok((CpuStorage::F32(gx), Shape::from(self.x)))
    }
}

/// Kernel gradient: Σ over samples of g·colsᵀ, laid out as the kernel.
struct ConvGradKernel {
    pad: usize,
    stride: usize,
    w: (usize, usize, usize, usize),
}

impl CustomOp2 for ConvGradKernel {
    fn name(&self) -> &'static str {
        "retort-conv2d-grad-kernel"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (x, g_out) = (slice(s1, l1, "input")?, slice(s2, l2, "gradient")?);
        let wl = Layout::contiguous(self.w);
        let g = geom(l1, &wl, self.pad, self.stride)?;
        let (k, p, cs, plane) = (g.k(), g.p(), chunk(&g), g.c * g.h * g.w);
        let mut cols = Scratch::take(k * cs * p);
        let mut xp = Vec::new();
        let mut gch = Scratch::take(g.o * cs * p);
        let mut gw = vec![0f32; g.o * k];
        for (i, s0) in (0..g.n).step_by(cs).enumerate() {
            let n = cs.min(g.n - s0);
            for si in 0..n {
                g.pad_into(&x[(s0 + si) * plane..][..plane], &mut xp);
                g.im2col(&xp, &mut cols, n * p, si);
            }
            gather(g_out, g.o, p, s0, n, &mut gch);
            // As gwᵀ[K×O] = cols·gᵀ written through gw's transposed strides: the gemm crate runs
            // this orientation ≈ 1.5× faster than g·colsᵀ (bench `gemm-shapes`).
            gemm_acc(k, g.o, n * p, &mut gw, (1, k), i > 0, &cols, (n * p, 1), &gch, (1, n * p));
        }
        Ok((CpuStorage::F32(gw), Shape::from(self.w)))
    }
}

/// 2-D convolution plus an optional per-channel bias `[O]`: fused on CPU f32 with groups =
/// dilation = 1, candle's composition elsewhere.
pub fn conv2d(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    padding: usize,
    stride: usize,
    dilation: usize,
    groups: usize,
) -> Result<Tensor> {
    let o = w.dims().first().copied().unwrap_or(0);
    if let Some(b) = bias {
        if b.dims() != [o] {
            candle_core::bail!("conv2d: bias {:?} for a kernel {:?} (expected [{o}])", b.dims(), w.dims());
        }
    }
    let fused = matches!(x.device(), Device::Cpu)
        && x.dtype() == DType::F32
        && w.dtype() == DType::F32
        && bias.is_none_or(|b| b.dtype() == DType::F32)
        && dilation == 1
        && groups == 1
        && x.rank() == 4;
    if !fused {
        let y = x.conv2d(w, padding, stride, dilation, groups)?;
        return match bias {
            Some(b) => y.broadcast_add(&b.reshape((1, o, 1, 1))?),
            None => Ok(y),
        };
    }
    let op = Conv { pad: padding, stride: stride.max(1) };
    match bias {
        Some(b) => x.contiguous()?.apply_op3(&w.contiguous()?, &b.contiguous()?, op),
        None => x.contiguous()?.apply_op2(&w.contiguous()?, op),
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor, Var};

    use super::*;
    use crate::backend::kernel::max_diff;

    #[test]
    fn conv_matches_candle_values_and_gradients() {
        let d = Device::Cpu;
        for (n, c, h, w, o, k, pad, stride) in [
            (2usize, 3usize, 8usize, 7usize, 4usize, 3usize, 1usize, 1usize),
            (3, 1, 28, 28, 5, 5, 2, 1),
            (2, 2, 9, 9, 3, 3, 0, 2),
        ] {
            let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (n, c, h, w), &d).unwrap()).unwrap();
            let kern = Var::from_tensor(&Tensor::randn(0f32, 1.0, (o, c, k, k), &d).unwrap()).unwrap();
            let a = conv2d(x.as_tensor(), kern.as_tensor(), None, pad, stride, 1, 1).unwrap();
            let b = x.as_tensor().conv2d(kern.as_tensor(), pad, stride, 1, 1).unwrap();
            assert_eq!(a.dims(), b.dims());
            assert!(max_diff(&a, &b) < 1e-4, "value {n}x{c}x{h}x{w} k{k} p{pad} s{stride}");
            let t = Tensor::randn(0f32, 1.0, a.dims(), &d).unwrap();
            let ga = (&a * &t).unwrap().sum_all().unwrap().backward().unwrap();
            let gb = (&b * &t).unwrap().sum_all().unwrap().backward().unwrap();
            for v in [&x, &kern] {
                assert!(max_diff(ga.get(v.as_tensor()).unwrap(), gb.get(v.as_tensor()).unwrap()) < 1e-3);
            }
        }
        // With a bias: value and all three gradients against conv + broadcast add.
        for (n, c, hw, o, pad) in [(2usize, 3usize, 9usize, 4usize, 1usize), (3, 1, 12, 6, 2)] {
            let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (n, c, hw, hw), &d).unwrap()).unwrap();
            let kern = Var::from_tensor(&Tensor::randn(0f32, 1.0, (o, c, 3, 3), &d).unwrap()).unwrap();
            let bias = Var::from_tensor(&Tensor::randn(0f32, 1.0, o, &d).unwrap()).unwrap();
            let (xv, kv, bv) = (x.as_tensor(), kern.as_tensor(), bias.as_tensor());
            let a = conv2d(xv, kv, Some(bv), pad, 1, 1, 1).unwrap();
            let b = xv.conv2d(kv, pad, 1, 1, 1).unwrap().broadcast_add(&bv.reshape((1, o, 1, 1)).unwrap()).unwrap();
            assert!(max_diff(&a, &b) < 1e-4);
            let t = Tensor::randn(0f32, 1.0, a.dims(), &d).unwrap();
            let ga = (&a * &t).unwrap().sum_all().unwrap().backward().unwrap();
            let gb = (&b * &t).unwrap().sum_all().unwrap().backward().unwrap();
            for v in [&x, &kern, &bias] {
                assert!(max_diff(ga.get(v.as_tensor()).unwrap(), gb.get(v.as_tensor()).unwrap()) < 1e-3);
            }
        }
        // Non-contiguous input (a transposed view).
        let xt = Var::from_tensor(&Tensor::randn(0f32, 1.0, (1, 2, 6, 5), &d).unwrap()).unwrap();
        let kern = Tensor::randn(0f32, 1.0, (3, 2, 3, 3), &d).unwrap();
        let view = xt.as_tensor().transpose(2, 3).unwrap();
        let (a, b) = (conv2d(&view, &kern, None, 1, 1, 1, 1).unwrap(), view.conv2d(&kern, 1, 1, 1, 1).unwrap());
        assert!(max_diff(&a, &b) < 1e-4);
        let t = Tensor::randn(0f32, 1.0, a.dims(), &d).unwrap();
        let ga = (&a * &t).unwrap().sum_all().unwrap().backward().unwrap();
        let gb = (&b * &t).unwrap().sum_all().unwrap().backward().unwrap();
        assert!(max_diff(ga.get(xt.as_tensor()).unwrap(), gb.get(xt.as_tensor()).unwrap()) < 1e-4);
    }
}
