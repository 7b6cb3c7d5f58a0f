//! What the trainer does differently for byte-level text: its splits (contiguous blocks of a
//! corpus, other corpora as extra test domains), token-level evaluation (bits per byte, token
//! accuracy, teacher–student token KL and fidelity) and text samples for the report.
use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use candle_core::{DType, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{
    metrics::{EvalMetrics, MetricsAccumulator},
    run::data_roots,
    TrainError, Trainer,
};
use crate::{
    config::RunConfig,
    data::{
        text::{self, TextSpec},
        token_batch, Dataset, Split,
    },
    generate::{self, Driver},
    Inputs,
};

type Result<T> = std::result::Result<T, TrainError>;

/// The sets of a text run: train, evaluation split, test and the extra domains' test blocks.
pub(super) struct TextSets {
    pub train: Arc<Dataset>,
    pub eval: (Split, Arc<Dataset>),
    pub test: Arc<Dataset>,
    pub domains: Vec<(String, Arc<Dataset>)>,
}

/// The corpus file of `name`: in `dir` when set, else under `data/text/`.
pub fn corpus_path(name: &str, dir: Option<&Path>) -> Result<PathBuf> {
    let dirs: Vec<PathBuf> = match dir {
        Some(d) => vec![d.to_path_buf()],
        None => data_roots().iter().map(|r| r.join("text")).collect(),
    };
    dirs.iter().find_map(|d| text::corpus_file(d, name)).ok_or_else(|| {
        TrainError::Other(format!(
            "text corpus `{name}` not found; set data.dir (looked for {name}.txt.gz and {name}.txt in {})",
            dirs.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        ))
    })
}

/// The cut `[data.text]` describes.
pub fn spec(cfg: &RunConfig) -> TextSpec {
    let t = &cfg.data.text;
    TextSpec { context: t.context, validation: t.validation, test: t.test }
}

/// Loads the run's corpus and its extra domains, before anything is written.
pub(super) fn load_sets(cfg: &RunConfig) -> Result<TextSets> {
    let spec = spec(cfg);
    let cap = cfg.data.text.eval_bytes;
    let file = corpus_path(&cfg.data.dataset, cfg.data.dir.as_deref())?;
    let train = Arc::new(text::load(&file, &spec, Split::Train, 0)?);
    let test = Arc::new(text::load(&file, &spec, Split::Test, cap)?);
    let eval = match spec.validation > 0.0 {
        true => (Split::Validation, Arc::new(text::load(&file, &spec, Split::Validation, cap)?)),
        false => (Split::Test, test.clone()),
    };
    let mut domains = Vec::new();
    for d in &cfg.data.text.domains {
        let f = corpus_path(d, cfg.data.dir.as_deref())?;
        domains.push((d.clone(), Arc::new(text::load(&f, &spec, Split::Test, cap)?)));
    }
    tracing::info!(
        "{}: {} training rows of {} bytes, {} test rows{}",
        file.display(),
        train.len(),
        spec.context + 1,
        test.len(),
        domains.iter().map(|(d, s)| format!(", {d}: {} rows", s.len())).collect::<String>()
    );
    Ok(TextSets { train, eval, test, domains })
}

/// A prompt and what a model wrote after it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TextSample {
    pub prompt: String,
    pub text: String,
}

/// Bytes as text, invalid UTF-8 replaced (a byte model may cut a character).
pub fn lossy(bytes: &[u32]) -> String {
    String::from_utf8_lossy(&bytes.iter().map(|&b| b.min(255) as u8).collect::<Vec<u8>>()).into_owned()
}

impl Trainer {
    /// Token-level metrics of `slot` on text rows: NLL and accuracy over every real target
    /// (bits per byte = NLL / ln 2), and KL(reference ‖ model) and top-1 agreement per token
    /// against the reference slot when it has weights.
    pub(super) fn evaluate_text(&mut self, slot: &str, set: &Arc<Dataset>) -> Result<EvalMetrics> {
        let reference = self.cfg.reference_slot().map(str::to_string);
        self.evaluate_text_against(slot, set, reference)
    }

