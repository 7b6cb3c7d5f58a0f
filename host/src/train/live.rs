//! Live changes to a running training (DESIGN.md §3): rebuilt plugin libraries and edited configs
//! are applied at the next step boundary; anything that fails leaves the old version running.
use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use retort_plugin_api::codes::kind;
use serde_json::json;

use super::{checkpoint::LibRef, preflight::preflight, run::absolutize, run::Trainer, TrainError};
use crate::{
    config::{load_file, LossSection, RunConfig},
    hot::{Change, DevBuilder, Event, Watcher},
    Library, LossInstance, ModelInstance,
};

/// What a `--watch` run holds: the watcher, the config it follows and the `--dev` builders.
pub struct Live {
    pub watcher: Watcher,
    /// Kept alive: each watches its crate and rebuilds on a thread.
    _dev: Vec<DevBuilder>,
}

impl Live {
    /// Watches `config_path` and rebuilds each of `dev_crates` on source changes.
    pub fn start(config_path: &Path, dev_crates: &[PathBuf]) -> Result<Live, TrainError> {
        let watcher = Watcher::new(Some(config_path)).map_err(|e| TrainError::Other(format!("--watch: {e}")))?;
        let mut dev = Vec::new();
        for d in dev_crates {
            let b = DevBuilder::start(d, watcher.sender())
                .map_err(|e| TrainError::Other(format!("--dev {}: {e}", d.display())))?;
            dev.push(b);
        }
        Ok(Live { watcher, _dev: dev })
    }
}

/// The loss terms of the running stage: their config sections and instances.
pub type Losses = Vec<(LossSection, LossInstance)>;

/// What a slot ran before its last live change, kept so that a failing new version can be rolled
/// back (with the state it had at the change).
pub enum Previous {
    Model {
        inst: ModelInstance,
        lib: LibRef,
    },
    Loss {
        sec: LossSection,
        inst: LossInstance,
        lib: Option<LibRef>,
    },
    /// The loss term did not exist before a live config edit added it.
    Added,
}

impl Previous {
    /// The library build it ran.
    fn lib(&self) -> Option<&LibRef> {
        match self {
            Previous::Model { lib, .. } => Some(lib),
            Previous::Loss { lib, .. } => lib.as_ref(),
            Previous::Added => None,
        }
    }
}

/// The archived copy of a library build inside the run directory.
pub fn archive_path(run_dir: &Path, r: &LibRef) -> PathBuf {
    let stem = r.path.file_stem().and_then(|s| s.to_str()).unwrap_or("plugin");
    let ext = r.path.extension().and_then(|s| s.to_str()).unwrap_or(std::env::consts::DLL_EXTENSION);
    run_dir.join("plugins").join(format!("{stem}-{}.{ext}", r.hash))
}

impl Trainer {
    /// Loads the library for `plugin` in `slot`: the build pinned by a checkpoint being resumed
    /// (from the run directory's archive when the file on disk has changed since), else the one
    /// on the search path. Records it, archives it and watches it.
    pub(super) fn load_plugin(&mut self, slot: &str, plugin: &str, kind_code: u32) -> Result<Arc<Library>, TrainError> {
        let entry = self.registry.find(plugin, kind_code)?.clone();
        let mut source = entry.path.clone();
        let mut load_from = entry.path.clone();
        if let Some(pin) = self.pinned.get(slot).filter(|p| p.plugin == plugin) {
            source = pin.path.clone();
            let current = Library::load(&pin.path).ok().map(|l| l.hash().to_string());
            if current.as_deref() != Some(pin.hash.as_str()) {
                let arch = archive_path(&self.run_dir, pin);
                if !arch.exists() {
                    return Err(TrainError::Other(format!(
                        "cannot resume slot `{slot}`: it ran {plugin} build {} from {}, which has changed, and the run \
                         directory has no copy ({})",
                        pin.hash,
                        pin.path.display(),
                        arch.display()
                    )));
                }
                load_from = arch;
            }
        }
        let lib = Library::load(&load_from)?;
        self.record_library(slot, plugin, &source, &lib)?;
        Ok(lib)
    }

