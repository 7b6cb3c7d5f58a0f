//! The op families of the table, implemented with candle. Unknown codes are `Unsupported`.
use candle_core::{DType, Device, Shape, Tensor};
use retort_plugin_api::codes::{
    binary as b, combine as c, dtype as dt, index as ix, layout as l, nn, reduce as r, scalar as s, softmax as sm,
    unary as u,
};

/// An op failure: unsupported code, or a candle/argument error.
pub enum OpError {
    Unsupported(String),
    Invalid(String),
}

impl From<candle_core::Error> for OpError {
    fn from(e: candle_core::Error) -> Self {
        OpError::Invalid(e.to_string())
    }
}

pub type OpResult<T = Tensor> = Result<T, OpError>;

fn invalid<T>(msg: impl Into<String>) -> OpResult<T> {
    Err(OpError::Invalid(msg.into()))
}

fn unsupported<T>(family: &str, code: u32) -> OpResult<T> {
    Err(OpError::Unsupported(format!("unknown {family} op code {code} (this host is older than the plugin?)")))
}

/// The candle dtype of an ABI dtype code.
pub fn dtype_of(code: u32) -> OpResult<DType> {
    Ok(match code {
        dt::F32 => DType::F32,
        dt::F64 => DType::F64,
        dt::I64 => DType::I64,
        dt::U32 => DType::U32,
        dt::U8 => DType::U8,
        dt::BF16 => DType::BF16,
        dt::F16 => DType::F16,
        other => return Err(OpError::Unsupported(format!("unknown dtype code {other}"))),
    })
}

/// The ABI code of a candle dtype (`u32::MAX` for dtypes the ABI does not name).
pub fn code_of(d: DType) -> u32 {
    match d {
        DType::F32 => dt::F32,
        DType::F64 => dt::F64,
        DType::I64 => dt::I64,
        DType::U32 => dt::U32,
        DType::U8 => dt::U8,
        DType::BF16 => dt::BF16,
        DType::F16 => dt::F16,
        _ => u32::MAX,
    }
}

/// Resolves a possibly negative dim against a rank (`extra` allows `rank` itself, for unsqueeze).
fn dim(d: i64, rank: usize, extra: bool) -> OpResult<usize> {
    let n = rank as i64 + i64::from(extra);
    let i = if d < 0 { n + d } else { d };
    if i < 0 || i >= n {
        return invalid(format!("dim {d} out of range for rank {rank}"));
    }
    Ok(i as usize)
}

fn dims(ds: &[i64], rank: usize) -> OpResult<Vec<usize>> {
    let mut v = ds.iter().map(|&d| dim(d, rank, false)).collect::<OpResult<Vec<_>>>()?;
    v.sort_unstable();
    v.dedup();
    Ok(v)
}

fn usize_arg(v: i64, what: &str) -> OpResult<usize> {
    usize::try_from(v).or_else(|_| invalid(format!("{what} must be non-negative, got {v}")))
}

fn nargs(args: &[i64], n: usize, op: &str) -> OpResult<()> {
    if args.len() != n {
        return invalid(format!("{op} takes {n} integer arguments, got {}", args.len()));
    }
    Ok(())
}

/// Brings two operands to one dtype: integers to the float's dtype, floats to the wider float.
fn promote(a: &Tensor, bt: &Tensor) -> OpResult<(Tensor, Tensor)> {
    let (da, db) = (a.dtype(), bt.dtype());
    if da == db {
        return Ok((a.clone(), bt.clone()));
    }
    let rank = |d: DType| match d {
        DType::F64 => 5,
        DType::F32 => 4,
        DType::BF16 | DType::F16 => 3,
        DType::I64 => 2,
        DType::U32 => 1,
        _ => 0,
    };
    let target = if rank(da) >= rank(db) { da } else { db };
    Ok((a.to_dtype(target)?, bt.to_dtype(target)?))
}

pub fn unary(op: u32, x: &Tensor) -> OpResult {
    Ok(match op {
        u::EXP => x.exp()?,
        u::LOG => x.log()?,
        u::LOG1P => x.affine(1.0, 1.0)?.log()?,
        u::NEG => x.neg()?,
        u::ABS => x.abs()?,
        u::SQRT => x.sqrt()?,
        u::RECIP => x.recip()?,
        u::RELU => super::fused::relu(x)?,
        u::GELU => super::gelu::gelu(x)?,
        u::TANH => x.tanh()?,
        u::SIGMOID => x.neg()?.exp()?.affine(1.0, 1.0)?.recip()?,
        u::SIGN => x.sign()?,
        u::SQR => x.sqr()?,
        u::GELU_ERF => x.gelu_erf()?,
        u::SILU => x.silu()?,
        u::SIN => x.sin()?,
        u::COS => x.cos()?,
        u::FLOOR => x.floor()?,
        u::CEIL => x.ceil()?,
        u::ROUND => x.round()?,
        u::ERF => x.erf()?,
        u::SOFTPLUS => (x.relu()? + x.abs()?.neg()?.exp()?.affine(1.0, 1.0)?.log()?)?,
        other => return unsupported("unary", other),
    })
}

