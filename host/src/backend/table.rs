//! The `HostApi` function table: every entry converts handles, runs the op and guards panics.
use std::{
    panic::{catch_unwind, AssertUnwindSafe},
    sync::OnceLock,
};

use candle_core::{DType, Tensor};
use retort_plugin_api::{
    abi_stable::{
        prefix_type::PrefixTypeTrait,
        std_types::{ROption, RResult, RSlice, RStr, RVec},
    },
    codes::{error as code, level},
    ApiError, ApiResult, HostApi, HostApiRef, InitSpec, RawCtx, RawTensor,
};

use super::{
    ctx::{sample, PluginCtx},
    handle::{into_raw, release, retain, tensor_of},
    ops::{self, OpError},
};

fn op_err(e: OpError) -> ApiError {
    match e {
        OpError::Unsupported(m) => ApiError::new(code::UNSUPPORTED, m),
        OpError::Invalid(m) => ApiError::new(code::INVALID, m),
    }
}

fn payload_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".into())
}

/// Runs a table entry; a panic becomes an error instead of unwinding into plugin code.
fn guard<T>(f: impl FnOnce() -> Result<T, ApiError>) -> ApiResult<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => RResult::ROk(v),
        Ok(Err(e)) => RResult::RErr(e),
        Err(p) => RResult::RErr(ApiError::new(code::PANIC, format!("host panicked: {}", payload_text(&*p)))),
    }
}

/// A tensor-returning entry: runs `f` and hands out an owned handle.
fn op(f: impl FnOnce() -> ops::OpResult) -> ApiResult<RawTensor> {
    guard(|| f().map(into_raw).map_err(op_err))
}

fn t<'a>(raw: RawTensor) -> &'a Tensor {
    // SAFETY: the ABI contract: argument handles are live for the duration of the call.
    unsafe { tensor_of(raw) }
}

fn cx<'a>(raw: RawCtx) -> &'a PluginCtx {
    // SAFETY: the ABI contract: a ctx handle is valid while its plugin instance lives.
    unsafe { PluginCtx::from_raw(raw) }
}

fn shape_of(s: RSlice<'_, u64>) -> Vec<usize> {
    s.iter().map(|&d| d as usize).collect()
}

extern "C" fn h_retain(x: RawTensor) -> RawTensor {
    // SAFETY: see `t`.
    unsafe { retain(x) }
}

extern "C" fn h_release(x: RawTensor) {
    // SAFETY: the caller owns the reference it gives back. Dropping a candle tensor does not panic,
    // but guard anyway: nothing may unwind across the boundary.
    let _ = catch_unwind(AssertUnwindSafe(|| unsafe { release(x) }));
}

extern "C" fn h_from_bytes(
    ctx: RawCtx,
    bytes: RSlice<'_, u8>,
    dtype: u32,
    shape: RSlice<'_, u64>,
) -> ApiResult<RawTensor> {
    op(|| ops::from_bytes(bytes.as_slice(), dtype, &shape_of(shape), &cx(ctx).device))
}

extern "C" fn h_full(ctx: RawCtx, shape: RSlice<'_, u64>, value: f64, dtype: u32) -> ApiResult<RawTensor> {
    op(|| ops::full(&shape_of(shape), value, dtype, &cx(ctx).device))
}

extern "C" fn h_arange(ctx: RawCtx, start: f64, end: f64, step: f64, dtype: u32) -> ApiResult<RawTensor> {
    op(|| ops::arange(start, end, step, dtype, &cx(ctx).device))
}

extern "C" fn h_rand(
    ctx: RawCtx,
    dist: u32,
    a: f64,
    b: f64,
    shape: RSlice<'_, u64>,
    dtype: u32,
) -> ApiResult<RawTensor> {
    op(|| {
        let c = cx(ctx);
        let d = ops::dtype_of(dtype)?;
        let x = c.with_rng(|rng| sample(rng, dist, a, b, &shape_of(shape), &c.device)).map_err(OpError::Invalid)?;
        Ok(x.to_dtype(d)?)
    })
}

extern "C" fn h_shape(x: RawTensor) -> RVec<u64> {
    catch_unwind(AssertUnwindSafe(|| t(x).dims().iter().map(|&d| d as u64).collect())).unwrap_or_default()
}

