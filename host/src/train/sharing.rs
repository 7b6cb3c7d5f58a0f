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

/// The first `freeze` entry or `init_from` name that is not a parameter of its model, as
/// (key path, message); `names(slot)` lists a built model's parameters (empty: not known yet, as
/// for a model that makes its parameters at the first forward).
pub fn sharing_error(cfg: &RunConfig, names: impl Fn(&str) -> Vec<String>) -> Option<(String, String)> {
    let sorted = |slot: &str| {
        let mut v = names(slot);
        v.sort();
        v
    };
    let missing = |key: String, what: &str, slot: &str, have: &[String]| {
        Some((key, format!("`{what}` names no parameter of `{slot}` (it has: {})", have.join(", "))))
    };
    for (slot, m) in &cfg.models {
        let have = sorted(slot);
        if have.is_empty() {
            continue;
        }
        if let Some((k, f)) = m.freeze.iter().enumerate().find(|(_, f)| !have.iter().any(|n| matches(f, n))) {
            return missing(format!("models.{slot}.freeze[{k}]"), f, slot, &have);
        }
        let Some(init) = &m.init_from else { continue };
        let source = sorted(&init.slot);
        for (k, (dst, src)) in init.pairs().enumerate() {
            if !have.iter().any(|n| n == dst) {
                return missing(format!("models.{slot}.init_from.params[{k}]"), dst, slot, &have);
            }
            if !source.is_empty() && !source.iter().any(|n| n == src) {
                return missing(format!("models.{slot}.init_from.params[{k}]"), src, &init.slot, &source);
            }
        }
    }
    None
}

impl Trainer {
    /// Before any training: each `freeze` entry and each `init_from` name must be a parameter of
    /// its model (a fresh run already checked this in preflight, before its directory existed).
    pub(super) fn check_sharing(&self) -> Result<()> {
        let names = |slot: &str| self.host.params.params(Some(slot)).into_iter().map(|p| p.name).collect();
        match sharing_error(&self.cfg, names) {
            Some((key, message)) => Err(TrainError::Other(format!("{key}: {message}"))),
            None => Ok(()),
        }
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
