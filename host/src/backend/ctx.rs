//! Per-plugin contexts: parameter groups, seeded RNG streams, taps and metrics.
use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
};

use candle_core::{DType, Device, Shape, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use retort_plugin_api::{codes::dist, InitSpec, OpaqueCtx, RawCtx};

/// Locks a mutex, recovering the data if a panicking thread poisoned it (state stays usable).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A host-owned parameter or buffer of one plugin group.
#[derive(Clone)]
pub struct Param {
    pub group: String,
    pub name: String,
    pub var: Var,
    pub trainable: bool,
}

/// Every parameter of the run, by group (the plugin slot) and name.
#[derive(Default)]
pub struct ParamStore {
    params: Mutex<Vec<Param>>,
    /// Values waiting for a parameter to be created (weights loaded before the plugin asks).
    pending: Mutex<HashMap<(String, String), Tensor>>,
}

impl ParamStore {
    /// The existing parameter `group.name` (checking its shape), or a new one from `make`.
    pub fn get_or_create(
        &self,
        group: &str,
        name: &str,
        shape: &[usize],
        trainable: bool,
        make: impl FnOnce() -> Result<Tensor, String>,
    ) -> Result<Tensor, String> {
        let mut params = lock(&self.params);
        if let Some(p) = params.iter().find(|p| p.group == group && p.name == name) {
            if p.var.as_tensor().dims() != shape {
                return Err(format!(
                    "parameter `{name}` exists with shape {:?}, requested {shape:?}",
                    p.var.as_tensor().dims()
                ));
            }
            return Ok(p.var.as_tensor().clone());
        }
        let preloaded = lock(&self.pending).remove(&(group.to_string(), name.to_string()));
        let init = match preloaded {
            Some(t) if t.dims() == shape => t,
            Some(t) => {
                return Err(format!(
                    "loaded weight `{group}.{name}` has shape {:?}, the model asks for {shape:?}",
                    t.dims()
                ))
            }
            None => make()?,
        };
        let var = Var::from_tensor(&init).map_err(|e| e.to_string())?;
        let out = var.as_tensor().clone();
        params.push(Param { group: group.into(), name: name.into(), var, trainable });
        Ok(out)
    }

    /// Sets parameters of `group` from `weights` (name → tensor): existing ones now, the others
    /// when the plugin creates them. Returns the names set now.
    pub fn load(&self, group: &str, weights: HashMap<String, Tensor>) -> Result<Vec<String>, String> {
        let params = lock(&self.params);
        let mut set = Vec::new();
        let mut pending = lock(&self.pending);
        for (name, t) in weights {
            match params.iter().find(|p| p.group == group && p.name == name) {
                Some(p) => {
                    if p.var.as_tensor().dims() != t.dims() {
                        return Err(format!(
                            "weight `{group}.{name}` has shape {:?}, the parameter has {:?}",
                            t.dims(),
                            p.var.as_tensor().dims()
                        ));
                    }
                    p.var.set(&t.to_dtype(p.var.dtype()).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
                    set.push(name);
                }
                None => {
                    pending.insert((group.to_string(), name), t);
                }
            }
        }
        Ok(set)
    }

    /// Every parameter and buffer of `group` by name (for saving).
    pub fn group_tensors(&self, group: &str) -> HashMap<String, Tensor> {
        lock(&self.params)
            .iter()
            .filter(|p| p.group == group)
            .map(|p| (p.name.clone(), p.var.as_tensor().clone()))
            .collect()
    }

    /// The parameter of `group` whose tensor is `t` (same storage id).
    pub fn find(&self, group: &str, t: &Tensor) -> Option<Var> {
        lock(&self.params).iter().find(|p| p.group == group && p.var.as_tensor().id() == t.id()).map(|p| p.var.clone())
    }

    /// The current value of `group.name`: the parameter, else a weight waiting for it.
    pub fn value(&self, group: &str, name: &str) -> Option<Tensor> {
        let params = lock(&self.params);
        match params.iter().find(|p| p.group == group && p.name == name) {
            Some(p) => Some(p.var.as_tensor().clone()),
            None => lock(&self.pending).get(&(group.to_string(), name.to_string())).cloned(),
        }
    }

    /// Every parameter, optionally of one group only.
    pub fn params(&self, group: Option<&str>) -> Vec<Param> {
        lock(&self.params).iter().filter(|p| group.is_none_or(|g| p.group == g)).cloned().collect()
    }

    /// Number of parameters and buffers created so far (grows when a plugin makes one).
    pub fn len(&self) -> usize {
        lock(&self.params).len()
    }

    /// Whether no parameter exists yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of scalar parameters (trainable or not) of a group.
    pub fn count(&self, group: &str) -> usize {
        lock(&self.params).iter().filter(|p| p.group == group).map(|p| p.var.as_tensor().elem_count()).sum()
    }
}

/// A rewrite installed at a tap (FW): the model continues from `rewrite(f)` instead of `f`.
pub trait TapRewrite: Send {
    /// The replacement of the tapped tensor `x`.
    fn rewrite(&mut self, x: &Tensor) -> std::result::Result<Tensor, String>;
    /// Back to the concrete type, when the host uninstalls it.
    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send>;
}

/// A rewrite installed at `(slot, tap)`, and how often it ran during the forward.
pub struct Installed {
    pub slot: String,
    pub tap: String,
    /// The slot doing the rewrite (named in errors).
    pub with: String,
    /// `None` only while it runs (so the rewriter's own taps can re-enter the store).
    pub rewrite: Option<Box<dyn TapRewrite>>,
    pub applied: usize,
}

/// Features tapped during the current step, by model role and tap name, and the rewrites
/// installed for the forward in progress.
#[derive(Default)]
pub struct TapStore {
    taps: Mutex<HashMap<String, HashMap<String, Tensor>>>,
    /// Generic roles (`student`, `teacher`) → the model slot filling them in the current stage.
    aliases: Mutex<HashMap<String, String>>,
    rewrites: Mutex<Vec<Installed>>,
    /// The first rewrite failure of the forward in progress: (rewriting slot, message).
    rewrite_error: Mutex<Option<(String, String)>>,
    /// Off during evaluation, where nothing reads a tap (rewrites still apply).
    off: std::sync::atomic::AtomicBool,
    /// Tap names worth keeping (`None`: every tap), learned from what was read.
    wanted: Mutex<Option<std::collections::HashSet<String>>>,
    /// Tap names read since the store last recorded everything.
    read: Mutex<std::collections::HashSet<String>>,
    /// A read asked for a tap name that was not being kept.
    missed: std::sync::atomic::AtomicBool,
}

impl TapStore {
    /// Records a tap of the model in `role`.
    pub fn record(&self, role: &str, name: &str, t: &Tensor) {
        if self.off.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        if lock(&self.wanted).as_ref().is_some_and(|w| !w.contains(name)) {
            return;
        }
        lock(&self.taps).entry(role.to_string()).or_default().insert(name.to_string(), t.clone());
    }

    /// Stops (`false`) or resumes recording taps; stopping forgets what was recorded.
    pub fn set_recording(&self, on: bool) {
        self.off.store(!on, std::sync::atomic::Ordering::Relaxed);
        if !on {
            self.clear();
        }
    }

    /// Cuts the taps of `role` from the autograd graph (a teacher run without one: a feature
    /// loss reading them must not backpropagate into the teacher).
    pub fn detach_role(&self, role: &str) {
        if let Some(m) = lock(&self.taps).get_mut(role) {
            for t in m.values_mut() {
                *t = t.detach();
            }
        }
    }

    /// Installs rewrites for the next forwards (until [`TapStore::uninstall`]).
    pub fn install(&self, list: Vec<Installed>) {
        *lock(&self.rewrites) = list;
        *lock(&self.rewrite_error) = None;
    }

    /// Removes every installed rewrite, returning them with their counts and the first failure.
    pub fn uninstall(&self) -> (Vec<Installed>, Option<(String, String)>) {
        (std::mem::take(&mut *lock(&self.rewrites)), lock(&self.rewrite_error).take())
    }

    /// The tensor the model in `role` continues from at tap `name`: `x`, or the installed rewrite
    /// of it. Recorded as the tap either way.
    pub fn apply(&self, role: &str, name: &str, x: &Tensor) -> std::result::Result<Tensor, String> {
        let found = {
            let mut list = lock(&self.rewrites);
            list.iter_mut()
                .enumerate()
                .find(|(_, r)| r.slot == role && r.tap == name)
                .and_then(|(k, r)| r.rewrite.take().map(|f| (k, f, r.tap.clone())))
        };
        let out = match found {
            None => Ok(x.clone()),
            Some((k, mut f, tap)) => {
                // The lock is free while the rewriter runs: its own taps come back here.
                let r = f.rewrite(x);
                let mut list = lock(&self.rewrites);
                if let Some(slot) = list.get_mut(k) {
                    slot.rewrite = Some(f);
                    slot.applied += 1;
                }
                match r {
                    Ok(y) if y.dims() == x.dims() => Ok(y),
                    Ok(y) => Err(format!("the rewrite at `{role}.{tap}` returned {:?} for {:?}", y.dims(), x.dims())),
                    Err(e) => Err(e),
                }
                .inspect_err(|e| {
                    let mut first = lock(&self.rewrite_error);
                    if first.is_none() {
                        let with = list.get(k).map(|s| s.with.clone()).unwrap_or_default();
                        *first = Some((with, e.clone()));
                    }
                })
            }
        }?;
        self.record(role, name, &out);
        Ok(out)
    }
    /// The tap `name` of the model in `role` (a slot, or an alias such as `student`), if recorded
    /// this step.
    pub fn get(&self, role: &str, name: &str) -> Option<Tensor> {
        let slot = lock(&self.aliases).get(role).cloned().unwrap_or_else(|| role.to_string());
        let found = lock(&self.taps).get(&slot).and_then(|m| m.get(name)).cloned();
        let mut read = lock(&self.read);
        if !read.contains(name) {
            read.insert(name.to_string());
        }
        if found.is_none() && lock(&self.wanted).as_ref().is_some_and(|w| !w.contains(name)) {
            self.missed.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        found
    }

    /// Keeps every tap from now on, and forgets what was read (a stage's first step).
    pub fn keep_all(&self) {
        *lock(&self.wanted) = None;
        lock(&self.read).clear();
        self.missed.store(false, std::sync::atomic::Ordering::Relaxed);
    }

    /// Keeps from now on only the tap names read since [`TapStore::keep_all`]: a run whose
    /// plugins read no tap keeps none.
    pub fn keep_read(&self) {
        *lock(&self.wanted) = Some(lock(&self.read).clone());
    }

    /// Whether a read asked for a tap name not being kept since the last call (the step should be
    /// run again keeping every tap).
    pub fn take_missed(&self) -> bool {
        self.missed.swap(false, std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether every tap is kept.
    pub fn keeps_all(&self) -> bool {
        lock(&self.wanted).is_none()
    }

    /// Makes `alias` (`student`, `teacher`) refer to the model slot `slot`, or to nothing.
    pub fn set_alias(&self, alias: &str, slot: Option<&str>) {
        let mut a = lock(&self.aliases);
        match slot {
            Some(s) if s != alias => {
                a.insert(alias.to_string(), s.to_string());
            }
            _ => {
                a.remove(alias);
            }
        }
    }
    /// The names tapped by `role` this step.
    pub fn names(&self, role: &str) -> Vec<String> {
        let mut v: Vec<String> = lock(&self.taps).get(role).map(|m| m.keys().cloned().collect()).unwrap_or_default();
        v.sort();
        v
    }
    /// Files the taps recorded under `from` this step under `to` instead (a variant's second pass).
    pub fn rename(&self, from: &str, to: &str) {
        let mut taps = lock(&self.taps);
        if let Some(m) = taps.remove(from) {
            taps.insert(to.to_string(), m);
        }
    }
    /// Forgets every tap (at the start of a step).
    pub fn clear(&self) {
        self.missed.store(false, std::sync::atomic::Ordering::Relaxed);
        lock(&self.taps).clear();
    }
}

/// The host state of one plugin instance; plugins hold it as a [`RawCtx`].
pub struct PluginCtx {
    /// The slot this instance fills (`student`, `teacher`, `loss.kd`, …): its parameter group.
    pub role: String,
    /// The plugin's name, for logs and errors.
    pub plugin: String,
    pub device: Device,
    pub params: Arc<ParamStore>,
    pub taps: Arc<TapStore>,
    metrics: Mutex<Vec<(String, f64)>>,
    rng: Mutex<ChaCha8Rng>,
}

impl PluginCtx {
    /// The handle plugins receive. Valid while this `Arc` lives.
    pub fn raw(self: &Arc<Self>) -> RawCtx {
        // SAFETY: Arc::as_ptr is never null.
        RawCtx(unsafe { std::ptr::NonNull::new_unchecked(Arc::as_ptr(self) as *mut OpaqueCtx) })
    }

    /// The context behind a handle.
    ///
    /// # Safety
    /// `raw` must come from [`PluginCtx::raw`] of a context that is still alive.
    pub unsafe fn from_raw<'a>(raw: RawCtx) -> &'a PluginCtx {
        unsafe { &*(raw.0.as_ptr() as *const PluginCtx) }
    }

    /// This instance's parameter `name`, created from `init` with its RNG stream on first request.
    pub fn param(&self, name: &str, shape: &[usize], init: InitSpec, trainable: bool) -> Result<Tensor, String> {
        self.params.get_or_create(&self.role, name, shape, trainable, || {
            self.with_rng(|rng| sample(rng, init.dist, init.a, init.b, shape, &self.device))
        })
    }

    /// Runs `f` with this instance's RNG stream.
    pub fn with_rng<T>(&self, f: impl FnOnce(&mut ChaCha8Rng) -> T) -> T {
        f(&mut lock(&self.rng))
    }

    /// Records a metric reported by the plugin.
    pub fn push_metric(&self, name: &str, value: f64) {
        lock(&self.metrics).push((name.to_string(), value));
    }

    /// Takes the metrics reported since the last call.
    pub fn take_metrics(&self) -> Vec<(String, f64)> {
        std::mem::take(&mut *lock(&self.metrics))
    }

    /// The RNG stream position, for checkpoints.
    pub fn rng_state(&self) -> ([u8; 32], u128) {
        let r = lock(&self.rng);
        (r.get_seed(), r.get_word_pos())
    }

    /// Restores an RNG stream position from [`PluginCtx::rng_state`].
    pub fn set_rng_state(&self, seed: [u8; 32], pos: u128) {
        let mut r = ChaCha8Rng::from_seed(seed);
        r.set_word_pos(pos);
        *lock(&self.rng) = r;
    }
}

/// The shared state of one run: device, parameters, taps and the run seed.
pub struct Host {
    pub device: Device,
    pub params: Arc<ParamStore>,
    pub taps: Arc<TapStore>,
    seed: u64,
}

/// FNV-1a: a stable hash for deriving per-slot seeds (std's hasher may change between releases).
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3))
}

impl Host {
    /// A host on `device` whose plugin RNG streams derive from `seed`.
    pub fn new(device: Device, seed: u64) -> Self {
        crate::alloc::tune();
        Host { device, params: Arc::default(), taps: Arc::default(), seed }
    }

    /// A CPU host.
    pub fn cpu(seed: u64) -> Self {
        Self::new(Device::Cpu, seed)
    }

    /// A new context for `plugin` filling slot `role`; its RNG stream depends only on the run seed
    /// and the role, so runs are reproducible whatever the plugin load order.
    pub fn ctx(&self, role: &str, plugin: &str) -> Arc<PluginCtx> {
        let seed = self.seed ^ fnv1a(role);
        Arc::new(PluginCtx {
            role: role.into(),
            plugin: plugin.into(),
            device: self.device.clone(),
            params: self.params.clone(),
            taps: self.taps.clone(),
            metrics: Mutex::default(),
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed)),
        })
    }
}

