//! The candle backend: host objects behind tensor and context handles, and the function table.
pub mod conv;
mod ctx;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod fused;
pub mod gelu;
mod grad_sink;
mod handle;
mod kernel;
pub mod norm;
mod ops;
pub mod pool;
mod scratch;
pub mod softmax_loss;
mod table;
pub mod warp;

pub use ctx::{Host, Installed, ParamStore, PluginCtx, TapRewrite, TapStore};
pub use grad_sink::backward;
pub use handle::{into_raw, live_handles, release as handle_release, take_owned, tensor_of};
pub use table::host_api;
