//! The trainer: stages of training with plugin models and losses, evaluation, checkpoints.
pub mod cache;
pub mod checkpoint;
pub mod console;
pub mod difference;
mod evaluation;
mod faults;
mod live;
pub mod log;
pub mod metrics;
pub mod mixing;
pub mod monitor;
pub mod objectives;
pub mod on_policy;
pub mod optim;
mod optim_tensor;
pub mod preflight;
pub mod report;
pub mod routing;
mod run;
pub mod schedule;
mod sharing;
mod teachers;
pub mod tensorboard;
pub mod text;
mod transfer;

pub use run::{resolve_data_dir, Outcome, TrainOptions, Trainer};

/// Errors of a training run.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    #[error(transparent)]
    Host(#[from] crate::HostError),
    #[error("{0}")]
    Tensor(#[from] candle_core::Error),
    /// The I/O error is part of the message (not a separate cause, which printers would repeat).
    #[error("{context}: {error}")]
    Io { context: String, error: std::io::Error },
    #[error("{0}")]
    Other(String),
    /// The fault policy stopped the run; a checkpoint of the state before the failed step exists.
    #[error("stopped at step {step}: {reason}\nA checkpoint was written; fix the cause, then continue with: retort train --resume {}", run_dir.display())]
    Stopped { step: u64, reason: String, run_dir: std::path::PathBuf },
}
