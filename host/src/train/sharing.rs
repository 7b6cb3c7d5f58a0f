//! Parameters one model takes from another (`init_from`) and parameters no optimizer updates
//! (`freeze`): together, KD³'s classifier sharing — the student's head is the teacher's, frozen.
use std::collections::HashMap;

use crate::config::{RunConfig, StageSection};

use super::{run::Trainer, TrainError};

type Result<T> = std::result::Result<T, TrainError>;

/// Whether `group.name` is named by its model's `freeze` list (an entry ending in `*` is a prefix).
pub fn is_frozen(cfg: &RunConfig, group: &str, name: &str) -> bool {
    cfg.models.get(group).is_some_and(|m| m.freeze.iter().any(|f| matches(f, name)))
}

fn matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

impl Trainer {
    /// Before any training: each `freeze` entry and each `init_from` name must be a parameter of
    /// its model (models that make their parameters at the first forward are checked then).
    pub(super) fn check_sharing(&self) -> Result<()> {
        let names = |slot: &str| -> Vec<String> {
            let mut v: Vec<String> = self.host.params.params(Some(slot)).into_iter().map(|p| p.name).collect();
            v.sort();
            v
        };
        let missing = |key: String, what: &str, slot: &str, have: &[String]| {
            TrainError::Other(format!("{key}: `{what}` names no parameter of `{slot}` (it has: {})", have.join(", ")))
        };
        for (slot, m) in &self.cfg.models {
            let have = names(slot);
            if have.is_empty() {
                continue;
            }
            if let Some((k, f)) = m.freeze.iter().enumerate().find(|(_, f)| !have.iter().any(|n| matches(f, n))) {
                return Err(missing(format!("models.{slot}.freeze[{k}]"), f, slot, &have));
            }
            let Some(init) = &m.init_from else { continue };
            let source = names(&init.slot);
            for (k, (dst, src)) in init.pairs().enumerate() {
                if !have.iter().any(|n| n == dst) {
                    return Err(missing(format!("models.{slot}.init_from.params[{k}]"), dst, slot, &have));
                }
                if !source.is_empty() && !source.iter().any(|n| n == src) {
                    return Err(missing(format!("models.{slot}.init_from.params[{k}]"), src, &init.slot, &source));
                }
            }
        }
        Ok(())
    }

    /// Copies `init_from` parameters into each slot this stage trains for the first time.
    pub(super) fn share_parameters(&mut self, st: &StageSection) -> Result<()> {
        let slots: Vec<String> =
            st.train.all().into_iter().chain(st.optimize.iter().map(String::as_str)).map(String::from).collect();
        for slot in slots {
            let Some(m) = self.cfg.models.get(&slot).cloned() else { continue };
            if let Some(init) = m.init_from.as_ref().filter(|_| !self.ready.contains(&slot)) {
                let mut weights = HashMap::new();
                for (k, (dst, src)) in init.pairs().enumerate() {
                    let t = self.host.params.value(&init.slot, src).ok_or_else(|| {
                        let mut have: Vec<String> =
                            self.host.params.params(Some(&init.slot)).into_iter().map(|p| p.name).collect();
                        have.sort();
                        TrainError::Other(format!(
                            "models.{slot}.init_from.params[{k}]: slot `{}` has no parameter `{src}` (it has: {})",
                            init.slot,
                            have.join(", ")
                        ))
                    })?;
                    // A copy: the two slots must not share storage.
                    weights.insert(dst.to_string(), t.copy()?);
                }
                self.host
                    .params
                    .load(&slot, weights)
                    .map_err(|e| TrainError::Other(format!("models.{slot}.init_from: {e}")))?;
                tracing::info!(slot, from = init.slot, n = init.params.len(), "parameters copied");
            }
        }
        Ok(())
    }
}
