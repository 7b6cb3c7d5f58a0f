//! Open `u32` codes for op families, dtypes, devices, plugin kinds and errors.
//!
//! Codes are plain integers rather than Rust enums so that a newer plugin may name an op an older
//! host does not know: the host answers with [`error::UNSUPPORTED`] instead of the layout check
//! failing. New codes are only ever appended.

/// Element types.
pub mod dtype {
    pub const F32: u32 = 0;
    pub const F64: u32 = 1;
    pub const I64: u32 = 2;
    pub const U32: u32 = 3;
    pub const U8: u32 = 4;
    pub const BF16: u32 = 5;
    pub const F16: u32 = 6;
}

/// Devices a tensor may live on.
pub mod device {
    pub const CPU: u32 = 0;
    pub const CUDA: u32 = 1;
    pub const METAL: u32 = 2;
}

/// Element-wise functions of one tensor (`HostApi::unary`).
pub mod unary {
    pub const EXP: u32 = 0;
    pub const LOG: u32 = 1;
    pub const LOG1P: u32 = 2;
    pub const NEG: u32 = 3;
    pub const ABS: u32 = 4;
    pub const SQRT: u32 = 5;
    pub const RECIP: u32 = 6;
    pub const RELU: u32 = 7;
    /// tanh approximation, as candle's and PyTorch's `gelu(approximate="tanh")`.
    pub const GELU: u32 = 8;
    pub const TANH: u32 = 9;
    pub const SIGMOID: u32 = 10;
    pub const SIGN: u32 = 11;
    pub const SQR: u32 = 12;
    /// Exact GELU with erf.
    pub const GELU_ERF: u32 = 13;
    pub const SILU: u32 = 14;
    pub const SIN: u32 = 15;
    pub const COS: u32 = 16;
    pub const FLOOR: u32 = 17;
    pub const CEIL: u32 = 18;
    pub const ROUND: u32 = 19;
    pub const ERF: u32 = 20;
    /// log(1 + exp(x)), computed stably.
    pub const SOFTPLUS: u32 = 21;
}

/// Element-wise functions of two tensors with NumPy broadcasting (`HostApi::binary`).
pub mod binary {
    pub const ADD: u32 = 0;
    pub const SUB: u32 = 1;
    pub const MUL: u32 = 2;
    pub const DIV: u32 = 3;
    pub const POW: u32 = 4;
    pub const MAXIMUM: u32 = 5;
    pub const MINIMUM: u32 = 6;
    /// Comparisons return u8 tensors of 0/1.
    pub const EQ: u32 = 7;
    pub const NE: u32 = 8;
    pub const LT: u32 = 9;
    pub const LE: u32 = 10;
    pub const GT: u32 = 11;
    pub const GE: u32 = 12;
}

/// Functions of a tensor and two scalars `a`, `b` (`HostApi::scalar`).
pub mod scalar {
    /// `x * a + b`
    pub const AFFINE: u32 = 0;
    /// `x ^ a`
    pub const POWF: u32 = 1;
    /// `min(max(x, a), b)`
    pub const CLAMP: u32 = 2;
    /// ELU with alpha `a`.
    pub const ELU: u32 = 3;
    /// `max(x, a * x)`
    pub const LEAKY_RELU: u32 = 4;
}

/// Reductions over a list of dims (`HostApi::reduce`); ARGMAX/ARGMIN take exactly one dim.
pub mod reduce {
    pub const SUM: u32 = 0;
    pub const MEAN: u32 = 1;
    pub const MAX: u32 = 2;
    pub const MIN: u32 = 3;
    pub const ARGMAX: u32 = 4;
    pub const ARGMIN: u32 = 5;
    pub const LOGSUMEXP: u32 = 6;
    /// Unbiased (n − 1) variance, as PyTorch's default.
    pub const VAR: u32 = 7;
    /// Unbiased standard deviation.
    pub const STD: u32 = 8;
    /// Biased (n) variance, as used by batch and layer norm.
    pub const VAR_BIASED: u32 = 9;
}

/// Normalisations over one dim (`HostApi::softmax`).
pub mod softmax {
    pub const SOFTMAX: u32 = 0;
    pub const LOG_SOFTMAX: u32 = 1;
}

/// View and layout changes (`HostApi::layout`); `args` as listed per code.
pub mod layout {
    /// args: the new shape; one entry may be −1.
    pub const RESHAPE: u32 = 0;
    /// args: [dim0, dim1]
    pub const TRANSPOSE: u32 = 1;
    /// args: the permutation.
    pub const PERMUTE: u32 = 2;
    /// args: [dim, start, len]
    pub const NARROW: u32 = 3;
    /// args: [dim]
    pub const SQUEEZE: u32 = 4;
    /// args: [dim]
    pub const UNSQUEEZE: u32 = 5;
    /// args: the target shape.
    pub const BROADCAST_AS: u32 = 6;
    /// args: none.
    pub const CONTIGUOUS: u32 = 7;
    /// args: [start_dim, end_dim] (inclusive).
    pub const FLATTEN: u32 = 8;
}

/// Joining several tensors along a dim (`HostApi::combine`).
pub mod combine {
    pub const CAT: u32 = 0;
    pub const STACK: u32 = 1;
}

/// Indexing ops (`HostApi::index`); tensors and args as listed per code.
pub mod index {
    /// tensors: [x, indices (u32/i64, 1-D)]; args: [dim]
    pub const INDEX_SELECT: u32 = 0;
    /// tensors: [x, indices (same rank as x)]; args: [dim]
    pub const GATHER: u32 = 1;
    /// tensors: [x, indices, src]; args: [dim]. Returns x with src added at indices.
    pub const SCATTER_ADD: u32 = 2;
    /// tensors: [mask (u8/u32/i64), on_true, on_false]; args: none. Broadcasts.
    pub const WHERE_COND: u32 = 3;
    /// tensors: [indices]; args: [classes]. Returns f32 one-hot rows.
    pub const ONE_HOT: u32 = 4;
}