extern "C" fn h_dtype(x: RawTensor) -> u32 {
    ops::code_of(t(x).dtype())
}

extern "C" fn h_device(x: RawTensor) -> u32 {
    use retort_plugin_api::codes::device;
    match t(x).device() {
        candle_core::Device::Cpu => device::CPU,
        candle_core::Device::Cuda(_) => device::CUDA,
        candle_core::Device::Metal(_) => device::METAL,
    }
}

extern "C" fn h_to_dtype(x: RawTensor, dtype: u32) -> ApiResult<RawTensor> {
    op(|| Ok(t(x).to_dtype(ops::dtype_of(dtype)?)?))
}

extern "C" fn h_unary(code: u32, x: RawTensor) -> ApiResult<RawTensor> {
    op(|| ops::unary(code, t(x)))
}

extern "C" fn h_binary(code: u32, a: RawTensor, b: RawTensor) -> ApiResult<RawTensor> {
    op(|| ops::binary(code, t(a), t(b)))
}

extern "C" fn h_scalar(code: u32, x: RawTensor, a: f64, b: f64) -> ApiResult<RawTensor> {
    op(|| ops::scalar(code, t(x), a, b))
}

extern "C" fn h_reduce(code: u32, x: RawTensor, dims: RSlice<'_, i64>, keepdim: bool) -> ApiResult<RawTensor> {
    op(|| ops::reduce(code, t(x), dims.as_slice(), keepdim))
}

extern "C" fn h_softmax(code: u32, x: RawTensor, dim: i64) -> ApiResult<RawTensor> {
    op(|| ops::softmax(code, t(x), dim))
}

extern "C" fn h_matmul(a: RawTensor, b: RawTensor) -> ApiResult<RawTensor> {
    op(|| ops::matmul(t(a), t(b)))
}

extern "C" fn h_layout(code: u32, x: RawTensor, args: RSlice<'_, i64>) -> ApiResult<RawTensor> {
    op(|| ops::layout(code, t(x), args.as_slice()))
}

fn tensors(xs: RSlice<'_, RawTensor>) -> Vec<&Tensor> {
    xs.iter().map(|&r| t(r)).collect()
}

extern "C" fn h_combine(code: u32, xs: RSlice<'_, RawTensor>, dim: i64) -> ApiResult<RawTensor> {
    op(|| ops::combine(code, &tensors(xs), dim))
}

extern "C" fn h_index(code: u32, xs: RSlice<'_, RawTensor>, args: RSlice<'_, i64>) -> ApiResult<RawTensor> {
    op(|| ops::index(code, &tensors(xs), args.as_slice()))
}

extern "C" fn h_nn(code: u32, xs: RSlice<'_, RawTensor>, args: RSlice<'_, i64>) -> ApiResult<RawTensor> {
    op(|| ops::nn_op(code, &tensors(xs), args.as_slice()))
}

extern "C" fn h_dropout(ctx: RawCtx, x: RawTensor, p: f64, train: bool) -> ApiResult<RawTensor> {
    op(|| {
        let x = t(x);
        if !train || p <= 0.0 {
            return Ok(x.clone());
        }
        if !(0.0..1.0).contains(&p) {
            return Err(OpError::Invalid(format!("dropout probability must be in [0, 1), got {p}")));
        }
        let c = cx(ctx);
        #[cfg(feature = "cuda")]
        if x.device().is_cuda() {
            // Drawn on the device from a seed of the plugin's stream: no mask crosses the bus.
            let seed = c.with_rng(rand::Rng::random::<u64>);
            let mask = super::cuda::dropout_mask(x, p, seed)?.to_dtype(x.dtype())?;
            return Ok(x.mul(&mask)?);
        }
        let keep = c
            .with_rng(|rng| sample(rng, retort_plugin_api::codes::dist::BERNOULLI, 1.0 - p, 0.0, x.dims(), &c.device))
            .map_err(OpError::Invalid)?;
        let mask = keep.affine(1.0 / (1.0 - p), 0.0)?.to_dtype(x.dtype())?;
        Ok(x.mul(&mask)?)
    })
}

extern "C" fn h_detach(x: RawTensor) -> ApiResult<RawTensor> {
    op(|| Ok(t(x).detach()))
}

