//! In-memory image datasets (MNIST, Fashion-MNIST) with subsets and validation splits.
use std::path::{Path, PathBuf};

use rand::{seq::SliceRandom, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{read_idx, DataError};

/// Which part of a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Split {
    Train,
    Validation,
    Test,
}

/// Where a dataset lives and how much of it to use.
#[derive(Debug, Clone)]
pub struct DatasetSpec {
    /// `mnist` or `fashion-mnist`.
    pub name: String,
    /// Directory with the four IDX files.
    pub dir: PathBuf,
    /// Training samples held out for validation (taken after a seeded shuffle).
    pub validation: usize,
    /// Seed of the validation split.
    pub seed: u64,
}

/// Images as u8 rows of `height × width` with their labels.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub images: Vec<u8>,
    pub labels: Vec<u8>,
    pub height: usize,
    pub width: usize,
    pub classes: usize,
    /// Each sample's index in its source file (empty: the identity), kept through subsets and
    /// validation splits: the key of per-sample state and of a cached teacher.
    pub ids: Vec<u32>,
    /// Text rows only (see [`super::text`]): each row's number of real next-byte targets (fewer
    /// than the context in a padded tail). Empty for images.
    pub lengths: Vec<u32>,
}

/// Per-pixel mean and std of the training images (after /255), used for normalisation.
pub const MNIST_MEAN_STD: (f32, f32) = (0.1307, 0.3081);
/// The same for Fashion-MNIST.
pub const FASHION_MEAN_STD: (f32, f32) = (0.2860, 0.3530);

impl Dataset {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    /// Pixels per image.
    pub fn pixels(&self) -> usize {
        self.height * self.width
    }

    /// True for byte-level text rows (inputs and next-byte targets), false for images.
    pub fn is_text(&self) -> bool {
        !self.lengths.is_empty()
    }

    /// The index of sample `i` in its source file.
    pub fn id(&self, i: usize) -> u32 {
        self.ids.get(i).copied().unwrap_or(i as u32)
    }

    /// The samples at `idx`, in that order.
    pub fn select(&self, idx: &[usize]) -> Dataset {
        let p = self.pixels();
        let mut images = Vec::with_capacity(idx.len() * p);
        for &i in idx {
            images.extend_from_slice(&self.images[i * p..(i + 1) * p]);
        }
        Dataset {
            images,
            labels: idx.iter().map(|&i| self.labels[i]).collect(),
            height: self.height,
            width: self.width,
            classes: self.classes,
            ids: idx.iter().map(|&i| self.id(i)).collect(),
            lengths: if self.is_text() { idx.iter().map(|&i| self.lengths[i]).collect() } else { Vec::new() },
        }
    }

    /// The first `n` samples of a seeded permutation, stratified by nothing (plain random subset).
    pub fn subset(&self, n: usize, seed: u64) -> Dataset {
        if n == 0 || n >= self.len() {
            return self.clone();
        }
        let mut idx: Vec<usize> = (0..self.len()).collect();
        idx.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        idx.truncate(n);
        idx.sort_unstable();
        self.select(&idx)
    }

    fn load_pair(dir: &Path, prefix: &str) -> Result<Dataset, DataError> {
        let find = |kind: &str| -> PathBuf {
            let gz = dir.join(format!("{prefix}-{kind}.gz"));
            if gz.exists() {
                gz
            } else {
                dir.join(format!("{prefix}-{kind}"))
            }
        };
        let images = read_idx(&find("images-idx3-ubyte"))?;
        let labels = read_idx(&find("labels-idx1-ubyte"))?;
        if images.dims.len() != 3 || labels.dims.len() != 1 {
            return Err(DataError::Invalid(format!(
                "{}: expected images [n, h, w] and labels [n], found {:?} and {:?}",
                dir.display(),
                images.dims,
                labels.dims
            )));
        }
        if images.dims[0] != labels.dims[0] {
            return Err(DataError::Invalid(format!(
                "{}: {prefix} has {} images but {} labels",
                dir.display(),
                images.dims[0],
                labels.dims[0]
            )));
        }
        let classes = labels.data.iter().map(|&l| l as usize + 1).max().unwrap_or(0);
        Ok(Dataset {
            height: images.dims[1],
            width: images.dims[2],
            images: images.data,
            labels: labels.data,
            classes,
            ids: Vec::new(),
            lengths: Vec::new(),
        })
    }

    /// Loads one split of the dataset described by `spec`.
    pub fn load(spec: &DatasetSpec, split: Split) -> Result<Dataset, DataError> {
        if split == Split::Test {
            return Self::load_pair(&spec.dir, "t10k");
        }
        let train = Self::load_pair(&spec.dir, "train")?;
        if spec.validation == 0 {
            return match split {
                Split::Train => Ok(train),
                _ => Err(DataError::Invalid("no validation split configured (data.validation = 0)".into())),
            };
        }
        if spec.validation >= train.len() {
            return Err(DataError::Invalid(format!(
                "data.validation = {} leaves no training samples (the training set has {})",
                spec.validation,
                train.len()
            )));
        }
        let mut idx: Vec<usize> = (0..train.len()).collect();
        idx.shuffle(&mut ChaCha8Rng::seed_from_u64(spec.seed ^ 0x005e_ed0f_0a1d));
        let (val, tr) = idx.split_at(spec.validation);
        let mut pick = if split == Split::Validation { val.to_vec() } else { tr.to_vec() };
        pick.sort_unstable();
        Ok(train.select(&pick))
    }

    /// Normalisation constants for a dataset name.
    pub fn mean_std(name: &str) -> (f32, f32) {
        if name == "fashion-mnist" {
            FASHION_MEAN_STD
        } else {
            MNIST_MEAN_STD
        }
    }
}