/// Neural-network ops (`HostApi::nn`).
pub mod nn {
    /// tensors: [x (N,C,H,W), w (O,C/g,kh,kw)]; args: [padding, stride, dilation, groups]
    pub const CONV2D: u32 = 0;
    /// tensors: [x]; args: [kh, kw, sh, sw]
    pub const MAX_POOL2D: u32 = 1;
    /// tensors: [x]; args: [kh, kw, sh, sw]
    pub const AVG_POOL2D: u32 = 2;
    /// tensors: [x (…, in), w (out, in), optional b (out)]; args: none. `x·wᵀ + b`, fused by the host
    /// (gradient laid out as w, input gradient skipped for plain data). Older hosts: UNSUPPORTED.
    pub const LINEAR: u32 = 3;
    /// tensors: [x (N,C,H,W), w (O,C/g,kh,kw), b (O)]; args as [`CONV2D`]. Convolution plus a
    /// per-channel bias in one host op (bias gradient in one pass). Older hosts: UNSUPPORTED.
    pub const CONV2D_BIAS: u32 = 4;
    /// tensors: [p logits (…, C), q logits (…, C)]; args: [τ as f64 bits (`f64::to_bits() as i64`)].
    /// Per-row `KL(softmax(p/τ) ‖ softmax(q/τ))` with `0·log 0 = 0`, shape `[…]`, in one pass with
    /// its own backward. Older hosts: UNSUPPORTED.
    pub const KL_DIV_ROWS: u32 = 5;
    /// tensors: [logits (…, C), labels (…) of any integer dtype]; args: none. Per-row hard-label
    /// cross-entropy `−log softmax(z)[y]`, 0 where y < 0 (ignored), in one pass with its own
    /// backward. Older hosts: UNSUPPORTED.
    pub const CROSS_ENTROPY_ROWS: u32 = 6;
    /// tensors: [theta (N, 2, 3)]; args: [H, W]. The sampling grid `[N, H, W, 2]` of affine maps
    /// (PyTorch `affine_grid`, `align_corners = False`), differentiable in theta. Older hosts:
    /// UNSUPPORTED.
    pub const AFFINE_GRID: u32 = 7;
    /// tensors: [x (N, C, H, W), grid (N, Ho, Wo, 2)]; args: none. Bilinear sampling with zero
    /// padding (PyTorch `grid_sample`, `align_corners = False`), differentiable in x and grid.
    /// Older hosts: UNSUPPORTED.
    pub const GRID_SAMPLE: u32 = 8;
    /// tensors: [x (N, C, H, W), w (C, O, kh, kw)]; args: [padding, output_padding, stride,
    /// dilation]. Transposed convolution (PyTorch `conv_transpose2d`, one group), differentiable
    /// in x and w. Older hosts: UNSUPPORTED.
    pub const CONV_TRANSPOSE2D: u32 = 9;
    /// tensors: [x (…, D), weight (D), bias (D)]; args: [ε as f64 bits]. Layer normalisation over
    /// the last dim, `(x − μ)/√(σ² + ε)·w + b` with the biased variance, in one op with its own
    /// backward. Older hosts: UNSUPPORTED.
    pub const LAYER_NORM: u32 = 10;
}

/// Distributions for `HostApi::rand` and parameter initialisation ([`crate::InitSpec`]).
pub mod dist {
    /// Every element `a`.
    pub const CONSTANT: u32 = 0;
    /// U(a, b)
    pub const UNIFORM: u32 = 1;
    /// N(mean a, std b)
    pub const NORMAL: u32 = 2;
    /// 1 with probability a, else 0.
    pub const BERNOULLI: u32 = 3;
}

/// Kinds of plugin.
pub mod kind {
    pub const LOSS: u32 = 0;
    pub const MODEL: u32 = 1;
    pub const TEACHER: u32 = 2;
    pub const ROUTER: u32 = 3;
    pub const AUGMENTER: u32 = 4;

    /// The kind's name as used in config files and the CLI.
    pub fn name(code: u32) -> &'static str {
        match code {
            LOSS => "loss",
            MODEL => "model",
            TEACHER => "teacher",
            ROUTER => "router",
            AUGMENTER => "augmenter",
            _ => "unknown",
        }
    }
}

/// Log levels for `HostApi::log`.
pub mod level {
    pub const ERROR: u32 = 0;
    pub const WARN: u32 = 1;
    pub const INFO: u32 = 2;
    pub const DEBUG: u32 = 3;
    pub const TRACE: u32 = 4;
}

/// Error codes carried by [`crate::ApiError`].
pub mod error {
    /// Unknown op code, dtype or device for this host.
    pub const UNSUPPORTED: u32 = 1;
    /// A bad argument: wrong shape, dim, dtype or value.
    pub const INVALID: u32 = 2;
    /// Something panicked and the panic was caught at the boundary.
    pub const PANIC: u32 = 3;
    /// A plugin's config could not be parsed or was rejected.
    pub const CONFIG: u32 = 4;
    /// `load_state` refused the given state.
    pub const STATE: u32 = 5;
    /// The host lacks a table function the plugin needs (it is older than the plugin).
    pub const MISSING_FUNCTION: u32 = 6;
    /// A required batch input is absent.
    pub const MISSING_INPUT: u32 = 7;
    /// The library has no plugin of the requested name and kind.
    pub const NOT_FOUND: u32 = 8;
    /// Any other failure.
    pub const OTHER: u32 = 99;
}
