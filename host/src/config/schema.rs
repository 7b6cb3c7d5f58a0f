//! The config schema. Every section rejects unknown keys; defaults are documented per field.
use std::{collections::BTreeMap, path::PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A whole run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    pub run: RunSection,
    pub data: DataSection,
    /// Named model slots (`teacher`, `scratch`, `student`, …).
    pub models: BTreeMap<String, ModelSection>,
    /// Named teacher-plugin slots (ensembles, cached teachers), used by stages' `teachers`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub teachers: BTreeMap<String, PluginSection>,
    /// Named router-plugin slots (per-sample teacher weights), used by stages' `router`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub routers: BTreeMap<String, PluginSection>,
    /// Named augmenter-plugin slots (batch rewrites), used by stages' `augmenters`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub augmenters: BTreeMap<String, PluginSection>,
    /// Default optimizer for stages that do not set one.
    #[serde(default)]
    pub optimizer: OptimizerSection,
    /// Default learning-rate schedule for stages that do not set one.
    #[serde(default)]
    pub schedule: ScheduleSection,
    /// Trained in order; a later stage may use an earlier stage's model as teacher.
    pub stages: Vec<StageSection>,
    #[serde(default)]
    pub eval: EvalSection,
    #[serde(default)]
    pub checkpoint: CheckpointSection,
    #[serde(default)]
    pub logging: LoggingSection,
    #[serde(default)]
    pub faults: FaultsSection,
    /// The teacher-hacking monitor (text runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor: Option<super::MonitorSection>,
}

/// `[run]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSection {
    /// Names the run directory `<output_dir>/<name>`.
    pub name: String,
    #[serde(default)]
    pub seed: u64,
    /// `cpu` or `cuda` / `cuda:N` (needs a CUDA build).
    #[serde(default = "default_device")]
    pub device: String,
    /// Compute threads (0 = all cores). Results are reproducible at a fixed thread count.
    #[serde(default = "one")]
    pub threads: usize,
    #[serde(default = "default_output")]
    pub output_dir: PathBuf,
    /// Directories searched for plugins before RETORT_PLUGIN_PATH and the executable's directory.
    #[serde(default)]
    pub plugin_dirs: Vec<PathBuf>,
}

/// `[data]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    /// `mnist` or `fashion-mnist` (images), `moby-dick` or `sotu` (byte-level text).
    pub dataset: String,
    /// Directory of the IDX files; default: `data/<dataset>` found from the working directory or
    /// the executable's location.
    #[serde(default)]
    pub dir: Option<PathBuf>,
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    #[serde(default = "default_eval_batch")]
    pub eval_batch_size: usize,
    /// Training samples held out as a validation split (0 = none; evaluation then uses test).
    #[serde(default)]
    pub validation: usize,
    /// Use only this many training samples (0 = all); stages may override.
    #[serde(default)]
    pub subset: usize,
    /// Maximum random shift of training images in pixels (0 = none).
    #[serde(default)]
    pub jitter: usize,
    #[serde(default = "yes")]
    pub shuffle: bool,
    /// Named views of each image (`[data.views.left] cols = [0, 14]`): crops a model can read as
    /// its `input` (`[models.<slot>] view = "left"`), for cross-modal setups with one image split
    /// into modalities. Augmenters run on the whole image first.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub views: BTreeMap<String, ViewSection>,
    /// How a text dataset is cut into rows and splits (text datasets only).
    #[serde(default)]
    pub text: super::TextSection,
}

impl DataSection {
    /// True when the dataset is a byte-level text corpus (not an IDX image set).
    pub fn is_text(&self) -> bool {
        crate::data::text::TEXT_CORPORA.contains(&self.dataset.as_str())
    }
}

/// `[data.views.<name>]`: a crop of the image, as half-open pixel ranges.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ViewSection {
    /// Columns `[from, to)` (default: all).
    #[serde(default)]
    pub cols: Option<[usize; 2]>,
    /// Rows `[from, to)` (default: all).
    #[serde(default)]
    pub rows: Option<[usize; 2]>,
}