pub fn binary(op: u32, a: &Tensor, bt: &Tensor) -> OpResult {
    let (a, bt) = promote(a, bt)?;
    Ok(match op {
        b::ADD => a.broadcast_add(&bt)?,
        b::SUB => a.broadcast_sub(&bt)?,
        b::MUL => a.broadcast_mul(&bt)?,
        b::DIV => a.broadcast_div(&bt)?,
        b::POW => a.broadcast_pow(&bt)?,
        b::MAXIMUM => a.broadcast_maximum(&bt)?,
        b::MINIMUM => a.broadcast_minimum(&bt)?,
        b::EQ => a.broadcast_eq(&bt)?,
        b::NE => a.broadcast_ne(&bt)?,
        b::LT => a.broadcast_lt(&bt)?,
        b::LE => a.broadcast_le(&bt)?,
        b::GT => a.broadcast_gt(&bt)?,
        b::GE => a.broadcast_ge(&bt)?,
        other => return unsupported("binary", other),
    })
}

pub fn scalar(op: u32, x: &Tensor, a: f64, bv: f64) -> OpResult {
    Ok(match op {
        s::AFFINE => x.affine(a, bv)?,
        s::POWF => x.powf(a)?,
        s::CLAMP => x.clamp(a, bv)?,
        s::ELU => x.elu(a)?,
        s::LEAKY_RELU => x.maximum(&x.affine(a, 0.0)?)?,
        other => return unsupported("scalar", other),
    })
}

fn squeeze_dims(mut t: Tensor, ds: &[usize]) -> OpResult {
    for &d in ds.iter().rev() {
        t = t.squeeze(d)?;
    }
    Ok(t)
}

pub fn reduce(op: u32, x: &Tensor, ds: &[i64], keepdim: bool) -> OpResult {
    let rank = x.rank();
    if rank == 0 {
        return Ok(x.clone());
    }
    let ds = dims(ds, rank)?;
    if ds.is_empty() {
        return invalid("reduction over no dims");
    }
    let n: usize = ds.iter().map(|&d| x.dims()[d]).product();
    let out = match op {
        r::SUM => x.sum_keepdim(ds.clone())?,
        r::MEAN => x.sum_keepdim(ds.clone())?.affine(1.0 / n as f64, 0.0)?,
        r::MAX | r::MIN => {
            let mut t = x.clone();
            for &d in &ds {
                t = if op == r::MAX { t.max_keepdim(d)? } else { t.min_keepdim(d)? };
            }
            t
        }
        r::ARGMAX | r::ARGMIN => {
            if ds.len() != 1 {
                return invalid("argmax/argmin take exactly one dim");
            }
            if op == r::ARGMAX {
                x.argmax_keepdim(ds[0])?
            } else {
                x.argmin_keepdim(ds[0])?
            }
        }
        r::LOGSUMEXP => {
            let mut m = x.detach();
            for &d in &ds {
                m = m.max_keepdim(d)?;
            }
            x.broadcast_sub(&m)?.exp()?.sum_keepdim(ds.clone())?.log()?.broadcast_add(&m)?
        }
        r::VAR | r::STD | r::VAR_BIASED => {
            let mean = x.sum_keepdim(ds.clone())?.affine(1.0 / n as f64, 0.0)?;
            let ss = x.broadcast_sub(&mean)?.sqr()?.sum_keepdim(ds.clone())?;
            let denom = if op == r::VAR_BIASED { n as f64 } else { (n as f64 - 1.0).max(1.0) };
            let var = ss.affine(1.0 / denom, 0.0)?;
            if op == r::STD {
                var.sqrt()?
            } else {
                var
            }
        }
        other => return unsupported("reduce", other),
    };
    if keepdim {
        Ok(out)
    } else {
        squeeze_dims(out, &ds)
    }
}

