//! Layers on host-owned parameters: each asks its [`Ctx`](crate::Ctx) for named parameters, so the
//! host's optimizer, checkpoints and device handling apply to them.
mod conv;
mod dropout;
mod embedding;
mod linear;
mod norm;

pub use conv::Conv2d;
pub use dropout::Dropout;
pub use embedding::Embedding;
pub use linear::Linear;
pub use norm::{BatchNorm, LayerNorm};

/// The parameter name `prefix.name`, or `name` when the prefix is empty.
pub(crate) fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}
