//! Bad steps: a plugin that errors, panics or returns NaN never ends a run silently. The
//! `[faults]` policy decides: roll a live-swapped version back, skip the batch, or stop with a
//! checkpoint; every decision is an event in `events.jsonl`.
use candle_core::backprop::GradStore;

use super::{live::Losses, objectives::Objectives, run::Trainer, TrainError};
use crate::{config::FaultPolicy, HostError};

/// The result of one step's forwards, losses and backward.
pub struct StepOut {
    pub loss_v: f64,
    /// Each term's (unweighted) value, left on the device until a log line reads it.
    pub terms: Vec<(String, candle_core::Tensor)>,
    /// One gradient store per objective, in the stage's `train` order (`None`: the objective
    /// sits this step out, see `update_every`).
    pub grads: Vec<Option<GradStore>>,
}

/// A step that failed in a plugin (or produced non-finite values).
#[derive(Debug)]
pub struct Fault {
    /// The slot it came from (`student`, `loss.student.hinton-kd`), or `gradients` / `loss` (the
    /// weighted sum).
    pub slot: String,
    /// NaN/∞ rather than an error or panic.
    pub nonfinite: bool,
    pub message: String,
}

/// Why a step did not finish.
#[derive(Debug)]
pub enum StepError {
    /// A plugin's fault: the policy decides.
    Fault(Fault),
    /// The host's own failure: the run ends with the error.
    Host(TrainError),
}

impl StepError {
    /// A failure of the plugin in `slot`; errors that do not come from a plugin stay host errors.
    pub fn plugin(slot: &str, e: HostError) -> Self {
        match &e {
            HostError::Plugin { .. } | HostError::NonFinite { .. } => StepError::Fault(Fault {
                slot: slot.to_string(),
                nonfinite: matches!(e, HostError::NonFinite { .. }),
                message: e.to_string(),
            }),
            _ => StepError::Host(e.into()),
        }
    }

    /// The global gradient norm came out NaN or infinite.
    /// The weighted sum of finite terms overflowed.
    pub fn nonfinite_sum(sum: f64) -> Self {
        StepError::Fault(Fault {
            slot: "loss".into(),
            nonfinite: true,
            message: format!("the weighted loss sum is {sum}"),
        })
    }

    pub fn nonfinite_gradients(norm: f64) -> Self {
        StepError::Fault(Fault {
            slot: "gradients".into(),
            nonfinite: true,
            message: format!("the global gradient norm is {norm}"),
        })
    }
}

impl<E: Into<TrainError>> From<E> for StepError {
    fn from(e: E) -> Self {
        StepError::Host(e.into())
    }
}

/// What the step loop does after a fault was handled.
pub enum Handled {
    /// Run the same batch again (a version was rolled back).
    Retry,
    /// Drop this batch.
    Skip,
}

impl Trainer {
    /// Applies the `[faults]` policy to `f` in stage `stage`. `Err` when the run stops (after a
    /// checkpoint of the state before the failed step).
    pub(super) fn on_fault(
        &mut self,
        f: Fault,
        stage: usize,
        losses: &mut Losses,
        opt: &Objectives,
    ) -> Result<Handled, TrainError> {
        let faults = self.cfg.faults.clone();
        let policy = if f.nonfinite { faults.on_nonfinite } else { faults.on_plugin_error };
        tracing::info!(slot = %f.slot, ?policy, "step failed: {}", f.message);
        match policy {
            FaultPolicy::Rollback if self.roll_back(&f.slot, stage, losses, &f.message) => return Ok(Handled::Retry),
            FaultPolicy::SkipStep if faults.max_skipped_steps == 0 || self.skipped < faults.max_skipped_steps => {
                self.skipped += 1;
                self.event("step_skipped", &f.slot, None, None, Some(f.message));
                return Ok(Handled::Skip);
            }
            _ => {}
        }
        let why = match policy {
            FaultPolicy::Rollback => "no earlier version to roll back to",
            FaultPolicy::SkipStep => "too many skipped steps (faults.max_skipped_steps)",
            FaultPolicy::Stop => "faults policy `stop`",
        };
        let reason = format!("{} ({why})", f.message);
        self.event("stopped", &f.slot, None, None, Some(reason.clone()));
        self.console.abandon();
        // The failing build is not pinned: a resume loads the library on disk (the fixed one).
        self.state.libraries.remove(&f.slot);
        self.checkpoint(losses, opt)?;
        Err(TrainError::Stopped { step: self.state.global_step, reason, run_dir: self.run_dir.clone() })
    }
}