pub fn softmax(op: u32, x: &Tensor, d: i64) -> OpResult {
    let d = dim(d, x.rank(), false)?;
    Ok(match op {
        sm::SOFTMAX => match if d + 1 == x.rank() { super::norm::softmax_last(x)? } else { None } {
            Some(y) => y,
            None => {
                let e = x.broadcast_sub(&x.max_keepdim(d)?.detach())?.exp()?;
                e.broadcast_div(&e.sum_keepdim(d)?)?
            }
        },
        sm::LOG_SOFTMAX => super::softmax_loss::log_softmax(x, d)?,
        other => return unsupported("softmax", other),
    })
}

pub fn matmul(a: &Tensor, bt: &Tensor) -> OpResult {
    let (a, bt) = promote(a, bt)?;
    let same_batch =
        a.rank() == bt.rank() && a.dims()[..a.rank().saturating_sub(2)] == bt.dims()[..bt.rank().saturating_sub(2)];
    Ok(if same_batch { a.matmul(&bt)? } else { a.broadcast_matmul(&bt)? })
}

fn resolve_shape(args: &[i64], numel: usize) -> OpResult<Vec<usize>> {
    let holes = args.iter().filter(|&&d| d == -1).count();
    if holes > 1 {
        return invalid("reshape: at most one dim may be -1");
    }
    let known: usize = args.iter().filter(|&&d| d != -1).map(|&d| d.max(0) as usize).product();
    args.iter()
        .map(|&d| match d {
            -1 if known > 0 && numel % known == 0 => Ok(numel / known),
            -1 => invalid(format!("reshape: cannot infer -1 for {numel} elements")),
            d => usize_arg(d, "reshape dim"),
        })
        .collect()
}

pub fn layout(op: u32, x: &Tensor, args: &[i64]) -> OpResult {
    let rank = x.rank();
    Ok(match op {
        l::RESHAPE => {
            let shape = resolve_shape(args, x.elem_count())?;
            x.reshape(Shape::from(shape))?
        }
        l::TRANSPOSE => {
            nargs(args, 2, "transpose")?;
            x.transpose(dim(args[0], rank, false)?, dim(args[1], rank, false)?)?
        }
        l::PERMUTE => {
            let p = args.iter().map(|&d| dim(d, rank, false)).collect::<OpResult<Vec<_>>>()?;
            x.permute(p)?
        }
        l::NARROW => {
            nargs(args, 3, "narrow")?;
            x.narrow(dim(args[0], rank, false)?, usize_arg(args[1], "start")?, usize_arg(args[2], "len")?)?
        }
        l::SQUEEZE => {
            nargs(args, 1, "squeeze")?;
            x.squeeze(dim(args[0], rank, false)?)?
        }
        l::UNSQUEEZE => {
            nargs(args, 1, "unsqueeze")?;
            x.unsqueeze(dim(args[0], rank, true)?)?
        }
        l::BROADCAST_AS => {
            let shape = args.iter().map(|&d| usize_arg(d, "shape dim")).collect::<OpResult<Vec<_>>>()?;
            x.broadcast_as(Shape::from(shape))?
        }
        l::CONTIGUOUS => x.contiguous()?,
        l::FLATTEN => {
            nargs(args, 2, "flatten")?;
            if rank == 0 {
                return Ok(x.reshape(1)?);
            }
            x.flatten(dim(args[0], rank, false)?, dim(args[1], rank, false)?)?
        }
        other => return unsupported("layout", other),
    })
}

pub fn combine(op: u32, xs: &[&Tensor], d: i64) -> OpResult {
    let first = xs.first().ok_or_else(|| OpError::Invalid("cat/stack of no tensors".into()))?;
    Ok(match op {
        c::CAT => Tensor::cat(xs, dim(d, first.rank(), false)?)?,
        c::STACK => Tensor::stack(xs, dim(d, first.rank(), true)?)?,
        other => return unsupported("combine", other),
    })
}

fn as_mask(m: &Tensor) -> OpResult {
    Ok(match m.dtype() {
        DType::U8 | DType::U32 | DType::I64 => m.clone(),
        _ => m.ne(0.0)?,
    })
}

fn broadcast_shape(shapes: &[&[usize]]) -> OpResult<Vec<usize>> {
    let rank = shapes.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut out = vec![1usize; rank];
    for s in shapes {
        for (i, &d) in s.iter().enumerate() {
            let o = &mut out[rank - s.len() + i];
            if *o == 1 {
                *o = d;
            } else if d != 1 && d != *o {
                return invalid(format!("shapes {shapes:?} do not broadcast"));
            }
        }
    }
    Ok(out)
}

