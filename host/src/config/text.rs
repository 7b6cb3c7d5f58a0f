//! `[data.text]` and `[eval.generate]`: how a byte-level corpus is cut and how evaluation samples
//! text from a language model.
use serde::{Deserialize, Serialize};

/// `[data.text]`: the cut of a text corpus (`data.dataset = "moby-dick"` or `"sotu"`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TextSection {
    /// Tokens (bytes) a model sees at once; a row holds `context + 1` bytes.
    #[serde(default = "default_context")]
    pub context: usize,
    /// Fraction of the corpus, before the test block, held out for validation.
    #[serde(default = "five_percent")]
    pub validation: f64,
    /// Fraction at the end of the corpus held out for testing.
    #[serde(default = "five_percent")]
    pub test: f64,
    /// Other vendored corpora whose test block is scored in the final report (bits per byte on
    /// another domain), e.g. `["sotu"]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub domains: Vec<String>,
    /// Score at most this many bytes of each evaluation set (validation, test, domains); 0 = all.
    #[serde(default)]
    pub eval_bytes: usize,
}

impl Default for TextSection {
    fn default() -> Self {
        TextSection { context: default_context(), validation: 0.05, test: 0.05, domains: Vec::new(), eval_bytes: 0 }
    }
}

/// `[eval.generate]`: text sampled from each language model for the report.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GenerateSection {
    /// Samples per model (0 = none); prompts are the starts of test rows spread over the split.
    #[serde(default = "two")]
    pub samples: usize,
    /// Bytes of test text each prompt takes.
    #[serde(default = "default_prompt")]
    pub prompt_bytes: usize,
    /// Bytes generated after each prompt.
    #[serde(default = "default_new")]
    pub new_bytes: usize,
    #[serde(flatten)]
    pub sampling: SamplingSection,
}

impl Default for GenerateSection {
    fn default() -> Self {
        GenerateSection {
            samples: 2,
            prompt_bytes: default_prompt(),
            new_bytes: default_new(),
            sampling: SamplingSection::default(),
        }
    }
}

/// How the next token is drawn: temperature, then top-k, then top-p (nucleus) truncation.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SamplingSection {
    /// Softmax temperature; 0 = greedy (argmax).
    #[serde(default = "super::schema::one_f")]
    pub temperature: f64,
    /// Keep the k most likely tokens (0 = all).
    #[serde(default)]
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches p (1 = all).
    #[serde(default = "super::schema::one_f")]
    pub top_p: f64,
}

impl Default for SamplingSection {
    fn default() -> Self {
        SamplingSection { temperature: 1.0, top_k: 0, top_p: 1.0 }
    }
}

fn default_context() -> usize {
    128
}
fn five_percent() -> f64 {
    0.05
}
fn two() -> usize {
    2
}
fn default_prompt() -> usize {
    48
}
fn default_new() -> usize {
    160
}

/// `[stages.on_policy]`: GKD's sequence source (methods spec §7.3). On a share λ of the stage's
/// steps the batch's rows are replaced by continuations of their first `prompt` bytes sampled from
/// the student's current weights (or the teacher's, `source = "teacher"`: sequence-level KD); the
/// prompt's targets carry no loss.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OnPolicySection {
    /// λ: the probability that a step's batch is generated (0 = never, 1 = every step).
    #[serde(default = "half")]
    pub fraction: f64,
    /// Bytes of each data row kept as the prompt (≥ 1, < the context).
    #[serde(default = "default_on_policy_prompt")]
    pub prompt: usize,
    /// Which model writes the continuations: `student` (on-policy) or `teacher` (sequence KD).
    #[serde(default)]
    pub source: SequenceSource,
    #[serde(flatten)]
    pub sampling: SamplingSection,
}

/// Who generates a GKD batch.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum SequenceSource {
    #[default]
    Student,
    Teacher,
}

fn half() -> f64 {
    0.5
}
fn default_on_policy_prompt() -> usize {
    16
}

/// `[stages.difference_sampling]`: MiniPLM's data refinement (Gu et al. 2024; methods spec §7.1).
/// Every training row is scored by its mean token NLL under a reference LM minus that under the
/// teacher, `r(x) = s_R(x) − s_T(x)`, and the stage trains on the top `keep` fraction by `r`
/// (kept rows in corpus order): text the teacher knows and a small model does not.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DifferenceSection {
    /// The teacher slot (weights loaded or trained by an earlier stage).
    pub teacher: String,
    /// The reference slot: a small LM trained on a random share of the corpus.
    pub reference: String,
    /// α: the fraction of rows kept (MiniPLM: 0.5).
    #[serde(default = "half")]
    pub keep: f64,
}

/// `[monitor]`: the teacher-hacking monitor (Tiapkin et al. 2025; methods spec §7.5). At every
/// evaluation of `student` it logs the proxy distance `P` = token KL(proxy ‖ student) and, with a
/// `golden` model, the golden distance `G` = KL(golden ‖ student) on the held-out split; it fits
/// `log P = a − b·log t` over the first `fit_evals` evaluations and raises a `teacher_hacking`
/// event when `P` stays more than `tolerance` (in log P) above that power law for `patience`
/// evaluations, or when `G` rises while `P` falls for `patience` evaluations.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MonitorSection {
    /// The slot distilled (its evaluations are monitored).
    pub student: String,
    /// The teacher it is distilled from (the proxy).
    pub proxy: String,
    /// A stronger model the proxy was distilled from (the oracle), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub golden: Option<String>,
    /// Evaluations that fit the power law (≥ 2).
    #[serde(default = "default_fit")]
    pub fit_evals: usize,
    /// How far above the fitted log P an evaluation may sit before it counts.
    #[serde(default = "default_tolerance")]
    pub tolerance: f64,
    /// Consecutive evaluations that must deviate before the event.
    #[serde(default = "two")]
    pub patience: usize,
}

fn default_fit() -> usize {
    4
}
fn default_tolerance() -> f64 {
    0.1
}