/// `[models.<slot>]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// A model plugin name (`mlp`, `cnn`).
    pub plugin: String,
    /// The plugin's parameters (see `retort plugins inspect`).
    #[serde(default = "empty_object")]
    pub params: Value,
    /// Load weights from this safetensors file instead of training from scratch.
    #[serde(default)]
    pub checkpoint: Option<PathBuf>,
    /// The `[data.views]` entry this model reads as its `input` (default: the whole image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub view: Option<String>,
    /// Parameters copied from another slot when this one starts training (KD³'s classifier
    /// sharing: the student's head is the teacher's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_from: Option<InitFrom>,
    /// Parameter names that no optimizer updates (a shared head stays the teacher's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub freeze: Vec<String>,
}

/// `[models.<slot>] init_from = { slot, params }`: copy named parameters from `slot` (its current
/// values, e.g. a teacher trained by an earlier stage or loaded from a checkpoint).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InitFrom {
    /// The model slot to copy from.
    pub slot: String,
    /// Parameter names, each `name` (the same in both) or `name = source_name`.
    pub params: Vec<String>,
}

impl InitFrom {
    /// `(this slot's name, the source's name)` of each entry.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.params.iter().map(|p| match p.split_once('=') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (p.trim(), p.trim()),
        })
    }
}

/// `[teachers.<slot>]`, `[routers.<slot>]` or `[augmenters.<slot>]`: a plugin instance.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PluginSection {
    /// The plugin's name (`ensemble`, `confidence`).
    pub plugin: String,
    /// The plugin's parameters (see `retort plugins inspect`).
    #[serde(default = "empty_object")]
    pub params: Value,
}

/// One loss term of a stage.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LossSection {
    /// A loss plugin name.
    pub plugin: String,
    /// The term's name in logs (default: the plugin name).
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default = "one_f")]
    pub weight: f64,
    /// How the weight changes over training (default: constant).
    #[serde(default)]
    pub weight_schedule: Option<WeightSchedule>,
    #[serde(default = "empty_object")]
    pub params: Value,
    /// The trained slot whose objective this term joins (its logits are the term's `student`);
    /// default: the stage's first trained slot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on: Option<String>,
    /// Which named tensor the plugin reads under each input name, e.g. `{ teacher = "peer.b" }`
    /// (see [`TensorName`]); unnamed inputs keep their usual tensors.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub inputs: BTreeMap<String, String>,
    /// Run the term once per model teacher of the stage's `teachers` (each as `teacher`) and
    /// combine its per-sample values with the stage's `route` (uniform without a router).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub over_teachers: bool,
    /// Whether the per-sample weights (an augmenter's `sample_weight`, a selecting router's
    /// `weight`) weigh this term; `false` keeps it a plain mean over the batch (KD³'s InfoNCE,
    /// which aligns every instance, kept or not).
    #[serde(default = "yes", skip_serializing_if = "Clone::clone")]
    pub weighted: bool,
}

fn no_slots() -> TrainSlots {
    TrainSlots::Peers(Vec::new())
}

/// The slots a stage trains: `train = "student"`, or `train = ["a", "b"]` for peers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TrainSlots {
    One(String),
    Peers(Vec<String>),
}

impl TrainSlots {
    /// Every trained slot, in config order.
    pub fn all(&self) -> Vec<&str> {
        match self {
            TrainSlots::One(s) => vec![s.as_str()],
            TrainSlots::Peers(v) => v.iter().map(String::as_str).collect(),
        }
    }

    /// The first trained slot: the objective of terms without `on`.
    pub fn primary(&self) -> &str {
        match self {
            TrainSlots::One(s) => s,
            TrainSlots::Peers(v) => v.first().map(String::as_str).unwrap_or(""),
        }
    }

    /// Whether `slot` is trained.
    pub fn contains(&self, slot: &str) -> bool {
        self.all().contains(&slot)
    }
}