extern "C" fn h_to_vec_f32(x: RawTensor) -> ApiResult<RVec<f32>> {
    guard(|| {
        let v = t(x).flatten_all().and_then(|f| f.to_dtype(DType::F32)).and_then(|f| f.to_vec1::<f32>());
        v.map(RVec::from).map_err(|e| op_err(e.into()))
    })
}

extern "C" fn h_to_vec_i64(x: RawTensor) -> ApiResult<RVec<i64>> {
    guard(|| {
        let v = t(x).flatten_all().and_then(|f| f.to_dtype(DType::I64)).and_then(|f| f.to_vec1::<i64>());
        v.map(RVec::from).map_err(|e| op_err(e.into()))
    })
}

extern "C" fn h_to_scalar(x: RawTensor) -> ApiResult<f64> {
    guard(|| ops::to_scalar(t(x)).map_err(op_err))
}

extern "C" fn h_var(
    ctx: RawCtx,
    name: RStr<'_>,
    shape: RSlice<'_, u64>,
    init: InitSpec,
    trainable: bool,
) -> ApiResult<RawTensor> {
    guard(|| {
        let c = cx(ctx);
        let shape = shape_of(shape);
        c.param(name.as_str(), &shape, init, trainable).map(into_raw).map_err(|m| ApiError::new(code::INVALID, m))
    })
}

extern "C" fn h_assign(ctx: RawCtx, target: RawTensor, value: RawTensor) -> ApiResult<()> {
    guard(|| {
        let c = cx(ctx);
        let var = c
            .params
            .find(&c.role, t(target))
            .ok_or_else(|| ApiError::new(code::INVALID, "assign: the target is not a parameter of this plugin"))?;
        let v = t(value).detach().to_dtype(var.dtype()).map_err(|e| op_err(e.into()))?;
        var.set(&v).map_err(|e| op_err(e.into()))
    })
}

extern "C" fn h_tap(ctx: RawCtx, name: RStr<'_>, x: RawTensor) -> ApiResult<RawTensor> {
    op(|| {
        let c = cx(ctx);
        c.taps.apply(&c.role, name.as_str(), t(x)).map_err(OpError::Invalid)
    })
}

extern "C" fn h_metric(ctx: RawCtx, name: RStr<'_>, value: f64) {
    let _ = catch_unwind(AssertUnwindSafe(|| cx(ctx).push_metric(name.as_str(), value)));
}

extern "C" fn h_log(ctx: RawCtx, lvl: u32, message: RStr<'_>) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        let c = cx(ctx);
        let (p, m) = (c.plugin.as_str(), message.as_str());
        match lvl {
            level::ERROR => tracing::error!(plugin = p, "{m}"),
            level::WARN => tracing::warn!(plugin = p, "{m}"),
            level::INFO => tracing::info!(plugin = p, "{m}"),
            level::DEBUG => tracing::debug!(plugin = p, "{m}"),
            _ => tracing::trace!(plugin = p, "{m}"),
        }
    }));
}

extern "C" fn h_feature(ctx: RawCtx, role: RStr<'_>, name: RStr<'_>) -> ApiResult<ROption<RawTensor>> {
    guard(|| Ok(cx(ctx).taps.get(role.as_str(), name.as_str()).map(into_raw).into()))
}

/// The host table handed to every plugin (built once, lives for the process).
pub fn host_api() -> HostApiRef {
    static TABLE: OnceLock<HostApiRef> = OnceLock::new();
    *TABLE.get_or_init(|| {
        HostApi {
            retain: h_retain,
            release: h_release,
            from_bytes: h_from_bytes,
            full: h_full,
            arange: h_arange,
            rand: h_rand,
            shape: h_shape,
            dtype: h_dtype,
            device: h_device,
            to_dtype: h_to_dtype,
            unary: h_unary,
            binary: h_binary,
            scalar: h_scalar,
            reduce: h_reduce,
            softmax: h_softmax,
            matmul: h_matmul,
            layout: h_layout,
            combine: h_combine,
            index: h_index,
            nn: h_nn,
            dropout: h_dropout,
            detach: h_detach,
            to_vec_f32: h_to_vec_f32,
            to_vec_i64: h_to_vec_i64,
            to_scalar: h_to_scalar,
            var: h_var,
            assign: h_assign,
            tap: h_tap,
            metric: h_metric,
            log: h_log,
            feature: h_feature,
        }
        .leak_into_prefix()
    })
}
