use retort_plugin_api::{codes::error as code, HostApiRef};

use crate::{Error, Result, Tensor};

/// The inputs of one plugin call: named tensors and named numbers.
///
/// What the trainer passes:
///
/// | call | tensors | numbers |
/// |---|---|---|
/// | model `forward` | `input`: normalised images `[B, 1, 28, 28]` or `[B, 784]` | `train` (1 training, 0 evaluation) |
/// | loss `loss` | `student`: logits `[B, C]` whose graph reaches the student; `teacher`: logits, detached (stages with a teacher); `labels`: `[B]` u32 | `step` (in the stage, from 0), `epoch` (from 1), `total_steps`, `train` |
///
/// Losses also read, when a caller provides them: `mask` (`[B, L]` for sequence logits
/// `[B, L, V]`; losses then average over valid tokens), `targets` (soft targets from an augmenter),
/// `alpha`, `temperatures`, `privacy_scores`, `student_features` / `teacher_features`. A model's
/// taps are read through [`crate::Ctx::feature`] (`student` and `teacher` name the stage's slots).
/// Teachers, routers and augmenters get `teachers` (`[T, B, C]`), `labels`, `input` and `train`.
pub struct Batch<'a> {
    raw: retort_plugin_api::Batch<'a>,
    api: HostApiRef,
}

impl<'a> Batch<'a> {
    /// Wraps the raw batch of a call.
    pub fn new(raw: retort_plugin_api::Batch<'a>, api: HostApiRef) -> Self {
        Batch { raw, api }
    }

    /// The tensor named `name`, if present.
    pub fn get(&self, name: &str) -> Option<Tensor> {
        self.raw
            .tensors
            .iter()
            .find(|t| t.name.as_str() == name)
            // SAFETY: batch handles are live for the duration of the call; we take our own +1.
            .map(|t| unsafe { Tensor::from_raw_borrowed(t.tensor, self.api) })
    }

    /// The tensor named `name`, or an error naming the missing input.
    pub fn tensor(&self, name: &str) -> Result<Tensor> {
        self.get(name).ok_or_else(|| Error::new(code::MISSING_INPUT, format!("missing batch input `{name}`")))
    }

    /// The number named `name`, if present.
    pub fn scalar(&self, name: &str) -> Option<f64> {
        self.raw.scalars.iter().find(|s| s.name.as_str() == name).map(|s| s.value)
    }

    /// Whether the host is training (dropout on, batch statistics used).
    pub fn is_training(&self) -> bool {
        self.scalar("train").is_some_and(|v| v != 0.0)
    }

    /// The global optimizer step (0 when absent).
    pub fn step(&self) -> u64 {
        self.scalar("step").unwrap_or(0.0).max(0.0) as u64
    }

    /// The current epoch, counted from 1 (0 when absent).
    pub fn epoch(&self) -> u64 {
        self.scalar("epoch").unwrap_or(0.0).max(0.0) as u64
    }

    /// The names of every tensor in the batch.
    pub fn names(&self) -> Vec<&str> {
        self.raw.tensors.iter().map(|t| t.name.as_str()).collect()
    }
}