impl std::fmt::Display for TrainSlots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.all().join(", "))
    }
}

/// A tensor a term can read by name: `input`, `labels`, `student` (the term's own slot), `teacher`
/// (the stage teacher), `teacher.<slot>` (one of the stage's teachers), `teachers` (the model
/// teachers stacked, `[T, B, C]`), or `peer.<slot>` (a trained slot's logits, detached unless it
/// is the term's own).
#[derive(Debug, Clone, PartialEq)]
pub enum TensorName {
    Input,
    /// `input.<view>`: a `[data.views]` crop of the input.
    InputView(String),
    Labels,
    /// Each sample's index in its dataset file, `[B]` u32.
    Ids,
    Student,
    Teacher,
    TeacherOf(String),
    Teachers,
    Route,
    Peer(String),
    /// `<slot>.<tap>`: a tensor a plugin in `slot` tapped this step (`ctx.tap`), in the graph.
    Tap(String, String),
}

impl TensorName {
    /// Parses a name, or says which names exist.
    pub fn parse(s: &str) -> Result<TensorName, String> {
        match s {
            "input" => Ok(TensorName::Input),
            "labels" => Ok(TensorName::Labels),
            "ids" => Ok(TensorName::Ids),
            "student" => Ok(TensorName::Student),
            "teacher" => Ok(TensorName::Teacher),
            "teachers" => Ok(TensorName::Teachers),
            "route" => Ok(TensorName::Route),
            _ if s.strip_prefix("input.").is_some_and(|v| !v.is_empty()) => {
                Ok(TensorName::InputView(s["input.".len()..].to_string()))
            }
            _ => match (s.strip_prefix("peer."), s.strip_prefix("teacher.")) {
                (Some(slot), _) if !slot.is_empty() => Ok(TensorName::Peer(slot.to_string())),
                (_, Some(slot)) if !slot.is_empty() => Ok(TensorName::TeacherOf(slot.to_string())),
                _ if s.split_once('.').is_some_and(|(a, b)| !a.is_empty() && !b.is_empty()) => {
                    let (slot, tap) = s.split_once('.').unwrap_or_default();
                    Ok(TensorName::Tap(slot.to_string(), tap.to_string()))
                }
                _ => Err(format!(
                    "unknown tensor `{s}`; known: input, input.<view>, labels, ids, student, teacher, teacher.<slot>, teachers, route, \
                     peer.<trained slot>, <slot>.<tap>"
                )),
            },
        }
    }
}

impl LossSection {
    /// The trained slot this term's objective belongs to.
    pub fn slot<'a>(&'a self, train: &'a TrainSlots) -> &'a str {
        self.on.as_deref().unwrap_or_else(|| train.primary())
    }

    /// The term's name in logs and metrics.
    pub fn term_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.plugin)
    }
}

/// A loss weight over training: the configured weight times a factor.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum WeightSchedule {
    /// Factor 1.
    Constant,
    /// Factor `min(1, epoch / epochs)` with epochs counted from 1 (DKD / ND warm-up).
    Warmup { epochs: f64 },
    /// Factor from `from` to `to` linearly over the stage's steps.
    Linear { from: f64, to: f64 },
    /// Multiplied by `factor` after every 0-based epoch `e` with `e % every == 0`, so `factor^⌈e/every⌉`
    /// during epoch `e`: MST-Distill's w_kl (30, 0.5) and w_lb (10, 0.9), which first decay after epoch 0.
    DecayAfter { every: usize, factor: f64 },
}

/// What the teachers see when an augmenter mixes samples (methods spec §3.3).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TeacherTarget {
    /// The teachers run on the augmented (mixed) input, as MIX-KD and OFA-KD do.
    #[default]
    ForwardMixed,
    /// The teachers run on the batch before the augmenters; their outputs are mixed.
    MixOutputs,
}

impl TeacherTarget {
    fn is_default(&self) -> bool {
        *self == TeacherTarget::ForwardMixed
    }
}

