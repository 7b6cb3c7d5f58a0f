//! MiniPLM's difference sampling (Gu et al. 2024; methods spec §7.1, the official code's rule):
//! each training row `x` is scored by its length-normalised NLL under a reference LM and under
//! the teacher, `r(x) = s_R(x) − s_T(x) = (1/|x|)·[log p_T(x) − log p_R(x)]`, and the top
//! ⌊α·N⌋ rows by `r` are kept — deterministic top-α, ties to the earlier row — then put back in
//! corpus order. The student trains on them with its ordinary losses.
use std::sync::Arc;

use candle_core::DType;

use super::{TrainError, Trainer};
use crate::data::{token_batch, Dataset};

type Result<T> = std::result::Result<T, TrainError>;

/// The rows kept: the ⌊keep·N⌋ largest `reference − teacher` scores (ties: the lower index
/// first), in ascending row order.
pub fn select(teacher: &[f64], reference: &[f64], keep: f64) -> Vec<usize> {
    let n = teacher.len().min(reference.len());
    let r: Vec<f64> = (0..n).map(|i| reference[i] - teacher[i]).collect();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| r[b].total_cmp(&r[a]).then(a.cmp(&b)));
    order.truncate((keep * n as f64).floor() as usize);
    order.sort_unstable();
    order
}

impl Trainer {
    /// Each row's mean NLL (nats per real target) under `slot`, in evaluation mode.
    pub(super) fn row_nll(&mut self, slot: &str, set: &Dataset) -> Result<Vec<f64>> {
        let bs = self.cfg.data.eval_batch_size.max(1);
        let rows: Vec<usize> = (0..set.len()).collect();
        self.host.taps.set_recording(false);
        let mut out = Vec::with_capacity(set.len());
        for (b, chunk) in rows.chunks(bs).enumerate() {
            let batch = token_batch(set, chunk, b, &self.host.device)?;
            let z = self.sequence_logits(slot, &batch.images)?.to_dtype(DType::F32)?;
            let mask = batch.mask.clone().ok_or_else(|| TrainError::Other("a text batch without a mask".into()))?;
            // Per-token CE is 0 where the label is −100 (a padded tail), so the sum is over targets.
            let nll = crate::backend::softmax_loss::ce_rows(&z, &batch.labels)?.sum(1)?;
            let per_row = nll.div(&mask.sum(1)?.clamp(1.0, f64::MAX)?)?;
            out.extend(per_row.to_dtype(DType::F64)?.to_vec1::<f64>()?);
        }
        Ok(out)
    }

    /// The stage's training rows under `[stages.difference_sampling]`: scored by both models,
    /// the top fraction kept. Writes the scores and the kept ids to `difference-sampling.json`.
    pub(super) fn difference_sample(&mut self, stage: &str, data: &Arc<Dataset>) -> Result<Arc<Dataset>> {
        let Some(ds) = self.cfg.stages.iter().find(|s| s.name == stage).and_then(|s| s.difference_sampling.clone())
        else {
            return Ok(data.clone());
        };
        for slot in [&ds.teacher, &ds.reference] {
            if !self.ready.contains(slot) {
                return Err(TrainError::Other(format!(
                    "stages `{stage}`.difference_sampling: `{slot}` has no weights (load a checkpoint or train it first)"
                )));
            }
        }
        let t0 = std::time::Instant::now();
        let s_t = self.row_nll(&ds.teacher, data)?;
        let s_r = self.row_nll(&ds.reference, data)?;
        let kept = select(&s_t, &s_r, ds.keep);
        let mean = |v: &[f64], idx: &[usize]| idx.iter().map(|&i| v[i]).sum::<f64>() / idx.len().max(1) as f64;
        let all: Vec<usize> = (0..data.len()).collect();
        let what = format!(
            "difference sampling kept {} of {} rows (α = {}) in {:.1} s; teacher NLL {:.3} → {:.3}, reference {:.3} → {:.3}",
            kept.len(),
            data.len(),
            ds.keep,
            t0.elapsed().as_secs_f64(),
            mean(&s_t, &all),
            mean(&s_t, &kept),
            mean(&s_r, &all),
            mean(&s_r, &kept)
        );
        tracing::info!("{what}");
        self.event("data_selected", stage, None, None, Some(what));
        let ids: Vec<u32> = kept.iter().map(|&i| data.id(i)).collect();
        let record = serde_json::json!({
            "stage": stage, "teacher": ds.teacher, "reference": ds.reference, "keep": ds.keep,
            "teacher_nll": s_t, "reference_nll": s_r, "kept_ids": ids,
        });
        let path = self.run_dir.join("difference-sampling.json");
        super::log::write_atomic(&path, record.to_string().as_bytes())
            .map_err(|error| TrainError::Io { context: path.display().to_string(), error })?;
        Ok(Arc::new(data.select(&kept)))
    }
}

#[cfg(test)]
mod tests {
    use super::select;

    #[test]
    fn keeps_the_top_alpha_of_reference_minus_teacher_in_corpus_order() {
        let teacher = [2.0, 1.0, 3.0, 1.0, 0.5, 2.0];
        let reference = [2.5, 3.0, 3.0, 2.0, 0.5, 2.5];
        // r = [0.5, 2.0, 0.0, 1.0, 0.0, 0.5]
        assert_eq!(select(&teacher, &reference, 0.5), vec![0, 1, 3], "r 2.0, 1.0, then the earlier 0.5");
        assert_eq!(select(&teacher, &reference, 0.34), vec![1, 3], "⌊0.34 · 6⌋ = 2");
        assert_eq!(select(&teacher, &reference, 1.0), vec![0, 1, 2, 3, 4, 5]);
        // Ties at the cut go to the lower index, whatever the input order of equal scores.
        assert_eq!(select(&[0.0; 4], &[1.0; 4], 0.5), vec![0, 1]);
        // Output size is ⌊α·N⌋ rows.
        let n = 1000;
        let t: Vec<f64> = (0..n).map(|i| ((i * 37) % 101) as f64).collect();
        let r: Vec<f64> = (0..n).map(|i| ((i * 53) % 97) as f64).collect();
        let kept = select(&t, &r, 0.3);
        assert_eq!(kept.len(), 300);
        assert!(kept.windows(2).all(|w| w[0] < w[1]));
        let worst_kept = kept.iter().map(|&i| r[i] - t[i]).fold(f64::INFINITY, f64::min);
        let best_dropped = (0..n).filter(|i| !kept.contains(i)).map(|i| r[i] - t[i]).fold(f64::NEG_INFINITY, f64::max);
        assert!(worst_kept >= best_dropped);
    }
}
