//! Retort's stable plugin ABI.
//!
//! Everything that crosses the boundary between the `retort` host and a method plugin is defined
//! here, with `abi_stable` types only: tensor handles ([`RawTensor`]), the host function table
//! ([`HostApi`]), the five plugin interfaces and the root module every plugin library exports
//! ([`PluginModule`]). This crate never depends on candle: plugins see tensors as opaque handles.
//!
//! Compatibility rule: minor versions only append (new table fields after the prefix, new trait
//! methods after `last_prefix_field`, new op codes). Anything else is a major version.
//!
//! History: 1.0 the tables and interfaces; 1.1 the fused host ops `nn::LINEAR`, `nn::CONV2D_BIAS`,
//! `nn::KL_DIV_ROWS`, `nn::CROSS_ENTROPY_ROWS` (new op codes; a 1.0 host answers UNSUPPORTED and the
//! SDK falls back to the unfused composition); 1.2 `Loss::loss_rows`, per-sample losses (a 1.1
//! plugin answers UNSUPPORTED through the method's default, and the host uses `loss`).
#![allow(non_local_definitions)]

pub mod codes;
mod error;
mod host;
mod module;
mod plugin;
mod tensor;

pub use error::ApiError;
pub use host::{HostApi, HostApiRef, InitSpec, PluginHost};
pub use module::{PluginModule, PluginModuleRef};
pub use plugin::{
    Augmenter, AugmenterBox, Augmenter_TO, Loss, LossBox, Loss_TO, Model, ModelBox, Model_TO, ParamSpec,
    PluginDescription, Router, RouterBox, Router_TO, Teacher, TeacherBox, Teacher_TO,
};
pub use tensor::{Batch, NamedScalar, NamedTensor, OpaqueCtx, OpaqueTensor, OwnedTensor, RawCtx, RawTensor};

/// Re-exported so that the SDK and the host use the very same `abi_stable` items.
pub use abi_stable;

/// The version of this ABI crate; plugins and hosts must share the major number.
pub const ABI_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Shorthand for the result type every boundary function returns.
pub type ApiResult<T> = abi_stable::std_types::RResult<T, ApiError>;
