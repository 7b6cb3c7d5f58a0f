//! Sampling text from a language-model plugin: temperature, top-k and top-p (nucleus) truncation,
//! seeded, with the model's KV cache when it serves one (see the `gpt` plugin's `kv_cache`).
//!
//! Sampling runs on the host over the last position's logits, one read per new token for the
//! whole batch; the model's context bounds what it sees, so long generations slide a window.
use candle_core::{DType, Device, IndexOp, Tensor};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::{config::SamplingSection, HostError, Inputs, ModelInstance, Result};

/// How a model is driven: its context and whether it speaks the KV-cache convention.
#[derive(Debug, Clone, Copy)]
pub struct Driver {
    pub context: usize,
    pub cache: bool,
}

impl Driver {
    /// Reads `context` and `kv_cache` from the model's parameters: the configured value, else the
    /// plugin's default. A model without a `context` parameter is not a sequence model.
    pub fn of(model: &ModelInstance, params: &serde_json::Value) -> Result<Driver> {
        let get = |name: &str| -> Option<serde_json::Value> {
            params.get(name).cloned().or_else(|| {
                let p = model.meta().params.iter().find(|p| p.name == name)?;
                serde_json::from_str(&p.default_json).ok()
            })
        };
        let context = get("context").and_then(|v| v.as_u64()).ok_or_else(|| {
            HostError::Invalid(format!(
                "model plugin `{}` has no `context` parameter: it is not a language model that can generate",
                model.meta().name
            ))
        })? as usize;
        let cache = get("kv_cache").and_then(|v| v.as_bool()).unwrap_or(false);
        Ok(Driver { context: context.max(1), cache })
    }
}

/// The next token from one row of logits: greedy at temperature 0, else a draw from the
/// softmax at the temperature restricted to the top-k, then to the smallest top-p set.
pub fn sample(logits: &[f32], s: &SamplingSection, rng: &mut ChaCha8Rng) -> u32 {
    let argmax = || logits.iter().enumerate().fold(0, |b, (i, &v)| if v > logits[b] { i } else { b }) as u32;
    if s.temperature <= 0.0 {
        return argmax();
    }
    let mut order: Vec<usize> = (0..logits.len()).collect();
    // Descending, ties by index: the same order on every machine.
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    if s.top_k > 0 {
        order.truncate(s.top_k);
    }
    let m = logits[order[0]] as f64;
    let mut p: Vec<f64> = order.iter().map(|&i| ((logits[i] as f64 - m) / s.temperature).exp()).collect();
    let total: f64 = p.iter().sum();
    p.iter_mut().for_each(|v| *v /= total);
    if s.top_p < 1.0 {
        let mut acc = 0.0;
        let keep = p.iter().position(|v| {
            acc += v;
            acc >= s.top_p
        });
        let keep = keep.map_or(p.len(), |k| k + 1);
        p.truncate(keep);
        order.truncate(keep);
    }
    let total: f64 = p.iter().sum();
    let mut u = rng.random::<f64>() * total;
    for (k, v) in p.iter().enumerate() {
        if u < *v {
            return order[k] as u32;
        }
        u -= v;
    }
    order[p.len() - 1] as u32
}

/// Continues every prompt (all of one length) by `new` tokens; returns the new tokens per row.
/// The model runs in evaluation mode and nothing is recorded for a gradient.
pub fn generate(
    model: &mut ModelInstance,
    driver: Driver,
    prompts: &[Vec<u32>],
    new: usize,
    s: &SamplingSection,
    rng: &mut ChaCha8Rng,
    device: &Device,
) -> Result<Vec<Vec<u32>>> {
    let b = prompts.len();
    let p = prompts.first().map_or(0, Vec::len);
    if b == 0 || new == 0 {
        return Ok(vec![Vec::new(); b]);
    }
    if p == 0 || prompts.iter().any(|r| r.len() != p) {
        return Err(HostError::Invalid("generate: prompts must be non-empty and of one length".into()));
    }
    let mut seqs: Vec<Vec<u32>> = prompts.to_vec();
    // In cache mode the model holds tokens `start..start + cached` of every row.
    let (mut start, mut cached) = (0usize, 0usize);
    for _ in 0..new {
        let len = seqs[0].len();
        let (from, mode) = if !driver.cache {
            (len.saturating_sub(driver.context), 0.0)
        } else if cached > 0 && cached < driver.context {
            (start + cached, 1.0)
        } else {
            // A fresh cache: the prompt, or the last half-context when the cache is full.
            let keep = if cached == 0 { driver.context } else { (driver.context / 2).max(1) };
            (len.saturating_sub(keep), 2.0)
        };
        let ids: Vec<u32> = seqs.iter().flat_map(|r| r[from..].iter().copied()).collect();
        let x = Tensor::from_vec(ids, (b, len - from), device)?;
        let mut inputs = Inputs::new().tensor("input", &x).scalar("train", 0.0);
        if driver.cache {
            inputs = inputs.scalar("kv_cache", mode);
        }
        let z = model.forward(&inputs)?.detach();
        if z.rank() != 3 || z.dim(0)? != b {
            return Err(HostError::Invalid(format!(
                "generate: model `{}` returned {:?}; expected logits [B, T, vocab]",
                model.meta().name,
                z.dims()
            )));
        }
        if mode == 2.0 {
            (start, cached) = (from, len - from);
        } else if mode == 1.0 {
            cached += len - from;
        }
        let t = z.dim(1)?;
        let last = z.i((.., t - 1, ..))?.to_dtype(DType::F32)?.to_vec2::<f32>()?;
        for (row, l) in seqs.iter_mut().zip(&last) {
            row.push(sample(l, s, rng));
        }
    }
    Ok(seqs.into_iter().map(|r| r[p..].to_vec()).collect())
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn truncation_keeps_only_the_allowed_tokens() {
        let z = [0.0f32, 3.0, 2.9, -1.0, 1.0];
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let greedy = SamplingSection { temperature: 0.0, ..Default::default() };
        assert_eq!(sample(&z, &greedy, &mut rng), 1);
        let top2 = SamplingSection { top_k: 2, ..Default::default() };
        let draws: Vec<u32> = (0..200).map(|_| sample(&z, &top2, &mut rng)).collect();
        assert!(draws.iter().all(|&d| d == 1 || d == 2) && draws.contains(&1) && draws.contains(&2));
        // p(1) ≈ 0.47, p(2) ≈ 0.43: top-p 0.4 keeps token 1 alone.
        let nucleus = SamplingSection { top_p: 0.4, ..Default::default() };
        assert!((0..50).all(|_| sample(&z, &nucleus, &mut rng) == 1));
        let all = SamplingSection::default();
        let draws: Vec<u32> = (0..2000).map(|_| sample(&z, &all, &mut rng)).collect();
        let share = draws.iter().filter(|&&d| d == 4).count() as f64 / 2000.0;
        let expect = 1f64.exp() / z.iter().map(|&v| (v as f64).exp()).sum::<f64>();
        assert!((share - expect).abs() < 0.02, "token 4 drawn {share}, softmax {expect}");
    }
}
