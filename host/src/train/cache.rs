//! Offline teachers (OFF): a model's top-k logits over the training split, written once to a
//! safetensors file (`retort teacher cache`) and read back by the `cached` teacher plugin, which
//! looks each batch sample up by its dataset index (`ids`).
use std::path::Path;

use candle_core::{Device, Tensor};

use super::{run::Trainer, TrainError};

/// What a cache file holds and what it cost.
#[derive(Debug, Clone)]
pub struct CacheStats {
    pub samples: usize,
    pub classes: usize,
    pub k: usize,
    pub bytes: u64,
    /// The same logits stored in full (`N × C` f32), for comparison.
    pub full_bytes: u64,
}

/// The top-k logits of every row of `[n, classes]` logits.
pub struct TopK {
    /// The k largest logits per row, descending.
    pub values: Vec<f32>,
    /// Their class indices (ties: the lower index first).
    pub indices: Vec<u32>,
    /// Each row's log-sum-exp: the top-k log-probabilities are `values − lse`.
    pub lse: Vec<f32>,
    /// Each row's log tail mass `log Σ_{j ∉ top-k} p_j` (−∞ when k covers every class), computed
    /// in f64 from the full row: `1 − Σ p_top` would cancel to noise when the tail is 1e-9.
    pub log_tail: Vec<f32>,
}

/// Per row of `[n, classes]` logits: the k largest, the row's log-sum-exp and its log tail mass.
pub fn top_k(logits: &[f32], classes: usize, k: usize) -> TopK {
    let n = logits.len() / classes.max(1);
    let mut out = TopK {
        values: Vec::with_capacity(n * k),
        indices: Vec::with_capacity(n * k),
        lse: Vec::with_capacity(n),
        log_tail: Vec::with_capacity(n),
    };
    for row in logits.chunks_exact(classes) {
        let mut order: Vec<usize> = (0..classes).collect();
        // Descending by value; ties by class index, so the cache is deterministic.
        order.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
        for &c in &order[..k] {
            out.values.push(row[c]);
            out.indices.push(c as u32);
        }
        let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let lse = m + row.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln();
        let tail: f64 = order[k..].iter().map(|&c| (row[c] as f64 - lse).exp()).sum();
        out.lse.push(lse as f32);
        out.log_tail.push(tail.ln() as f32);
    }
    out
}

impl Trainer {
    /// Writes the top-`k` logits of model `slot` on the training split (every sample, in file
    /// order, no jitter) to `path`: `values` `[N, k]` f32, `indices` `[N, k]` (u8 when the classes
    /// fit, else u32), `lse` and `log_tail` `[N]` f32, `ids` `[N]` u32 (dataset indices) and
    /// `classes` `[1]` u32.
    pub fn cache_teacher(&mut self, slot: &str, k: usize, path: &Path) -> Result<CacheStats, TrainError> {
        let set = self.train_set();
        if set.is_text() {
            return self.cache_sequence_teacher(slot, k, path);
        }
        let (logits, classes, _) = self.logits(slot, &set)?;
        if k == 0 || k > classes {
            return Err(TrainError::Other(format!("k = {k}: it must be between 1 and the {classes} classes")));
        }
        let n = set.len();
        let TopK { values, indices, lse, log_tail } = top_k(&logits, classes, k);
        let cpu = Device::Cpu;
        let indices = if classes <= 256 {
            Tensor::from_vec(indices.iter().map(|&i| i as u8).collect::<Vec<u8>>(), (n, k), &cpu)?
        } else {
            Tensor::from_vec(indices, (n, k), &cpu)?
        };
        let ids: Vec<u32> = (0..n).map(|i| set.id(i)).collect();
        let tensors = std::collections::HashMap::from([
            ("values".to_string(), Tensor::from_vec(values, (n, k), &cpu)?),
            ("indices".to_string(), indices),
            ("lse".to_string(), Tensor::from_vec(lse, n, &cpu)?),
            ("log_tail".to_string(), Tensor::from_vec(log_tail, n, &cpu)?),
            ("ids".to_string(), Tensor::from_vec(ids, n, &cpu)?),
            ("classes".to_string(), Tensor::from_vec(vec![classes as u32], 1, &cpu)?),
        ]);
        let bytes = save(&tensors, path)?;
        Ok(CacheStats { samples: n, classes, k, bytes, full_bytes: (n * classes * 4) as u64 })
    }

