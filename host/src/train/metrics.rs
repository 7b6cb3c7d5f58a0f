//! Evaluation metrics over a set of predictions: accuracy, NLL, ECE, fidelity, KL to a reference.
use serde::{Deserialize, Serialize};

/// Metrics of one model on one evaluation set.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct EvalMetrics {
    pub samples: usize,
    pub test_errors: usize,
    pub accuracy: f64,
    pub nll: f64,
    pub ece: f64,
    /// Top-1 agreement with the reference model (1 for the reference itself).
    pub fidelity: Option<f64>,
    /// Mean KL(reference ‖ model) at τ = 1.
    pub kl_to_teacher: Option<f64>,
    /// Text: the mean NLL in bits (bytes are the tokens, so bits per token = bits per byte).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bits_per_byte: Option<f64>,
    /// The reliability diagram behind the ECE (not written to metrics.jsonl).
    #[serde(skip)]
    pub reliability: Vec<ReliabilityBin>,
}

/// One confidence bin: its samples' mean confidence and accuracy.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ReliabilityBin {
    /// Upper edge of the bin (bins are (k/B, (k+1)/B]).
    pub upper: f64,
    pub count: usize,
    pub confidence: f64,
    pub accuracy: f64,
}

/// Accumulates per-sample results batch by batch.
pub struct MetricsAccumulator {
    bins: usize,
    n: usize,
    correct: usize,
    nll: f64,
    bin_count: Vec<usize>,
    bin_conf: Vec<f64>,
    bin_correct: Vec<usize>,
    agree: usize,
    kl: f64,
    with_reference: bool,
}

/// log-softmax of one row, in f64.
pub fn log_softmax_row(z: &[f32]) -> Vec<f64> {
    let m = z.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let lse = z.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln() + m;
    z.iter().map(|&v| v as f64 - lse).collect()
}

fn argmax(v: &[f64]) -> usize {
    v.iter().enumerate().fold((0, f64::NEG_INFINITY), |(bi, bv), (i, &x)| if x > bv { (i, x) } else { (bi, bv) }).0
}

impl MetricsAccumulator {
    /// An empty accumulator with `bins` ECE bins.
    pub fn new(bins: usize, with_reference: bool) -> Self {
        MetricsAccumulator {
            bins: bins.max(1),
            n: 0,
            correct: 0,
            nll: 0.0,
            bin_count: vec![0; bins.max(1)],
            bin_conf: vec![0.0; bins.max(1)],
            bin_correct: vec![0; bins.max(1)],
            agree: 0,
            kl: 0.0,
            with_reference,
        }
    }

    /// Adds rows of logits `[n, classes]` (flattened), labels, and the reference's logits.
    pub fn add(&mut self, logits: &[f32], classes: usize, labels: &[u32], reference: Option<&[f32]>) {
        for (i, &y) in labels.iter().enumerate() {
            let row = &logits[i * classes..(i + 1) * classes];
            let lp = log_softmax_row(row);
            let pred = argmax(&lp);
            let conf = lp[pred].exp();
            let ok = pred == y as usize;
            self.n += 1;
            self.correct += usize::from(ok);
            self.nll -= lp.get(y as usize).copied().unwrap_or(f64::NEG_INFINITY);
            // Bins (k/B, (k+1)/B]; confidence 1 goes to the last bin.
            let b = ((conf * self.bins as f64).ceil() as usize).clamp(1, self.bins) - 1;
            self.bin_count[b] += 1;
            self.bin_conf[b] += conf;
            self.bin_correct[b] += usize::from(ok);
            if let Some(r) = reference {
                let lr = log_softmax_row(&r[i * classes..(i + 1) * classes]);
                self.agree += usize::from(argmax(&lr) == pred);
                self.kl +=
                    lr.iter().zip(&lp).map(|(&a, &b)| if a.is_finite() { a.exp() * (a - b) } else { 0.0 }).sum::<f64>();
            }
        }
    }

    /// The metrics so far.
    pub fn finish(&self) -> EvalMetrics {
        let n = self.n.max(1) as f64;
        let ece = (0..self.bins)
            .filter(|&b| self.bin_count[b] > 0)
            .map(|b| {
                let c = self.bin_count[b] as f64;
                (self.bin_correct[b] as f64 / c - self.bin_conf[b] / c).abs() * c / n
            })
            .sum();
        EvalMetrics {
            samples: self.n,
            test_errors: self.n - self.correct,
            accuracy: self.correct as f64 / n,
            nll: self.nll / n,
            ece,
            fidelity: self.with_reference.then(|| self.agree as f64 / n),
            kl_to_teacher: self.with_reference.then(|| self.kl / n),
            bits_per_byte: None,
            reliability: (0..self.bins)
                .map(|b| {
                    let c = self.bin_count[b].max(1) as f64;
                    ReliabilityBin {
                        upper: (b + 1) as f64 / self.bins as f64,
                        count: self.bin_count[b],
                        confidence: self.bin_conf[b] / c,
                        accuracy: self.bin_correct[b] as f64 / c,
                    }
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ece_by_hand() {
        // Three samples with 2 classes; confidences 0.9 (correct), 0.9 (wrong), 0.6 (correct).
        let l = |p: f64| [0.0f32, (p / (1.0 - p)).ln() as f32];
        let mut logits = Vec::new();
        for p in [0.9, 0.9, 0.6] {
            logits.extend(l(p));
        }
        let mut acc = MetricsAccumulator::new(15, false);
        acc.add(&logits, 2, &[1, 0, 1], None);
        let m = acc.finish();
        assert_eq!(m.test_errors, 1);
        // Bin of 0.9: acc 1/2, conf 0.9 → |0.5 − 0.9|·2/3; bin of 0.6: |1 − 0.6|·1/3.
        let want = 0.4 * 2.0 / 3.0 + 0.4 / 3.0;
        assert!((m.ece - want).abs() < 1e-6, "{} vs {want}", m.ece);
        let nll = -(0.9f64.ln() + 0.1f64.ln() + 0.6f64.ln()) / 3.0;
        assert!((m.nll - nll).abs() < 1e-6);
        assert!(m.fidelity.is_none());
    }

    #[test]
    fn fidelity_and_kl_by_hand() {
        let student = [2.0f32, 0.0, 0.0, 1.0];
        let teacher = [1.0f32, 0.0, 2.0, 0.0];
        let mut acc = MetricsAccumulator::new(15, true);
        acc.add(&student, 2, &[0, 1], Some(&teacher));
        let m = acc.finish();
        assert_eq!(m.fidelity, Some(0.5), "row 1 agrees (class 0), row 2 does not");
        let kl = |t: &[f32], s: &[f32]| {
            let (a, b) = (log_softmax_row(t), log_softmax_row(s));
            a.iter().zip(&b).map(|(x, y)| x.exp() * (x - y)).sum::<f64>()
        };
        let want = (kl(&teacher[..2], &student[..2]) + kl(&teacher[2..], &student[2..])) / 2.0;
        assert!((m.kl_to_teacher.unwrap() - want).abs() < 1e-12);
        let mut own = MetricsAccumulator::new(15, true);
        own.add(&teacher, 2, &[0, 0], Some(&teacher));
        assert_eq!(own.finish().fidelity, Some(1.0));
        assert!(own.finish().kl_to_teacher.unwrap().abs() < 1e-12);
    }
}
