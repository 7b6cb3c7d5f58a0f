//! A stage's objectives: one per trained slot, each the weighted sum of the terms placed `on` that
//! slot, with its own optimizer over the slot's parameters and those of its terms. A stage that
//! trains one model has one objective, as before; peers (`train = ["a", "b"]`) have one each.
use candle_core::backprop::GradStore;

use super::optim::{Optimizer, ParamState};
use crate::config::{LossSection, OptimizerSection, StageSection};

/// One trained slot's objective.
pub struct Objective {
    /// The trained slot (its logits are `student` for the objective's terms).
    pub slot: String,
    /// Parameter groups this objective's optimizer owns: the slot and its terms' plugin roles.
    pub groups: Vec<String>,
    pub opt: Optimizer,
}

/// Every objective of a stage, in the order of `train`.
pub struct Objectives {
    pub list: Vec<Objective>,
}

impl Objectives {
    /// The objectives of `st`, each with an empty optimizer of `kind`; `role` names a term's
    /// plugin slot (its parameter group).
    pub fn new(st: &StageSection, kind: &OptimizerSection, role: impl Fn(&LossSection) -> String) -> Self {
        let list = st
            .train
            .all()
            .into_iter()
            .map(|slot| {
                let terms = st.losses.iter().filter(|l| l.slot(&st.train) == slot).map(&role);
                Objective {
                    slot: slot.to_string(),
                    groups: std::iter::once(slot.to_string()).chain(terms).collect(),
                    opt: Optimizer::new(kind.clone(), Vec::new()),
                }
            })
            .collect();
        Objectives { list }
    }

    /// The objective `slot` trains, if any.
    pub fn of(&self, slot: &str) -> Option<&Objective> {
        self.list.iter().find(|o| o.slot == slot)
    }

    /// Every optimizer's moments by parameter name, for a checkpoint.
    pub fn state(&self) -> candle_core::Result<Vec<(String, ParamState)>> {
        let mut out = Vec::new();
        for o in &self.list {
            out.extend(o.opt.state()?);
        }
        Ok(out)
    }

    /// Restores moments saved by [`Objectives::state`]: each optimizer takes the entries of its
    /// own parameter groups.
    pub fn load_state(&mut self, saved: &[(String, ParamState)], steps: u64) {
        for o in &mut self.list {
            let own: Vec<(String, ParamState)> = saved.iter().filter(|(name, _)| o.owns(name)).cloned().collect();
            o.opt.load_state(&own, steps);
        }
    }

    /// Optimizer steps taken (all objectives step together).
    pub fn steps(&self) -> u64 {
        self.list.first().map_or(0, |o| o.opt.steps)
    }

    /// The configured base learning rate (one optimizer config per stage).
    pub fn base_lr(&self) -> f64 {
        self.list.first().map_or(0.0, |o| o.opt.base_lr())
    }

    /// One step of every objective's optimizer with its own gradients (same order as the list).
    pub fn step(&mut self, grads: &[GradStore], lr: f64) -> candle_core::Result<()> {
        for (o, g) in self.list.iter_mut().zip(grads) {
            o.opt.step(g, lr)?;
        }
        Ok(())
    }
}

impl Objective {
    /// Whether parameter `name` (`group.param`) belongs to this objective's groups.
    pub fn owns(&self, name: &str) -> bool {
        self.groups.iter().any(|g| name.strip_prefix(g.as_str()).is_some_and(|rest| rest.starts_with('.')))
    }
}
