//! The teacher forwards of a step: model slots (no graph, or frozen with one), experts (a model
//! slot with MaskNets rewriting its taps) and teacher plugins; and each model's view of the input.
use std::collections::BTreeMap;

use candle_core::Tensor;

use super::{faults::Fault, faults::StepError, run::Trainer, TrainError};
use crate::{
    config::{RewriteSection, StageSection, ViewSection},
    data::Batch,
    rewrite::{with_rewrites, Rewriter},
    Inputs,
};

/// The stage's teachers' logits by name, and the model teachers stacked `[T, B, C]`.
pub(super) type TeacherOutputs = (Vec<(String, Tensor)>, Option<Tensor>);

/// The `[data.views]` crop `view` of `[B, 1, H, W]` images.
pub(super) fn crop(images: &Tensor, view: &str, views: &BTreeMap<String, ViewSection>) -> Result<Tensor, TrainError> {
    let spec = views.get(view).ok_or_else(|| TrainError::Other(format!("no view `{view}` in [data.views]")))?;
    let mut x = images.clone();
    for (axis, range) in [(2, spec.rows), (3, spec.cols)] {
        if let Some([a, b]) = range {
            let n = x.dim(axis)?;
            if b > n {
                let what = if axis == 2 { "rows" } else { "cols" };
                return Err(TrainError::Other(format!(
                    "data.views.{view}.{what}: [{a}, {b}) goes past the image's {n} {what}"
                )));
            }
            x = x.narrow(axis, a, b - a)?;
        }
    }
    Ok(x)
}

/// Where a stage's clean-pass taps wait while a variant's second pass records its own.
const CLEAN_TAPS: &str = "\u{0}clean";

impl Trainer {
    /// The stage's `variants`: each trained model once more, with its rewrites, in training mode and
    /// in the graph; its taps are filed under the variant's name, the clean pass's stay put.
    pub(super) fn run_variants(&mut self, st: &StageSection, images: &Tensor) -> Result<(), StepError> {
        for v in &st.variants {
            let input = self.model_input(&v.model, images)?;
            self.host.taps.rename(&v.model, CLEAN_TAPS);
            let r = self.forward_rewritten(st, &v.model, &v.masks, &input, true);
            self.host.taps.rename(&v.model, &v.name);
            self.host.taps.rename(CLEAN_TAPS, &v.model);
            r?;
        }
        Ok(())
    }

    /// What model `slot` reads as `input`: the batch images, or its `[data.views]` crop of them.
    pub(super) fn model_input(&self, slot: &str, images: &Tensor) -> Result<Tensor, TrainError> {
        match self.cfg.models.get(slot).and_then(|m| m.view.as_ref()) {
            Some(view) => crop(images, view, &self.cfg.data.views),
            None => Ok(images.clone()),
        }
    }

    /// The stage's teachers for this batch, by name: model slots in evaluation mode (detached
    /// unless listed in `frozen`), then every expert, stacked `[T, B, C]` in that order; then
    /// teacher plugins, which read those. The stage's `teacher` runs too when it is not listed.
    pub(super) fn run_teachers(&mut self, st: &StageSection, batch: &Batch) -> Result<TeacherOutputs, StepError> {
        let extra = st.teacher.iter().filter(|t| !st.teachers.contains(t));
        let order: Vec<String> = st.teachers.iter().chain(extra).cloned().collect();
        let x = &batch.images;
        let keep = |name: &str, z: Tensor| if st.frozen.iter().any(|f| f == name) { z } else { z.detach() };
        let mut out: Vec<(String, Tensor)> = Vec::new();
        for t in &order {
            if self.models.contains_key(t) {
                let input = self.model_input(t, x)?;
                let z = self.forward_rewritten(st, t, &[], &input, false)?;
                if !st.frozen.contains(t) {
                    self.host.taps.detach_role(t);
                }
                out.push((t.clone(), keep(t, z)));
            }
        }
        for e in &st.experts {
            let input = self.model_input(&e.model, x)?;
            for (name, masks) in e.experts() {
                let z = self.forward_rewritten(st, &e.model, &masks, &input, false)?;
                out.push((name.clone(), keep(&name, z)));
            }
        }
        let names = st.stacked_names(|t| self.models.contains_key(t));
        let listed: Vec<&Tensor> =
            names.iter().filter_map(|n| out.iter().find(|(o, _)| o == n).map(|(_, z)| z)).collect();
        let stacked = if listed.is_empty() { None } else { Some(Tensor::stack(&listed, 0)?) };
        for t in &order {
            if let Some(tp) = self.teacher_plugins.get_mut(t) {
                let mut inputs = Inputs::new()
                    .tensor("input", x)
                    .tensor("labels", &batch.labels)
                    .tensor("ids", &batch.ids)
                    .scalar("train", 0.0);
                if let Some(s) = &stacked {
                    inputs = inputs.tensor("teachers", s);
                }
                for (n, z) in &out {
                    inputs = inputs.tensor(&format!("teacher.{n}"), z);
                }
                let z = tp.logits(&inputs).map_err(|e| StepError::plugin(t, e))?.detach();
                out.push((t.clone(), z));
            }
        }
        Ok((out, stacked))
    }

    /// Model `slot` on `input` (in training mode when `train`), with `rewrites` installed at its
    /// taps: each rewriting slot runs where the model taps, in training mode when the stage
    /// optimizes it or the model trains. A rewrite that never ran (the model has no such tap) is
    /// an error naming the tap.
    pub(super) fn forward_rewritten(
        &mut self,
        st: &StageSection,
        slot: &str,
        rewrites: &[RewriteSection],
        input: &Tensor,
        train: bool,
    ) -> Result<Tensor, StepError> {
        let as_fault = |e: TrainError| match e {
            TrainError::Host(h) => StepError::plugin(slot, h),
            e => e.into(),
        };
        let mut rewriters = Vec::with_capacity(rewrites.len());
        for r in rewrites {
            let Some(model) = self.models.remove(&r.with) else {
                self.models.extend(rewriters.into_iter().map(|r: Rewriter| (r.with, r.model)));
                return Err(TrainError::Other(format!("no model `{}` to rewrite `{slot}.{}`", r.with, r.tap)).into());
            };
            let mode = train || st.optimize.contains(&r.with);
            rewriters.push(Rewriter { tap: r.tap.clone(), with: r.with.clone(), model, train: mode });
        }
        let Some(mut m) = self.models.remove(slot) else {
            self.models.extend(rewriters.into_iter().map(|r| (r.with, r.model)));
            return Err(TrainError::Other(format!("no model `{slot}`")).into());
        };
        let inputs = Inputs::new().tensor("input", input).scalar("train", if train { 1.0 } else { 0.0 });
        let out = with_rewrites(&self.host.taps, slot, rewriters, || m.forward(&inputs));
        self.models.insert(slot.to_string(), m);
        self.models.extend(out.models);
        if let Some((with, message)) = out.failed {
            return Err(StepError::Fault(Fault { slot: with, nonfinite: false, message }));
        }
        let z = out.result.map_err(|e| as_fault(e.into()))?;
        if !out.unused.is_empty() {
            let tapped = self.host.taps.names(slot);
            return Err(TrainError::Other(format!(
                "model `{slot}` never tapped {:?}, so nothing was rewritten there; its taps: {tapped:?}",
                out.unused
            ))
            .into());
        }
        Ok(z)
    }
}
