//! Seeded, deterministic batching on a background thread.
//!
//! Every epoch's order and every batch's jitter derive from (seed, epoch, batch index) only, so a
//! run resumed mid-epoch sees exactly the batches the uninterrupted run would have seen.
use std::{
    sync::{mpsc, Arc},
    thread::JoinHandle,
};

use candle_core::{Device, Tensor};
use rand::{seq::SliceRandom, Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{Dataset, DeviceSet};

/// One batch: images `[B, 1, H, W]` (normalised f32) and labels `[B]` (u32); for text, input
/// bytes `[B, L]` (u32), next-byte targets `[B, L]` (i64, −100 past a row's end) and a mask.
#[derive(Clone)]
pub struct Batch {
    pub images: Tensor,
    pub labels: Tensor,
    /// Text only: 1 where a position has a target, 0 in a padded tail, `[B, L]` f32.
    pub mask: Option<Tensor>,
    /// Each sample's index in its source file, `[B]` u32 (see [`Dataset::id`]).
    pub ids: Tensor,
    /// Index of the batch within its epoch.
    pub index: usize,
}

/// How to cut an epoch into batches.
#[derive(Debug, Clone)]
pub struct BatchPlan {
    pub batch_size: usize,
    pub shuffle: bool,
    /// Maximum random shift in pixels (input jitter, Hinton et al. 2012/2015); 0 = none.
    pub jitter: usize,
    pub mean: f32,
    pub std: f32,
    pub seed: u64,
    /// Drop a last partial batch (training) or keep it (evaluation).
    pub drop_last: bool,
}

impl BatchPlan {
    /// Batches per epoch for `n` samples.
    pub fn batches(&self, n: usize) -> usize {
        if self.drop_last {
            n / self.batch_size.max(1)
        } else {
            n.div_ceil(self.batch_size.max(1))
        }
    }

    fn order(&self, n: usize, epoch: u64) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..n).collect();
        if self.shuffle {
            idx.shuffle(&mut ChaCha8Rng::seed_from_u64(self.seed ^ epoch.wrapping_mul(0x9e37_79b9_7f4a_7c15)));
        }
        idx
    }

    /// The samples of batch `b` of `epoch` and each one's jitter shift `(dy, dx)`: all the
    /// randomness of a batch, shared by the host and the device paths.
    pub fn draw(&self, order: &[usize], epoch: u64, b: usize) -> (Vec<usize>, Vec<(i64, i64)>) {
        let bs = self.batch_size.max(1);
        let ids = order[b * bs..((b + 1) * bs).min(order.len())].to_vec();
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ 0xa11c_e5ee_d000 ^ (epoch << 32) ^ b as u64);
        let j = self.jitter as i64;
        let shifts = ids
            .iter()
            .map(|_| if j > 0 { (rng.random_range(-j..=j), rng.random_range(-j..=j)) } else { (0, 0) })
            .collect();
        (ids, shifts)
    }

    /// Builds batch `b` of `epoch` (CPU work only; the tensor is made on `device`).
    pub fn make(
        &self,
        data: &Dataset,
        order: &[usize],
        epoch: u64,
        b: usize,
        device: &Device,
    ) -> candle_core::Result<Batch> {
        let (ids, shifts) = self.draw(order, epoch, b);
        if data.is_text() {
            return token_batch(data, &ids, b, device);
        }
        let (h, w) = (data.height, data.width);
        let p = h * w;
        let mut x = vec![0f32; ids.len() * p];
        let bg = (0.0 - self.mean) / self.std;
        for (k, (&i, &(dy, dx))) in ids.iter().zip(&shifts).enumerate() {
            let src = &data.images[i * p..(i + 1) * p];
            let dst = &mut x[k * p..(k + 1) * p];
            for r in 0..h as i64 {
                for c in 0..w as i64 {
                    let (sr, sc) = (r - dy, c - dx);
                    dst[(r * w as i64 + c) as usize] = if sr >= 0 && sr < h as i64 && sc >= 0 && sc < w as i64 {
                        self.normalise(src[(sr * w as i64 + sc) as usize])
                    } else {
                        bg
                    };
                }
            }
        }
        let labels: Vec<u32> = ids.iter().map(|&i| data.labels[i] as u32).collect();
        let sample_ids: Vec<u32> = ids.iter().map(|&i| data.id(i)).collect();
        Ok(Batch {
            images: Tensor::from_vec(x, (ids.len(), 1, h, w), device)?,
            labels: Tensor::from_vec(labels, ids.len(), device)?,
            mask: None,
            ids: Tensor::from_vec(sample_ids, ids.len(), device)?,
            index: b,
        })
    }

    /// A pixel byte as the model sees it.
    pub fn normalise(&self, v: u8) -> f32 {
        (v as f32 / 255.0 - self.mean) / self.std
    }
}