/// How the masks of an expert list combine (MST-Distill §1.5).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum MaskComposition {
    /// Expert `j` runs with masks 1..=j all installed (the official code's behaviour).
    #[default]
    Cumulative,
    /// Expert `j` runs with mask `j` alone.
    Independent,
}

/// A rewrite of a model's tap: `with` (a model slot, e.g. a MaskNet) maps the tapped tensor `f` to
/// `g(f)` and the model continues from `g(f)`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RewriteSection {
    pub tap: String,
    pub with: String,
}

/// A second forward of a trained slot with rewrites at its taps (`stages.variants`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VariantSection {
    pub name: String,
    pub model: String,
    pub masks: Vec<RewriteSection>,
}

/// `[[stages.experts]]`: teacher variants of one model slot with rewrites at its taps, one per
/// entry of `masks`, named `<model>/<j>` (j from 1) and stacked after the stage's `teachers`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExpertsSection {
    pub model: String,
    pub masks: Vec<RewriteSection>,
    #[serde(default)]
    pub composition: MaskComposition,
}

impl ExpertsSection {
    /// Every expert: its name and the rewrites installed for its forward.
    pub fn experts(&self) -> Vec<(String, Vec<RewriteSection>)> {
        (0..self.masks.len())
            .map(|j| {
                let masks = match self.composition {
                    MaskComposition::Cumulative => self.masks[..=j].to_vec(),
                    MaskComposition::Independent => vec![self.masks[j].clone()],
                };
                (format!("{}/{}", self.model, j + 1), masks)
            })
            .collect()
    }
}

/// An optimizer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum OptimizerSection {
    Sgd {
        lr: f64,
        #[serde(default)]
        momentum: f64,
        #[serde(default)]
        nesterov: bool,
        #[serde(default)]
        weight_decay: f64,
    },
    Adamw {
        lr: f64,
        #[serde(default = "beta1")]
        beta1: f64,
        #[serde(default = "beta2")]
        beta2: f64,
        #[serde(default = "adam_eps")]
        eps: f64,
        #[serde(default)]
        weight_decay: f64,
    },
}

impl Default for OptimizerSection {
    fn default() -> Self {
        OptimizerSection::Adamw { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 }
    }
}

/// A learning-rate schedule; `warmup_steps` of linear warm-up apply to every kind.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSection {
    #[serde(default)]
    pub kind: ScheduleKind,
    #[serde(default)]
    pub warmup_steps: usize,
    /// `step`: multiply by `gamma` every `step_epochs`.
    #[serde(default = "one_f")]
    pub step_epochs: f64,
    #[serde(default = "gamma")]
    pub gamma: f64,
    /// `cosine`: the final learning rate as a fraction of the initial one.
    #[serde(default)]
    pub min_factor: f64,
}

impl Default for ScheduleSection {
    fn default() -> Self {
        ScheduleSection { kind: ScheduleKind::Constant, warmup_steps: 0, step_epochs: 1.0, gamma: 0.1, min_factor: 0.0 }
    }
}

/// The shape of a learning-rate schedule.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleKind {
    #[default]
    Constant,
    Step,
    Cosine,
}