    /// The text form of [`Trainer::cache_teacher`]: per training row and token, the top-`k`
    /// logits as f16 (`values` `[N, L, k]`), their byte indices (`indices` `[N, L, k]` u8) and the
    /// token's `lse` and `log_tail` (`[N, L]` f32). A padded tail's positions are cached like the
    /// others (their loss is masked). Rows are scored batch by batch, never all logits at once.
    fn cache_sequence_teacher(&mut self, slot: &str, k: usize, path: &Path) -> Result<CacheStats, TrainError> {
        let set = self.train_set();
        let (n, l) = (set.len(), set.width - 1);
        let bs = self.cfg.data.eval_batch_size.max(1);
        let mut all = TopK { values: Vec::new(), indices: Vec::new(), lse: Vec::new(), log_tail: Vec::new() };
        let mut classes = 0;
        let rows: Vec<usize> = (0..n).collect();
        for (b, chunk) in rows.chunks(bs).enumerate() {
            let batch = crate::data::token_batch(&set, chunk, b, &self.host.device)?;
            let z = self.sequence_logits(slot, &batch.images)?;
            classes = z.dim(2)?;
            if k == 0 || k > classes {
                return Err(TrainError::Other(format!("k = {k}: it must be between 1 and the {classes} classes")));
            }
            let t = top_k(&z.to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1::<f32>()?, classes, k);
            all.values.extend(t.values);
            all.indices.extend(t.indices);
            all.lse.extend(t.lse);
            all.log_tail.extend(t.log_tail);
        }
        if classes > 256 {
            return Err(TrainError::Other(format!(
                "a text cache stores byte indices; the model has {classes} classes"
            )));
        }
        let cpu = Device::Cpu;
        let ids: Vec<u32> = (0..n).map(|i| set.id(i)).collect();
        let tensors = std::collections::HashMap::from([
            ("values".to_string(), Tensor::from_vec(all.values, (n, l, k), &cpu)?.to_dtype(candle_core::DType::F16)?),
            (
                "indices".to_string(),
                Tensor::from_vec(all.indices.iter().map(|&i| i as u8).collect::<Vec<u8>>(), (n, l, k), &cpu)?,
            ),
            ("lse".to_string(), Tensor::from_vec(all.lse, (n, l), &cpu)?),
            ("log_tail".to_string(), Tensor::from_vec(all.log_tail, (n, l), &cpu)?),
            ("ids".to_string(), Tensor::from_vec(ids, n, &cpu)?),
            ("classes".to_string(), Tensor::from_vec(vec![classes as u32], 1, &cpu)?),
        ]);
        let bytes = save(&tensors, path)?;
        Ok(CacheStats { samples: n * l, classes, k, bytes, full_bytes: (n * l * classes * 4) as u64 })
    }
}

/// Writes a cache file (making its directory); returns its size.
fn save(tensors: &std::collections::HashMap<String, Tensor>, path: &Path) -> Result<u64, TrainError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|error| TrainError::Io { context: dir.display().to_string(), error })?;
    }
    candle_core::safetensors::save(tensors, path)?;
    Ok(std::fs::metadata(path).map(|m| m.len()).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::top_k;

    #[test]
    fn top_k_keeps_the_largest_logits_in_order_with_the_rows_log_sum_exp() {
        let logits = [0.5f32, 2.0, -1.0, 2.0, /* row 2 */ 3.0, 0.0, 1.0, -2.0];
        let t = top_k(&logits, 4, 2);
        assert_eq!(t.values, [2.0, 2.0, 3.0, 1.0]);
        assert_eq!(t.indices, [1, 3, 0, 2]);
        let lse = |r: &[f32]| r.iter().map(|&x| (x as f64).exp()).sum::<f64>().ln();
        assert!(
            (t.lse[0] as f64 - lse(&logits[..4])).abs() < 1e-6 && (t.lse[1] as f64 - lse(&logits[4..])).abs() < 1e-6
        );
        let tail0 = ((0.5f64).exp() + (-1.0f64).exp()).ln() - lse(&logits[..4]);
        assert!((t.log_tail[0] as f64 - tail0).abs() < 1e-6);
        // A tail of 1e-12 of the mass survives (1 − Σ p_top would round it away).
        let sharp = top_k(&[30.0, 2.0], 2, 1);
        assert!((sharp.log_tail[0] as f64 - (-28.0 - (1.0f64 + (-28.0f64).exp()).ln())).abs() < 1e-5);
    }
}
