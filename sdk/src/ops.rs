//! Tensor ops, grouped by the host's op families and named as in candle.
use retort_plugin_api::{
    abi_stable::std_types::RSlice,
    codes::{
        binary as b, combine as c, index as ix, layout as l, nn, reduce as r, scalar as s, softmax as sm, unary as u,
    },
    RawTensor,
};

use crate::{tensor::wrap, Dim, Dims, Error, Result, Tensor};

macro_rules! unary_ops {
    ($($(#[$doc:meta])* $name:ident => $code:expr),* $(,)?) => {$(
        $(#[$doc])*
        pub fn $name(&self) -> Result<Tensor> {
            self.wrap((self.api().unary())($code, self.raw()))
        }
    )*};
}

macro_rules! binary_ops {
    ($($(#[$doc:meta])* $name:ident, $alias:ident => $code:expr),* $(,)?) => {$(
        $(#[$doc])*
        pub fn $name(&self, rhs: &Tensor) -> Result<Tensor> {
            self.wrap((self.api().binary())($code, self.raw(), rhs.raw()))
        }
        /// Same as the non-`broadcast_` form (the host always broadcasts); candle's name.
        pub fn $alias(&self, rhs: &Tensor) -> Result<Tensor> {
            self.$name(rhs)
        }
    )*};
}

macro_rules! reduce_ops {
    ($($(#[$doc:meta])* $name:ident, $keep:ident => $code:expr),* $(,)?) => {$(
        $(#[$doc])*
        pub fn $name(&self, dims: impl Dims) -> Result<Tensor> {
            self.reduce($code, dims, false)
        }
        /// As the form without `_keepdim`, keeping reduced dims with size 1.
        pub fn $keep(&self, dims: impl Dims) -> Result<Tensor> {
            self.reduce($code, dims, true)
        }
    )*};
}

impl Tensor {
    unary_ops! {
        exp => u::EXP, log => u::LOG, log1p => u::LOG1P, neg => u::NEG, abs => u::ABS,
        sqrt => u::SQRT, recip => u::RECIP, relu => u::RELU,
        /// GELU, tanh approximation.
        gelu => u::GELU,
        /// GELU, exact (erf).
        gelu_erf => u::GELU_ERF,
        tanh => u::TANH, sigmoid => u::SIGMOID, sign => u::SIGN, sqr => u::SQR, silu => u::SILU,
        sin => u::SIN, cos => u::COS, floor => u::FLOOR, ceil => u::CEIL, round => u::ROUND,
        erf => u::ERF,
        /// log(1 + exp(x)), stable for large |x|.
        softplus => u::SOFTPLUS,
    }

    binary_ops! {
        add, broadcast_add => b::ADD, sub, broadcast_sub => b::SUB, mul, broadcast_mul => b::MUL,
        div, broadcast_div => b::DIV, pow, broadcast_pow => b::POW,
        maximum, broadcast_maximum => b::MAXIMUM, minimum, broadcast_minimum => b::MINIMUM,
        /// 1 where equal (u8).
        eq, broadcast_eq => b::EQ,
        ne, broadcast_ne => b::NE, lt, broadcast_lt => b::LT, le, broadcast_le => b::LE,
        gt, broadcast_gt => b::GT, ge, broadcast_ge => b::GE,
    }

    reduce_ops! {
        sum, sum_keepdim => r::SUM, mean, mean_keepdim => r::MEAN, max, max_keepdim => r::MAX,
        min, min_keepdim => r::MIN,
        /// log Σ exp over the dims.
        logsumexp, logsumexp_keepdim => r::LOGSUMEXP,
        /// Unbiased variance.
        var, var_keepdim => r::VAR,
        /// Unbiased standard deviation.
        std, std_keepdim => r::STD,
        /// Biased variance (divides by n).
        var_biased, var_biased_keepdim => r::VAR_BIASED,
    }

    fn reduce(&self, op: u32, dims: impl Dims, keepdim: bool) -> Result<Tensor> {
        let d = dims.to_dims();
        self.wrap((self.api().reduce())(op, self.raw(), RSlice::from_slice(&d), keepdim))
    }

    /// Sum of every element (a scalar tensor).
    pub fn sum_all(&self) -> Result<Tensor> {
        let all: Vec<i64> = (0..self.rank() as i64).collect();
        self.reduce(r::SUM, all, false)
    }

    /// Mean of every element (a scalar tensor).
    pub fn mean_all(&self) -> Result<Tensor> {
        let all: Vec<i64> = (0..self.rank() as i64).collect();
        self.reduce(r::MEAN, all, false)
    }

    /// Index of the maximum along `dim` (u32).
    pub fn argmax(&self, dim: impl Dim) -> Result<Tensor> {
        self.reduce(r::ARGMAX, dim, false)
    }
    /// As [`Tensor::argmax`], keeping the dim.
    pub fn argmax_keepdim(&self, dim: impl Dim) -> Result<Tensor> {
        self.reduce(r::ARGMAX, dim, true)
    }
    /// Index of the minimum along `dim` (u32).
    pub fn argmin(&self, dim: impl Dim) -> Result<Tensor> {
        self.reduce(r::ARGMIN, dim, false)
    }

    /// `x * mul + add`.
    pub fn affine(&self, mul: f64, add: f64) -> Result<Tensor> {
        self.scalar_op(s::AFFINE, mul, add)
    }
    /// `x ^ e`.
    pub fn powf(&self, e: f64) -> Result<Tensor> {
        self.scalar_op(s::POWF, e, 0.0)
    }
    /// `min(max(x, lo), hi)`.
    pub fn clamp(&self, lo: f64, hi: f64) -> Result<Tensor> {
        self.scalar_op(s::CLAMP, lo, hi)
    }
    /// ELU with the given alpha.
    pub fn elu(&self, alpha: f64) -> Result<Tensor> {
        self.scalar_op(s::ELU, alpha, 0.0)
    }
    /// `max(x, slope * x)`.
    pub fn leaky_relu(&self, slope: f64) -> Result<Tensor> {
        self.scalar_op(s::LEAKY_RELU, slope, 0.0)
    }
    fn scalar_op(&self, op: u32, a: f64, bb: f64) -> Result<Tensor> {
        self.wrap((self.api().scalar())(op, self.raw(), a, bb))
    }

    /// Softmax over `dim`.
    pub fn softmax(&self, dim: impl Dim) -> Result<Tensor> {
        self.wrap((self.api().softmax())(sm::SOFTMAX, self.raw(), dim.to_dim()))
    }
    /// Log-softmax over `dim`.
    pub fn log_softmax(&self, dim: impl Dim) -> Result<Tensor> {
        self.wrap((self.api().softmax())(sm::LOG_SOFTMAX, self.raw(), dim.to_dim()))
    }

    /// Matrix product, batched over leading dims.
    pub fn matmul(&self, rhs: &Tensor) -> Result<Tensor> {
        self.wrap((self.api().matmul())(self.raw(), rhs.raw()))
    }
    /// Same as [`Tensor::matmul`] (the host broadcasts); candle's name.
    pub fn broadcast_matmul(&self, rhs: &Tensor) -> Result<Tensor> {
        self.matmul(rhs)
    }

    fn layout_op(&self, op: u32, args: &[i64]) -> Result<Tensor> {
        self.wrap((self.api().layout())(op, self.raw(), RSlice::from_slice(args)))
    }
    /// A new shape with the same elements; one entry may be −1 (`reshape_infer`).
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        let s: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
        self.layout_op(l::RESHAPE, &s)
    }
    /// Reshape where one entry may be −1 and is inferred.
    pub fn reshape_infer(&self, shape: &[i64]) -> Result<Tensor> {
        self.layout_op(l::RESHAPE, shape)
    }
    /// Swaps two dims.
    pub fn transpose(&self, d0: impl Dim, d1: impl Dim) -> Result<Tensor> {
        self.layout_op(l::TRANSPOSE, &[d0.to_dim(), d1.to_dim()])
    }
    /// Transpose of the last two dims.
    pub fn t(&self) -> Result<Tensor> {
        self.transpose(-2, -1)
    }
    /// Reorders dims.
    pub fn permute(&self, dims: impl Dims) -> Result<Tensor> {
        self.layout_op(l::PERMUTE, &dims.to_dims())
    }
    /// `len` entries of `dim` from `start`.
    pub fn narrow(&self, dim: impl Dim, start: usize, len: usize) -> Result<Tensor> {
        self.layout_op(l::NARROW, &[dim.to_dim(), start as i64, len as i64])
    }
    /// Removes a dim of size 1.
    pub fn squeeze(&self, dim: impl Dim) -> Result<Tensor> {
        self.layout_op(l::SQUEEZE, &[dim.to_dim()])
    }
    /// Inserts a dim of size 1.
    pub fn unsqueeze(&self, dim: impl Dim) -> Result<Tensor> {
        self.layout_op(l::UNSQUEEZE, &[dim.to_dim()])
    }
    /// A broadcast view with the given shape.
    pub fn broadcast_as(&self, shape: &[usize]) -> Result<Tensor> {
        let s: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
        self.layout_op(l::BROADCAST_AS, &s)
    }
    /// A contiguous copy (or the same tensor when already contiguous).
    pub fn contiguous(&self) -> Result<Tensor> {
        self.layout_op(l::CONTIGUOUS, &[])
    }
    /// Merges dims `start..=end`.
    pub fn flatten(&self, start: impl Dim, end: impl Dim) -> Result<Tensor> {
        self.layout_op(l::FLATTEN, &[start.to_dim(), end.to_dim()])
    }
    /// Merges every dim from `start` on.
    pub fn flatten_from(&self, start: impl Dim) -> Result<Tensor> {
        self.flatten(start, -1)
    }
    /// A 1-D view of every element.
    pub fn flatten_all(&self) -> Result<Tensor> {
        self.flatten(0, -1)
    }

    fn combine(op: u32, xs: &[&Tensor], dim: i64) -> Result<Tensor> {
        let first = xs.first().ok_or_else(|| Error::invalid("cat/stack of an empty list"))?;
        let raws: Vec<RawTensor> = xs.iter().map(|t| t.raw()).collect();
        wrap(first.api(), (first.api().combine())(op, RSlice::from_slice(&raws), dim))
    }
    /// Concatenation along an existing dim.
    pub fn cat(xs: &[&Tensor], dim: impl Dim) -> Result<Tensor> {
        Self::combine(c::CAT, xs, dim.to_dim())
    }
    /// Stacking along a new dim.
    pub fn stack(xs: &[&Tensor], dim: impl Dim) -> Result<Tensor> {
        Self::combine(c::STACK, xs, dim.to_dim())
    }

    fn index_op(&self, op: u32, others: &[&Tensor], args: &[i64]) -> Result<Tensor> {
        let mut raws = vec![self.raw()];
        raws.extend(others.iter().map(|t| t.raw()));
        self.wrap((self.api().index())(op, RSlice::from_slice(&raws), RSlice::from_slice(args)))
    }
    /// Rows (entries of `dim`) picked by a 1-D index tensor.
    pub fn index_select(&self, indices: &Tensor, dim: impl Dim) -> Result<Tensor> {
        self.index_op(ix::INDEX_SELECT, &[indices], &[dim.to_dim()])
    }
    /// `out[i][j] = x[i][indices[i][j]]` along `dim`.
    pub fn gather(&self, indices: &Tensor, dim: impl Dim) -> Result<Tensor> {
        self.index_op(ix::GATHER, &[indices], &[dim.to_dim()])
    }
    /// `self` with `src` added at `indices` along `dim`.
    pub fn scatter_add(&self, indices: &Tensor, src: &Tensor, dim: impl Dim) -> Result<Tensor> {
        self.index_op(ix::SCATTER_ADD, &[indices, src], &[dim.to_dim()])
    }
    /// `on_true` where `self` (a mask) is non-zero, else `on_false`, with broadcasting.
    pub fn where_cond(&self, on_true: &Tensor, on_false: &Tensor) -> Result<Tensor> {
        self.index_op(ix::WHERE_COND, &[on_true, on_false], &[])
    }
    /// f32 one-hot rows of `classes` columns for an index tensor.
    pub fn one_hot(&self, classes: usize) -> Result<Tensor> {
        self.index_op(ix::ONE_HOT, &[], &[classes as i64])
    }

    /// 2-D convolution (NCHW input, OIHW kernel).
    pub fn conv2d(
        &self,
        kernel: &Tensor,
        padding: usize,
        stride: usize,
        dilation: usize,
        groups: usize,
    ) -> Result<Tensor> {
        let args = [padding as i64, stride as i64, dilation as i64, groups as i64];
        let raws = [self.raw(), kernel.raw()];
        self.wrap((self.api().nn())(nn::CONV2D, RSlice::from_slice(&raws), RSlice::from_slice(&args)))
    }
    /// 2-D convolution plus a per-channel bias `[O]` as one host op (fused where the host has it;
    /// convolution + broadcast add on hosts that predate it).
    pub fn conv2d_bias(&self, kernel: &Tensor, bias: &Tensor, padding: usize, stride: usize) -> Result<Tensor> {
        let args = [padding as i64, stride as i64, 1, 1];
        let raws = [self.raw(), kernel.raw(), bias.raw()];
        match self.wrap((self.api().nn())(nn::CONV2D_BIAS, RSlice::from_slice(&raws), RSlice::from_slice(&args))) {
            Err(e) if e.code == retort_plugin_api::codes::error::UNSUPPORTED => {
                let n = bias.dim(0)?;
                self.conv2d(kernel, padding, stride, 1, 1)?.add(&bias.reshape(&[1, n, 1, 1])?)
            }
            r => r,
        }
    }
    /// Transposed 2-D convolution (NCHW input, `[C_in, C_out, kh, kw]` kernel, one group), as
    /// PyTorch's `conv_transpose2d`: FitNets' upsampling regressor.
    pub fn conv_transpose2d(
        &self,
        kernel: &Tensor,
        padding: usize,
        output_padding: usize,
        stride: usize,
    ) -> Result<Tensor> {
        let args = [padding as i64, output_padding as i64, stride as i64, 1];
        let raws = [self.raw(), kernel.raw()];
        self.wrap((self.api().nn())(nn::CONV_TRANSPOSE2D, RSlice::from_slice(&raws), RSlice::from_slice(&args)))
    }
    /// The sampling grid `[N, H, W, 2]` of affine maps `self` `[N, 2, 3]` (PyTorch `affine_grid`,
    /// `align_corners = False`), differentiable in the maps.
    pub fn affine_grid(&self, h: usize, w: usize) -> Result<Tensor> {
        let raws = [self.raw()];
        self.wrap((self.api().nn())(
            nn::AFFINE_GRID,
            RSlice::from_slice(&raws),
            RSlice::from_slice(&[h as i64, w as i64]),
        ))
    }
    /// Bilinear samples of `self` `[N, C, H, W]` at `grid` `[N, Ho, Wo, 2]`, zero outside (PyTorch
    /// `grid_sample`, `align_corners = False`), differentiable in both.
    pub fn grid_sample(&self, grid: &Tensor) -> Result<Tensor> {
        let raws = [self.raw(), grid.raw()];
        self.wrap((self.api().nn())(nn::GRID_SAMPLE, RSlice::from_slice(&raws), RSlice::from_slice(&[])))
    }
    /// Max pooling with a square window and the given stride.
    pub fn max_pool2d_with_stride(&self, kernel: usize, stride: usize) -> Result<Tensor> {
        self.pool(nn::MAX_POOL2D, kernel, stride)
    }
    /// Max pooling with stride = window.
    pub fn max_pool2d(&self, kernel: usize) -> Result<Tensor> {
        self.pool(nn::MAX_POOL2D, kernel, kernel)
    }
    /// Average pooling with stride = window.
    pub fn avg_pool2d(&self, kernel: usize) -> Result<Tensor> {
        self.pool(nn::AVG_POOL2D, kernel, kernel)
    }
    /// Average pooling with a square window and the given stride.
    pub fn avg_pool2d_with_stride(&self, kernel: usize, stride: usize) -> Result<Tensor> {
        self.pool(nn::AVG_POOL2D, kernel, stride)
    }
    fn pool(&self, op: u32, k: usize, st: usize) -> Result<Tensor> {
        let args = [k as i64, k as i64, st as i64, st as i64];
        let raws = [self.raw()];
        self.wrap((self.api().nn())(op, RSlice::from_slice(&raws), RSlice::from_slice(&args)))
    }

    /// `self·wᵀ + b` as one host op (fused forward and backward where the host has it; the plain
    /// matmul + add on hosts that predate it).
    pub fn linear(&self, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
        let mut raws = vec![self.raw(), w.raw()];
        raws.extend(b.map(Tensor::raw));
        match self.wrap((self.api().nn())(nn::LINEAR, RSlice::from_slice(&raws), RSlice::from_slice(&[]))) {
            Err(e) if e.code == retort_plugin_api::codes::error::UNSUPPORTED => {
                let y = self.matmul(&w.t()?)?;
                match b {
                    Some(b) => y.add(b),
                    None => Ok(y),
                }
            }
            r => r,
        }
    }

    /// Per-row `KL(softmax(self/τ) ‖ softmax(q/τ))` over the last dim (`0·log 0 = 0`), shape `[…]`:
    /// one fused host op where the host has it, log-softmax + [`crate::functional::kl_rows`] before.
    pub fn kl_div_rows(&self, q: &Tensor, tau: f64) -> Result<Tensor> {
        let raws = [self.raw(), q.raw()];
        let args = [tau.to_bits() as i64];
        match self.wrap((self.api().nn())(nn::KL_DIV_ROWS, RSlice::from_slice(&raws), RSlice::from_slice(&args))) {
            Err(e) if e.code == retort_plugin_api::codes::error::UNSUPPORTED => crate::functional::kl_rows(
                &crate::functional::log_probs(self, tau)?,
                &crate::functional::log_probs(q, tau)?,
            ),
            r => r,
        }
    }

    /// Per-row hard-label cross-entropy `−log softmax(self)[y]` over the last dim, 0 where the label
    /// is < 0: one fused host op where the host has it, log-softmax + gather before.
    pub fn cross_entropy_rows(&self, labels: &Tensor) -> Result<Tensor> {
        let raws = [self.raw(), labels.raw()];
        match self.wrap((self.api().nn())(nn::CROSS_ENTROPY_ROWS, RSlice::from_slice(&raws), RSlice::from_slice(&[]))) {
            Err(e) if e.code == retort_plugin_api::codes::error::UNSUPPORTED => {
                crate::functional::hard_ce_rows(&self.log_softmax(-1)?, labels)
            }
            r => r,
        }
    }

    /// Layer normalisation over the last dim with `weight` and `bias` `[D]` (biased variance): one
    /// host op with its own backward where the host has it, the composition before.
    pub fn layer_norm(&self, weight: &Tensor, bias: &Tensor, eps: f64) -> Result<Tensor> {
        let raws = [self.raw(), weight.raw(), bias.raw()];
        let args = [eps.to_bits() as i64];
        match self.wrap((self.api().nn())(nn::LAYER_NORM, RSlice::from_slice(&raws), RSlice::from_slice(&args))) {
            Err(e) if e.code == retort_plugin_api::codes::error::UNSUPPORTED => {
                let mean = self.mean_keepdim(-1)?;
                let xc = self.broadcast_sub(&mean)?;
                let var = xc.sqr()?.mean_keepdim(-1)?;
                let xn = xc.broadcast_div(&var.affine(1.0, eps)?.sqrt()?)?;
                xn.broadcast_mul(weight)?.broadcast_add(bias)
            }
            r => r,
        }
    }

    /// The same values, cut from the autograd graph (stop-gradient).
    pub fn detach(&self) -> Result<Tensor> {
        self.wrap((self.api().detach())(self.raw()))
    }
}
