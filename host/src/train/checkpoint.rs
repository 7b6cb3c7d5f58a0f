//! Resumable checkpoints: every parameter and optimizer moment in safetensors, and the loop
//! position, RNG streams and plugin states in JSON. Both are written atomically.
use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
};

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::{log::write_atomic, optim::ParamState};

/// Where the loop stood, and everything not in the weights file.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LoopState {
    /// Index of the stage in progress (or the next one when `stage_done`).
    pub stage: usize,
    pub stage_done: bool,
    /// The epoch in progress (0-based) and the next batch within it.
    pub epoch: usize,
    pub batch: usize,
    /// Optimizer steps taken in the run and in the stage.
    pub global_step: u64,
    pub stage_step: u64,
    /// RNG stream positions by plugin slot: (seed, word position).
    pub rng: BTreeMap<String, ([u8; 32], u128)>,
    /// Plugin `state()` by slot.
    pub plugin_states: BTreeMap<String, Vec<u8>>,
    /// Seconds spent training each model slot so far.
    pub train_seconds: BTreeMap<String, f64>,
    /// Wall-clock seconds of the run so far (all its processes, up to this checkpoint).
    #[serde(default)]
    pub wall_seconds: f64,
    /// Revision of the live config (0 = as started; +1 per applied change).
    #[serde(default)]
    pub config_rev: u64,
    /// The library build behind every plugin slot.
    #[serde(default)]
    pub libraries: BTreeMap<String, LibRef>,
    /// Parameter groups in the weights file (group names may contain dots: `loss.<stage>.<term>`).
    #[serde(default)]
    pub param_groups: Vec<String>,
    /// Counts checkpoints written; names the weights file of this one.
    #[serde(default)]
    pub generation: u64,
    /// The weights file this state belongs to (state.json is written last, so it is the commit).
    #[serde(default = "legacy_weights")]
    pub weights_file: String,
    /// The run's config (with live changes) as TOML, at this checkpoint.
    #[serde(default)]
    pub config: Option<String>,
}

fn legacy_weights() -> String {
    "weights.safetensors".into()
}

/// Splits a weights key `group.name` at the longest known group (groups contain dots); keys of
/// unknown groups split at the first dot (checkpoints written before groups were recorded).
pub fn split_key<'a>(key: &'a str, groups: &[String]) -> (&'a str, &'a str) {
    groups
        .iter()
        .filter(|g| key.len() > g.len() && key.starts_with(g.as_str()) && key.as_bytes()[g.len()] == b'.')
        .max_by_key(|g| g.len())
        .map(|g| (&key[..g.len()], &key[g.len() + 1..]))
        .or_else(|| key.split_once('.'))
        .unwrap_or(("", key))
}

/// Which build of which plugin fills a slot.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LibRef {
    pub plugin: String,
    /// The library file it was loaded from (and is watched at).
    pub path: std::path::PathBuf,
    /// Short sha256 of that build.
    pub hash: String,
}

/// Writes `weights` (+ optimizer moments) into a new file of `dir`, then `state` naming it
/// (atomically: until that rename the previous checkpoint stands whole), then removes older weights.
pub fn save(
    dir: &Path,
    state: &mut LoopState,
    weights: &HashMap<String, Tensor>,
    optimizer: &[(String, ParamState)],
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    state.generation += 1;
    let file = format!("weights-{:06}.safetensors", state.generation);
    let mut all: HashMap<String, Tensor> = weights.clone();
    for (name, st) in optimizer {
        for (tag, v) in [("m", &st.m), ("v", &st.v)] {
            if !v.is_empty() {
                let t = Tensor::from_slice(v, v.len(), &Device::Cpu).map_err(std::io::Error::other)?;
                all.insert(format!("__optimizer.{tag}.{name}"), t);
            }
        }
    }
    let tmp = dir.join(format!("{file}.tmp"));
    let written = candle_core::safetensors::save(&all, &tmp)
        .map_err(std::io::Error::other)
        .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
        .and_then(|()| std::fs::rename(&tmp, dir.join(&file)));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        state.generation -= 1;
        return Err(e);
    }
    let previous = std::mem::replace(&mut state.weights_file, file.clone());
    let json = serde_json::to_vec_pretty(state).map_err(std::io::Error::other)?;
    if let Err(e) = write_atomic(&dir.join("state.json"), &json) {
        let _ = std::fs::remove_file(dir.join(&file));
        state.weights_file = previous;
        state.generation -= 1;
        return Err(e);
    }
    for e in std::fs::read_dir(dir)?.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if name != file && name.starts_with("weights") && name.ends_with(".safetensors") {
            let _ = std::fs::remove_file(e.path());
        }
    }
    Ok(())
}

/// What [`save`] wrote: loop state, weights by `group.name`, optimizer moments by parameter name.
pub struct Loaded {
    pub state: LoopState,
    pub weights: HashMap<String, Tensor>,
    pub optimizer: Vec<(String, ParamState)>,
}

/// Reads a checkpoint directory.
pub fn load(dir: &Path, device: &Device) -> Result<Loaded, String> {
    let sp = dir.join("state.json");
    let text = std::fs::read_to_string(&sp).map_err(|e| format!("{}: {e}", sp.display()))?;
    let state: LoopState = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", sp.display()))?;
    let wp = dir.join(&state.weights_file);
    let all = candle_core::safetensors::load(&wp, device).map_err(|e| format!("{}: {e}", wp.display()))?;
    let mut weights = HashMap::new();
    let mut moments: BTreeMap<String, ParamState> = BTreeMap::new();
    for (k, t) in all {
        if let Some(rest) = k.strip_prefix("__optimizer.") {
            let (tag, name) = rest.split_once('.').unwrap_or(("", rest));
            let v = t.to_vec1::<f32>().map_err(|e| format!("{}: `{k}`: {e}", wp.display()))?;
            let e = moments.entry(name.to_string()).or_default();
            if tag == "m" {
                e.m = v;
            } else {
                e.v = v;
            }
        } else {
            weights.insert(k, t);
        }
    }
    Ok(Loaded { state, weights, optimizer: moments.into_iter().collect() })
}
