//! A top-k logit cache file, indexed by dataset sample id.
use std::{collections::HashMap, path::Path};

use safetensors::{tensor::TensorView, Dtype, SafeTensors};

/// The cached top-k logits of every sample.
pub struct Cache {
    pub classes: usize,
    k: usize,
    values: Vec<f32>,
    indices: Vec<u32>,
    lse: Vec<f32>,
    log_tail: Vec<f32>,
    row: HashMap<u32, usize>,
    path: String,
}

fn f32s(t: &TensorView<'_>) -> Vec<f32> {
    t.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

fn u32s(t: &TensorView<'_>) -> Result<Vec<u32>, String> {
    match t.dtype() {
        Dtype::U8 => Ok(t.data().iter().map(|&b| b as u32).collect()),
        Dtype::U32 => Ok(t.data().chunks_exact(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()),
        d => Err(format!("expected u8 or u32, found {d:?}")),
    }
}

impl Cache {
    /// Reads a cache written by `retort teacher cache`.
    pub fn load(path: &Path) -> Result<Cache, String> {
        let name = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| format!("cached: cannot read {name}: {e}"))?;
        let st = SafeTensors::deserialize(&bytes).map_err(|e| format!("cached: {name} is not safetensors: {e}"))?;
        let get = |k: &str| {
            st.tensor(k).map_err(|e| format!("cached: {name} has no `{k}` ({e}); write it with `retort teacher cache`"))
        };
        let values = get("values")?;
        let (n, k) = match values.shape() {
            [n, k] if values.dtype() == Dtype::F32 => (*n, *k),
            s => return Err(format!("cached: {name}: `values` is {s:?} {:?}, expected [N, k] f32", values.dtype())),
        };
        let indices = u32s(&get("indices")?).map_err(|e| format!("cached: {name}: `indices`: {e}"))?;
        let lse = f32s(&get("lse")?);
        let log_tail = f32s(&get("log_tail")?);
        let ids = u32s(&get("ids")?).map_err(|e| format!("cached: {name}: `ids`: {e}"))?;
        let classes = u32s(&get("classes")?).map_err(|e| format!("cached: {name}: `classes`: {e}"))?;
        let classes = classes.first().copied().unwrap_or(0) as usize;
        if indices.len() != n * k || lse.len() != n || log_tail.len() != n || ids.len() != n || k == 0 || k > classes {
            return Err(format!("cached: {name}: inconsistent shapes (N = {n}, k = {k}, {classes} classes)"));
        }
        if let Some(bad) = indices.iter().find(|&&i| i as usize >= classes) {
            return Err(format!("cached: {name}: class index {bad} ≥ {classes} classes"));
        }
        let row = ids.iter().enumerate().map(|(r, &id)| (id, r)).collect();
        Ok(Cache { classes, k, values: f32s(&values), indices, lse, log_tail, row, path: name })
    }

    /// `[ids.len(), classes]` log-probabilities: the cached classes exactly, the tail mass spread
    /// evenly over the others.
    pub fn log_probs(&self, ids: &[u32]) -> Result<Vec<f32>, String> {
        let (c, k) = (self.classes, self.k);
        let mut out = Vec::with_capacity(ids.len() * c);
        for &id in ids {
            let r = *self.row.get(&id).ok_or_else(|| {
                format!("cached: sample {id} is not in {} (a cache of another split or dataset?)", self.path)
            })?;
            let lse = self.lse[r] as f64;
            let top: Vec<(usize, f64)> =
                (0..k).map(|j| (self.indices[r * k + j] as usize, self.values[r * k + j] as f64 - lse)).collect();
            // The tail's exact log-mass (from the full row at cache time), spread evenly.
            let rest = if c > k { self.log_tail[r] as f64 - ((c - k) as f64).ln() } else { 0.0 };
            let mut row = vec![rest as f32; c];
            for (i, lp) in top {
                row[i] = lp as f32;
            }
            out.extend(row);
        }
        Ok(out)
    }
}
