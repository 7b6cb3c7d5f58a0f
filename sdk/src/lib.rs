//! The Retort plugin SDK: everything a method plugin depends on.
//!
//! A plugin crate implements one of the author traits ([`LossPlugin`], [`ModelPlugin`],
//! [`TeacherPlugin`], [`RouterPlugin`], [`AugmenterPlugin`]) and lists its types in
//! [`export_plugins!`]. Tensors are [`Tensor`] handles to host tensors: ops run in the host, on its
//! device, inside its autograd graph. Parameters are the host's, requested through [`Ctx::var`] or
//! the [`nn`] layers.
//!
//! Where to look:
//! - [`params`] and [`Params`]: a plugin's parameters (defaults, docs, checks) from one struct;
//!   [`Plugin`]: name, summary, construction, `state`/`load_state` for checkpoints and hot swaps.
//! - [`Batch`]: what each call receives, by name (`student`, `teacher`, `labels`, `input`, `mask`, …).
//! - [`Tensor`]: the ops (element-wise, reductions, softmax, matmul, layout, indexing, conv, the
//!   fused KD rows `kl_div_rows` / `cross_entropy_rows`), with candle's names and `+ − × ÷`.
//! - [`Ctx`]: creating tensors, parameters and buffers, the seeded RNG stream, taps and features of
//!   other models, metrics and logs.
//! - [`functional`]: KD building blocks (tempered log-probs, row reductions with masks, targets).
//! - [`nn`]: layers whose weights live in the host (Linear, Conv2d, BatchNorm, LayerNorm, …).
//!
//! `retort new KIND NAME` scaffolds a crate with all of this wired up.
#![allow(non_local_definitions)]

mod adapter;
mod batch;
pub mod ctx;
mod dims;
mod error;
mod export;
pub mod functional;
mod guard;
pub mod nn;
mod ops;
mod overload;
mod plugin;
pub mod random;
mod tensor;

pub use batch::Batch;
pub use ctx::Ctx;
pub use dims::{Dim, Dims};
pub use error::{Error, Result};
pub use guard::guard;
pub use plugin::{AugmenterPlugin, LossPlugin, ModelPlugin, Params, Plugin, RouterPlugin, TeacherPlugin};
pub use retort_plugin_api as api;
pub use retort_plugin_api::codes;
pub use retort_sdk_derive::params;
pub use tensor::{DType, Element, Tensor};

/// Items the `export_plugins!` macro expands to; not part of the authoring API.
#[doc(hidden)]
pub mod __export {
    pub use crate::adapter::*;
    pub use retort_plugin_api::abi_stable;
    pub use serde;
}

#[cfg(test)]
mod tests {
    #[test]
    fn export_symbol_matches_abi_stable() {
        assert_eq!(
            retort_plugin_api::abi_stable::library::ROOT_MODULE_LOADER_NAME,
            "_1as_0lib_1header_0root_bmodule_bloader"
        );
    }
}