/// `[[stages]]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageSection {
    pub name: String,
    /// The model slot trained in this stage, or several peers trained together, each by its own
    /// optimizer on the terms placed `on` it (online and mutual distillation). May be empty
    /// (`[]`, the default) in a stage that only fits `optimize` slots.
    #[serde(default = "no_slots")]
    pub train: TrainSlots,
    /// The teacher (`teacher` tensor): a model slot (frozen) or a teacher-plugin slot, if any.
    #[serde(default)]
    pub teacher: Option<String>,
    /// Further teachers run every step, in order: model slots (frozen, stacked as `teachers`
    /// `[T, B, C]`) and teacher-plugin slots; each one's logits are `teacher.<slot>`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub teachers: Vec<String>,
    /// A router slot (`[routers.<slot>]`): per-sample weights `route` `[B, T]` over the model
    /// teachers in `teachers`, used by terms with `over_teachers`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router: Option<String>,
    /// Augmenter slots (`[augmenters.<slot>]`) run in order on every batch before the forwards:
    /// each may replace `input` and `labels` and set `sample_weight`, `mask` and `targets`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub augmenters: Vec<String>,
    pub epochs: usize,
    /// Training samples used in this stage (0 = `data.subset`): a small transfer set.
    #[serde(default)]
    pub subset: Option<usize>,
    pub losses: Vec<LossSection>,
    #[serde(default)]
    pub optimizer: Option<OptimizerSection>,
    /// An objective's own optimizer, by its slot (kind and learning rate; the stage's schedule
    /// scales it like the others): `optimizers = { aug = { kind = "adamw", lr = 0.01 } }` gives
    /// an adversarial augmenter its own learning rate.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub optimizers: BTreeMap<String, OptimizerSection>,
    /// An objective updated only on every n-th step of the stage, by its slot: HARD's alternation
    /// (`update_every = { aug = 5 }`: the augmenter takes one step per five of the student's);
    /// its terms are not computed on the other steps.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub update_every: BTreeMap<String, usize>,
    #[serde(default)]
    pub schedule: Option<ScheduleSection>,
    /// Clip the global gradient norm to this value (0 = off).
    #[serde(default)]
    pub clip_grad_norm: f64,
    /// Override `data.jitter` for this stage.
    #[serde(default)]
    pub jitter: Option<usize>,
    /// Teacher variants with rewritten taps (MaskNets on a teacher), stacked after `teachers`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub experts: Vec<ExpertsSection>,
    /// Second forwards of trained slots with rewrites installed (KD³'s MixDistribution pass), in
    /// training mode and in the graph: `{ name, model, masks = [{ tap, with }] }`. The variant's taps
    /// are readable as `<name>.<tap>` (its logits as `<name>.logits` where the model taps them),
    /// next to the clean pass's `<model>.<tap>`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub variants: Vec<VariantSection>,
    /// Teachers (model slots or expert names) run **frozen**: evaluation mode and untouched
    /// parameters, but in the graph, so a gradient passes through them (to a MaskNet). Other
    /// teachers run without a graph.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub frozen: Vec<String>,
    /// Slots trained by their own objective and optimizer without being run on the input: model
    /// slots that act through rewrites (MaskNets) or the stage's augmenters with parameters (HARD's
    /// adversarial augmenter); terms name them with `on` and see the other slots' logits in the
    /// graph (`peer.<slot>`), so their gradient flows through them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub optimize: Vec<String>,
    /// What the teachers see under a mixing augmenter: the mixed input (`forward_mixed`, default)
    /// or the batch before the augmenters, their outputs then mixed as the augmenter mixed the
    /// inputs (`mix_outputs`: `log(λ·p_T(x_a) + (1−λ)·p_T(x_b))`).
    #[serde(default, skip_serializing_if = "TeacherTarget::is_default")]
    pub teacher_target: TeacherTarget,
    /// One objective and one optimizer over every trained slot, with peers' logits in the graph
    /// (`peer.<slot>` not detached): MST-Distill's co-training. Default: one per slot.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub joint: bool,
    /// This stage's own transfer set (webly-collected data stand-in, KD³): the training images
    /// under corruptions, mixed with off-topic images, labels withheld.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer: Option<TransferSection>,
    /// GKD's on-policy batches: a share of the steps train on the student's own continuations of
    /// data prompts (text datasets only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_policy: Option<super::OnPolicySection>,
    /// MiniPLM's difference sampling: the stage trains on the rows a teacher knows better than a
    /// reference LM (text datasets only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub difference_sampling: Option<super::DifferenceSection>,
}

