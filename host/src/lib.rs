//! The Retort host: the candle backend behind the plugin ABI, the plugin loader and registry, and
//! safe wrappers around loaded plugin instances.
//!
//! Plugins see tensors only as handles into [`backend`]; the host keeps data, device and autograd.
#![allow(non_local_definitions)]

pub mod alloc;
pub mod backend;
pub mod config;
pub mod data;
pub mod device;
pub mod error;
pub mod generate;
pub mod hot;
pub mod instance;
pub mod loader;
pub mod rewrite;
pub mod train;

pub use backend::{live_handles, Host, PluginCtx};
pub use error::{HostError, Result};
pub use instance::{AugmenterInstance, Inputs, LossInstance, ModelInstance, RouterInstance, TeacherInstance};
pub use loader::{Library, PluginMeta, Registry};