pub fn index(op: u32, xs: &[&Tensor], args: &[i64]) -> OpResult {
    let need = |n: usize| -> OpResult<()> {
        if xs.len() != n {
            return invalid(format!("index op {op} takes {n} tensors, got {}", xs.len()));
        }
        Ok(())
    };
    Ok(match op {
        ix::INDEX_SELECT | ix::GATHER => {
            need(2)?;
            nargs(args, 1, "index_select/gather")?;
            let d = dim(args[0], xs[0].rank(), false)?;
            let idx = xs[1].contiguous()?;
            if op == ix::INDEX_SELECT {
                xs[0].index_select(&idx, d)?
            } else {
                xs[0].contiguous()?.gather(&idx, d)?
            }
        }
        ix::SCATTER_ADD => {
            need(3)?;
            nargs(args, 1, "scatter_add")?;
            let d = dim(args[0], xs[0].rank(), false)?;
            xs[0].contiguous()?.scatter_add(&xs[1].contiguous()?, &xs[2].contiguous()?, d)?
        }
        ix::WHERE_COND => {
            need(3)?;
            let (t, f) = promote(xs[1], xs[2])?;
            let shape = broadcast_shape(&[xs[0].dims(), t.dims(), f.dims()])?;
            // Broadcast only what needs it: a no-op broadcast still costs a node in backward.
            let fit = |x: Tensor| -> OpResult {
                Ok(if x.dims() == shape.as_slice() { x } else { x.broadcast_as(shape.clone())? })
            };
            fit(as_mask(xs[0])?)?.where_cond(&fit(t)?, &fit(f)?)?
        }
        ix::ONE_HOT => {
            need(1)?;
            nargs(args, 1, "one_hot")?;
            let classes = usize_arg(args[0], "classes")?;
            let idx = xs[0].to_dtype(DType::I64)?;
            let range = Tensor::arange(0i64, classes as i64, idx.device())?;
            idx.unsqueeze(idx.rank())?.broadcast_eq(&range)?.to_dtype(DType::F32)?
        }
        other => return unsupported("index", other),
    })
}

pub fn nn_op(op: u32, xs: &[&Tensor], args: &[i64]) -> OpResult {
    Ok(match op {
        nn::CONV2D | nn::CONV2D_BIAS => {
            let bias = op == nn::CONV2D_BIAS;
            if xs.len() != 2 + usize::from(bias) {
                return invalid(if bias {
                    "conv2d_bias takes [input, kernel, bias]"
                } else {
                    "conv2d takes [input, kernel]"
                });
            }
            nargs(args, 4, "conv2d")?;
            let a: Vec<usize> = args.iter().map(|&v| usize_arg(v, "conv2d argument")).collect::<OpResult<_>>()?;
            super::conv::conv2d(xs[0], xs[1], xs.get(2).copied(), a[0], a[1].max(1), a[2].max(1), a[3].max(1))?
        }
        nn::MAX_POOL2D | nn::AVG_POOL2D => {
            if xs.len() != 1 {
                return invalid("pooling takes one tensor");
            }
            nargs(args, 4, "pool2d")?;
            let a: Vec<usize> = args.iter().map(|&v| usize_arg(v, "pool argument")).collect::<OpResult<_>>()?;
            if op == nn::MAX_POOL2D {
                super::pool::max_pool2d(xs[0], (a[0], a[1]), (a[2], a[3]))?
            } else {
                xs[0].avg_pool2d_with_stride((a[0], a[1]), (a[2], a[3]))?
            }
        }
        nn::LINEAR => {
            if !(2..=3).contains(&xs.len()) {
                return invalid("linear takes [input, weight] or [input, weight, bias]");
            }
            super::fused::linear(xs[0], xs[1], xs.get(2).copied())?
        }
        nn::KL_DIV_ROWS => {
            if xs.len() != 2 {
                return invalid("kl_div_rows takes [p logits, q logits]");
            }
            nargs(args, 1, "kl_div_rows")?;
            super::softmax_loss::kl_rows(xs[0], xs[1], f64::from_bits(args[0] as u64))?
        }
        nn::CROSS_ENTROPY_ROWS => {
            if xs.len() != 2 {
                return invalid("cross_entropy_rows takes [logits, labels]");
            }
            super::softmax_loss::ce_rows(xs[0], xs[1])?
        }
        nn::AFFINE_GRID => {
            if xs.len() != 1 || xs[0].dims().len() != 3 || xs[0].dims()[1..] != [2, 3] {
                return invalid("affine_grid takes [theta (N, 2, 3)]");
            }
            nargs(args, 2, "affine_grid")?;
            let (h, w) = (usize_arg(args[0], "affine_grid H")?, usize_arg(args[1], "affine_grid W")?);
            super::warp::affine_grid(xs[0], h, w)?
        }
        nn::GRID_SAMPLE => {
            if xs.len() != 2 || xs[0].rank() != 4 || xs[1].rank() != 4 {
                return invalid("grid_sample takes [x (N, C, H, W), grid (N, Ho, Wo, 2)]");
            }
            super::warp::grid_sample(xs[0], xs[1])?
        }
        nn::CONV_TRANSPOSE2D => {
            if xs.len() != 2 || xs[0].rank() != 4 || xs[1].rank() != 4 {
                return invalid("conv_transpose2d takes [x (N, C, H, W), w (C, O, kh, kw)]");
            }
            nargs(args, 4, "conv_transpose2d")?;
            let a: Vec<usize> =
                args.iter().map(|&v| usize_arg(v, "conv_transpose2d argument")).collect::<OpResult<_>>()?;
            xs[0].conv_transpose2d(xs[1], a[0], a[1], a[2].max(1), a[3].max(1))?
        }
        nn::LAYER_NORM => {
            if xs.len() != 3 {
                return invalid("layer_norm takes [input, weight, bias]");
            }
            nargs(args, 1, "layer_norm")?;
            let eps = f64::from_bits(args[0] as u64);
            match super::norm::layer_norm(xs[0], xs[1], xs[2], eps)? {
                Some(y) => y,
                None => {
                    let d = xs[0].rank().saturating_sub(1);
                    let xc = xs[0].broadcast_sub(&xs[0].mean_keepdim(d)?)?;
                    let var = xc.sqr()?.mean_keepdim(d)?;
                    xc.broadcast_div(&(var + eps)?.sqrt()?)?.broadcast_mul(xs[1])?.broadcast_add(xs[2])?
                }
            }
        }
        other => return unsupported("nn", other),
    })
}

