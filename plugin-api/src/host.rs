#[cfg(not(feature = "short-table"))]
use abi_stable::std_types::ROption;
use abi_stable::{
    std_types::{RSlice, RStr, RVec},
    StableAbi,
};

use crate::{ApiResult, RawCtx, RawTensor};

/// How the host initialises a parameter: a distribution code from [`crate::codes::dist`] and its
/// two arguments.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq)]
pub struct InitSpec {
    pub dist: u32,
    pub a: f64,
    pub b: f64,
}

/// The host function table every plugin calls through.
///
/// An abi_stable prefix type: fields up to `log` are the 1.0 prefix every host has; fields after
/// it were appended later and read as `Option` (a plugin on an older host sees `None` and reports
/// the missing function instead of crashing). Append only.
///
/// Every function returns [`ApiResult`] (or cannot fail) and is guarded against panics by the host.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = HostApiRef)))]
#[sabi(missing_field(option))]
pub struct HostApi {
    // ---- handles ----
    /// +1 on a handle; returns the same handle.
    pub retain: extern "C" fn(x: RawTensor) -> RawTensor,
    /// −1 on a handle; the tensor is freed when no handle and no graph refers to it.
    pub release: extern "C" fn(x: RawTensor),

    // ---- creation ----
    /// A tensor from little-endian element bytes of `dtype` and a shape (on the ctx's device).
    pub from_bytes:
        extern "C" fn(ctx: RawCtx, bytes: RSlice<'_, u8>, dtype: u32, shape: RSlice<'_, u64>) -> ApiResult<RawTensor>,
    /// Every element `value`.
    pub full: extern "C" fn(ctx: RawCtx, shape: RSlice<'_, u64>, value: f64, dtype: u32) -> ApiResult<RawTensor>,
    /// `start, start + step, …` below `end`.
    pub arange: extern "C" fn(ctx: RawCtx, start: f64, end: f64, step: f64, dtype: u32) -> ApiResult<RawTensor>,
    /// Random values from the ctx's seeded host RNG stream ([`crate::codes::dist`]).
    pub rand: extern "C" fn(
        ctx: RawCtx,
        dist: u32,
        a: f64,
        b: f64,
        shape: RSlice<'_, u64>,
        dtype: u32,
    ) -> ApiResult<RawTensor>,

    // ---- queries and casts ----
    pub shape: extern "C" fn(x: RawTensor) -> RVec<u64>,
    pub dtype: extern "C" fn(x: RawTensor) -> u32,
    pub device: extern "C" fn(x: RawTensor) -> u32,
    pub to_dtype: extern "C" fn(x: RawTensor, dtype: u32) -> ApiResult<RawTensor>,

    // ---- op families (open codes, see `codes`) ----
    pub unary: extern "C" fn(op: u32, x: RawTensor) -> ApiResult<RawTensor>,
    pub binary: extern "C" fn(op: u32, a: RawTensor, b: RawTensor) -> ApiResult<RawTensor>,
    pub scalar: extern "C" fn(op: u32, x: RawTensor, a: f64, b: f64) -> ApiResult<RawTensor>,
    /// Dims may be negative (counted from the end).
    pub reduce: extern "C" fn(op: u32, x: RawTensor, dims: RSlice<'_, i64>, keepdim: bool) -> ApiResult<RawTensor>,
    pub softmax: extern "C" fn(op: u32, x: RawTensor, dim: i64) -> ApiResult<RawTensor>,
    /// Batched matrix product with broadcasting over leading dims.
    pub matmul: extern "C" fn(a: RawTensor, b: RawTensor) -> ApiResult<RawTensor>,
    pub layout: extern "C" fn(op: u32, x: RawTensor, args: RSlice<'_, i64>) -> ApiResult<RawTensor>,
    pub combine: extern "C" fn(op: u32, xs: RSlice<'_, RawTensor>, dim: i64) -> ApiResult<RawTensor>,
    pub index: extern "C" fn(op: u32, xs: RSlice<'_, RawTensor>, args: RSlice<'_, i64>) -> ApiResult<RawTensor>,
    pub nn: extern "C" fn(op: u32, xs: RSlice<'_, RawTensor>, args: RSlice<'_, i64>) -> ApiResult<RawTensor>,
    /// Inverted dropout with the ctx's RNG stream; identity when `train` is false.
    pub dropout: extern "C" fn(ctx: RawCtx, x: RawTensor, p: f64, train: bool) -> ApiResult<RawTensor>,
    /// The same values, cut from the autograd graph.
    pub detach: extern "C" fn(x: RawTensor) -> ApiResult<RawTensor>,

    // ---- reading small results ----
    pub to_vec_f32: extern "C" fn(x: RawTensor) -> ApiResult<RVec<f32>>,
    pub to_vec_i64: extern "C" fn(x: RawTensor) -> ApiResult<RVec<i64>>,
    /// The value of a one-element tensor.
    pub to_scalar: extern "C" fn(x: RawTensor) -> ApiResult<f64>,

    // ---- parameters, taps, metrics, logs ----
    /// The ctx's named parameter, created with `init` on first request; the host owns it
    /// (optimizer, checkpoints, freezing, device). `trainable = false` makes a buffer.
    pub var: extern "C" fn(
        ctx: RawCtx,
        name: RStr<'_>,
        shape: RSlice<'_, u64>,
        init: InitSpec,
        trainable: bool,
    ) -> ApiResult<RawTensor>,
    /// Overwrites a parameter or buffer of the ctx in place (running statistics, EMA teachers).
    pub assign: extern "C" fn(ctx: RawCtx, target: RawTensor, value: RawTensor) -> ApiResult<()>,
    /// Records a named intermediate feature and returns it, or a rewritten tensor when another
    /// plugin hooks this point.
    pub tap: extern "C" fn(ctx: RawCtx, name: RStr<'_>, x: RawTensor) -> ApiResult<RawTensor>,
    pub metric: extern "C" fn(ctx: RawCtx, name: RStr<'_>, value: f64),
    #[sabi(last_prefix_field)]
    pub log: extern "C" fn(ctx: RawCtx, level: u32, message: RStr<'_>),

    // ---- appended after the 1.0 prefix ----
    /// A feature tapped in this step by the model in `role` (`"student"`, `"teacher"`), for
    /// feature-level losses; `None` when that model has no such tap.
    #[cfg(not(feature = "short-table"))]
    pub feature: extern "C" fn(ctx: RawCtx, role: RStr<'_>, name: RStr<'_>) -> ApiResult<ROption<RawTensor>>,
}

/// What a plugin constructor receives: the host table and the new instance's context.
#[repr(C)]
#[derive(StableAbi, Clone, Copy)]
pub struct PluginHost {
    pub api: HostApiRef,
    pub ctx: RawCtx,
}
