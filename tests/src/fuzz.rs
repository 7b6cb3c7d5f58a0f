//! A seeded mutation fuzzer for the host's input parsers (config text, IDX bytes, checkpoints,
//! plugin state blobs): each target must answer every input with a value or an error, never a
//! panic. Coverage-blind (stable Rust has no libFuzzer), so inputs start from real seeds and
//! mutate bytes, numbers and structure; many iterations make up for it.
use std::panic::{catch_unwind, AssertUnwindSafe};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Values that often break parsers: boundaries, special floats, long and negative numbers.
const INTERESTING: [&str; 16] = [
    "0",
    "-1",
    "1e308",
    "-1e308",
    "nan",
    "inf",
    "18446744073709551616",
    "4294967296",
    "2147483648",
    "\"\"",
    "[]",
    "{}",
    "true",
    "null",
    "0.0000001",
    "999999999999",
];

/// Mutates `input` one to four times.
pub fn mutate(rng: &mut ChaCha8Rng, input: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        let len = v.len();
        match rng.random_range(0..9) {
            0 if len > 0 => {
                let i = rng.random_range(0..len);
                v[i] ^= 1 << rng.random_range(0..8);
            }
            1 if len > 0 => {
                let i = rng.random_range(0..len);
                v[i] = [0u8, 0xff, 0x7f, 0x80, b'"', b'[', b'=', b'\n'][rng.random_range(0..8)];
            }
            2 => {
                let i = rng.random_range(0..=len);
                let n = rng.random_range(1..16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.random()).collect();
                v.splice(i..i, bytes);
            }
            3 if len > 0 => {
                let a = rng.random_range(0..len);
                let b = (a + rng.random_range(1..64)).min(len);
                v.drain(a..b);
            }
            4 if len > 0 => {
                let a = rng.random_range(0..len);
                let b = (a + rng.random_range(1..64)).min(len);
                let chunk = v[a..b].to_vec();
                let at = rng.random_range(0..=v.len());
                v.splice(at..at, chunk);
            }
            5 => v.truncate(rng.random_range(0..=len)),
            6 => {
                // Replace a run of digits (a number in text) with an interesting value.
                let starts: Vec<usize> =
                    (0..len).filter(|&i| v[i].is_ascii_digit() && (i == 0 || !v[i - 1].is_ascii_digit())).collect();
                if let Some(&s) = starts.get(rng.random_range(0..starts.len().max(1))) {
                    let e = (s..len).find(|&i| !v[i].is_ascii_digit()).unwrap_or(len);
                    let with = INTERESTING[rng.random_range(0..INTERESTING.len())].as_bytes().to_vec();
                    v.splice(s..e, with);
                }
            }
            7 if len >= 4 => {
                // Overwrite four bytes with a big-endian or little-endian boundary integer.
                let i = rng.random_range(0..len - 3);
                let x: u32 = [0, 1, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff, 60000][rng.random_range(0..6)];
                let b = if rng.random() { x.to_be_bytes() } else { x.to_le_bytes() };
                v[i..i + 4].copy_from_slice(&b);
            }
            _ => {
                // Swap two lines.
                let lines: Vec<&[u8]> = v.split(|&b| b == b'\n').collect();
                if lines.len() > 2 {
                    let (a, b) = (rng.random_range(0..lines.len()), rng.random_range(0..lines.len()));
                    let mut l: Vec<Vec<u8>> = lines.iter().map(|x| x.to_vec()).collect();
                    l.swap(a, b);
                    v = l.join(&b'\n');
                }
            }
        }
    }
    v
}

/// What a fuzzing run found.
#[derive(Debug, Default)]
pub struct Outcome {
    pub executions: u64,
    /// Inputs the target accepted.
    pub accepted: u64,
    /// Panics: (message, the input that caused it).
    pub panics: Vec<(String, Vec<u8>)>,
}

/// Feeds `iterations` mutations of the seeds to `target` (`Ok` = accepted, `Err` = rejected with
/// an error); panics are caught and collected.
pub fn run(
    seed: u64,
    seeds: &[Vec<u8>],
    iterations: u64,
    mut target: impl FnMut(&[u8]) -> Result<(), String>,
) -> Outcome {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Outcome::default();
    let mut corpus: Vec<Vec<u8>> = seeds.to_vec();
    for _ in 0..iterations {
        let base = &corpus[rng.random_range(0..corpus.len())];
        let input = mutate(&mut rng, base);
        out.executions += 1;
        match catch_unwind(AssertUnwindSafe(|| target(&input))) {
            Ok(Ok(())) => {
                out.accepted += 1;
                // Accepted inputs are good bases for deeper mutations.
                if corpus.len() < 256 {
                    corpus.push(input);
                }
            }
            Ok(Err(_)) => {}
            Err(p) => {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                if out.panics.len() < 10 {
                    out.panics.push((msg, input));
                }
            }
        }
    }
    out
}