/// A tensor from little-endian element bytes.
pub fn from_bytes(bytes: &[u8], dtype: u32, shape: &[usize], device: &Device) -> OpResult {
    let n: usize = shape.iter().product();
    let size = match dtype {
        dt::F32 | dt::U32 => 4,
        dt::F64 | dt::I64 => 8,
        dt::U8 => 1,
        other => return Err(OpError::Unsupported(format!("from_bytes: unsupported dtype code {other}"))),
    };
    if bytes.len() != n * size {
        return invalid(format!("from_bytes: {} bytes for shape {shape:?} of {size}-byte elements", bytes.len()));
    }
    let shape = Shape::from(shape.to_vec());
    macro_rules! build {
        ($t:ty, $w:expr) => {{
            let v: Vec<$t> =
                bytes.chunks_exact($w).map(|c| <$t>::from_le_bytes(c.try_into().unwrap_or([0; $w]))).collect();
            Tensor::from_vec(v, shape, device)?
        }};
    }
    Ok(match dtype {
        dt::F32 => build!(f32, 4),
        dt::U32 => build!(u32, 4),
        dt::F64 => build!(f64, 8),
        dt::I64 => build!(i64, 8),
        _ => Tensor::from_vec(bytes.to_vec(), shape, device)?,
    })
}

/// Every element `value`, of `dtype`.
pub fn full(shape: &[usize], value: f64, dtype: u32, device: &Device) -> OpResult {
    let d = dtype_of(dtype)?;
    let shape = Shape::from(shape.to_vec());
    Ok(match d {
        DType::F64 => Tensor::full(value, shape, device)?,
        DType::I64 => Tensor::full(value as i64, shape, device)?,
        DType::U32 => Tensor::full(value as u32, shape, device)?,
        DType::U8 => Tensor::full(value as u8, shape, device)?,
        _ => Tensor::full(value as f32, shape, device)?.to_dtype(d)?,
    })
}

/// `start, start + step, …` below `end`.
pub fn arange(start: f64, end: f64, step: f64, dtype: u32, device: &Device) -> OpResult {
    if step == 0.0 || !step.is_finite() {
        return invalid("arange: step must be finite and non-zero");
    }
    let d = dtype_of(dtype)?;
    Ok(match d {
        DType::I64 | DType::U32 | DType::U8 => {
            Tensor::arange_step(start as i64, end as i64, step as i64, device)?.to_dtype(d)?
        }
        DType::F64 => Tensor::arange_step(start, end, step, device)?,
        _ => Tensor::arange_step(start as f32, end as f32, step as f32, device)?.to_dtype(d)?,
    })
}

/// The value of a one-element tensor.
pub fn to_scalar(x: &Tensor) -> OpResult<f64> {
    if x.elem_count() != 1 {
        return invalid(format!("to_scalar needs one element, got shape {:?}", x.dims()));
    }
    Ok(x.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?[0])
}
