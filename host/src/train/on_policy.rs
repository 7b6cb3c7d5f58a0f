//! GKD's on-policy batches (Agarwal et al. 2024; methods spec §7.3, TRL's step procedure): on a
//! share λ of the steps, drawn by a per-step coin, each row's first `prompt` bytes are continued
//! by the student's current weights (evaluation mode, no graph: sampled ids are data), and the
//! row becomes prompt + continuation with the prompt's targets masked out. `source = "teacher"`
//! samples from the teacher instead (sequence-level KD).
use candle_core::Tensor;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{TrainError, Trainer};
use crate::{
    config::{OnPolicySection, SequenceSource, StageSection},
    data::Batch,
};

type Result<T> = std::result::Result<T, TrainError>;

/// The coin and the sampling stream of stage step `step`: functions of the stage seed and the
/// step only, so a resumed run draws what the uninterrupted one drew.
pub fn draws(stage_seed: u64, step: u64) -> (f64, ChaCha8Rng) {
    let mut rng = ChaCha8Rng::seed_from_u64(stage_seed ^ 0x0600_d5ee_d000 ^ step.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let u = rng.random::<f64>();
    (u, rng)
}

/// A text batch from full rows of `L + 1` bytes whose first `prompt` bytes are the prompt: inputs
/// `row[..L]`, targets `row[1..]`, the targets inside the prompt (positions < prompt − 1) −100
/// and masked.
pub fn prompted_batch(rows: &[Vec<u32>], prompt: usize, like: &Batch) -> candle_core::Result<Batch> {
    let n = rows.len();
    let l = rows.first().map_or(0, |r| r.len().saturating_sub(1));
    let mut input = Vec::with_capacity(n * l);
    let mut target = Vec::with_capacity(n * l);
    let mut mask = Vec::with_capacity(n * l);
    for r in rows {
        input.extend_from_slice(&r[..l]);
        for t in 0..l {
            let scored = t + 1 >= prompt;
            target.push(if scored { r[t + 1] as i64 } else { -100 });
            mask.push(if scored { 1f32 } else { 0.0 });
        }
    }
    let dev = like.images.device();
    Ok(Batch {
        images: Tensor::from_vec(input, (n, l), dev)?,
        labels: Tensor::from_vec(target, (n, l), dev)?,
        mask: Some(Tensor::from_vec(mask, (n, l), dev)?),
        ids: like.ids.clone(),
        index: like.index,
    })
}

impl Trainer {
    /// The step's batch under `[stages.on_policy]`: the data batch when the coin says so (or the
    /// stage has none), else the generated one. The second value says whether it was generated.
    pub(super) fn on_policy_batch(
        &mut self,
        st: &StageSection,
        op: &OnPolicySection,
        batch: &Batch,
        stage_seed: u64,
        step: u64,
    ) -> Result<(Option<Batch>, bool)> {
        let (u, mut rng) = draws(stage_seed, step);
        if u >= op.fraction || op.fraction == 0.0 {
            return Ok((None, false));
        }
        let source = match op.source {
            SequenceSource::Student => st.train.primary().to_string(),
            SequenceSource::Teacher => st
                .teacher
                .clone()
                .ok_or_else(|| TrainError::Other("on_policy.source = teacher needs the stage's teacher".into()))?,
        };
        let x = batch.images.to_vec2::<u32>()?;
        let l = x.first().map_or(0, Vec::len);
        let prompts: Vec<Vec<u32>> = x.iter().map(|r| r[..op.prompt.min(l)].to_vec()).collect();
        let new = l + 1 - prompts.first().map_or(0, Vec::len);
        let out = self.generate(&source, &prompts, new, &op.sampling, &mut rng)?;
        // Generation records nothing; the step's forwards record again.
        self.host.taps.set_recording(true);
        let rows: Vec<Vec<u32>> = prompts
            .into_iter()
            .zip(out)
            .map(|(mut p, g)| {
                p.extend(g);
                p
            })
            .collect();
        Ok((Some(prompted_batch(&rows, op.prompt, batch)?), true))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    #[test]
    fn the_prompt_carries_no_loss() {
        let d = Device::Cpu;
        let like = Batch {
            images: Tensor::zeros((2, 5), candle_core::DType::U32, &d).unwrap(),
            labels: Tensor::zeros((2, 5), candle_core::DType::I64, &d).unwrap(),
            mask: None,
            ids: Tensor::new(&[4u32, 9], &d).unwrap(),
            index: 3,
        };
        let rows = vec![vec![10, 11, 12, 13, 14, 15], vec![20, 21, 22, 23, 24, 25]];
        let b = prompted_batch(&rows, 3, &like).unwrap();
        assert_eq!(b.images.to_vec2::<u32>().unwrap(), vec![vec![10, 11, 12, 13, 14], vec![20, 21, 22, 23, 24]]);
        // Targets 11 and 12 are prompt bytes: not scored; 13, 14, 15 are the continuation.
        assert_eq!(b.labels.to_vec2::<i64>().unwrap()[0], vec![-100, -100, 13, 14, 15]);
        assert_eq!(b.mask.unwrap().to_vec2::<f32>().unwrap()[1], vec![0.0, 0.0, 1.0, 1.0, 1.0]);
        assert_eq!(b.ids.to_vec1::<u32>().unwrap(), vec![4, 9]);
    }

    #[test]
    fn the_coin_is_a_function_of_seed_and_step() {
        let a: Vec<f64> = (0..50).map(|s| draws(7, s).0).collect();
        let b: Vec<f64> = (0..50).map(|s| draws(7, s).0).collect();
        assert_eq!(a, b);
        let heads = a.iter().filter(|&&u| u < 0.5).count();
        assert!((15..=35).contains(&heads), "{heads} of 50 below one half");
        assert_ne!(a, (0..50).map(|s| draws(8, s).0).collect::<Vec<_>>());
    }
}