    /// As [`Trainer::evaluate_text`], with KL and fidelity against `reference` (when it has weights).
    pub(super) fn evaluate_text_against(
        &mut self,
        slot: &str,
        set: &Arc<Dataset>,
        reference: Option<String>,
    ) -> Result<EvalMetrics> {
        let reference = reference.filter(|r| self.ready.contains(r) || r == slot);
        let mut acc = MetricsAccumulator::new(self.cfg.eval.ece_bins, reference.is_some());
        self.host.taps.set_recording(false);
        let bs = self.cfg.data.eval_batch_size.max(1);
        let rows: Vec<usize> = (0..set.len()).collect();
        for (b, chunk) in rows.chunks(bs).enumerate() {
            let batch = token_batch(set, chunk, b, &self.host.device)?;
            let z = self.sequence_logits(slot, &batch.images)?;
            let r = match reference.as_deref() {
                Some(r) if r != slot => Some(self.sequence_logits(r, &batch.images)?),
                Some(_) => Some(z.clone()),
                None => None,
            };
            let labels = batch.labels.flatten_all()?.to_vec1::<i64>()?;
            let keep: Vec<u32> = (0..labels.len() as u32).filter(|&i| labels[i as usize] >= 0).collect();
            let idx = Tensor::from_vec(keep.clone(), keep.len(), z.device())?;
            let v = z.dim(2)?;
            let rows_of = |z: &Tensor| -> Result<Vec<f32>> {
                Ok(z.reshape(((), v))?.index_select(&idx, 0)?.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
            };
            let y: Vec<u32> = keep.iter().map(|&i| labels[i as usize] as u32).collect();
            let zr = rows_of(&z)?;
            let rr = r.as_ref().map(rows_of).transpose()?;
            acc.add(&zr, v, &y, rr.as_deref());
        }
        let mut m = acc.finish();
        m.bits_per_byte = Some(m.nll / std::f64::consts::LN_2);
        Ok(m)
    }

    /// `[B, L, V]` logits of `slot` on input bytes `[B, L]`, in evaluation mode, detached.
    pub(super) fn sequence_logits(&mut self, slot: &str, input: &Tensor) -> Result<Tensor> {
        let model = self.models.get_mut(slot).ok_or_else(|| TrainError::Other(format!("no model `{slot}`")))?;
        let z = model.forward(&Inputs::new().tensor("input", input).scalar("train", 0.0))?.detach();
        if z.rank() != 3 || z.dims()[..2] != input.dims()[..2] {
            return Err(TrainError::Other(format!(
                "model `{slot}` returned shape {:?} for input {:?}; a text run needs logits [batch, length, vocab]",
                z.dims(),
                input.dims()
            )));
        }
        Ok(z)
    }

    /// Bits per byte of `slot` on each extra domain's test block.
    pub(super) fn domain_bits(&mut self, slot: &str) -> Result<std::collections::BTreeMap<String, f64>> {
        let mut out = std::collections::BTreeMap::new();
        for (name, set) in self.domains.clone() {
            let m = self.evaluate_text(slot, &set)?;
            out.insert(name, m.bits_per_byte.unwrap_or(f64::NAN));
        }
        Ok(out)
    }

    /// Continues `prompts` (bytes, all of one length) by `new` bytes from `slot`'s current weights.
    pub fn generate(
        &mut self,
        slot: &str,
        prompts: &[Vec<u32>],
        new: usize,
        sampling: &crate::config::SamplingSection,
        rng: &mut ChaCha8Rng,
    ) -> Result<Vec<Vec<u32>>> {
        let params = self.cfg.models.get(slot).map(|m| m.params.clone()).unwrap_or_default();
        let model = self.models.get_mut(slot).ok_or_else(|| {
            TrainError::Other(format!(
                "no model slot `{slot}` (slots: {:?})",
                self.cfg.models.keys().collect::<Vec<_>>()
            ))
        })?;
        let driver = Driver::of(model, &params)?;
        self.host.taps.set_recording(false);
        let device = self.host.device.clone();
        Ok(generate::generate(model, driver, prompts, new, sampling, rng, &device)?)
    }

    /// The slots that have weights (trained or loaded).
    pub fn ready_slots(&self) -> &[String] {
        &self.ready
    }

    /// `[eval.generate]` samples from `slot`: prompts are the starts of test rows spread evenly
    /// over the split; the draw is seeded by the run's seed.
    pub(super) fn text_samples(&mut self, slot: &str) -> Result<Vec<TextSample>> {
        let g = self.cfg.eval.generate.clone();
        let test = self.test.clone();
        if g.samples == 0 || test.is_empty() {
            return Ok(Vec::new());
        }
        let p = g.prompt_bytes.clamp(1, test.width - 1);
        let prompts: Vec<Vec<u32>> = (0..g.samples)
            .map(|k| {
                let r = k * test.len() / g.samples;
                test.images[r * test.width..r * test.width + p].iter().map(|&b| b as u32).collect()
            })
            .collect();
        let mut rng = ChaCha8Rng::seed_from_u64(self.cfg.run.seed ^ 0x6ee7_a7e5);
        let out = self.generate(slot, &prompts, g.new_bytes, &g.sampling, &mut rng)?;
        Ok(prompts.iter().zip(&out).map(|(p, t)| TextSample { prompt: lossy(p), text: lossy(t) }).collect())
    }
}