/// `[stages.transfer]`: a transfer set of `subset` images (the stage's, else `data.subset`, else
/// the whole training split) made once, seeded: `1 − off_topic_fraction` of them are training
/// images, each under one corruption drawn from `corruptions`; the rest are training images of
/// the `off_topic` dataset.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TransferSection {
    /// Corruptions drawn uniformly per on-topic image: `none`, `noise`, `blur`, `invert`, `affine`.
    #[serde(default)]
    pub corruptions: Vec<Corruption>,
    /// A dataset of other classes (`fashion-mnist`) whose images join the set, or none.
    #[serde(default)]
    pub off_topic: Option<String>,
    /// Where the off-topic dataset lives (default: found like `data.dir`).
    #[serde(default)]
    pub off_topic_dir: Option<PathBuf>,
    /// The share of the set that is off-topic.
    #[serde(default)]
    pub off_topic_fraction: f64,
    /// Whether the terms see the on-topic images' labels (`kept`) or none (`withheld`: every
    /// label is ignored, −100, and only a router's pseudo-labels give the terms labels).
    #[serde(default)]
    pub labels: TransferLabels,
    /// Std of the added Gaussian pixel noise, in units of the pixel range [0, 1].
    #[serde(default = "default_noise_std")]
    pub noise_std: f64,
    /// σ of the Gaussian blur, in pixels.
    #[serde(default = "default_blur_sigma")]
    pub blur_sigma: f64,
    /// Largest rotation of the affine warp, in degrees (drawn uniformly in ±).
    #[serde(default = "default_affine_degrees")]
    pub affine_degrees: f64,
    /// Range of the affine warp's scale.
    #[serde(default = "default_affine_scale")]
    pub affine_scale: [f64; 2],
    /// Largest shift of the affine warp, in pixels (each axis, drawn uniformly in ±).
    #[serde(default = "default_affine_shift")]
    pub affine_shift: f64,
}

fn default_noise_std() -> f64 {
    0.3
}
fn default_blur_sigma() -> f64 {
    1.0
}
fn default_affine_degrees() -> f64 {
    30.0
}
fn default_affine_scale() -> [f64; 2] {
    [0.75, 1.25]
}
fn default_affine_shift() -> f64 {
    3.0
}

/// One corruption of an image.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Corruption {
    /// The image as it is.
    None,
    /// Additive Gaussian noise (clipped to the pixel range).
    Noise,
    /// Gaussian blur.
    Blur,
    /// Contrast inversion, `255 − x`.
    Invert,
    /// A random rotation, scale and shift (bilinear).
    Affine,
}

/// Whether a transfer set's labels reach the terms.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum TransferLabels {
    #[default]
    Withheld,
    Kept,
}

impl StageSection {
    /// The model teachers stacked as `teachers`, in order: the `teachers` list, then every expert.
    pub fn stacked_names(&self, is_model: impl Fn(&str) -> bool) -> Vec<String> {
        let plain = self.teachers.iter().filter(|t| is_model(t)).cloned();
        plain.chain(self.experts.iter().flat_map(|e| e.experts().into_iter().map(|(n, _)| n))).collect()
    }

    /// Whether `name` is one of the stage's teachers (`teacher`, `teachers` or an expert).
    pub fn has_teacher(&self, name: &str) -> bool {
        self.teacher.as_deref() == Some(name)
            || self.teachers.iter().any(|t| t == name)
            || self.experts.iter().any(|e| e.experts().iter().any(|(n, _)| n == name))
    }

    /// Every slot with its own objective: the trained slots, then the `optimize` slots.
    pub fn objective_slots(&self) -> Vec<&str> {
        let mut v = self.train.all();
        v.extend(self.optimize.iter().map(String::as_str));
        v
    }
}

