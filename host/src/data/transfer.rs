//! A stage's transfer set (`[stages.transfer]`): training images under corruptions mixed with
//! off-topic images, a stand-in for KD³'s webly collected data. Made once, seeded.
use rand::{seq::SliceRandom, Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{
    corrupt::{corrupt, Strengths},
    DataError, Dataset,
};
use crate::config::{Corruption, TransferSection};

/// What a transfer set holds, for the run's log.
#[derive(Debug, Clone, PartialEq)]
pub struct Composition {
    pub on_topic: usize,
    pub off_topic: usize,
    /// On-topic images per corruption, in the order of `corruptions`.
    pub corrupted: Vec<(Corruption, usize)>,
}

/// Builds a set of `n` images (0: as many as `train` has): `n − ⌊f·n⌉` from `train`, each
/// corrupted, then `⌊f·n⌉` from `off_topic`. Off-topic ids follow the training file's
/// (`train_ids + i`), so per-sample state never mixes the two sources.
pub fn build(
    train: &Dataset,
    off_topic: Option<&Dataset>,
    spec: &TransferSection,
    n: usize,
    seed: u64,
) -> Result<(Dataset, Composition), DataError> {
    let n = if n == 0 { train.len() } else { n };
    let f = spec.off_topic_fraction;
    if !(0.0..1.0).contains(&f) {
        return Err(DataError::Invalid(format!("transfer.off_topic_fraction = {f} must be in [0, 1)")));
    }
    let n_off = if off_topic.is_some() { (f * n as f64).round() as usize } else { 0 };
    let n_on = n - n_off;
    if n_on > train.len() {
        return Err(DataError::Invalid(format!(
            "transfer: {n_on} on-topic images asked, the training split has {}",
            train.len()
        )));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut set = train.subset(n_on, rng.random());
    let kinds = if spec.corruptions.is_empty() { vec![Corruption::None] } else { spec.corruptions.clone() };
    let mut counts = vec![0usize; kinds.len()];
    let strengths = Strengths {
        noise_std: spec.noise_std,
        blur_sigma: spec.blur_sigma,
        affine_degrees: spec.affine_degrees,
        affine_scale: spec.affine_scale,
        affine_shift: spec.affine_shift,
    };
    let (h, w, p) = (set.height, set.width, set.pixels());
    for img in set.images.chunks_mut(p) {
        let k = rng.random_range(0..kinds.len());
        counts[k] += 1;
        corrupt(img, h, w, kinds[k], &strengths, &mut rng);
    }
    if set.ids.is_empty() {
        set.ids = (0..set.len() as u32).collect();
    }
    if let (Some(other), true) = (off_topic, n_off > 0) {
        if (other.height, other.width) != (h, w) {
            return Err(DataError::Invalid(format!(
                "transfer.off_topic images are {}×{}, the training images {h}×{w}",
                other.height, other.width
            )));
        }
        if n_off > other.len() {
            return Err(DataError::Invalid(format!(
                "transfer: {n_off} off-topic images asked, the off-topic set has {}",
                other.len()
            )));
        }
        let mut idx: Vec<usize> = (0..other.len()).collect();
        idx.shuffle(&mut rng);
        idx.truncate(n_off);
        idx.sort_unstable();
        let base = train.ids.iter().copied().max().map_or(train.len() as u32, |m| m.max(train.len() as u32) + 1);
        let extra = other.select(&idx);
        set.images.extend_from_slice(&extra.images);
        // Off-topic images have no label of this task; label 0 stands in, and the stage
        // withholds labels whenever off-topic images are present (checked in the config).
        set.labels.extend(std::iter::repeat_n(0, n_off));
        set.ids.extend(idx.iter().map(|&i| base + i as u32));
    }
    let composition =
        Composition { on_topic: n_on, off_topic: n_off, corrupted: kinds.into_iter().zip(counts).collect() };
    Ok((set, composition))
}

impl std::fmt::Display for Composition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.corrupted.iter().map(|(k, n)| format!("{k:?} {n}").to_lowercase()).collect();
        write!(f, "{} on-topic ({}), {} off-topic", self.on_topic, parts.join(", "), self.off_topic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn images(n: usize, value: u8, label: u8) -> Dataset {
        Dataset {
            images: vec![value; n * 16],
            labels: vec![label; n],
            height: 4,
            width: 4,
            classes: 10,
            ids: Vec::new(),
            lengths: Vec::new(),
        }
    }

    fn spec(corruptions: Vec<Corruption>, fraction: f64) -> TransferSection {
        toml::from_str::<TransferSection>("")
            .map(|s| TransferSection { corruptions, off_topic_fraction: fraction, ..s })
            .unwrap()
    }

    #[test]
    fn the_set_has_the_asked_share_of_off_topic_images_with_their_own_ids() {
        let (train, other) = (images(100, 10, 3), images(50, 200, 7));
        let (set, c) = build(&train, Some(&other), &spec(vec![], 0.3), 40, 1).unwrap();
        assert_eq!((set.len(), c.on_topic, c.off_topic), (40, 28, 12));
        assert_eq!(set.images.len(), 40 * 16);
        assert!(set.images[..28 * 16].iter().all(|&v| v == 10) && set.images[28 * 16..].iter().all(|&v| v == 200));
        assert!(set.ids[..28].iter().all(|&i| i < 100) && set.ids[28..].iter().all(|&i| i >= 100));
        let mut ids = set.ids.clone();
        ids.dedup();
        assert_eq!(ids.len(), 40, "ids are distinct");
    }

    #[test]
    fn every_on_topic_image_gets_one_corruption_and_the_draw_is_seeded() {
        let train = images(200, 10, 3);
        let kinds = vec![Corruption::None, Corruption::Invert];
        let (a, c) = build(&train, None, &spec(kinds.clone(), 0.0), 0, 5).unwrap();
        let inverted = a.images.chunks(16).filter(|im| im.iter().all(|&v| v == 245)).count();
        let clean = a.images.chunks(16).filter(|im| im.iter().all(|&v| v == 10)).count();
        assert_eq!((clean, inverted), (c.corrupted[0].1, c.corrupted[1].1));
        assert_eq!(clean + inverted, 200);
        assert!(inverted > 70 && inverted < 130, "{inverted} of 200 inverted");
        let (b, _) = build(&train, None, &spec(kinds, 0.0), 0, 5).unwrap();
        assert_eq!(a.images, b.images);
    }

    #[test]
    fn too_large_a_set_is_refused() {
        let train = images(10, 0, 0);
        let e = build(&train, None, &spec(vec![], 0.0), 20, 0).unwrap_err();
        assert!(e.to_string().contains("20 on-topic images asked"), "{e}");
    }
}
