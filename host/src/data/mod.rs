//! Training data: IDX image files and byte-level text corpora, in-memory datasets, seeded batching
//! on a thread or gathered on the device.
mod batches;
mod corrupt;
mod dataset;
mod device;
mod idx;
pub mod text;
mod transfer;

pub use batches::{token_batch, Batch, BatchPlan, Batches};
pub use dataset::{Dataset, DatasetSpec, Split};
pub use device::DeviceSet;
pub use idx::{parse_idx, read_file, read_idx, IdxArray};
pub use transfer::{build as build_transfer, Composition};

/// Errors reading data.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {reason}")]
    Format { path: String, reason: String },
    /// The I/O error is part of the message (not a separate cause, which printers would repeat).
    #[error("{path}: {error}")]
    Io { path: String, error: std::io::Error },
    #[error("{0}")]
    Invalid(String),
}
