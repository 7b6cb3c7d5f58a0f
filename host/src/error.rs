use std::path::PathBuf;

/// Errors of the host: loading, checking and calling plugins.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("cannot load plugin library {path}: {reason}")]
    Load { path: PathBuf, reason: String },
    #[error("plugin library {path} is incompatible: {summary}")]
    Incompatible { path: PathBuf, summary: String },
    #[error("{kind} plugin `{plugin}`: {message}")]
    Plugin { plugin: String, kind: &'static str, code: u32, message: String },
    #[error("{kind} plugin `{plugin}`: returned a non-finite loss ({value})")]
    NonFinite { plugin: String, kind: &'static str, value: f64 },
    #[error("no {kind} plugin named `{name}` (known: {known})")]
    NotFound { kind: &'static str, name: String, known: String },
    #[error("{0}")]
    Tensor(#[from] candle_core::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A request the host cannot serve with this model or input (generation from a model that is
    /// not a language model, ragged prompts).
    #[error("{0}")]
    Invalid(String),
}

/// Result with [`HostError`].
pub type Result<T, E = HostError> = std::result::Result<T, E>;
