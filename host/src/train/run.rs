//! A training run: models and data from the config, stages in order, evaluation, checkpoints,
//! `metrics.jsonl`, and the final report.
use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    sync::Arc,
    time::Instant,
};

use candle_core::{DType, Device, Tensor};
use retort_plugin_api::codes::kind;
use serde_json::json;

use super::{
    checkpoint::{self, LibRef, LoopState},
    console::{Console, ProgressMode},
    faults::{Handled, StepError, StepOut},
    live::{Live, Losses, Previous},
    log::JsonLines,
    metrics::{EvalMetrics, MetricsAccumulator},
    mixing::Mixing,
    objectives::Objectives,
    preflight::preflight,
    report::{ModelReport, Report},
    schedule::{lr_at, weight_factor},
    sharing::is_frozen,
    tensorboard::TensorBoard,
    transfer::{transfer_sets, TransferSet},
    TrainError,
};
use crate::{
    config::{LossSection, PluginSection, RunConfig, StageSection, TeacherTarget, TensorName, TransferLabels},
    data::{Batch, BatchPlan, Batches, Dataset, DatasetSpec, DeviceSet, Split},
    instance::{AbiObject, Instance},
    loader::{search_dirs, Registry},
    AugmenterInstance, Host, Inputs, LossInstance, ModelInstance, RouterInstance, TeacherInstance,
};

/// How to run.
#[derive(Debug, Clone, Default)]
pub struct TrainOptions {
    /// Follow this config file and the plugin libraries in use, applying changes live.
    pub watch: Option<PathBuf>,
    /// Plugin crates to rebuild and swap in when their sources change (implies watching).
    pub dev: Vec<PathBuf>,
    /// Continue the run in this directory: from its checkpoint, or from the start when it has none.
    pub resume: Option<PathBuf>,
    /// Start over in an existing run directory of the same name (its models, checkpoint and logs go).
    pub overwrite: bool,
    /// Stop (leaving a resumable checkpoint) after this many optimizer steps of the run.
    pub stop_after: Option<u64>,
    /// How progress is shown on stderr.
    pub progress: ProgressMode,
    /// Names the config in error messages (its path, or "built-in default config").
    pub source: String,
}

/// How a run ended.
#[derive(Debug)]
pub enum Outcome {
    Finished(Report),
    /// Stopped by `stop_after` at this global step; resumable.
    Stopped(u64),
}

type Result<T> = std::result::Result<T, TrainError>;

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> TrainError {
    let context = context.into();
    move |error| TrainError::Io { context, error }
}

/// A run in progress.
pub struct Trainer {
    pub(super) cfg: RunConfig,
    pub(super) run_dir: PathBuf,
    pub(super) host: Host,
    pub(super) registry: Registry,
    pub(super) models: BTreeMap<String, ModelInstance>,
    /// Teacher-plugin instances by slot (`[teachers.<slot>]`).
    pub(super) teacher_plugins: BTreeMap<String, TeacherInstance>,
    /// Router-plugin instances by slot (`[routers.<slot>]`).
    routers: BTreeMap<String, RouterInstance>,
    /// Augmenter-plugin instances by slot (`[augmenters.<slot>]`).
    augmenters: BTreeMap<String, AugmenterInstance>,
    train: Arc<Dataset>,
    /// Stages' own transfer sets (`[stages.transfer]`), by stage index.
    transfers: BTreeMap<usize, TransferSet>,
    pub(super) eval_split: (Split, Arc<Dataset>),
    pub(super) test: Arc<Dataset>,
    /// Text runs: other corpora's test blocks, scored in the final report.
    pub(super) domains: Vec<(String, Arc<Dataset>)>,
    mean_std: (f32, f32),
    pub(super) metrics: JsonLines,
    pub(super) state: LoopState,
    opts: TrainOptions,
    /// Reference logits by split, cleared whenever the reference model trains.
    reference_cache: HashMap<Split, Vec<f32>>,
    /// Slots with weights (trained by a finished stage or loaded).
    pub(super) ready: Vec<String>,
    resumed: Option<checkpoint::Loaded>,
    pub(super) live: Option<Live>,
    pub(super) events: JsonLines,
    /// The last live event, shown in the progress line.
    pub(super) status: String,
    /// Library builds a resumed checkpoint ran with, by slot.
    pub(super) pinned: BTreeMap<String, LibRef>,
    /// Every library build loaded by hash (weak: a build no instance uses is unloaded).
    pub(super) loaded: BTreeMap<String, std::sync::Weak<crate::Library>>,
    /// The version each slot ran before its last live swap (for `rollback`).
    pub(super) previous: BTreeMap<String, Previous>,
    /// Builds rolled back during the run, not swapped in again.
    pub(super) rolled_back: Vec<String>,
    pub(super) console: Console,
    /// TensorBoard event file (dropped with a warning if it cannot be written).
    tb: Option<TensorBoard>,
    /// Parameters in the host when the optimizer last took new ones.
    param_count: usize,
    /// Steps skipped in the running stage (`skip_step`).
    pub(super) skipped: u64,
    last_checkpoint: Instant,
    /// Since when wall time was last added to `state.wall_seconds`.
    wall_mark: Instant,
    /// Datasets uploaded to a non-CPU device, by (dataset, jitter): uploaded once per run. The
    /// dataset is held so that its address cannot be reused by another while the entry lives.
    device_sets: Vec<(Arc<Dataset>, usize, Arc<DeviceSet>)>,
    /// When this process began preparing the run; cleared once the first step is timed.
    started: Option<Instant>,
    /// The teacher-hacking detector (`[monitor]`), made at its first reading.
    pub(super) detector: Option<super::monitor::Detector>,
}

/// `data/<name>` found from `dir`, the working directory or the executable's ancestors.
pub fn resolve_data_dir(name: &str, dir: Option<&Path>) -> Result<PathBuf> {
    if let Some(d) = dir {
        return Ok(d.to_path_buf());
    }
    let tried: Vec<PathBuf> = data_roots().iter().map(|r| r.join(name)).collect();
    tried
        .iter()
        .find(|p| p.join("t10k-labels-idx1-ubyte.gz").exists() || p.join("t10k-labels-idx1-ubyte").exists())
        .cloned()
        .ok_or_else(|| {
            TrainError::Other(format!(
                "dataset `{name}` not found; set data.dir (looked in {})",
                tried.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
            ))
        })
}

/// Where vendored data is looked for: `data/` in the working directory, then beside the
/// executable's ancestors (a `target/release/retort` finds the checkout's `data/`).
pub(super) fn data_roots() -> Vec<PathBuf> {
    let mut roots = vec![PathBuf::from("data")];
    if let Ok(exe) = std::env::current_exe() {
        roots.extend(exe.ancestors().skip(1).take(4).map(|a| a.join("data")));
    }
    roots
}

fn device_of(name: &str) -> Result<Device> {
    crate::device::open(name).map_err(|e| TrainError::Other(format!("run.device: {e}")))
}

/// Makes the paths a run reads absolute, so its saved config works from any directory.
pub(super) fn absolutize(cfg: &mut RunConfig) {
    let abs = |p: &mut PathBuf| {
        if let Ok(a) = std::path::absolute(&*p) {
            *p = a;
        }
    };
    abs(&mut cfg.run.output_dir);
    cfg.run.plugin_dirs.iter_mut().for_each(abs);
    if let Some(d) = cfg.data.dir.as_mut() {
        abs(d);
    }
    for m in cfg.models.values_mut() {
        if let Some(c) = m.checkpoint.as_mut() {
            abs(c);
        }
    }
}

