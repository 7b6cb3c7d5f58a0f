//! Byte-level text corpora for language models: one UTF-8 file (gzipped or not) cut into
//! contiguous train / validation / test blocks, each block into rows of `context + 1` bytes (a
//! row's first `context` bytes are the input, its last `context` the next-byte targets).
//!
//! Contiguous blocks, not shuffled lines: the test text is a part of the book the model never
//! read, as in the character-level LM literature (enwik8, text8, Shakespeare).
use std::path::{Path, PathBuf};

use super::{idx::read_file, DataError, Dataset, Split};

/// The text corpora vendored under `data/text/`.
pub const TEXT_CORPORA: &[&str] = &["moby-dick", "sotu"];

/// Bytes are the tokens: a vocabulary of 256.
pub const VOCAB: usize = 256;

/// How a corpus is cut.
#[derive(Debug, Clone, PartialEq)]
pub struct TextSpec {
    /// Tokens a model sees at once (the row length is `context + 1`).
    pub context: usize,
    /// Fraction of the corpus (its end, before the test block) held out for validation.
    pub validation: f64,
    /// Fraction of the corpus (its end) held out for testing.
    pub test: f64,
}

/// `<dir>/<name>.txt.gz` or `<dir>/<name>.txt`, whichever exists.
pub fn corpus_file(dir: &Path, name: &str) -> Option<PathBuf> {
    ["txt.gz", "txt"].iter().map(|ext| dir.join(format!("{name}.{ext}"))).find(|p| p.is_file())
}

/// The byte range `[from, to)` of `split` in a corpus of `n` bytes.
pub fn split_range(n: usize, spec: &TextSpec, split: Split) -> (usize, usize) {
    let test = (n as f64 * spec.test).round() as usize;
    let valid = (n as f64 * spec.validation).round() as usize;
    let train_end = n.saturating_sub(test + valid);
    match split {
        Split::Train => (0, train_end),
        Split::Validation => (train_end, train_end + valid),
        Split::Test => (n - test, n),
    }
}

/// Cuts `bytes` into rows of `context + 1` bytes with a stride of `context`, so every byte after
/// the first is a target exactly once. The last row is zero-padded; its `lengths` entry counts
/// its real targets. Row ids start at `first_id` (ids are unique across a corpus's splits).
pub fn rows(bytes: &[u8], context: usize, first_id: u32) -> Dataset {
    let width = context + 1;
    let targets = bytes.len().saturating_sub(1);
    let n = targets.div_ceil(context.max(1));
    let mut images = vec![0u8; n * width];
    let mut lengths = Vec::with_capacity(n);
    for r in 0..n {
        let from = r * context;
        let to = (from + width).min(bytes.len());
        images[r * width..r * width + (to - from)].copy_from_slice(&bytes[from..to]);
        lengths.push((to - from - 1) as u32);
    }
    Dataset {
        images,
        labels: vec![0; n],
        height: 1,
        width,
        classes: VOCAB,
        ids: (0..n as u32).map(|i| first_id + i).collect(),
        lengths,
    }
}

/// One split of the corpus in `file`, as rows (see [`rows`]); `max_bytes` > 0 keeps only the
/// split's first `max_bytes` bytes (evaluation sets of a large second domain).
pub fn load(file: &Path, spec: &TextSpec, split: Split, max_bytes: usize) -> Result<Dataset, DataError> {
    let bytes = read_file(file)?;
    if spec.context == 0 {
        return Err(DataError::Invalid("data.text.context must be > 0".into()));
    }
    let (from, mut to) = split_range(bytes.len(), spec, split);
    if max_bytes > 0 {
        to = to.min(from + max_bytes);
    }
    if to < from + 2 {
        return Err(DataError::Invalid(format!(
            "{}: the {} split has {} bytes; it needs at least 2 (check data.text.validation and data.text.test)",
            file.display(),
            format!("{split:?}").to_lowercase(),
            to - from
        )));
    }
    // Ids count rows from the corpus start, so a row's id names the same text in every split.
    let first_id = (from / spec.context) as u32;
    Ok(rows(&bytes[from..to], spec.context, first_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_after_the_first_is_a_target_once() {
        let text: Vec<u8> = (0..23u8).collect();
        let d = rows(&text, 5, 0);
        assert_eq!(d.len(), 5, "22 targets in rows of 5");
        assert_eq!(d.lengths, vec![5, 5, 5, 5, 2]);
        assert_eq!(&d.images[..6], &[0, 1, 2, 3, 4, 5]);
        assert_eq!(&d.images[6..12], &[5, 6, 7, 8, 9, 10], "the stride is the context");
        assert_eq!(&d.images[24..30], &[20, 21, 22, 0, 0, 0], "the tail is zero-padded");
        let targets: usize = d.lengths.iter().map(|&l| l as usize).sum();
        assert_eq!(targets, text.len() - 1);
    }

    #[test]
    fn splits_are_contiguous_and_cover_the_corpus() {
        let spec = TextSpec { context: 8, validation: 0.1, test: 0.2 };
        let (a, b) = split_range(1000, &spec, Split::Train);
        let (c, d) = split_range(1000, &spec, Split::Validation);
        let (e, f) = split_range(1000, &spec, Split::Test);
        assert_eq!((a, b, c, d, e, f), (0, 700, 700, 800, 800, 1000));
    }
}
