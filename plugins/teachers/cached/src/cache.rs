//! A top-k logit cache file, indexed by dataset sample id: one row of k logits per sample
//! (`values` `[N, k]` f32), or per token of a text row (`[N, L, k]`, f16 or f32).
use std::{collections::HashMap, path::Path};

use safetensors::{tensor::TensorView, Dtype, SafeTensors};

/// The cached top-k logits of every sample.
pub struct Cache {
    pub classes: usize,
    /// Tokens per sample (1 for images).
    pub tokens: usize,
    /// True when the file holds sequences (`[N, L, k]`): the logits are `[B, L, classes]`.
    pub sequences: bool,
    k: usize,
    values: Vec<f32>,
    indices: Vec<u32>,
    lse: Vec<f32>,
    log_tail: Vec<f32>,
    row: HashMap<u32, usize>,
    path: String,
}

fn f32s(t: &TensorView<'_>) -> Result<Vec<f32>, String> {
    match t.dtype() {
        Dtype::F32 => Ok(t.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()),
        Dtype::F16 => Ok(t.data().chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect()),
        d => Err(format!("expected f32 or f16, found {d:?}")),
    }
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
        let (n, tokens, k, sequences) = match values.shape() {
            [n, k] => (*n, 1, *k, false),
            [n, l, k] => (*n, *l, *k, true),
            s => return Err(format!("cached: {name}: `values` is {s:?}, expected [N, k] or [N, L, k]")),
        };
        let floats = |key: &str| f32s(&get(key)?).map_err(|e| format!("cached: {name}: `{key}`: {e}"));
        let indices = u32s(&get("indices")?).map_err(|e| format!("cached: {name}: `indices`: {e}"))?;
        let (lse, log_tail) = (floats("lse")?, floats("log_tail")?);
        let ids = u32s(&get("ids")?).map_err(|e| format!("cached: {name}: `ids`: {e}"))?;
        let classes = u32s(&get("classes")?).map_err(|e| format!("cached: {name}: `classes`: {e}"))?;
        let classes = classes.first().copied().unwrap_or(0) as usize;
        let m = n * tokens;
        if indices.len() != m * k || lse.len() != m || log_tail.len() != m || ids.len() != n || k == 0 || k > classes {
            return Err(format!("cached: {name}: inconsistent shapes (N = {n}, k = {k}, {classes} classes)"));
        }
        if let Some(bad) = indices.iter().find(|&&i| i as usize >= classes) {
            return Err(format!("cached: {name}: class index {bad} ≥ {classes} classes"));
        }
        let row = ids.iter().enumerate().map(|(r, &id)| (id, r)).collect();
        let values = f32s(&values).map_err(|e| format!("cached: {name}: `values`: {e}"))?;
        Ok(Cache { classes, tokens, sequences, k, values, indices, lse, log_tail, row, path: name })
    }

    /// `[ids.len() · tokens, classes]` log-probabilities: the cached classes exactly, the tail
    /// mass spread evenly over the others.
    pub fn log_probs(&self, ids: &[u32]) -> Result<Vec<f32>, String> {
        let (c, l) = (self.classes, self.tokens);
        let mut out = Vec::with_capacity(ids.len() * l * c);
        for &id in ids {
            let sample = *self.row.get(&id).ok_or_else(|| {
                format!("cached: sample {id} is not in {} (a cache of another split or dataset?)", self.path)
            })?;
            for r in sample * l..(sample + 1) * l {
                self.push_row(r, &mut out);
            }
        }
        Ok(out)
    }

    /// Row `r`'s log-probabilities onto `out`.
    fn push_row(&self, r: usize, out: &mut Vec<f32>) {
        let (c, k) = (self.classes, self.k);
        let lse = self.lse[r] as f64;
        // The tail's exact log-mass (from the full row at cache time), spread evenly.
        let rest = if c > k { self.log_tail[r] as f64 - ((c - k) as f64).ln() } else { 0.0 };
        let start = out.len();
        out.resize(start + c, rest as f32);
        for j in r * k..(r + 1) * k {
            out[start + self.indices[j] as usize] = (self.values[j] as f64 - lse) as f32;
        }
    }
}