/// The text rows `rows` of `data` as a batch: inputs, targets (−100 past each row's length) and
/// the mask of real targets.
pub fn token_batch(data: &Dataset, rows: &[usize], index: usize, device: &Device) -> candle_core::Result<Batch> {
    let (w, n) = (data.width, rows.len());
    let l = w - 1;
    let mut input = Vec::with_capacity(n * l);
    let mut target = Vec::with_capacity(n * l);
    let mut mask = Vec::with_capacity(n * l);
    for &r in rows {
        let row = &data.images[r * w..(r + 1) * w];
        let len = data.lengths[r] as usize;
        input.extend(row[..l].iter().map(|&v| v as u32));
        for (t, &y) in row[1..].iter().enumerate() {
            target.push(if t < len { y as i64 } else { -100 });
            mask.push(if t < len { 1f32 } else { 0.0 });
        }
    }
    let ids: Vec<u32> = rows.iter().map(|&r| data.id(r)).collect();
    Ok(Batch {
        images: Tensor::from_vec(input, (n, l), device)?,
        labels: Tensor::from_vec(target, (n, l), device)?,
        mask: Some(Tensor::from_vec(mask, (n, l), device)?),
        ids: Tensor::from_vec(ids, n, device)?,
        index,
    })
}

/// An epoch's batches: made on the host on a background thread (two in flight), or gathered
/// on the device from a [`DeviceSet`] uploaded once.
pub struct Batches {
    source: Source,
}

enum Source {
    Host { rx: mpsc::Receiver<candle_core::Result<Batch>>, worker: Option<JoinHandle<()>> },
    Device { set: Arc<DeviceSet>, plan: BatchPlan, order: Vec<usize>, epoch: u64, next: usize, end: usize },
}

impl Batches {
    /// Starts producing batches `start..` of `epoch` on the host.
    pub fn start(data: Arc<Dataset>, plan: BatchPlan, epoch: u64, start: usize, device: Device) -> Batches {
        let (tx, rx) = mpsc::sync_channel(2);
        let worker = std::thread::Builder::new()
            .name("retort-batches".into())
            .spawn(move || {
                let order = plan.order(data.len(), epoch);
                for b in start..plan.batches(data.len()) {
                    if tx.send(plan.make(&data, &order, epoch, b, &device)).is_err() {
                        return;
                    }
                }
            })
            .ok();
        Batches { source: Source::Host { rx, worker } }
    }

    /// Batches `start..` of `epoch` gathered on the device from `set` (uploaded with `plan`);
    /// the same batches, in the same order, as [`Batches::start`].
    pub fn on_device(set: Arc<DeviceSet>, n: usize, plan: BatchPlan, epoch: u64, start: usize) -> Batches {
        let order = plan.order(n, epoch);
        let end = plan.batches(n);
        Batches { source: Source::Device { set, plan, order, epoch, next: start, end } }
    }
}

impl Iterator for Batches {
    type Item = candle_core::Result<Batch>;
    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.source {
            Source::Host { rx, .. } => rx.recv().ok(),
            Source::Device { set, plan, order, epoch, next, end } => {
                if *next >= *end {
                    return None;
                }
                let b = *next;
                *next += 1;
                let (ids, shifts) = plan.draw(order, *epoch, b);
                Some(set.batch(&ids, &shifts, b))
            }
        }
    }
}