/// `[eval]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalSection {
    /// Evaluate every this many epochs (and always at the end of a stage).
    #[serde(default = "one")]
    pub every_epochs: usize,
    /// Also evaluate every this many steps of a stage (0 = only by epochs): the series a
    /// monitor or a learning curve needs within one long epoch.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub every_steps: usize,
    /// Bins of the expected calibration error.
    #[serde(default = "fifteen")]
    pub ece_bins: usize,
    /// The model fidelity and KL are measured against (default: `teacher` when that slot exists).
    #[serde(default)]
    pub reference: Option<String>,
    /// Also report each model's errors on the test set with every image shifted by a random
    /// (dy, dx) ∈ [−shift, shift]² (drawn once, the same for every model); 0 = off.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub shift: usize,
    /// Text sampled from each language model into the report (text datasets only).
    #[serde(default)]
    pub generate: super::GenerateSection,
}

fn is_zero(v: &usize) -> bool {
    *v == 0
}

impl Default for EvalSection {
    fn default() -> Self {
        EvalSection {
            every_epochs: 1,
            every_steps: 0,
            ece_bins: 15,
            reference: None,
            shift: 0,
            generate: Default::default(),
        }
    }
}

/// `[checkpoint]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointSection {
    /// Write a resumable checkpoint every this many steps (0 = by steps never; stage starts and
    /// ends always write one).
    #[serde(default)]
    pub every_steps: usize,
    /// Also write one when this many minutes have passed since the last (0 = never by time).
    #[serde(default = "ten_f")]
    pub every_minutes: f64,
}

impl Default for CheckpointSection {
    fn default() -> Self {
        CheckpointSection { every_steps: 0, every_minutes: 10.0 }
    }
}

/// What to do when a step goes wrong: a loss returns NaN/∞ (`on_nonfinite`), or a plugin returns an
/// error or panics (`on_plugin_error`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FaultsSection {
    #[serde(default)]
    pub on_nonfinite: FaultPolicy,
    #[serde(default)]
    pub on_plugin_error: FaultPolicy,
    /// `skip_step`: stop once this many steps of a stage were skipped (0 = no limit).
    #[serde(default = "hundred")]
    pub max_skipped_steps: u64,
}

impl Default for FaultsSection {
    fn default() -> Self {
        FaultsSection {
            on_nonfinite: FaultPolicy::default(),
            on_plugin_error: FaultPolicy::default(),
            max_skipped_steps: 100,
        }
    }
}

/// A response to a failed step. Every response is recorded in `events.jsonl`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum FaultPolicy {
    /// Write a checkpoint (the state before the failed step) and stop; `--resume` continues.
    Stop,
    /// Drop the batch (no update) and go on.
    SkipStep,
    /// When the failing plugin was swapped in during the run: go back to the previous library with
    /// the state it had at the swap, and redo the step. Otherwise as `stop`.
    #[default]
    Rollback,
}

/// `[logging]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggingSection {
    /// Write a `metrics.jsonl` record every this many steps.
    #[serde(default = "fifty")]
    pub every_steps: usize,
    /// Show progress: a bar on a terminal, a plain line every 10 s when stderr is a file or pipe.
    #[serde(default = "yes")]
    pub progress: bool,
    /// Write TensorBoard event files to `<run>/tensorboard` (losses, lr, metrics, live events).
    #[serde(default = "yes")]
    pub tensorboard: bool,
}

impl Default for LoggingSection {
    fn default() -> Self {
        LoggingSection { every_steps: 50, progress: true, tensorboard: true }
    }
}

fn default_device() -> String {
    "cpu".into()
}
fn default_output() -> PathBuf {
    "runs".into()
}
fn default_batch() -> usize {
    128
}
fn default_eval_batch() -> usize {
    1000
}
fn one() -> usize {
    1
}
fn hundred() -> u64 {
    100
}
fn ten_f() -> f64 {
    10.0
}
fn fifteen() -> usize {
    15
}
fn fifty() -> usize {
    50
}
pub(super) fn one_f() -> f64 {
    1.0
}
fn gamma() -> f64 {
    0.1
}
fn beta1() -> f64 {
    0.9
}
fn beta2() -> f64 {
    0.999
}
fn adam_eps() -> f64 {
    1e-8
}
fn yes() -> bool {
    true
}
fn empty_object() -> Value {
    Value::Object(Default::default())
}
