//! The end-of-run report: per model slot, test metrics, size and training time.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::metrics::{EvalMetrics, ReliabilityBin};

/// One model's line of the report.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelReport {
    pub plugin: String,
    pub test_errors: usize,
    pub accuracy: f64,
    pub nll: f64,
    pub ece: f64,
    pub fidelity: Option<f64>,
    pub kl_to_teacher: Option<f64>,
    pub params: usize,
    pub train_seconds: f64,
    /// Confidence bins on the test set (what `retort runs plot` draws as a reliability diagram).
    #[serde(default)]
    pub reliability: Vec<ReliabilityBin>,
    /// Errors on the shifted test set (`eval.shift`), when measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shifted_errors: Option<usize>,
    /// Text: bits per byte on the test block (errors and accuracy then count tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bits_per_byte: Option<f64>,
    /// Text: bits per byte on other corpora's test blocks (`data.text.domains`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub domains: BTreeMap<String, f64>,
    /// Text: generated continuations of test prompts (`[eval.generate]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<super::text::TextSample>,
}

impl ModelReport {
    /// A report line from evaluation metrics.
    pub fn new(plugin: &str, m: &EvalMetrics, params: usize, train_seconds: f64) -> Self {
        ModelReport {
            plugin: plugin.to_string(),
            test_errors: m.test_errors,
            accuracy: m.accuracy,
            nll: m.nll,
            ece: m.ece,
            fidelity: m.fidelity,
            kl_to_teacher: m.kl_to_teacher,
            params,
            train_seconds,
            reliability: m.reliability.clone(),
            shifted_errors: None,
            bits_per_byte: m.bits_per_byte,
            domains: BTreeMap::new(),
            samples: Vec::new(),
        }
    }
}

/// `report.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Report {
    pub run: String,
    pub dataset: String,
    /// Test samples the metrics are over.
    pub test_samples: usize,
    /// The slot fidelity and KL are measured against.
    pub reference: Option<String>,
    pub wall_seconds: f64,
    pub models: BTreeMap<String, ModelReport>,
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map(|x| format!("{x:.digits$}")).unwrap_or_else(|| "-".into())
}

impl Report {
    /// The report as an aligned text table.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{} on {} ({} test samples, reference: {})\n",
            self.run,
            self.dataset,
            self.test_samples,
            self.reference.as_deref().unwrap_or("none")
        );
        out.push_str(&format!(
            "{:<10} {:<8} {:>7} {:>8} {:>7} {:>7} {:>8} {:>8} {:>10} {:>9}\n",
            "model", "plugin", "errors", "accuracy", "nll", "ece", "fidelity", "kl", "params", "train_s"
        ));
        for (slot, m) in &self.models {
            out.push_str(&format!(
                "{:<10} {:<8} {:>7} {:>8.4} {:>7.4} {:>7.4} {:>8} {:>8} {:>10} {:>9.1}\n",
                slot,
                m.plugin,
                m.test_errors,
                m.accuracy,
                m.nll,
                m.ece,
                opt(m.fidelity, 4),
                opt(m.kl_to_teacher, 4),
                m.params,
                m.train_seconds
            ));
        }
        for (slot, m) in &self.models {
            if let Some(e) = m.shifted_errors {
                out.push_str(&format!("{slot}: {e} errors on the shifted test set\n"));
            }
            if let Some(b) = m.bits_per_byte {
                let other: String = m.domains.iter().map(|(d, v)| format!(", {d} {v:.3}")).collect();
                out.push_str(&format!("{slot}: {b:.3} bits per byte on the test text{other}\n"));
            }
            for s in &m.samples {
                out.push_str(&format!("{slot} sample: {:?} → {:?}\n", s.prompt, s.text));
            }
        }
        out.push_str(&format!("wall time {:.1} s\n", self.wall_seconds));
        out
    }
}