impl Drop for Batches {
    fn drop(&mut self) {
        if let Source::Host { rx, worker } = &mut self.source {
            // Closing the receiver stops the worker at its next send.
            let (_, dead) = mpsc::sync_channel(1);
            *rx = dead;
            if let Some(w) = worker.take() {
                let _ = w.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy() -> Arc<Dataset> {
        Arc::new(Dataset {
            images: (0..10 * 4).map(|v| (v * 6) as u8).collect(),
            labels: (0..10).map(|v| v as u8 % 3).collect(),
            height: 2,
            width: 2,
            classes: 3,
            ids: Vec::new(),
            lengths: Vec::new(),
        })
    }

    fn plan(jitter: usize) -> BatchPlan {
        BatchPlan { batch_size: 4, shuffle: true, jitter, mean: 0.0, std: 1.0, seed: 3, drop_last: false }
    }

    #[test]
    fn deterministic_and_resumable() {
        let all: Vec<Vec<u32>> = Batches::start(toy(), plan(1), 2, 0, Device::Cpu)
            .map(|b| b.unwrap().labels.to_vec1::<u32>().unwrap())
            .collect();
        assert_eq!(all.len(), 3);
        assert_eq!(all.iter().map(Vec::len).sum::<usize>(), 10);
        let again: Vec<Vec<u32>> = Batches::start(toy(), plan(1), 2, 1, Device::Cpu)
            .map(|b| b.unwrap().labels.to_vec1::<u32>().unwrap())
            .collect();
        assert_eq!(&all[1..], &again[..], "starting at batch 1 gives the same remaining batches");
        let other: Vec<Vec<u32>> = Batches::start(toy(), plan(1), 3, 0, Device::Cpu)
            .map(|b| b.unwrap().labels.to_vec1::<u32>().unwrap())
            .collect();
        assert_ne!(all, other, "another epoch, another order");
    }

    #[test]
    fn jitter_shifts_with_background_fill() {
        let p = BatchPlan { shuffle: false, batch_size: 10, ..plan(0) };
        let x0 = Batches::start(toy(), p.clone(), 0, 0, Device::Cpu).next().unwrap().unwrap().images;
        assert_eq!(x0.dims(), &[10, 1, 2, 2]);
        let first: Vec<f32> = x0.flatten_all().unwrap().to_vec1().unwrap()[..4].to_vec();
        assert_eq!(first, vec![0.0, 6.0 / 255.0, 12.0 / 255.0, 18.0 / 255.0]);
        let pj = BatchPlan { jitter: 1, ..p };
        let xj = Batches::start(toy(), pj, 0, 0, Device::Cpu).next().unwrap().unwrap().images;
        assert_ne!(
            x0.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            xj.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        );
    }

    #[test]
    fn device_path_gathers_the_host_batches() {
        // The device path run on the CPU: the same values, bit for bit, with and without jitter.
        let data = toy();
        for jitter in [0, 1] {
            let p = plan(jitter);
            let set = Arc::new(DeviceSet::upload(&data, &p, &Device::Cpu).unwrap());
            let host: Vec<Batch> =
                Batches::start(data.clone(), p.clone(), 4, 1, Device::Cpu).map(|b| b.unwrap()).collect();
            let dev: Vec<Batch> = Batches::on_device(set, data.len(), p, 4, 1).map(|b| b.unwrap()).collect();
            assert_eq!(host.len(), dev.len());
            for (a, b) in host.iter().zip(&dev) {
                assert_eq!(a.index, b.index);
                assert_eq!(a.images.dims(), b.images.dims());
                let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                assert_eq!(flat(&a.images), flat(&b.images), "jitter {jitter}, batch {}", a.index);
                assert_eq!(a.labels.to_vec1::<u32>().unwrap(), b.labels.to_vec1::<u32>().unwrap());
            }
        }
    }
}