    /// The builds a resume from a checkpoint of the current state (or a rollback after it) can need.
    fn needed_builds(&self) -> Vec<LibRef> {
        self.state.libraries.values().chain(self.previous.values().filter_map(Previous::lib)).cloned().collect()
    }

    /// Copies into `RUN_DIR/plugins` the builds a checkpoint of the current state pins, from the
    /// loader's private copy (the file on disk may have been rebuilt since). Before the checkpoint
    /// is written, so that no checkpoint names a build the run directory lacks.
    pub(super) fn archive_libraries(&mut self) {
        self.loaded.retain(|_, w| w.strong_count() > 0);
        let needed = self.needed_builds();
        let dir = self.run_dir.join("plugins");
        let _ = std::fs::create_dir_all(&dir);
        for r in &needed {
            let arch = archive_path(&self.run_dir, r);
            if let (false, Some(lib)) = (arch.exists(), self.loaded.get(&r.hash).and_then(std::sync::Weak::upgrade)) {
                if let Err(e) = std::fs::copy(lib.mapped_path(), &arch) {
                    tracing::warn!("cannot archive {} in {}: {e}", r.path.display(), dir.display());
                }
            }
        }
    }

    /// After a checkpoint: deletes archived builds it does not need (a run with many swaps would
    /// otherwise keep a copy of every build).
    pub(super) fn prune_archive(&self) {
        let keep: Vec<PathBuf> = self.needed_builds().iter().map(|r| archive_path(&self.run_dir, r)).collect();
        for e in std::fs::read_dir(self.run_dir.join("plugins")).into_iter().flatten().flatten() {
            if !keep.contains(&e.path()) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }

    fn record_library(
        &mut self,
        slot: &str,
        plugin: &str,
        source: &Path,
        lib: &Arc<Library>,
    ) -> Result<(), TrainError> {
        let r = LibRef { plugin: plugin.to_string(), path: source.to_path_buf(), hash: lib.hash().to_string() };
        self.loaded.insert(r.hash.clone(), Arc::downgrade(lib));
        if let Some(live) = &mut self.live {
            live.watcher
                .watch_library(source)
                .map_err(|e| TrainError::Other(format!("cannot watch {}: {e}", source.display())))?;
        }
        self.state.libraries.insert(slot.to_string(), r);
        Ok(())
    }

    /// Writes an event to `events.jsonl` and the log, and shows it in the progress line.
    pub(super) fn event(
        &mut self,
        event: &str,
        slot: &str,
        from: Option<String>,
        to: Option<String>,
        reason: Option<String>,
    ) {
        let time =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
        let e = Event { step: self.state.global_step, event: event.into(), slot: slot.into(), from, to, reason, time };
        if let Ok(v) = serde_json::to_value(&e) {
            if let Err(err) = self.events.write(&v) {
                tracing::warn!("cannot write events.jsonl: {err}");
            }
        }
        let short = format!("{} {}{}", e.event, e.slot, e.to.as_ref().map(|t| format!(" → {t}")).unwrap_or_default());
        let first = e.reason.as_deref().and_then(|r| r.lines().next()).unwrap_or("");
        let line =
            format!("[step {}] {short}{}", e.step, if first.is_empty() { String::new() } else { format!(": {first}") });
        // The terminal gets the one-line form below; the log keeps the whole reason.
        match &e.reason {
            Some(r) => tracing::info!(step = e.step, slot = %e.slot, "{}: {r}", e.event),
            None => tracing::info!(step = e.step, slot = %e.slot, "{}", e.event),
        }
        self.console.line(&line);
        let step = e.step;
        self.tensorboard(|tb| {
            tb.text("events", step, &line)?;
            tb.flush()
        });
        // The progress line shows the latest live change, not the run's own milestones.
        if !matches!(e.event.as_str(), "stage_started" | "resumed") {
            self.status = short;
        }
    }

    /// Applies pending live changes (at a step boundary).
    pub(super) fn poll_live(&mut self, stage: usize, losses: &mut Losses) -> Result<(), TrainError> {
        let Some(live) = &self.live else { return Ok(()) };
        for change in live.watcher.changes() {
            match change {
                Change::Library(p) => self.swap_library(&p, losses),
                Change::Config(p) => self.apply_config(&p, stage, losses),
                Change::BuildFailed { krate, message } => {
                    self.event("build_failed", &krate, None, None, Some(message));
                }
            }
        }
        Ok(())
    }

    fn slots_using(&self, path: &Path) -> Vec<String> {
        let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        self.state
            .libraries
            .iter()
            .filter(|(_, r)| std::path::absolute(&r.path).unwrap_or_else(|_| r.path.clone()) == abs)
            .map(|(s, _)| s.clone())
            .collect()
    }

    /// Swaps every slot running the library at `path` to its new build.
    fn swap_library(&mut self, path: &Path, losses: &mut Losses) {
        let slots = self.slots_using(path);
        if slots.is_empty() {
            return;
        }
        let lib = match Library::load(path) {
            Ok(l) => l,
            Err(e) => {
                for s in &slots {
                    let from = self.state.libraries.get(s).map(|r| r.hash.clone());
                    self.event("swap_rejected", s, from, None, Some(e.to_string()));
                }
                return;
            }
        };
        for slot in slots {
            let Some(old) = self.state.libraries.get(&slot).cloned() else { continue };
            if old.hash == lib.hash() {
                continue;
            }
            if self.rolled_back.iter().any(|h| h == lib.hash()) {
                tracing::info!(slot = %slot, "build {} was rolled back earlier; not swapping it in again", lib.hash());
                continue;
            }
            let r = if let Some(m) = self.models.get(&slot) {
                let params = self.cfg.models.get(&slot).map(|m| m.params.to_string()).unwrap_or_default();
                let plugin = old.plugin.clone();
                ModelInstance::new(&self.host, &lib, &plugin, &slot, &params)
                    .and_then(|mut new| {
                        let (seed, pos) = m.ctx().rng_state();
                        new.ctx().set_rng_state(seed, pos);
                        new.load_state(&m.state()?)?;
                        Ok(new)
                    })
                    .map(|new| {
                        if let Some(inst) = self.models.insert(slot.clone(), new) {
                            self.previous.insert(slot.clone(), Previous::Model { inst, lib: old.clone() });
                        }
                    })
            } else if let Some((sec, inst)) = losses.iter_mut().find(|(_, i)| i.ctx().role == slot) {
                LossInstance::new(&self.host, &lib, &sec.plugin, &slot, &sec.params.to_string())
                    .and_then(|mut new| {
                        let (seed, pos) = inst.ctx().rng_state();
                        new.ctx().set_rng_state(seed, pos);
                        new.load_state(&inst.state()?)?;
                        Ok(new)
                    })
                    .map(|new| {
                        let inst = std::mem::replace(inst, new);
                        let prev = Previous::Loss { sec: sec.clone(), inst, lib: Some(old.clone()) };
                        self.previous.insert(slot.clone(), prev);
                    })
            } else {
                continue;
            };
            match r {
                Ok(()) => {
                    if let Err(e) = self.record_library(&slot, &old.plugin, path, &lib) {
                        tracing::warn!("{e}");
                    }
                    self.event("swap", &slot, Some(old.hash.clone()), Some(lib.hash().to_string()), None);
                }
                Err(e) => self.event(
                    "swap_rejected",
                    &slot,
                    Some(old.hash),
                    Some(lib.hash().to_string()),
                    Some(e.to_string()),
                ),
            }
        }
    }

    /// Re-reads the config and applies what can change live: the loss terms of every stage
    /// (weights, schedules, parameters, terms added or removed, plugins switched). The new config
    /// passes the same checks as at the start of a run first.
    fn apply_config(&mut self, path: &Path, stage: usize, losses: &mut Losses) {
        let mut new = match load_file(path) {
            Ok(c) => c,
            Err(e) => return self.event("config_rejected", "config", None, None, Some(e.to_string())),
        };
        absolutize(&mut new);
        if let Err(e) = preflight(&new, &self.registry, &path.display().to_string()) {
            return self.event("config_rejected", "config", None, None, Some(e.to_string()));
        }
        let ignored = ignored_changes(&self.cfg, &new);
        if new.stages.len() != self.cfg.stages.len()
            || new.stages.iter().zip(&self.cfg.stages).any(|(a, b)| a.name != b.name || a.train != b.train)
        {
            let reason =
                "the stages (names, trained slots) changed; only loss terms apply to a running training".into();
            return self.event("config_rejected", "config", None, None, Some(reason));
        }
        // A term keeps its objective: its parameters belong to that slot's optimizer.
        let moved = new.stages[stage].losses.iter().find(|l| {
            let train = &new.stages[stage].train;
            self.cfg.stages[stage]
                .losses
                .iter()
                .any(|o| o.term_name() == l.term_name() && o.slot(train) != l.slot(train))
        });
        if let Some(l) = moved {
            let reason =
                format!("term `{}` moved to another trained slot (`on`); add it under a new name", l.term_name());
            return self.event("config_rejected", "config", None, None, Some(reason));
        }
        let stage_name = self.cfg.stages[stage].name.clone();
        // Build every new or changed term first; nothing running changes unless all are built.
        let libs_before = self.state.libraries.clone();
        let mut plans: Vec<(LossSection, Plan)> = Vec::new();
        let mut changes = Vec::new();
        for sec in &new.stages[stage].losses {
            let role = format!("loss.{stage_name}.{}", sec.term_name());
            let old = losses.iter().position(|(s, _)| s.term_name() == sec.term_name());
            if let Some(i) = old.filter(|&i| losses[i].0.plugin == sec.plugin && losses[i].0.params == sec.params) {
                let old_sec = &losses[i].0;
                if old_sec.weight != sec.weight || old_sec.weight_schedule != sec.weight_schedule {
                    changes.push(format!("{}: weight {} → {}", sec.term_name(), old_sec.weight, sec.weight));
                }
                plans.push((sec.clone(), Plan::Keep(i)));
                continue;
            }
            let built = self.load_plugin(&role, &sec.plugin, kind::LOSS).and_then(|lib| {
                let mut inst = LossInstance::new(&self.host, &lib, &sec.plugin, &role, &sec.params.to_string())?;
                if let Some(i) = old.filter(|&i| losses[i].0.plugin == sec.plugin) {
                    inst.load_state(&losses[i].1.state()?)?;
                }
                Ok(inst)
            });
            match built {
                Ok(inst) => {
                    changes.push(match old {
                        Some(i) if losses[i].0.plugin != sec.plugin => {
                            format!("{}: plugin {} → {}", sec.term_name(), losses[i].0.plugin, sec.plugin)
                        }
                        Some(_) => format!("{}: params {}", sec.term_name(), sec.params),
                        None => format!("{}: added", sec.term_name()),
                    });
                    plans.push((sec.clone(), Plan::Build(inst, old)));
                }
                Err(e) => {
                    self.state.libraries = libs_before;
                    return self.event("config_rejected", "config", None, None, Some(e.to_string()));
                }
            }
        }
        let mut old: Vec<Option<(LossSection, LossInstance)>> = std::mem::take(losses).into_iter().map(Some).collect();
        for (sec, plan) in plans {
            match plan {
                Plan::Keep(i) => {
                    if let Some((_, inst)) = old[i].take() {
                        losses.push((sec, inst));
                    }
                }
                Plan::Build(inst, was) => {
                    let role = inst.ctx().role.clone();
                    let prev = match was.and_then(|i| old[i].take()) {
                        Some((sec, inst)) => Previous::Loss { sec, inst, lib: libs_before.get(&role).cloned() },
                        None => Previous::Added,
                    };
                    self.previous.insert(role, prev);
                    losses.push((sec, inst));
                }
            }
        }
        for (sec, _) in old.into_iter().flatten() {
            changes.push(format!("{}: removed", sec.term_name()));
            let role = format!("loss.{stage_name}.{}", sec.term_name());
            self.state.libraries.remove(&role);
            self.previous.remove(&role);
        }
        for (i, st) in self.cfg.stages.iter_mut().enumerate() {
            st.losses = new.stages[i].losses.clone();
        }
        let from = self.state.config_rev;
        self.state.config_rev += 1;
        let mut reason = if changes.is_empty() { "no change to loss terms".to_string() } else { changes.join("; ") };
        if !ignored.is_empty() {
            reason.push_str(&format!("; not applied to a running training: {}", ignored.join(", ")));
        }
        self.event(
            "config_applied",
            "config",
            Some(format!("rev {from}")),
            Some(format!("rev {}", from + 1)),
            Some(reason),
        );
    }

    /// Puts back what `slot` ran before its last live change (library and state as they were then;
    /// for a term added live, removes it). False when there is nothing to go back to.
    pub(super) fn roll_back(&mut self, slot: &str, stage: usize, losses: &mut Losses, reason: &str) -> bool {
        let Some(prev) = self.previous.remove(slot) else { return false };
        let failed = self.state.libraries.get(slot).cloned();
        let restored = match prev {
            Previous::Model { inst, lib } => {
                self.models.insert(slot.to_string(), inst);
                Some(lib)
            }
            Previous::Loss { sec, inst, lib } => {
                let Some(pos) = losses.iter().position(|(_, i)| i.ctx().role == slot) else { return false };
                if losses[pos].0 != sec {
                    self.set_stage_term(stage, losses[pos].0.term_name().to_string(), Some(sec.clone()));
                }
                losses[pos] = (sec, inst);
                lib
            }
            Previous::Added => {
                let Some(pos) = losses.iter().position(|(_, i)| i.ctx().role == slot) else { return false };
                let (sec, _) = losses.remove(pos);
                self.set_stage_term(stage, sec.term_name().to_string(), None);
                None
            }
        };
        match &restored {
            Some(lib) => self.state.libraries.insert(slot.to_string(), lib.clone()),
            None => self.state.libraries.remove(slot),
        };
        let (from, to) = (failed.as_ref().map(|r| r.hash.clone()), restored.as_ref().map(|r| r.hash.clone()));
        if let Some(f) = from.as_ref().filter(|f| Some(*f) != to.as_ref()) {
            self.rolled_back.push(f.clone());
        }
        self.event("swap_rolled_back", slot, from, to.or(Some("removed".into())), Some(reason.to_string()));
        true
    }

    /// Replaces (or with `None` removes) loss term `term` of stage `stage` in the running config.
    fn set_stage_term(&mut self, stage: usize, term: String, sec: Option<LossSection>) {
        let Some(st) = self.cfg.stages.get_mut(stage) else { return };
        let pos = st.losses.iter().position(|l| l.term_name() == term);
        match (pos, sec) {
            (Some(i), Some(s)) => st.losses[i] = s,
            (Some(i), None) => {
                st.losses.remove(i);
            }
            (None, Some(s)) => st.losses.push(s),
            (None, None) => return,
        }
        self.state.config_rev += 1;
    }

    /// Provenance for each metrics record: config revision and every active library build.
    pub(super) fn provenance(&self) -> serde_json::Value {
        let libs: serde_json::Map<String, serde_json::Value> =
            self.state.libraries.iter().map(|(k, r)| (k.clone(), json!(r.hash))).collect();
        json!({ "config_rev": self.state.config_rev, "plugins": libs })
    }
}

/// What a live config edit does with one term of the running stage.
enum Plan {
    /// The running instance goes on (index into the running terms).
    Keep(usize),
    /// A newly built instance replaces the running one at this index, or is added.
    Build(LossInstance, Option<usize>),
}

/// The top-level sections that differ between two configs, other than the stages' losses.
fn ignored_changes(old: &RunConfig, new: &RunConfig) -> Vec<String> {
    let strip = |c: &RunConfig| {
        let mut v = serde_json::to_value(c).unwrap_or_default();
        if let Some(stages) = v.get_mut("stages").and_then(|s| s.as_array_mut()) {
            for s in stages {
                if let Some(o) = s.as_object_mut() {
                    o.remove("losses");
                }
            }
        }
        v
    };
    let (a, b) = (strip(old), strip(new));
    let keys = ["run", "data", "models", "optimizer", "schedule", "stages", "eval", "checkpoint", "logging"];
    keys.iter().filter(|k| a.get(**k) != b.get(**k)).map(|k| k.to_string()).collect()
}
