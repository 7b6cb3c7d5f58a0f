//! A dataset uploaded once to the run's device, from which batches are gathered (and jittered)
//! there: per batch only the sample ids and shifts cross the bus, not the images.
use candle_core::{DType, Device, Tensor};

use super::{Batch, BatchPlan, Dataset};

/// Normalised images padded by the jitter border (`[N, (H+2j)·(W+2j)]` f32) and labels (`[N]`
/// u32), on a device, with the plan that normalised them.
pub struct DeviceSet {
    images: Tensor,
    labels: Tensor,
    /// The padded pixel index of each output pixel for a zero shift, `[1, H·W]` i64.
    base: Tensor,
    pad: usize,
    height: usize,
    width: usize,
    /// Each sample's index in its source file (sent per batch: B values).
    ids: Vec<u32>,
}

impl DeviceSet {
    /// Uploads `data` normalised as `plan` says, padded with the background value by `plan.jitter`.
    pub fn upload(data: &Dataset, plan: &BatchPlan, device: &Device) -> candle_core::Result<DeviceSet> {
        let (h, w, pad) = (data.height, data.width, plan.jitter);
        let (hp, wp) = (h + 2 * pad, w + 2 * pad);
        // Byte 0 is the background, so the border normalises to the same value as the host path's.
        let lut: Vec<f32> = (0..=255u8).map(|v| plan.normalise(v)).collect();
        let mut x = vec![lut[0]; data.len() * hp * wp];
        for (i, img) in data.images.chunks_exact(h * w).enumerate() {
            let dst = &mut x[i * hp * wp..(i + 1) * hp * wp];
            for r in 0..h {
                for (c, &v) in img[r * w..(r + 1) * w].iter().enumerate() {
                    dst[(r + pad) * wp + c + pad] = lut[v as usize];
                }
            }
        }
        let base: Vec<i64> = (0..h * w).map(|k| ((k / w + pad) * wp + k % w + pad) as i64).collect();
        let labels: Vec<u32> = data.labels.iter().map(|&l| l as u32).collect();
        Ok(DeviceSet {
            images: Tensor::from_vec(x, (data.len(), hp * wp), device)?,
            labels: Tensor::from_vec(labels, data.len(), device)?,
            base: Tensor::from_vec(base, (1, h * w), device)?,
            ids: (0..data.len()).map(|i| data.id(i)).collect(),
            pad,
            height: h,
            width: w,
        })
    }

    /// The batch of samples `ids`, each shifted by `(dy, dx)` (|shift| ≤ the padding): the same
    /// values the host path computes.
    pub fn batch(&self, ids: &[usize], shifts: &[(i64, i64)], index: usize) -> candle_core::Result<Batch> {
        let dev = self.images.device();
        let n = ids.len();
        let idx = Tensor::from_vec(ids.iter().map(|&i| i as u32).collect::<Vec<_>>(), n, dev)?;
        let rows = self.images.index_select(&idx, 0)?;
        let images = if self.pad == 0 {
            rows
        } else {
            let wp = (self.width + 2 * self.pad) as i64;
            if shifts
                .iter()
                .any(|&(dy, dx)| dy.unsigned_abs() as usize > self.pad || dx.unsigned_abs() as usize > self.pad)
            {
                candle_core::bail!("device batch: a shift exceeds the {}-pixel padding", self.pad);
            }
            let off: Vec<i64> = shifts.iter().map(|&(dy, dx)| -dy * wp - dx).collect();
            let at = self.base.broadcast_add(&Tensor::from_vec(off, (n, 1), dev)?)?;
            rows.gather(&at.contiguous()?, 1)?
        };
        Ok(Batch {
            images: images.reshape((n, 1, self.height, self.width))?,
            labels: self.labels.index_select(&idx, 0)?,
            mask: None,
            ids: Tensor::from_vec(ids.iter().map(|&i| self.ids[i]).collect::<Vec<u32>>(), n, dev)?,
            index,
        })
    }

    /// Bytes this set holds on its device.
    pub fn bytes(&self) -> usize {
        self.images.elem_count() * DType::F32.size_in_bytes()
            + self.labels.elem_count() * 4
            + self.ids.len() * 4
            + self.base.elem_count() * 8
    }
}
