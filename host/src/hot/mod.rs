//! Hot reload: watching plugin libraries, the run's config and plugin crates under development,
//! and the events a run records when it swaps (or refuses to swap) something.
mod dev;
mod watcher;

pub use dev::DevBuilder;
pub use watcher::{Change, Watcher};

use serde::{Deserialize, Serialize};

/// One line of `events.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Event {
    /// The optimizer step of the run at which it happened (applied before this step).
    pub step: u64,
    /// `swap`, `swap_rejected`, `swap_rolled_back`, `config_applied`, `config_rejected`,
    /// `build_failed`, `step_skipped`, `stopped`, `resumed`, `stage_started`.
    pub event: String,
    /// The slot concerned (`student`, `loss.student.hinton-kd`, `config`, …).
    pub slot: String,
    pub from: Option<String>,
    pub to: Option<String>,
    pub reason: Option<String>,
    /// Wall-clock time (seconds since the Unix epoch) when it was applied or refused.
    #[serde(default)]
    pub time: f64,
}
