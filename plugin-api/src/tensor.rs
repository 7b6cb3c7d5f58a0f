use std::ptr::NonNull;

use abi_stable::{
    std_types::{RSlice, RStr, RString},
    StableAbi,
};

/// The opaque host object a [`RawTensor`] points to. Plugins never look inside.
#[repr(C)]
#[derive(StableAbi)]
pub struct OpaqueTensor {
    _private: [u8; 0],
}

/// A handle to a tensor that lives in the host (data, device and autograd graph stay there).
///
/// Handles passed as arguments are borrowed; handles returned by a function are owned (+1) and
/// must be released exactly once (the SDK's `Tensor` does this on drop).
#[repr(transparent)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawTensor(pub NonNull<OpaqueTensor>);

// SAFETY: the host object behind a handle is an `Arc` of an immutable, thread-safe tensor.
unsafe impl Send for RawTensor {}
unsafe impl Sync for RawTensor {}

/// The opaque host object a [`RawCtx`] points to.
#[repr(C)]
#[derive(StableAbi)]
pub struct OpaqueCtx {
    _private: [u8; 0],
}

/// A plugin instance's context in the host: its parameter group, RNG stream, taps, metrics and
/// log target. Valid for as long as the plugin instance lives.
#[repr(transparent)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawCtx(pub NonNull<OpaqueCtx>);

// SAFETY: the host's context object synchronises its own interior state.
unsafe impl Send for RawCtx {}
unsafe impl Sync for RawCtx {}

/// A borrowed tensor with a role name (`"student"`, `"teacher"`, `"labels"`, `"mask"`, …).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct NamedTensor<'a> {
    pub name: RStr<'a>,
    pub tensor: RawTensor,
}

/// A named number passed with a batch (`"step"`, `"epoch"`, `"total_steps"`, `"train"`, …).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct NamedScalar<'a> {
    pub name: RStr<'a>,
    pub value: f64,
}

/// Everything a plugin call sees of the current step. Roles are open: a plugin asks for the names
/// it needs and ignores the rest, so new inputs never change the layout.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct Batch<'a> {
    pub tensors: RSlice<'a, NamedTensor<'a>>,
    pub scalars: RSlice<'a, NamedScalar<'a>>,
}

/// An owned tensor with a name, as returned by augmenters.
#[repr(C)]
#[derive(StableAbi, Debug)]
pub struct OwnedTensor {
    pub name: RString,
    pub tensor: RawTensor,
}