/// A fresh run may not silently reuse a directory an earlier run left: refuse, or with
/// `overwrite` clear it (only when it is a run directory).
fn prepare_run_dir(dir: &Path, overwrite: bool) -> Result<()> {
    let occupied = std::fs::read_dir(dir).map(|mut d| d.next().is_some()).unwrap_or(false);
    if !occupied {
        return Ok(());
    }
    let d = dir.display();
    if !overwrite {
        let what = if dir.join("report.json").exists() {
            "holds a finished run".to_string()
        } else {
            format!("holds an unfinished run: continue it with `retort train --resume {d}`")
        };
        return Err(TrainError::Other(format!(
            "run directory {d} already exists and {what}; start over with `retort train … --overwrite`, or \
             change run.name"
        )));
    }
    if !dir.join("config.toml").exists() {
        return Err(TrainError::Other(format!("{d} is not a Retort run directory (no config.toml); not deleting it")));
    }
    std::fs::remove_dir_all(dir).map_err(io(format!("cannot clear {d}")))
}

fn stage_seed(seed: u64, name: &str) -> u64 {
    name.bytes().fold(seed ^ 0xcbf2_9ce4_8422_2325, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}

impl Trainer {
    /// Prepares a run: every plugin checked, run directory, data, plugins and models (or the
    /// state of an interrupted run when `opts.resume`).
    pub fn new(mut cfg: RunConfig, opts: TrainOptions) -> Result<Trainer> {
        let started = Instant::now();
        let device = device_of(&cfg.run.device)?;
        tracing::info!("device {} opened in {:.2} s", cfg.run.device, started.elapsed().as_secs_f64());
        let registry = Registry::discover(&search_dirs(&cfg.run.plugin_dirs));
        for p in &registry.problems {
            tracing::warn!("{p}");
        }
        if opts.resume.is_none() {
            let source = if opts.source.is_empty() { "config" } else { opts.source.as_str() };
            preflight(&cfg, &registry, source)?;
        }
        // The data before the run directory: a run that cannot start changes nothing on disk.
        let (train, test, eval_split, domains) = if cfg.data.is_text() {
            let s = super::text::load_sets(&cfg)?;
            (s.train, s.test, s.eval, s.domains)
        } else {
            let spec = DatasetSpec {
                name: cfg.data.dataset.clone(),
                dir: resolve_data_dir(&cfg.data.dataset, cfg.data.dir.as_deref())?,
                validation: cfg.data.validation,
                seed: cfg.run.seed,
            };
            let train = Arc::new(Dataset::load(&spec, Split::Train)?);
            let test = Arc::new(Dataset::load(&spec, Split::Test)?);
            let eval_split = if cfg.data.validation > 0 {
                (Split::Validation, Arc::new(Dataset::load(&spec, Split::Validation)?))
            } else {
                (Split::Test, test.clone())
            };
            (train, test, eval_split, Vec::new())
        };
        let transfers = transfer_sets(&cfg, &train)?;
        // Weights to load, like the data, are checked before the run directory exists.
        for (slot, m) in &cfg.models {
            if let Some(ck) = m.checkpoint.as_ref().filter(|ck| !ck.is_file()) {
                return Err(TrainError::Other(format!(
                    "models.{slot}.checkpoint: {} does not exist (train that model first, or fix the path)",
                    std::path::absolute(ck).unwrap_or_else(|_| ck.clone()).display()
                )));
            }
        }
        let run_dir = match &opts.resume {
            Some(dir) => dir.clone(),
            None => {
                absolutize(&mut cfg);
                let dir = cfg.run.output_dir.join(&cfg.run.name);
                prepare_run_dir(&dir, opts.overwrite)?;
                dir
            }
        };
        let cannot = format!("cannot create the run directory {}", run_dir.display());
        std::fs::create_dir_all(run_dir.join("models")).map_err(io(cannot))?;
        let ckpt_dir = run_dir.join("checkpoint");
        let resumed = match &opts.resume {
            Some(_) if ckpt_dir.join("state.json").exists() => Some(
                checkpoint::load(&ckpt_dir, &device).map_err(|e| TrainError::Other(format!("cannot resume: {e}")))?,
            ),
            Some(dir) => {
                tracing::warn!("{} has no checkpoint yet: starting the run from its beginning", dir.display());
                None
            }
            None => None,
        };
        if resumed.is_none() {
            for f in ["metrics.jsonl", "report.json"] {
                let _ = std::fs::remove_file(run_dir.join(f));
            }
            let _ = std::fs::remove_dir_all(&ckpt_dir);
        }
        if opts.resume.is_none() {
            let path = run_dir.join("config.toml");
            super::log::write_atomic(&path, cfg.to_toml().as_bytes()).map_err(io(path.display().to_string()))?;
        }

        let host = Host::new(device, cfg.run.seed);
        let mut ready = Vec::new();
        for (slot, m) in &cfg.models {
            if let Some(ck) = &m.checkpoint {
                let w = candle_core::safetensors::load(ck, &host.device)
                    .map_err(|e| TrainError::Other(format!("models.{slot}.checkpoint {}: {e}", ck.display())))?;
                host.params
                    .load(slot, w)
                    .map_err(|e| TrainError::Other(format!("models.{slot}.checkpoint {}: {e}", ck.display())))?;
                ready.push(slot.clone());
            }
        }
        let metrics_path = run_dir.join("metrics.jsonl");
        let events_path = run_dir.join("events.jsonl");
        if let Some(r) = &resumed {
            // Drop the metrics written after the checkpoint (they will be written again): train
            // records after its step, evaluations at its step unless it closed a stage (then they
            // came first). Events are history and stay.
            let (step, done) = (r.state.global_step, r.state.stage_done);
            JsonLines::retain(&metrics_path, |v| {
                let s = v.get("step").and_then(serde_json::Value::as_u64).unwrap_or(0);
                let kind = v.get("type").and_then(serde_json::Value::as_str);
                let eval = matches!(kind, Some("eval" | "monitor"));
                // A by-steps evaluation came before its step's checkpoint: it is not repeated.
                let mid = v.get("mid_epoch").and_then(serde_json::Value::as_bool) == Some(true);
                s < step || (s == step && (!eval || done || mid))
            })
            .map_err(io(metrics_path.display().to_string()))?;
        } else if opts.resume.is_none() {
            let _ = std::fs::remove_file(&events_path);
        }
        let metrics = JsonLines::open(&metrics_path).map_err(io(metrics_path.display().to_string()))?;
        let events = JsonLines::open(&events_path).map_err(io(events_path.display().to_string()))?;
        let tb = match cfg.logging.tensorboard {
            true => Some(TensorBoard::create(&run_dir.join("tensorboard")).map_err(io("tensorboard"))?),
            false => None,
        };
        let live = match &opts.watch {
            Some(path) => Some(Live::start(path, &opts.dev)?),
            None if !opts.dev.is_empty() => {
                return Err(TrainError::Other("--dev needs --watch and a config file".into()));
            }
            None => None,
        };
        let mut t = Trainer {
            mean_std: Dataset::mean_std(&cfg.data.dataset),
            cfg,
            run_dir,
            host,
            registry,
            models: BTreeMap::new(),
            teacher_plugins: BTreeMap::new(),
            routers: BTreeMap::new(),
            augmenters: BTreeMap::new(),
            train,
            transfers,
            eval_split,
            test,
            domains,
            metrics,
            state: LoopState::default(),
            console: Console::new(opts.progress),
            tb,
            opts,
            reference_cache: HashMap::new(),
            ready,
            resumed: None,
            live,
            events,
            status: String::new(),
            pinned: resumed.as_ref().map(|r| r.state.libraries.clone()).unwrap_or_default(),
            previous: BTreeMap::new(),
            loaded: BTreeMap::new(),
            rolled_back: Vec::new(),
            param_count: 0,
            skipped: 0,
            last_checkpoint: Instant::now(),
            wall_mark: Instant::now(),
            device_sets: Vec::new(),
            started: Some(started),
            detector: None,
        };
        for (slot, m) in t.cfg.models.clone() {
            let lib = t.load_plugin(&slot, &m.plugin, kind::MODEL)?;
            let inst = ModelInstance::new(&t.host, &lib, &m.plugin, &slot, &m.params.to_string())?;
            t.models.insert(slot, inst);
        }
        t.check_sharing()?;
        let cfg = t.cfg.clone();
        t.teacher_plugins = t.plugin_slots(&cfg.teachers, kind::TEACHER, TeacherInstance::new)?;
        t.routers = t.plugin_slots(&cfg.routers, kind::ROUTER, RouterInstance::new)?;
        t.augmenters = t.plugin_slots(&cfg.augmenters, kind::AUGMENTER, AugmenterInstance::new)?;
        if let Some(r) = resumed {
            t.restore(r)?;
            if t.cfg.monitor.is_some() {
                // The monitor's series so far, as the kept metrics record it.
                let text = std::fs::read_to_string(&metrics_path).unwrap_or_default();
                let kept: Vec<serde_json::Value> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
                t.replay_monitor(&kept);
            }
            let why = format!("from the checkpoint at step {} (stage {})", t.state.global_step, t.state.stage);
            t.event("resumed", "run", None, None, Some(why));
        } else if t.opts.resume.is_some() {
            t.event("resumed", "run", None, None, Some("no checkpoint yet: from the beginning".into()));
        }
        Ok(t)
    }

    /// Puts weights, RNG streams and plugin states back from a checkpoint.
    fn restore(&mut self, r: checkpoint::Loaded) -> Result<()> {
        let mut groups: HashMap<String, HashMap<String, Tensor>> = HashMap::new();
        for (k, t) in &r.weights {
            let (g, n) = checkpoint::split_key(k, &r.state.param_groups);
            groups.entry(g.to_string()).or_default().insert(n.to_string(), t.clone());
        }
        for (g, w) in groups {
            self.host.params.load(&g, w).map_err(TrainError::Other)?;
        }
        restore_instances(&mut self.models, &r.state)?;
        restore_instances(&mut self.teacher_plugins, &r.state)?;
        restore_instances(&mut self.routers, &r.state)?;
        restore_instances(&mut self.augmenters, &r.state)?;
        let done = if r.state.stage_done { r.state.stage + 1 } else { r.state.stage };
        for st in &self.cfg.stages[..done.min(self.cfg.stages.len())] {
            for slot in st.train.all() {
                if !self.ready.iter().any(|r| r == slot) {
                    self.ready.push(slot.to_string());
                }
            }
        }
        let libraries = std::mem::take(&mut self.state.libraries);
        self.state = r.state.clone();
        self.state.libraries.extend(libraries);
        self.resumed = Some(r);
        tracing::info!(step = self.state.global_step, stage = self.state.stage, "resuming");
        Ok(())
    }

    /// The run directory.
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// The host (parameters, device).
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// Runs every remaining stage, then the final evaluation.
    pub fn run(&mut self) -> Result<Outcome> {
        self.wall_mark = Instant::now();
        let first = if self.state.stage_done { self.state.stage + 1 } else { self.state.stage };
        for i in first..self.cfg.stages.len() {
            if let Some(step) = self.run_stage(i)? {
                return Ok(Outcome::Stopped(step));
            }
        }
        let mut report = self.final_report()?;
        // Wall time of the whole run, earlier processes of a resumed run included.
        self.account_wall();
        report.wall_seconds = self.state.wall_seconds;
        let json = serde_json::to_vec_pretty(&report).map_err(|e| TrainError::Other(e.to_string()))?;
        super::log::write_atomic(&self.run_dir.join("report.json"), &json).map_err(io("report.json"))?;
        Ok(Outcome::Finished(report))
    }

    fn loss_role(stage: &str, l: &LossSection) -> String {
        format!("loss.{stage}.{}", l.term_name())
    }

    /// Trains stage `i`; `Some(step)` when stopped by `stop_after`.
    fn run_stage(&mut self, i: usize) -> Result<Option<u64>> {
        let st = self.cfg.stages[i].clone();
        let resuming = self.resumed.as_ref().is_some_and(|r| !r.state.stage_done && r.state.stage == i);
        if !resuming {
            self.state.stage = i;
            self.state.stage_done = false;
            self.state.epoch = 0;
            self.state.batch = 0;
            self.state.stage_step = 0;
        }
        self.skipped = 0;
        if self.cfg.reference_slot().is_some_and(|r| st.train.contains(r)) {
            self.reference_cache.clear();
        }
        // Feature losses ask for the `student` and `teacher` taps whatever the slots are called.
        self.host.taps.set_alias("student", Some(st.train.primary()).filter(|s| !s.is_empty()));
        self.host.taps.set_alias("teacher", st.teacher.as_deref());
        // The stage's first step keeps every tap and notes which are read; later steps keep those.
        self.host.taps.keep_all();
        if !resuming {
            self.share_parameters(&st)?;
        }
        let subset = st.subset.unwrap_or(self.cfg.data.subset);
        let data = match self.transfers.get(&i) {
            Some((set, _)) => set.clone(),
            // Difference sampling refines the corpus first; the subset is then drawn from it.
            None => {
                let refined = self.difference_sample(&st.name, &self.train.clone())?;
                Arc::new(refined.subset(subset, self.cfg.run.seed ^ 0x7a5e_7de7))
            }
        };
        let withhold = st.transfer.as_ref().is_some_and(|t| t.labels == TransferLabels::Withheld);
        let plan = BatchPlan {
            batch_size: self.cfg.data.batch_size,
            shuffle: self.cfg.data.shuffle,
            jitter: st.jitter.unwrap_or(self.cfg.data.jitter),
            mean: self.mean_std.0,
            std: self.mean_std.1,
            seed: stage_seed(self.cfg.run.seed, &st.name),
            drop_last: data.len() >= self.cfg.data.batch_size,
        };
        let spe = plan.batches(data.len()).max(1);
        let total = spe * st.epochs;

        let mut losses = Vec::new();
        for l in &st.losses {
            let role = Self::loss_role(&st.name, l);
            let lib = self.load_plugin(&role, &l.plugin, kind::LOSS)?;
            let mut inst = LossInstance::new(&self.host, &lib, &l.plugin, &role, &l.params.to_string())?;
            if resuming {
                if let Some(r) = &self.resumed {
                    if let Some((seed, pos)) = r.state.rng.get(&role) {
                        inst.ctx().set_rng_state(*seed, *pos);
                    }
                    if let Some(s) = r.state.plugin_states.get(&role) {
                        inst.load_state(s)?;
                    }
                }
            }
            losses.push((l.clone(), inst));
        }
        let stage_name = st.name.clone();
        let mut opt = Objectives::new(&st, self.cfg.stage_optimizer(i), |l| Self::loss_role(&stage_name, l));
        self.param_count = usize::MAX;
        self.sync_optimizer(&st, &losses, &mut opt);
        if resuming {
            if let Some(r) = &self.resumed {
                opt.load_state(&r.optimizer, r.state.stage_step);
            }
        } else {
            let slots = st.objective_slots().join(", ");
            let mut what = match &st.teacher {
                Some(t) => format!("trains {slots} from teacher {t}, {total} steps"),
                None => format!("trains {slots}, {total} steps"),
            };
            if let Some((_, c)) = self.transfers.get(&i) {
                what.push_str(&format!("; transfer set: {c}"));
            }
            self.event("stage_started", &st.name, None, None, Some(what));
            // A checkpoint at every stage start: a run killed early can always resume.
            self.checkpoint(&losses, &opt)?;
        }
        let sched = self.cfg.stage_schedule(i).clone();
        let base_lr = opt.base_lr();
        self.console.stage(&st.name, total as u64, self.state.stage_step);
        let log_every = self.cfg.logging.every_steps.max(1) as u64;
        let ckpt_every = self.cfg.checkpoint.every_steps as u64;
        let ckpt_minutes = self.cfg.checkpoint.every_minutes;
        let mut window = (Instant::now(), 0u64);
        let mut generated_window = 0u64;

        let start_epoch = self.state.epoch;
        for epoch in start_epoch..st.epochs {
            let start_batch = if epoch == start_epoch { self.state.batch } else { 0 };
            self.state.epoch = epoch;
            let mut t0 = Instant::now();
            for batch in self.batches(&data, &plan, epoch as u64, start_batch)? {
                let mut batch = batch?;
                if withhold {
                    // Every label ignored: only a router's pseudo-labels give the terms labels.
                    batch.labels = Tensor::full(-100i64, batch.labels.dims(), batch.labels.device())?;
                }
                self.poll_live(i, &mut losses)?;
                let step = self.state.stage_step as usize;
                if let Some(op) = &st.on_policy {
                    if let (Some(b), true) = self.on_policy_batch(&st, op, &batch, plan.seed, step as u64)? {
                        batch = b;
                        generated_window += 1;
                    }
                }
                let out = loop {
                    match self.compute_step(&st, &batch, &mut losses, &mut opt, (step, epoch, total)) {
                        Ok(o) => break Some(o),
                        // A plugin (or a term's input) read a tap that earlier steps never read, so
                        // it was not kept: the step runs again keeping every tap, learning the read.
                        Err(_) if self.host.taps.take_missed() && !self.host.taps.keeps_all() => {
                            self.host.taps.keep_all();
                            continue;
                        }
                        Err(StepError::Host(e)) => return Err(self.stop_on_host_error(e, &losses, &opt)),
                        Err(StepError::Fault(f)) => match self.on_fault(f, i, &mut losses, &opt)? {
                            Handled::Retry => continue,
                            Handled::Skip => break None,
                        },
                    }
                };
                let Some(StepOut { loss_v, terms, grads }) = out else {
                    self.state.batch = batch.index + 1;
                    continue;
                };
                // Learn the reads from a step where every objective ran (`update_every`).
                if self.host.taps.keeps_all() && grads.iter().all(Option::is_some) {
                    self.host.taps.keep_read();
                }
                let lr = lr_at(&sched, base_lr, step, total, spe);
                // The schedule is linear in the base rate: objectives with their own rate follow it.
                opt.step(&grads, lr, lr_at(&sched, 1.0, step, total, spe))?;
                drop(grads);
                if let Some(t) = self.started.take() {
                    // Start-up cost (device, data, plugins, first kernel loads): see `retort device warm`.
                    tracing::info!("first step done {:.2} s after the run started", t.elapsed().as_secs_f64());
                }
                self.state.stage_step += 1;
                self.state.global_step += 1;
                self.state.batch = batch.index + 1;
                window.1 += 1;
                let status = &self.status;
                self.console.step(|| format!("loss {loss_v:.4} {status}"));
                if self.state.stage_step % log_every == 0 || self.state.stage_step as usize == total {
                    let sps = window.1 as f64 / window.0.elapsed().as_secs_f64().max(1e-9);
                    window = (Instant::now(), 0);
                    self.console.message(format!("loss {loss_v:.4} {}", self.status));
                    let mut plugin_metrics = serde_json::Map::new();
                    for (_, inst) in &losses {
                        let m: serde_json::Map<String, serde_json::Value> =
                            inst.ctx().take_metrics().into_iter().map(|(k, v)| (k, json!(v))).collect();
                        if !m.is_empty() {
                            plugin_metrics.insert(inst.ctx().role.clone(), m.into());
                        }
                    }
                    let mut term_values = serde_json::Map::new();
                    for (k, v) in &terms {
                        term_values.insert(k.clone(), json!(v.to_dtype(DType::F64)?.to_scalar::<f64>()?));
                    }
                    let terms = term_values;
                    let mut rec = json!({
                        "type": "train", "stage": st.name, "epoch": epoch + 1, "step": self.state.global_step,
                        "stage_step": self.state.stage_step, "loss": loss_v, "terms": terms, "lr": lr,
                        "steps_per_s": sps, "plugin_metrics": plugin_metrics, "opt_steps": opt.steps(),
                    });
                    if st.on_policy.is_some() {
                        // Steps since the last record whose batch was generated (GKD's λ at work).
                        rec["generated"] = json!(generated_window);
                        generated_window = 0;
                    }
                    if let (Some(o), Some(p)) = (rec.as_object_mut(), self.provenance().as_object()) {
                        o.extend(p.clone());
                    }
                    self.metrics.write(&rec).map_err(io("metrics.jsonl"))?;
                    let step = self.state.global_step;
                    self.tensorboard(|tb| {
                        tb.scalar("train/loss", step, loss_v)?;
                        tb.scalar("train/lr", step, lr)?;
                        tb.scalar("train/steps_per_s", step, sps)?;
                        for (k, v) in &terms {
                            tb.scalar(&format!("train/term/{k}"), step, v.as_f64().unwrap_or(f64::NAN))?;
                        }
                        tb.flush()
                    });
                }
                let every = self.cfg.eval.every_steps as u64;
                if every > 0 && self.state.stage_step % every == 0 && self.state.stage_step < total as u64 {
                    self.log_evaluations(&st, epoch, true)?;
                }
                let stop = self.opts.stop_after.is_some_and(|s| self.state.global_step >= s);
                if stop {
                    self.event("stopped", "run", None, None, Some(format!("--stop-after {}", self.state.global_step)));
                }
                let by_steps = ckpt_every > 0 && self.state.global_step % ckpt_every == 0;
                let by_time = ckpt_minutes > 0.0 && self.last_checkpoint.elapsed().as_secs_f64() >= ckpt_minutes * 60.0;
                if stop || by_steps || by_time {
                    self.add_seconds(&st.train, t0.elapsed().as_secs_f64());
                    t0 = Instant::now();
                    self.checkpoint(&losses, &opt)?;
                    if stop {
                        self.console.abandon();
                        return Ok(Some(self.state.global_step));
                    }
                }
            }
            self.add_seconds(&st.train, t0.elapsed().as_secs_f64());
            if (epoch + 1) % self.cfg.eval.every_epochs.max(1) == 0 || epoch + 1 == st.epochs {
                self.log_evaluations(&st, epoch, false)?;
            }
            self.state.batch = 0;
            self.state.epoch = epoch + 1;
        }
        self.console.finish();
        for slot in &st.optimize {
            self.save_model(slot)?;
        }
        for slot in st.train.all() {
            self.save_model(slot)?;
            if !self.ready.iter().any(|r| r == slot) {
                self.ready.push(slot.to_string());
            }
        }
        self.state.stage_done = true;
        self.checkpoint(&losses, &opt)?;
        self.resumed = None;
        Ok(None)
    }

    /// Forwards, losses and gradients of one step; a failure is attributed to the plugin slot it
    /// came from, so the fault policy can act on it. One objective per trained slot: its terms'
    /// weighted sum, its own backward.
    fn compute_step(
        &mut self,
        st: &StageSection,
        batch: &Batch,
        losses: &mut Losses,
        objs: &mut Objectives,
        (step, epoch, total): (usize, usize, usize),
    ) -> std::result::Result<StepOut, StepError> {
        self.host.taps.set_recording(true);
        self.host.taps.clear();
        let (augmented, extras) = self.run_augmenters(st, batch, (step, epoch, total))?;
        let weights = sample_weights(&extras)?;
        let (teachers, stacked) = match st.teacher_target {
            TeacherTarget::ForwardMixed => self.run_teachers(st, &augmented)?,
            TeacherTarget::MixOutputs => {
                let (t, s) = self.run_teachers(st, batch)?;
                match Mixing::from_extras(&extras)? {
                    Some(m) => {
                        let t =
                            t.into_iter().map(|(n, z)| Ok((n, m.apply(&z, 0)?))).collect::<candle_core::Result<_>>()?;
                        (t, s.map(|s| m.apply(&s, 1)).transpose()?)
                    }
                    None => (t, s),
                }
            }
        };
        let batch = &augmented;
        let x = &batch.images;
        let teacher = st.teacher.as_ref().and_then(|t| teachers.iter().find(|(n, _)| n == t)).map(|(_, z)| z.clone());
        let mut outs: Vec<(String, Tensor)> = Vec::new();
        for slot in st.train.all() {
            let input = self.model_input(slot, x)?;
            let m = self.models.get_mut(slot).ok_or_else(|| TrainError::Other(format!("no model `{slot}`")))?;
            let z = m
                .forward(&Inputs::new().tensor("input", &input).scalar("train", 1.0))
                .map_err(|e| StepError::plugin(slot, e))?;
            outs.push((slot.to_string(), z));
        }
        self.run_variants(st, x)?;
        let route = match &st.router {
            Some(r) => Some(self.run_router(r, batch, &outs, &teachers, stacked.as_ref(), (step, epoch))?),
            None => None,
        };
        // A router may select instances (KD³'s `selector`): its tapped `weight` joins the
        // per-sample weights and its `pseudo_labels` become the terms' `labels`.
        let selected =
            st.router.as_deref().map(|r| (self.host.taps.get(r, "weight"), self.host.taps.get(r, "pseudo_labels")));
        let (weights, relabeled) = match selected {
            Some((w, y)) => {
                let weights = match (weights, w) {
                    (Some(a), Some(b)) => Some((a * b.to_dtype(DType::F32)?)?),
                    (a, b) => a.or(b.map(|b| b.to_dtype(DType::F32)).transpose()?),
                };
                let relabeled = y.map(|y| Batch { labels: y, ..batch.clone() });
                (weights, relabeled)
            }
            None => (weights, None),
        };
        let batch = relabeled.as_ref().unwrap_or(batch);
        let named = Named {
            outs: &outs,
            teacher: teacher.as_ref(),
            teachers: &teachers,
            stacked: stacked.as_ref(),
            route: route.as_ref(),
            extras: &extras,
            taps: &self.host.taps,
            batch,
            joint: st.joint,
            optimized: &st.optimize,
            views: &self.cfg.data.views,
        };
        let mut terms = Vec::with_capacity(losses.len());
        let mut sums: Vec<Option<Tensor>> = vec![None; objs.list.len()];
        for (sec, inst) in losses.iter_mut() {
            let slot = sec.slot(&st.train);
            let k = objs.position(slot);
            let k =
                k.ok_or_else(|| TrainError::Other(format!("term `{}`: `{slot}` is not trained", sec.term_name())))?;
            if !objs.list[k].active(step) {
                continue;
            }
            let inputs = named
                .inputs(sec, slot)?
                .scalar("step", step as f64)
                .scalar("epoch", (epoch + 1) as f64)
                .scalar("total_steps", total as f64)
                .scalar("train", 1.0);
            let weights = weights.as_ref().filter(|_| sec.weighted);
            let v = if sec.over_teachers {
                named.over_teachers(inst, &inputs, weights)?
            } else if let Some(w) = weights {
                inst.weighted_loss(&inputs, w).map_err(|e| StepError::plugin(&inst.ctx().role, e))?
            } else {
                inst.loss_unread(&inputs).map_err(|e| StepError::plugin(&inst.ctx().role, e))?
            };
            let w = sec.weight * weight_factor(sec.weight_schedule.as_ref(), step, total, epoch + 1);
            let wv = v.affine(w, 0.0)?;
            terms.push((sec.term_name().to_string(), v.detach()));
            sums[k] = Some(match sums[k].take() {
                Some(s) => (s + wv)?,
                None => wv,
            });
        }
        // Parameters a plugin made during this step (or a term added live) train from now on.
        self.sync_optimizer(st, losses, objs);
        let clip = st.clip_grad_norm > 0.0;
        let mut grads = Vec::with_capacity(sums.len());
        let mut probe = Vec::with_capacity(2 * sums.len());
        for (o, sum) in objs.list.iter().zip(&sums) {
            if !o.active(step) {
                grads.push(None);
                continue;
            }
            let loss = sum.as_ref().ok_or_else(|| TrainError::Other(format!("`{}` has no loss term", o.slot)))?;
            grads.push(Some(crate::backend::backward(loss)?));
            probe.push(loss.to_dtype(DType::F64)?.reshape(1)?);
        }
        if clip {
            for (o, g) in objs.list.iter().zip(&grads).filter_map(|(o, g)| g.as_ref().map(|g| (o, g))) {
                probe.push(o.opt.grad_norm_sq(g, x.device())?.reshape(1)?);
            }
        }
        // The step's one read from the device, after the backwards are queued: each objective's
        // loss (and squared gradient norm when clipping), checked before any optimizer runs.
        let read = Tensor::cat(&probe, 0)?.to_vec1::<f64>()?;
        let n = grads.iter().filter(|g| g.is_some()).count();
        let loss_v: f64 = read[..n].iter().sum();
        if !loss_v.is_finite() {
            // Only now each term is read, to name the one that failed.
            for ((_, inst), (_, v)) in losses.iter().zip(&terms) {
                inst.value(v).map_err(|e| StepError::plugin(&inst.ctx().role, e))?;
            }
            return Err(StepError::nonfinite_sum(loss_v));
        }
        if clip {
            let active = objs.list.iter().zip(grads.iter_mut()).filter_map(|(o, g)| g.as_mut().map(|g| (o, g)));
            for (k, (o, g)) in active.enumerate() {
                let norm = read[n + k].sqrt();
                if !norm.is_finite() {
                    return Err(StepError::nonfinite_gradients(norm));
                }
                o.opt.clip_grads(g, norm, st.clip_grad_norm)?;
            }
        }
        Ok(StepOut { loss_v, terms, grads })
    }

    /// One plugin instance per `[teachers|routers|augmenters.<slot>]` section, built by `new`.
    fn plugin_slots<O: AbiObject>(
        &mut self,
        sections: &BTreeMap<String, PluginSection>,
        kind_code: u32,
        new: Constructor<O>,
    ) -> Result<BTreeMap<String, Instance<O>>> {
        let mut out = BTreeMap::new();
        for (slot, sec) in sections {
            let lib = self.load_plugin(slot, &sec.plugin, kind_code)?;
            out.insert(slot.clone(), new(&self.host, &lib, &sec.plugin, slot, &sec.params.to_string())?);
        }
        Ok(out)
    }

    /// The stage router's per-sample teacher weights `[B, T]`: it reads the model teachers
    /// (`teachers`, `teacher.<slot>`), `labels`, `input` and the first trained slot's logits as
    /// `student` (in the graph: a router with parameters learns through its objective).
    fn run_router(
        &mut self,
        slot: &str,
        batch: &Batch,
        outs: &[(String, Tensor)],
        teachers: &[(String, Tensor)],
        stacked: Option<&Tensor>,
        (step, epoch): (usize, usize),
    ) -> std::result::Result<Tensor, StepError> {
        let stacked =
            stacked.ok_or_else(|| TrainError::Other(format!("router `{slot}`: the stage has no model teachers")))?;
        let r = self.routers.get_mut(slot).ok_or_else(|| TrainError::Other(format!("no router `{slot}`")))?;
        let mut inputs = Inputs::new()
            .tensor("input", &batch.images)
            .tensor("labels", &batch.labels)
            .tensor("teachers", stacked)
            .scalar("step", step as f64)
            .scalar("epoch", (epoch + 1) as f64)
            .scalar("train", 1.0);
        if let Some((_, z)) = outs.first() {
            inputs = inputs.tensor("student", z);
        }
        for (n, z) in teachers {
            inputs = inputs.tensor(&format!("teacher.{n}"), z);
        }
        let route = r.route(&inputs).map_err(|e| StepError::plugin(slot, e))?;
        let want = [stacked.dim(1)?, stacked.dim(0)?];
        if route.dims() != want {
            let message = format!("router `{slot}` returned {:?}, expected [batch, teachers] = {want:?}", route.dims());
            return Err(StepError::Fault(super::faults::Fault { slot: slot.to_string(), nonfinite: false, message }));
        }
        Ok(route)
    }

    /// The batch after the stage's augmenters, in order: each reads `input`, `labels` and what
    /// earlier ones set, and may replace `input` and `labels` (same shapes) or set `sample_weight`
    /// and `mask` (`[B]`) and `targets` (`[B, C]`); anything else is a fault of that augmenter.
    fn run_augmenters(
        &mut self,
        st: &StageSection,
        batch: &Batch,
        (step, epoch, total): (usize, usize, usize),
    ) -> std::result::Result<(Batch, Vec<(String, Tensor)>), StepError> {
        let mut out = batch.clone();
        let mut extras: Vec<(String, Tensor)> = Vec::new();
        for slot in &st.augmenters {
            let a = self.augmenters.get_mut(slot).ok_or_else(|| TrainError::Other(format!("no augmenter `{slot}`")))?;
            let mut inputs = Inputs::new()
                .tensor("input", &out.images)
                .tensor("labels", &out.labels)
                .tensor("ids", &out.ids)
                .scalar("step", step as f64)
                .scalar("epoch", (epoch + 1) as f64)
                .scalar("total_steps", total as f64)
                .scalar("train", 1.0);
            for (n, t) in &extras {
                inputs = inputs.tensor(n, t);
            }
            let b = out.labels.dim(0)?;
            for (name, t) in a.augment(&inputs).map_err(|e| StepError::plugin(slot, e))? {
                let ok = match name.as_str() {
                    "input" => t.dims() == out.images.dims(),
                    "labels" => t.dims() == out.labels.dims(),
                    "ids" => t.dims() == out.ids.dims(),
                    "sample_weight" | "mask" | "mix_a" | "mix_b" | "mix_lambda" => t.dims() == [b],
                    "targets" => t.rank() == 2 && t.dim(0)? == b,
                    _ => false,
                };
                if !ok {
                    let message = format!(
                        "augmenter `{slot}` returned `{name}` {:?}; it may replace input {:?}, labels {:?} and ids or \
                         set sample_weight, mask, mix_a, mix_b, mix_lambda [{b}] and targets [{b}, C]",
                        t.dims(),
                        out.images.dims(),
                        out.labels.dims()
                    );
                    return Err(StepError::Fault(super::faults::Fault {
                        slot: slot.clone(),
                        nonfinite: false,
                        message,
                    }));
                }
                match name.as_str() {
                    "input" => out.images = t,
                    "labels" => out.labels = t,
                    "ids" => out.ids = t,
                    _ => match extras.iter_mut().find(|(n, _)| *n == name) {
                        Some(e) => e.1 = t,
                        None => extras.push((name, t)),
                    },
                }
            }
        }
        Ok((out, extras))
    }

    /// A failure of the host itself inside a step: recorded, and a checkpoint of the state before
    /// the step written when possible, so the run can be resumed once the cause is fixed.
    fn stop_on_host_error(&mut self, e: TrainError, losses: &Losses, opt: &Objectives) -> TrainError {
        self.event("stopped", "host", None, None, Some(e.to_string()));
        self.console.abandon();
        if let Err(ck) = self.checkpoint(losses, opt) {
            tracing::warn!("no checkpoint written after the failure: {ck}");
        }
        e
    }

    /// Gives each objective's optimizer every trainable parameter of its slot and of its loss
    /// terms that it does not have yet (cheap when nothing was created).
    fn sync_optimizer(&mut self, st: &StageSection, losses: &Losses, objs: &mut Objectives) {
        let n = self.host.params.len();
        if n == self.param_count {
            return;
        }
        self.param_count = n;
        let params = self.host.params.params(None);
        for o in &mut objs.list {
            o.groups = o.groups_of(st, losses.iter().map(|(sec, l)| (sec, l.ctx().role.clone())));
            let new: Vec<(String, candle_core::Var)> = params
                .iter()
                .filter(|p| p.trainable && o.groups.contains(&p.group) && !is_frozen(&self.cfg, &p.group, &p.name))
                .map(|p| (format!("{}.{}", p.group, p.name), p.var.clone()))
                .filter(|(name, _)| !o.opt.has(name))
                .collect();
            if !new.is_empty() {
                o.opt.add_params(new);
            }
        }
    }

    /// Writes to the TensorBoard file; a failure warns once and stops TensorBoard output only.
    pub(super) fn tensorboard(&mut self, f: impl FnOnce(&mut TensorBoard) -> std::io::Result<()>) {
        if let Some(tb) = self.tb.as_mut() {
            if let Err(e) = f(tb) {
                tracing::warn!("TensorBoard output stops: cannot write {}: {e}", tb.path().display());
                self.tb = None;
            }
        }
    }

    /// Adds the wall time since the last call to the run's total (kept in checkpoints).
    fn account_wall(&mut self) {
        self.state.wall_seconds += self.wall_mark.elapsed().as_secs_f64();
        self.wall_mark = Instant::now();
    }

    /// Adds training time to every slot in `train` (peers train together).
    fn add_seconds(&mut self, train: &crate::config::TrainSlots, s: f64) {
        for slot in train.all() {
            *self.state.train_seconds.entry(slot.to_string()).or_default() += s;
        }
    }

    /// Writes a resumable checkpoint of the whole run.
    pub(super) fn checkpoint(&mut self, losses: &[(LossSection, LossInstance)], opt: &Objectives) -> Result<()> {
        self.last_checkpoint = Instant::now();
        self.account_wall();
        record_instances(&self.models, &mut self.state)?;
        record_instances(&self.teacher_plugins, &mut self.state)?;
        record_instances(&self.routers, &mut self.state)?;
        record_instances(&self.augmenters, &mut self.state)?;
        for (_, l) in losses {
            self.state.rng.insert(l.ctx().role.clone(), l.ctx().rng_state());
            self.state.plugin_states.insert(l.ctx().role.clone(), l.state()?);
        }
        let mut weights = HashMap::new();
        let mut groups = std::collections::BTreeSet::new();
        for p in self.host.params.params(None) {
            weights.insert(format!("{}.{}", p.group, p.name), p.var.as_tensor().clone());
            groups.insert(p.group);
        }
        self.state.param_groups = groups.into_iter().collect();
        let dir = self.run_dir.join("checkpoint");
        // The config as it stands (with live changes) goes into the state, so a resumed run
        // continues with it; state.json is the commit point of the whole checkpoint.
        self.state.config = Some(self.cfg.to_toml());
        self.archive_libraries();
        checkpoint::save(&dir, &mut self.state, &weights, &opt.state()?)
            .map_err(io(format!("cannot write the checkpoint in {}", dir.display())))?;
        self.prune_archive();
        Ok(())
    }

    /// Saves a model slot's weights to `models/<slot>.safetensors`.
    fn save_model(&self, slot: &str) -> Result<()> {
        let path = self.run_dir.join("models").join(format!("{slot}.safetensors"));
        let tmp = path.with_extension("safetensors.tmp");
        candle_core::safetensors::save(&self.host.params.group_tensors(slot), &tmp)?;
        std::fs::rename(&tmp, &path).map_err(io(path.display().to_string()))
    }

    /// The training split (before any stage's subset).
    pub(super) fn train_set(&self) -> Arc<Dataset> {
        self.train.clone()
    }

    /// Logits of `slot` on `set` in evaluation mode, flattened `[n, classes]`.
    pub(super) fn logits(&mut self, slot: &str, set: &Arc<Dataset>) -> Result<(Vec<f32>, usize, Vec<u32>)> {
        self.logits_shifted(slot, set, 0)
    }

    /// As [`Trainer::logits`], every image shifted by a random (dy, dx) ∈ [−shift, shift]² drawn
    /// from a fixed seed (the same shifts for every model).
    fn logits_shifted(&mut self, slot: &str, set: &Arc<Dataset>, shift: usize) -> Result<(Vec<f32>, usize, Vec<u32>)> {
        let plan = BatchPlan {
            batch_size: self.cfg.data.eval_batch_size,
            shuffle: false,
            jitter: shift,
            mean: self.mean_std.0,
            std: self.mean_std.1,
            seed: 0x5_1f7e_d7e5,
            drop_last: false,
        };
        let batches = self.batches(set, &plan, 0, 0)?;
        // Nothing reads a tap in evaluation: none is kept (resumed at the next training step).
        self.host.taps.set_recording(false);
        let (mut out, mut labels, mut classes) = (Vec::new(), Vec::new(), 0);
        for b in batches {
            let b = b?;
            let input = self.model_input(slot, &b.images)?;
            let model = self.models.get_mut(slot).ok_or_else(|| TrainError::Other(format!("no model `{slot}`")))?;
            let z = model.forward(&Inputs::new().tensor("input", &input).scalar("train", 0.0))?.detach();
            let dims = z.dims().to_vec();
            if dims.len() != 2 || dims[0] != b.labels.dims()[0] {
                return Err(TrainError::Other(format!(
                    "model `{slot}` returned shape {dims:?} for a batch of {}; expected [batch, classes]",
                    b.labels.dims()[0]
                )));
            }
            classes = dims[1];
            out.push(z.to_dtype(DType::F32)?);
            labels.push(b.labels);
        }
        if out.is_empty() {
            return Ok((Vec::new(), classes, Vec::new()));
        }
        let out = Tensor::cat(&out, 0)?.flatten_all()?.to_vec1::<f32>()?;
        let labels = Tensor::cat(&labels, 0)?.to_vec1::<u32>()?;
        Ok((out, classes, labels))
    }

    /// Batches `start..` of `epoch` over `data`: made on the host for a CPU run; on any other
    /// device gathered there from a copy of the set uploaded once.
    fn batches(&mut self, data: &Arc<Dataset>, plan: &BatchPlan, epoch: u64, start: usize) -> Result<Batches> {
        let device = self.host.device.clone();
        // Text batches are a few kilobytes of bytes: made on the host for every device.
        if device.is_cpu() || data.is_text() {
            return Ok(Batches::start(data.clone(), plan.clone(), epoch, start, device));
        }
        let cached = self.device_sets.iter().find(|(d, j, _)| Arc::ptr_eq(d, data) && *j == plan.jitter);
        let set = match cached {
            Some((_, _, s)) => s.clone(),
            None => {
                let t0 = Instant::now();
                let s = Arc::new(DeviceSet::upload(data, plan, &device)?);
                tracing::info!(
                    "{} samples uploaded to {device:?} ({:.0} MiB, {:.2} s)",
                    data.len(),
                    s.bytes() as f64 / (1 << 20) as f64,
                    t0.elapsed().as_secs_f64()
                );
                self.device_sets.push((data.clone(), plan.jitter, s.clone()));
                s
            }
        };
        Ok(Batches::on_device(set, data.len(), plan.clone(), epoch, start))
    }

    /// Metrics of `slot` on `set`, with fidelity and KL against the reference slot when it is ready.
    pub fn evaluate(&mut self, slot: &str, split: Split, set: &Arc<Dataset>) -> Result<EvalMetrics> {
        if set.is_text() {
            return self.evaluate_text(slot, set);
        }
        let (logits, classes, labels) = self.logits(slot, set)?;
        let reference = match self.cfg.reference_slot().map(str::to_string) {
            Some(r) if r == slot => Some(logits.clone()),
            Some(r) if self.ready.contains(&r) => {
                if !self.reference_cache.contains_key(&split) {
                    let (rl, _, _) = self.logits(&r, set)?;
                    self.reference_cache.insert(split, rl);
                }
                self.reference_cache.get(&split).cloned()
            }
            _ => None,
        };
        let mut acc = MetricsAccumulator::new(self.cfg.eval.ece_bins, reference.is_some());
        acc.add(&logits, classes, &labels, reference.as_deref());
        Ok(acc.finish())
    }

    /// Evaluates every model slot with weights on the test set.
    fn final_report(&mut self) -> Result<Report> {
        let mut models = BTreeMap::new();
        let test = self.test.clone();
        for slot in self.ready.clone() {
            let m = self.evaluate(&slot, Split::Test, &test)?;
            let plugin = self.cfg.models.get(&slot).map(|m| m.plugin.clone()).unwrap_or_default();
            let secs = self.state.train_seconds.get(&slot).copied().unwrap_or(0.0);
            let mut line = ModelReport::new(&plugin, &m, self.host.params.count(&slot), secs);
            if test.is_text() {
                line.domains = self.domain_bits(&slot)?;
                line.samples = self.text_samples(&slot)?;
            }
            if self.cfg.eval.shift > 0 {
                let (logits, classes, labels) = self.logits_shifted(&slot, &test, self.cfg.eval.shift)?;
                let wrong = logits
                    .chunks_exact(classes.max(1))
                    .zip(&labels)
                    .filter(|(row, &y)| {
                        let best = row.iter().enumerate().fold(0, |b, (i, v)| if *v > row[b] { i } else { b });
                        best as u32 != y
                    })
                    .count();
                line.shifted_errors = Some(wrong);
            }
            models.insert(slot.clone(), line);
        }
        Ok(Report {
            run: self.cfg.run.name.clone(),
            dataset: self.cfg.data.dataset.clone(),
            test_samples: test.len(),
            reference: self.cfg.reference_slot().map(str::to_string),
            wall_seconds: 0.0,
            models,
        })
    }
}

/// A plugin instance constructor: (host, library, plugin name, slot, JSON config).
type Constructor<O> = fn(&Host, &Arc<crate::Library>, &str, &str, &str) -> crate::Result<Instance<O>>;

/// Puts back each instance's RNG position and plugin state from a checkpoint's loop state.
fn restore_instances<O: AbiObject>(map: &mut BTreeMap<String, Instance<O>>, state: &LoopState) -> Result<()> {
    for (slot, inst) in map.iter_mut() {
        if let Some((seed, pos)) = state.rng.get(slot) {
            inst.ctx().set_rng_state(*seed, *pos);
        }
        if let Some(s) = state.plugin_states.get(slot) {
            inst.load_state(s)?;
        }
    }
    Ok(())
}

/// Records each instance's RNG position and plugin state into the loop state, for a checkpoint.
fn record_instances<O: AbiObject>(map: &BTreeMap<String, Instance<O>>, state: &mut LoopState) -> Result<()> {
    for (slot, inst) in map {
        state.rng.insert(slot.clone(), inst.ctx().rng_state());
        state.plugin_states.insert(slot.clone(), inst.state()?);
    }
    Ok(())
}

/// The per-sample weights of a step: `sample_weight` times `mask` (either alone), if set.
fn sample_weights(extras: &[(String, Tensor)]) -> candle_core::Result<Option<Tensor>> {
    let get = |n: &str| extras.iter().find(|(k, _)| k == n).map(|(_, t)| t.to_dtype(DType::F32)).transpose();
    Ok(match (get("sample_weight")?, get("mask")?) {
        (Some(w), Some(m)) => Some((w * m)?),
        (w, m) => w.or(m),
    })
}

/// The tensors a step's terms can read by name (see [`TensorName`]).
struct Named<'a> {
    /// Every trained slot's logits, in `train` order.
    outs: &'a [(String, Tensor)],
    teacher: Option<&'a Tensor>,
    /// Every teacher's logits by slot (`teacher.<slot>`), and the model teachers stacked.
    teachers: &'a [(String, Tensor)],
    stacked: Option<&'a Tensor>,
    /// The router's per-sample teacher weights `[B, T]`, when the stage has a router.
    route: Option<&'a Tensor>,
    /// What the augmenters set: `sample_weight`, `mask`, `targets`.
    extras: &'a [(String, Tensor)],
    /// What plugins tapped this step (`<slot>.<tap>`).
    taps: &'a crate::backend::TapStore,
    batch: &'a Batch,
    /// One objective over every trained slot: peers' logits stay in the graph.
    joint: bool,
    /// The stage's `optimize` slots: their terms see the trained slots' logits in the graph.
    optimized: &'a [String],
    /// `[data.views]`, for `input.<view>`.
    views: &'a BTreeMap<String, crate::config::ViewSection>,
}