fn normal_pair(rng: &mut ChaCha8Rng) -> (f64, f64) {
    // Box–Muller; u1 in (0, 1] keeps the log finite.
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random::<f64>();
    let r = (-2.0 * u1.ln()).sqrt();
    let th = std::f64::consts::TAU * u2;
    (r * th.cos(), r * th.sin())
}

/// A tensor of `shape` drawn from distribution `code` with parameters `a`, `b` (f32).
pub fn sample(
    rng: &mut ChaCha8Rng,
    code: u32,
    a: f64,
    b: f64,
    shape: &[usize],
    device: &Device,
) -> Result<Tensor, String> {
    let n: usize = shape.iter().product();
    let data: Vec<f32> = match code {
        dist::CONSTANT => vec![a as f32; n],
        dist::UNIFORM => (0..n).map(|_| (a + (b - a) * rng.random::<f64>()) as f32).collect(),
        dist::NORMAL => {
            let mut v = Vec::with_capacity(n + 1);
            while v.len() < n {
                let (x, y) = normal_pair(rng);
                v.push((a + b * x) as f32);
                v.push((a + b * y) as f32);
            }
            v.truncate(n);
            v
        }
        dist::BERNOULLI => (0..n).map(|_| if rng.random::<f64>() < a { 1.0 } else { 0.0 }).collect(),
        other => return Err(format!("unknown distribution code {other}")),
    };
    Tensor::from_vec(data, Shape::from(shape.to_vec()), device)
        .and_then(|t| t.to_dtype(DType::F32))
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taps_are_not_kept_while_recording_is_off_and_a_detached_role_passes_no_gradient() {
        let taps = TapStore::default();
        let w = Var::new(&[1.0f32, 2.0], &Device::Cpu).unwrap();
        let h = (w.as_tensor() * 3.0).unwrap();
        taps.set_recording(false);
        assert_eq!(taps.apply("teacher", "layer1", &h).unwrap().to_vec1::<f32>().unwrap(), vec![3.0, 6.0]);
        assert!(taps.get("teacher", "layer1").is_none(), "evaluation keeps no tap");
        taps.set_recording(true);
        taps.record("teacher", "layer1", &h);
        taps.detach_role("teacher");
        let read = taps.get("teacher", "layer1").unwrap();
        let loss = (read.sum_all().unwrap() + w.as_tensor().sum_all().unwrap()).unwrap();
        let grads = loss.backward().unwrap();
        // Only the direct path reaches w: d/dw of Σw is 1, the tap's 3 is cut.
        assert_eq!(grads.get(w.as_tensor()).unwrap().to_vec1::<f32>().unwrap(), vec![1.0, 1.0]);
    }

    #[test]
    fn after_a_first_step_only_the_taps_read_are_kept_and_a_new_read_is_flagged() {
        let taps = TapStore::default();
        let x = Tensor::new(&[1.0f32], &Device::Cpu).unwrap();
        taps.keep_all();
        taps.record("s", "layer1", &x);
        taps.record("s", "layer2", &x);
        assert!(taps.get("s", "layer2").is_some());
        taps.keep_read();
        taps.clear();
        taps.record("s", "layer1", &x);
        taps.record("s", "layer2", &x);
        assert_eq!(taps.names("s"), vec!["layer2".to_string()], "only what was read is kept");
        assert!(!taps.take_missed());
        assert!(taps.get("s", "layer1").is_none());
        assert!(taps.take_missed(), "reading a tap no longer kept is flagged");
        taps.keep_all();
        taps.record("s", "layer1", &x);
        assert!(taps.get("s", "layer1").is_some() && taps.keeps_all());
    }
}
