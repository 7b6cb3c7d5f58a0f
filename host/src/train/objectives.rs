//! A stage's objectives: one per trained slot (and per `optimize` slot), each the weighted sum of
//! the terms placed `on` that slot, with its own optimizer over the slot's parameters and those of
//! its terms. A stage that trains one model has one objective, as before; peers
//! (`train = ["a", "b"]`) and MaskNets have one each; a `joint` stage has one over all its peers.
use candle_core::backprop::GradStore;

use super::optim::{Optimizer, ParamState};
use crate::config::{LossSection, OptimizerSection, StageSection};

/// One objective: a trained slot's, or (`joint`) every trained slot's.
pub struct Objective {
    /// The slot it trains, or the first of a joint objective's (named in messages).
    pub slot: String,
    /// Every slot whose terms this objective sums.
    pub members: Vec<String>,
    /// Parameter groups this objective's optimizer owns: the slot and its terms' plugin roles.
    pub groups: Vec<String>,
    pub opt: Optimizer,
    /// Updated on every `every`-th step of the stage only (HARD's alternation).
    pub every: u64,
}

/// Every objective of a stage, in the order of `train`.
pub struct Objectives {
    pub list: Vec<Objective>,
}

impl Objectives {
    /// The objectives of `st`, each with an empty optimizer of `kind`; `role` names a term's
    /// plugin slot (its parameter group).
    pub fn new(st: &StageSection, kind: &OptimizerSection, role: impl Fn(&LossSection) -> String) -> Self {
        let train: Vec<String> = st.train.all().into_iter().map(String::from).collect();
        let mut sets: Vec<Vec<String>> =
            if st.joint { vec![train] } else { train.into_iter().map(|s| vec![s]).collect() };
        sets.extend(st.optimize.iter().map(|s| vec![s.clone()]));
        let list = sets
            .into_iter()
            .map(|members| {
                let own = st.optimizers.get(&members[0]).unwrap_or(kind);
                let mut o = Objective {
                    slot: members[0].clone(),
                    members,
                    groups: Vec::new(),
                    opt: Optimizer::new(own.clone(), Vec::new()),
                    every: 1,
                };
                o.groups = o.groups_of(st, st.losses.iter().map(|l| (l, role(l))));
                o.every = st.update_every.get(&o.slot).copied().unwrap_or(1).max(1) as u64;
                o
            })
            .collect();
        Objectives { list }
    }

    /// The index of the objective that sums the terms on `slot`.
    pub fn position(&self, slot: &str) -> Option<usize> {
        self.list.iter().position(|o| o.members.iter().any(|m| m == slot))
    }

    /// The objective `slot` belongs to, if any.
    pub fn of(&self, slot: &str) -> Option<&Objective> {
        self.position(slot).map(|k| &self.list[k])
    }

    /// Every optimizer's moments by parameter name, for a checkpoint.
    pub fn state(&self) -> candle_core::Result<Vec<(String, ParamState)>> {
        let mut out = Vec::new();
        for o in &self.list {
            out.extend(o.opt.state()?);
        }
        Ok(out)
    }

    /// Restores moments saved by [`Objectives::state`] after `steps` steps of the stage: each
    /// optimizer takes the entries of its own parameter groups and its own step count.
    pub fn load_state(&mut self, saved: &[(String, ParamState)], steps: u64) {
        for o in &mut self.list {
            let own: Vec<(String, ParamState)> = saved.iter().filter(|(name, _)| o.owns(name)).cloned().collect();
            o.opt.load_state(&own, steps.div_ceil(o.every));
        }
    }

    /// Optimizer steps taken by the first objective (the student's: every step).
    pub fn steps(&self) -> u64 {
        self.list.first().map_or(0, |o| o.opt.steps)
    }

    /// The configured base learning rate (one optimizer config per stage).
    pub fn base_lr(&self) -> f64 {
        self.list.first().map_or(0.0, |o| o.opt.base_lr())
    }

    /// One step of every objective's optimizer with its own gradients (same order as the list):
    /// at `lr` (the stage's scheduled rate) when its base rate is the stage's, else at its own
    /// base rate times the schedule's `factor`.
    pub fn step(&mut self, grads: &[Option<GradStore>], lr: f64, factor: f64) -> candle_core::Result<()> {
        let base = self.base_lr();
        for (o, g) in self.list.iter_mut().zip(grads) {
            let own = if o.opt.base_lr() == base { lr } else { o.opt.base_lr() * factor };
            if let Some(g) = g {
                o.opt.step(g, own)?;
            }
        }
        Ok(())
    }
}

impl Objective {
    /// Whether this objective is updated on step `step` (0-based) of its stage.
    pub fn active(&self, step: usize) -> bool {
        step as u64 % self.every == 0
    }

    /// The parameter groups this objective trains: its slots, the plugins of its terms (given
    /// with their roles) and, for the objective of the stage's first trained slot, the router
    /// (MST-Distill's GateNet learns with the student).
    pub fn groups_of<'a>(
        &self,
        st: &StageSection,
        terms: impl Iterator<Item = (&'a LossSection, String)>,
    ) -> Vec<String> {
        let terms = terms.filter(|(l, _)| self.members.iter().any(|m| m == l.slot(&st.train))).map(|(_, role)| role);
        let mut g: Vec<String> = self.members.iter().cloned().chain(terms).collect();
        if self.members.iter().any(|m| m == st.train.primary()) {
            g.extend(st.router.iter().cloned());
        }
        g
    }

    /// Whether parameter `name` (`group.param`) belongs to this objective's groups.
    pub fn owns(&self, name: &str) -> bool {
        self.groups.iter().any(|g| name.strip_prefix(g.as_str()).is_some_and(|rest| rest.starts_with('.')))
    }
}