impl Named<'_> {
    /// The inputs of a term on `slot`: `student` (the slot's logits, unless it is an `optimize`
    /// slot that is not run on the input), `labels`, `teacher` (when the stage has one), then the
    /// term's own `inputs` mapping. Another peer's logits are detached (an objective trains only
    /// its own slot) unless the stage is `joint`.
    fn inputs(&self, sec: &LossSection, slot: &str) -> Result<Inputs> {
        let logits = |s: &str| -> Result<Tensor> {
            let z = self.outs.iter().find(|(n, _)| n == s).map(|(_, z)| z);
            let z = z.ok_or_else(|| {
                TrainError::Other(format!(
                    "term `{}`: `{s}` is not run on the input in this stage; map its `student` with `inputs`",
                    sec.term_name()
                ))
            })?;
            Ok(if s == slot || self.joint || self.optimized.iter().any(|o| o == slot) { z.clone() } else { z.detach() })
        };
        let mut inputs = Inputs::new().tensor("labels", &self.batch.labels).tensor("ids", &self.batch.ids);
        // A text batch's mask of real targets: every loss reduces over those tokens only.
        if let Some(m) = &self.batch.mask {
            inputs = inputs.tensor("mask", m);
        }
        if self.outs.iter().any(|(n, _)| n == slot) {
            inputs = inputs.tensor("student", &logits(slot)?);
        }
        if let Some(t) = self.teacher {
            inputs = inputs.tensor("teacher", t);
        }
        if let Some(t) = self.stacked {
            inputs = inputs.tensor("teachers", t);
        }
        if let Some(r) = self.route {
            inputs = inputs.tensor("route", r);
        }
        // `mask` is a keep mask the host applies through the sample weights; plugins read `mask`
        // as a sequence mask, so it is not passed on.
        for (n, t) in self.extras.iter().filter(|(n, _)| n != "mask") {
            inputs = inputs.tensor(n, t);
        }
        for (n, z) in self.teachers {
            inputs = inputs.tensor(&format!("teacher.{n}"), z);
        }
        for (input, name) in &sec.inputs {
            let t = match TensorName::parse(name).map_err(TrainError::Other)? {
                TensorName::Input => self.batch.images.clone(),
                TensorName::InputView(v) => super::teachers::crop(&self.batch.images, &v, self.views)?,
                TensorName::Labels => self.batch.labels.clone(),
                TensorName::Ids => self.batch.ids.clone(),
                TensorName::Student => logits(slot)?,
                TensorName::Teacher => {
                    self.teacher.cloned().ok_or_else(|| TrainError::Other("the stage has no teacher".into()))?
                }
                TensorName::Peer(p) => logits(&p)?,
                TensorName::TeacherOf(t) => self
                    .teachers
                    .iter()
                    .find(|(n, _)| *n == t)
                    .map(|(_, z)| z.clone())
                    .ok_or_else(|| TrainError::Other(format!("`teacher.{t}` is not one of the stage's teachers")))?,
                TensorName::Teachers => {
                    self.stacked.cloned().ok_or_else(|| TrainError::Other("the stage has no model teachers".into()))?
                }
                TensorName::Route => {
                    self.route.cloned().ok_or_else(|| TrainError::Other("the stage has no router".into()))?
                }
                TensorName::Tap(s, t) => self
                    .taps
                    .get(&s, &t)
                    .ok_or_else(|| TrainError::Other(format!("`{s}.{t}`: nothing was tapped there this step")))?,
            };
            inputs = inputs.tensor(input, &t);
        }
        Ok(inputs)
    }

    /// A term run once per model teacher (each as `teacher`), its per-sample values weighted by
    /// the route (uniform without a router) and averaged over the batch:
    /// `mean_b Σ_t route[b, t]·rows_t[b]`.
    fn over_teachers(
        &self,
        inst: &mut LossInstance,
        inputs: &Inputs,
        weights: Option<&Tensor>,
    ) -> std::result::Result<Tensor, StepError> {
        let stacked = self.stacked.ok_or_else(|| TrainError::Other("over_teachers: no model teachers".into()))?;
        let n = stacked.dim(0)?;
        let mut rows = Vec::with_capacity(n);
        for t in 0..n {
            let with = inputs.clone().tensor("teacher", &stacked.get(t)?);
            rows.push(inst.rows(&with).map_err(|e| StepError::plugin(&inst.ctx().role, e))?);
        }
        Ok(super::routing::combine(&rows, self.route, weights)?)
    }
}
