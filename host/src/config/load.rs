//! Reading, merging and validating run configs, with errors that name the source and key.
use std::path::{Path, PathBuf};

use config::{Config, Environment, File, FileFormat};

use super::{RunConfig, StageSection, TensorName, WeightSchedule};

/// The built-in default run (`retort train` with no file): the same text as
/// `examples/mnist-hinton.toml`.
pub const DEFAULT_CONFIG: &str = include_str!("../../../examples/mnist-hinton.toml");

/// Where a config came from.
#[derive(Debug, Clone)]
pub enum ConfigSource {
    File(PathBuf),
    Builtin,
}

impl std::fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigSource::File(p) => write!(f, "{}", p.display()),
            ConfigSource::Builtin => f.write_str("built-in default config"),
        }
    }
}

/// A config that cannot be used: the source, the key path when known, and what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{source_name}: {}{message}", key.as_ref().map(|k| format!("key `{k}`: ")).unwrap_or_default())]
pub struct ConfigError {
    pub source_name: String,
    pub key: Option<String>,
    pub message: String,
}

const ENV_PREFIX: &str = "RETORT__";

/// `RETORT__DATA__BATCH_SIZE` → `data.batch_size`, for every override in the environment.
fn env_overrides() -> Vec<(String, String)> {
    std::env::vars()
        .filter_map(|(k, _)| k.strip_prefix(ENV_PREFIX).map(|rest| (rest.to_lowercase().replace("__", "."), k.clone())))
        .collect()
}

fn format_of(path: &Path) -> Option<FileFormat> {
    match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
        "toml" => Some(FileFormat::Toml),
        "yaml" | "yml" => Some(FileFormat::Yaml),
        "json" => Some(FileFormat::Json),
        _ => None,
    }
}

/// Loads a config file (TOML, YAML or JSON by extension) with environment overrides.
pub fn load_file(path: &Path) -> Result<RunConfig, ConfigError> {
    let src = ConfigSource::File(path.to_path_buf());
    let err = |message: String| ConfigError { source_name: src.to_string(), key: None, message };
    if !path.exists() {
        return Err(err("no such file".into()));
    }
    let format = format_of(path).ok_or_else(|| err("unknown config format: use .toml, .yaml, .yml or .json".into()))?;
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    load_str(&text, format, src)
}

/// Loads config text of `format` with environment overrides; `source` names it in errors.
pub fn load_str(text: &str, format: FileFormat, source: ConfigSource) -> Result<RunConfig, ConfigError> {
    let source_name = source.to_string();
    let built = Config::builder()
        .add_source(File::from_str(text, format))
        .add_source(Environment::with_prefix("RETORT").prefix_separator("__").separator("__").try_parsing(true))
        .build()
        .map_err(|e| ConfigError { source_name: source_name.clone(), key: None, message: e.to_string() })?;
    let cfg: RunConfig = serde_path_to_error::deserialize(built).map_err(|e| {
        let key = e.path().to_string();
        let env = env_overrides().into_iter().find(|(k, _)| key == *k || key.starts_with(&format!("{k}.")));
        let mut message = e.into_inner().to_string();
        if let Some(hint) = typo_hint(&message) {
            message = format!("{hint}{message}");
        }
        if let Some((_, var)) = env {
            message.push_str(&format!(" (set by environment variable {var})"));
        }
        ConfigError { source_name: source_name.clone(), key: (key != ".").then_some(key), message }
    })?;
    validate(&cfg).map_err(|(key, message)| ConfigError { source_name, key: Some(key), message })?;
    Ok(cfg)
}

/// The known name closest to `wrong`, when it is close enough to be a likely typo.
pub fn closest<'a>(wrong: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    known
        .into_iter()
        .map(|k| (strsim::damerau_levenshtein(wrong, k), k))
        .filter(|(d, k)| *d <= (k.len().max(wrong.len()) / 3).max(1) || k.starts_with(wrong) || wrong.starts_with(k))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// "did you mean `x`? " for serde's "unknown field `y`, expected one of `a`, `b`…" when one of the
/// expected names is close to the unknown one.
fn typo_hint(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    let (wrong, expected) = rest.split_once('`')?;
    let names = expected.split('`').skip(1).step_by(2);
    closest(wrong, names).map(|k| format!("did you mean `{k}`? "))
}

/// A weight schedule's parameters.
fn check_weight_schedule(ws: &WeightSchedule) -> Result<(), String> {
    match ws {
        WeightSchedule::DecayAfter { every, factor } if *every == 0 || !factor.is_finite() => {
            Err(format!("decay_after needs every > 0 and a finite factor (got every = {every}, factor = {factor})"))
        }
        _ => Ok(()),
    }
}

/// The step-graph keys of stage `i`: `optimize`, `experts`, `frozen`.
fn validate_graph(cfg: &RunConfig, i: usize, st: &StageSection, ready: &[&str]) -> Result<(), (String, String)> {
    let fail = |k: String, m: String| Err((k, m));
    let slots: Vec<&String> = cfg.models.keys().collect();
    for (k, slot) in st.optimize.iter().enumerate() {
        let at = format!("stages[{i}].optimize[{k}]");
        let augmenter = cfg.augmenters.contains_key(slot);
        if augmenter && !st.augmenters.contains(slot) {
            return fail(at, format!("augmenter `{slot}` is not in this stage's `augmenters`"));
        }
        if !cfg.models.contains_key(slot) && !augmenter {
            return fail(at, format!("no model or augmenter slot `{slot}` (models: {slots:?})"));
        }
        if st.train.contains(slot) || st.optimize[..k].contains(slot) {
            return fail(at, format!("`{slot}` already has an objective in this stage"));
        }
    }
    for (k, e) in st.experts.iter().enumerate() {
        let at = |f: &str| format!("stages[{i}].experts[{k}].{f}");
        if !cfg.models.contains_key(&e.model) {
            return fail(at("model"), format!("no model slot `{}` (slots: {slots:?})", e.model));
        }
        if st.train.contains(&e.model) || !ready.contains(&e.model.as_str()) {
            return fail(
                at("model"),
                format!("`{}` must be trained by an earlier stage or loaded from a checkpoint", e.model),
            );
        }
        if e.masks.is_empty() {
            return fail(at("masks"), "name at least one `{ tap, with }` rewrite".into());
        }
        for (j, m) in e.masks.iter().enumerate() {
            if !cfg.models.contains_key(&m.with) {
                return fail(at(&format!("masks[{j}].with")), format!("no model slot `{}` (slots: {slots:?})", m.with));
            }
            if m.with == e.model || st.train.contains(&m.with) {
                return fail(
                    at(&format!("masks[{j}].with")),
                    format!("`{}` cannot rewrite here: it is the expert's model or a trained student", m.with),
                );
            }
        }
    }
    let owners = st.objective_slots();
    for slot in st.optimizers.keys() {
        if !owners.contains(&slot.as_str()) {
            return fail(
                format!("stages[{i}].optimizers.{slot}"),
                format!("`{slot}` has no objective in this stage (objectives: {})", owners.join(", ")),
            );
        }
    }
    for (k, v) in st.variants.iter().enumerate() {
        let at = |f: &str| format!("stages[{i}].variants[{k}].{f}");
        if !st.train.contains(&v.model) {
            return fail(at("model"), format!("`{}` is not trained by this stage (trained: {})", v.model, st.train));
        }
        let taken = cfg.models.contains_key(&v.name)
            || cfg.augmenters.contains_key(&v.name)
            || cfg.routers.contains_key(&v.name)
            || cfg.teachers.contains_key(&v.name)
            || st.variants[..k].iter().any(|o| o.name == v.name);
        if v.name.is_empty() || v.name.contains('.') || taken {
            return fail(at("name"), format!("`{}` must be a new name without dots", v.name));
        }
        for (j, m) in v.masks.iter().enumerate() {
            if !cfg.models.contains_key(&m.with) || m.with == v.model {
                return fail(at(&format!("masks[{j}].with")), format!("`{}` is not another model slot", m.with));
            }
        }
    }
    let models = st.stacked_names(|t| cfg.models.contains_key(t));
    for (k, f) in st.frozen.iter().enumerate() {
        let model_teacher = st.teacher.as_ref() == Some(f) && cfg.models.contains_key(f);
        if !models.contains(f) && !model_teacher {
            return fail(format!("stages[{i}].frozen[{k}]"), format!("`{f}` is not a model teacher of this stage"));
        }
    }
    Ok(())
}

/// The text-only keys and the keys that mean nothing for text.
fn validate_text(cfg: &RunConfig) -> Result<(), (String, String)> {
    let fail = |k: &str, m: String| Err((k.to_string(), m));
    let t = &cfg.data.text;
    if t.context == 0 {
        return fail("data.text.context", "must be > 0".into());
    }
    for (key, v) in [("validation", t.validation), ("test", t.test)] {
        if !(0.0..1.0).contains(&v) {
            return fail(&format!("data.text.{key}"), format!("a fraction in [0, 1), got {v}"));
        }
    }
    for (slot, m) in &cfg.models {
        if let Some(c) = m.params.get("context").and_then(serde_json::Value::as_u64) {
            if (c as usize) < t.context {
                return fail(
                    &format!("models.{slot}.params.context"),
                    format!("{c} positions, but data.text.context feeds rows of {} tokens", t.context),
                );
            }
        }
    }
    if t.validation + t.test >= 1.0 {
        return fail("data.text.test", "validation + test leave no training text".into());
    }
    if t.test == 0.0 {
        return fail("data.text.test", "must be > 0: the final report scores the test block".into());
    }
    for (k, d) in t.domains.iter().enumerate() {
        if !crate::data::text::TEXT_CORPORA.contains(&d.as_str()) {
            return fail(
                &format!("data.text.domains[{k}]"),
                format!("unknown corpus `{d}` (vendored: {:?})", crate::data::text::TEXT_CORPORA),
            );
        }
    }
    let image_only = [
        ("data.validation", cfg.data.validation > 0, "use data.text.validation (a fraction)"),
        ("data.jitter", cfg.data.jitter > 0, "images only"),
        ("data.views", !cfg.data.views.is_empty(), "images only"),
        ("eval.shift", cfg.eval.shift > 0, "images only"),
    ];
    if let Some((key, _, why)) = image_only.iter().find(|(_, set, _)| *set) {
        return fail(key, format!("not for a text dataset: {why}"));
    }
    for (i, st) in cfg.stages.iter().enumerate() {
        if st.transfer.is_some() {
            return fail(&format!("stages[{i}].transfer"), "transfer sets are made of images".into());
        }
        if let Some(op) = &st.on_policy {
            let key = format!("stages[{i}].on_policy");
            if !(0.0..=1.0).contains(&op.fraction) {
                return fail(&format!("{key}.fraction"), format!("λ must be in [0, 1], got {}", op.fraction));
            }
            if op.prompt == 0 || op.prompt >= t.context {
                return fail(&format!("{key}.prompt"), format!("must be in 1..{} (the context)", t.context));
            }
            if op.sampling.temperature < 0.0 || !(op.sampling.top_p > 0.0 && op.sampling.top_p <= 1.0) {
                return fail(&key, "temperature must be ≥ 0 and top_p in (0, 1]".into());
            }
            if op.source == crate::config::SequenceSource::Teacher && st.teacher.is_none() {
                return fail(&format!("{key}.source"), "`teacher` needs the stage's `teacher`".into());
            }
        }
        if let Some(ds) = &st.difference_sampling {
            let key = format!("stages[{i}].difference_sampling");
            if !(ds.keep > 0.0 && ds.keep <= 1.0) {
                return fail(&format!("{key}.keep"), format!("α must be in (0, 1], got {}", ds.keep));
            }
            for (field, slot) in [("teacher", &ds.teacher), ("reference", &ds.reference)] {
                if !cfg.models.contains_key(slot) {
                    return fail(&format!("{key}.{field}"), format!("no model slot `{slot}`"));
                }
            }
        }
    }
    if let Some(m) = &cfg.monitor {
        for (key, slot) in [("student", Some(&m.student)), ("proxy", Some(&m.proxy)), ("golden", m.golden.as_ref())] {
            if let Some(s) = slot.filter(|s| !cfg.models.contains_key(*s)) {
                return fail(&format!("monitor.{key}"), format!("no model slot `{s}`"));
            }
        }
        if m.fit_evals < 2 || m.patience == 0 {
            return fail("monitor", "fit_evals must be ≥ 2 and patience ≥ 1".into());
        }
    }
    let g = &cfg.eval.generate;
    if g.sampling.temperature < 0.0 || !(g.sampling.top_p > 0.0 && g.sampling.top_p <= 1.0) {
        return fail("eval.generate", "temperature must be ≥ 0 and top_p in (0, 1]".into());
    }
    Ok(())
}

/// Checks what the types cannot: references between sections and value ranges.
fn validate(cfg: &RunConfig) -> Result<(), (String, String)> {
    let fail = |k: &str, m: String| Err((k.to_string(), m));
    let text = cfg.data.is_text();
    if !text && !["mnist", "fashion-mnist"].contains(&cfg.data.dataset.as_str()) {
        return fail(
            "data.dataset",
            format!(
                "unknown dataset `{}`: expected `mnist` or `fashion-mnist` (images) or one of {:?} (text)",
                cfg.data.dataset,
                crate::data::text::TEXT_CORPORA
            ),
        );
    }
    if text {
        validate_text(cfg)?;
    } else if let Some(i) = cfg.stages.iter().position(|s| s.on_policy.is_some()) {
        return fail(&format!("stages[{i}].on_policy"), "generated batches need a text dataset".into());
    } else if cfg.monitor.is_some() {
        return fail(
            "monitor",
            "the teacher-hacking monitor measures token distributions: needs a text dataset".into(),
        );
    } else if let Some(i) = cfg.stages.iter().position(|s| s.difference_sampling.is_some()) {
        return fail(&format!("stages[{i}].difference_sampling"), "scores text rows: needs a text dataset".into());
    }
    if cfg.data.batch_size == 0 || cfg.data.eval_batch_size == 0 {
        return fail("data.batch_size", "batch sizes must be > 0".into());
    }
    if cfg.run.name.is_empty() || cfg.run.name.contains(['/', '\\']) {
        return fail("run.name", format!("`{}` must be a non-empty name without path separators", cfg.run.name));
    }
    if cfg.stages.is_empty() {
        return fail("stages", "at least one stage is needed".into());
    }
    let slots: Vec<&String> = cfg.models.keys().collect();
    let mut ready: Vec<&str> =
        cfg.models.iter().filter(|(_, m)| m.checkpoint.is_some()).map(|(k, _)| k.as_str()).collect();
    for (i, st) in cfg.stages.iter().enumerate() {
        let key = |f: &str| format!("stages[{i}].{f}");
        let trained = st.train.all();
        if trained.is_empty() && st.optimize.is_empty() {
            return fail(&key("train"), "name the slot to train, or a list of peers".into());
        }
        for (k, slot) in trained.iter().enumerate() {
            if !cfg.models.contains_key(*slot) {
                return fail(&key("train"), format!("no model slot `{slot}` (slots: {slots:?})"));
            }
            if trained[..k].contains(slot) {
                return fail(&key("train"), format!("`{slot}` is listed twice"));
            }
        }
        let has_model_teachers = !st.stacked_names(|t| cfg.models.contains_key(t)).is_empty();
        let teacher_keys = st.teacher.iter().map(|t| (key("teacher"), t));
        let listed = st.teachers.iter().enumerate().map(|(k, t)| (format!("stages[{i}].teachers[{k}]"), t));
        for (k, (at, t)) in teacher_keys.chain(listed).enumerate() {
            if cfg.teachers.contains_key(t) {
                continue;
            }
            if !cfg.models.contains_key(t) {
                let plugins: Vec<&String> = cfg.teachers.keys().collect();
                return fail(
                    &at,
                    format!("no model slot or teacher plugin `{t}` (models: {slots:?}, teachers: {plugins:?})"),
                );
            }
            if st.train.contains(t) {
                return fail(&at, "a stage cannot distil a model into itself".into());
            }
            if !ready.contains(&t.as_str()) {
                return fail(&at, format!("`{t}` is neither trained by an earlier stage nor loaded from a checkpoint"));
            }
            if st.teachers.iter().filter(|x| *x == t).count() > 1 && k > 0 {
                return fail(&at, format!("`{t}` is listed twice"));
            }
        }
        validate_graph(cfg, i, st, &ready)?;
        for (slot, &n) in &st.update_every {
            let objective = st.train.contains(slot) || st.optimize.contains(slot);
            if !objective || n == 0 {
                return fail(
                    &key(&format!("update_every.{slot}")),
                    format!("must name a slot this stage trains or optimizes, with n ≥ 1 (got `{slot}` = {n})"),
                );
            }
        }
        if let Some(t) = &st.transfer {
            if !(0.0..1.0).contains(&t.off_topic_fraction) {
                return fail(
                    &key("transfer.off_topic_fraction"),
                    format!("{} must be in [0, 1)", t.off_topic_fraction),
                );
            }
            if t.off_topic.is_some() && t.labels == super::TransferLabels::Kept {
                return fail(
                    &key("transfer.labels"),
                    "off-topic images have no label of this task: use labels = \"withheld\" (a router's pseudo-labels)"
                        .into(),
                );
            }
            let [lo, hi] = t.affine_scale;
            if !(lo > 0.0 && hi >= lo) || t.noise_std < 0.0 || t.blur_sigma < 0.0 {
                return fail(
                    &key("transfer"),
                    "affine_scale = [lo, hi] with 0 < lo ≤ hi; noise_std and blur_sigma ≥ 0".into(),
                );
            }
        }
        if st.epochs == 0 {
            return fail(&key("epochs"), "must be > 0".into());
        }
        if st.losses.is_empty() {
            return fail(&key("losses"), "at least one loss is needed".into());
        }
        if let Some(r) = &st.router {
            if !cfg.routers.contains_key(r) {
                let known: Vec<&String> = cfg.routers.keys().collect();
                return fail(&key("router"), format!("no router slot `{r}` (routers: {known:?})"));
            }
            if !has_model_teachers {
                return fail(
                    &key("router"),
                    "a router weighs the model slots in `teachers`; the stage has none".into(),
                );
            }
        }
        for (k, a) in st.augmenters.iter().enumerate() {
            if !cfg.augmenters.contains_key(a) {
                let known: Vec<&String> = cfg.augmenters.keys().collect();
                return fail(
                    &format!("stages[{i}].augmenters[{k}]"),
                    format!("no augmenter slot `{a}` (augmenters: {known:?})"),
                );
            }
        }
        let mut terms = std::collections::BTreeSet::new();
        let owners = st.objective_slots();
        for (j, l) in st.losses.iter().enumerate() {
            if !terms.insert(l.term_name()) {
                return fail(
                    &format!("stages[{i}].losses[{j}].name"),
                    format!("the stage has two terms named `{}`; give one a distinct `name`", l.term_name()),
                );
            }
            if !l.weight.is_finite() {
                return fail(&format!("stages[{i}].losses[{j}].weight"), format!("{} is not finite", l.weight));
            }
            if !l.params.is_object() {
                return fail(&format!("stages[{i}].losses[{j}].params"), "must be a table of parameters".into());
            }
            if let Some(ws) = &l.weight_schedule {
                check_weight_schedule(ws).map_err(|m| (format!("stages[{i}].losses[{j}].weight_schedule"), m))?;
            }
            if l.over_teachers && !has_model_teachers {
                return fail(
                    &format!("stages[{i}].losses[{j}].over_teachers"),
                    "needs model slots in the stage's `teachers` to run over".into(),
                );
            }
            if l.on.is_none() && trained.is_empty() {
                return fail(
                    &format!("stages[{i}].losses[{j}].on"),
                    format!("the stage trains no slot: place the term `on` one of {}", owners.join(", ")),
                );
            }
            if let Some(on) = &l.on {
                if !owners.contains(&on.as_str()) {
                    return fail(
                        &format!("stages[{i}].losses[{j}].on"),
                        format!("`{on}` is not trained by this stage (trained: {})", owners.join(", ")),
                    );
                }
            }
            for (input, name) in &l.inputs {
                let at = format!("stages[{i}].losses[{j}].inputs.{input}");
                match TensorName::parse(name) {
                    Err(e) => return fail(&at, e),
                    Ok(TensorName::Peer(p)) if !st.train.contains(&p) => {
                        return fail(
                            &at,
                            format!("`peer.{p}`: `{p}` is not trained by this stage (trained: {})", st.train),
                        )
                    }
                    Ok(TensorName::InputView(v)) if !cfg.data.views.contains_key(&v) => {
                        let known: Vec<&String> = cfg.data.views.keys().collect();
                        return fail(&at, format!("`input.{v}`: no view `{v}` in [data.views] (views: {known:?})"));
                    }
                    Ok(TensorName::Teacher) if st.teacher.is_none() => {
                        return fail(&at, "the stage has no `teacher`".into())
                    }
                    Ok(TensorName::TeacherOf(t)) if !st.has_teacher(&t) => {
                        return fail(&at, format!("`teacher.{t}`: `{t}` is not one of the stage's teachers"))
                    }
                    Ok(TensorName::Teachers) if !has_model_teachers => {
                        return fail(&at, "`teachers` needs model slots in the stage's `teachers`".into())
                    }
                    Ok(TensorName::Route) if st.router.is_none() => {
                        return fail(&at, "the stage has no `router`".into())
                    }
                    Ok(TensorName::Tap(slot, _))
                        if !cfg.models.contains_key(&slot)
                            && !cfg.routers.contains_key(&slot)
                            && !cfg.teachers.contains_key(&slot)
                            && !cfg.augmenters.contains_key(&slot)
                            && !st.variants.iter().any(|v| v.name == slot) =>
                    {
                        return fail(
                            &at,
                            format!("`{name}`: no model, teacher, router or augmenter slot `{slot}` to tap"),
                        )
                    }
                    Ok(_) => {}
                }
            }
        }
        for slot in &owners {
            if !st.losses.iter().any(|l| l.slot(&st.train) == *slot) {
                return fail(&key("losses"), format!("`{slot}` is trained but no term is `on` it"));
            }
        }
        ready.extend(owners);
    }
    for (slot, a) in &cfg.augmenters {
        if cfg.models.contains_key(slot) || cfg.teachers.contains_key(slot) || cfg.routers.contains_key(slot) {
            return fail(
                &format!("augmenters.{slot}"),
                format!("`{slot}` is also another slot; give one another name"),
            );
        }
        if !a.params.is_object() {
            return fail(&format!("augmenters.{slot}.params"), "must be a table of parameters".into());
        }
    }
    for (slot, r) in &cfg.routers {
        if cfg.models.contains_key(slot) || cfg.teachers.contains_key(slot) {
            return fail(
                &format!("routers.{slot}"),
                format!("`{slot}` is also a model or teacher slot; give one another name"),
            );
        }
        if !r.params.is_object() {
            return fail(&format!("routers.{slot}.params"), "must be a table of parameters".into());
        }
    }
    for (slot, t) in &cfg.teachers {
        if cfg.models.contains_key(slot) {
            return fail(&format!("teachers.{slot}"), format!("`{slot}` is also a model slot; give one another name"));
        }
        if !t.params.is_object() {
            return fail(&format!("teachers.{slot}.params"), "must be a table of parameters".into());
        }
    }
    for (slot, m) in &cfg.models {
        if !m.params.is_object() {
            return fail(&format!("models.{slot}.params"), "must be a table of parameters".into());
        }
        if let Some(init) = &m.init_from {
            if !cfg.models.contains_key(&init.slot) || &init.slot == slot {
                let others: Vec<&String> = cfg.models.keys().filter(|k| *k != slot).collect();
                return fail(
                    &format!("models.{slot}.init_from.slot"),
                    format!("`{}` is not another model slot (model slots: {others:?})", init.slot),
                );
            }
            if let Some((k, _)) = init.pairs().enumerate().find(|(_, (a, b))| a.is_empty() || b.is_empty()) {
                return fail(
                    &format!("models.{slot}.init_from.params[{k}]"),
                    "write `name` or `name = source_name`".into(),
                );
            }
        }
        if let Some(v) = &m.view {
            if !cfg.data.views.contains_key(v) {
                let known: Vec<&String> = cfg.data.views.keys().collect();
                return fail(
                    &format!("models.{slot}.view"),
                    format!("no view `{v}` in [data.views] (views: {known:?})"),
                );
            }
        }
    }
    for (name, v) in &cfg.data.views {
        for (axis, r) in [("cols", v.cols), ("rows", v.rows)] {
            if let Some([a, b]) = r {
                if a >= b {
                    return fail(&format!("data.views.{name}.{axis}"), format!("[{a}, {b}) is empty"));
                }
            }
        }
    }
    if !(cfg.checkpoint.every_minutes >= 0.0 && cfg.checkpoint.every_minutes.is_finite()) {
        return fail("checkpoint.every_minutes", format!("{} must be a number ≥ 0", cfg.checkpoint.every_minutes));
    }
    if cfg.eval.ece_bins == 0 {
        return fail("eval.ece_bins", "must be > 0".into());
    }
    Ok(())
}

impl RunConfig {
    /// The merged config as TOML (what `retort config show` prints and runs save).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render as TOML: {e}"))
    }

    /// The optimizer of stage `i` (its own, or the run's default).
    pub fn stage_optimizer(&self, i: usize) -> &super::OptimizerSection {
        self.stages[i].optimizer.as_ref().unwrap_or(&self.optimizer)
    }

    /// The schedule of stage `i` (its own, or the run's default).
    pub fn stage_schedule(&self, i: usize) -> &super::ScheduleSection {
        self.stages[i].schedule.as_ref().unwrap_or(&self.schedule)
    }

    /// The slot fidelity and KL are measured against.
    pub fn reference_slot(&self) -> Option<&str> {
        match &self.eval.reference {
            Some(r) => Some(r.as_str()),
            None => self.models.contains_key("teacher").then_some("teacher"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<RunConfig, ConfigError> {
        load_str(text, FileFormat::Toml, ConfigSource::File("test.toml".into()))
    }

    const MINIMAL: &str = r#"
        [run]
        name = "t"
        [data]
        dataset = "mnist"
        [models.a]
        plugin = "mlp"
        [[stages]]
        name = "s"
        train = "a"
        epochs = 1
        losses = [{ plugin = "cross-entropy" }]
    "#;

    #[test]
    fn builtin_default_is_valid() {
        let cfg = load_str(DEFAULT_CONFIG, FileFormat::Toml, ConfigSource::Builtin).unwrap();
        assert_eq!(cfg.stages.len(), 3);
        assert_eq!(cfg.reference_slot(), Some("teacher"));
        // The rendered TOML parses back to the same config.
        let again = load(&cfg.to_toml()).unwrap();
        assert_eq!(again.to_toml(), cfg.to_toml());
    }

    /// Two peers `a` and `b` with one term each; `extra` is appended to b's term.
    fn peers(extra: &str) -> String {
        format!(
            r#"
            [run]
            name = "t"
            [data]
            dataset = "mnist"
            [models.a]
            plugin = "mlp"
            [models.b]
            plugin = "mlp"
            [[stages]]
            name = "s"
            train = ["a", "b"]
            epochs = 1
            [[stages.losses]]
            plugin = "cross-entropy"
            [[stages.losses]]
            name = "kd_b"
            plugin = "hinton-kd"
            {extra}
        "#
        )
    }

    #[test]
    fn peers_and_term_inputs_are_checked_with_their_key_paths() {
        let ok = load(&peers("on = \"b\"\ninputs = { teacher = \"peer.a\" }")).unwrap();
        assert_eq!(ok.stages[0].train.all(), vec!["a", "b"]);
        assert_eq!(ok.stages[0].losses[1].slot(&ok.stages[0].train), "b");
        assert_eq!(ok.stages[0].losses[0].slot(&ok.stages[0].train), "a", "a term without `on` joins the first");
        let cases = [
            ("on = \"c\"", "stages[0].losses[1].on", "not trained"),
            (
                "on = \"b\"\ninputs = { teacher = \"peer.c\" }",
                "stages[0].losses[1].inputs.teacher",
                "`c` is not trained",
            ),
            ("on = \"b\"\ninputs = { teacher = \"teachr\" }", "stages[0].losses[1].inputs.teacher", "unknown tensor"),
            ("on = \"b\"\ninputs = { teacher = \"teacher\" }", "stages[0].losses[1].inputs.teacher", "no `teacher`"),
            ("", "stages[0].losses", "`b` is trained but no term is `on` it"),
        ];
        for (extra, key, says) in cases {
            let e = load(&peers(extra)).unwrap_err();
            assert_eq!(e.key.as_deref(), Some(key), "{extra}: {e}");
            assert!(e.to_string().contains(says), "{extra}: {e}");
        }
        let twice = peers("on = \"b\"").replace("[\"a\", \"b\"]", "[\"a\", \"a\"]");
        assert!(load(&twice).unwrap_err().to_string().contains("listed twice"));
        // A single slot still serialises as a string: saved configs of existing runs do not change.
        assert!(load(MINIMAL).unwrap().to_toml().contains("train = \"a\""));
    }

    #[test]
    fn defaults_are_filled_in() {
        let cfg = load(MINIMAL).unwrap();
        assert_eq!(cfg.data.batch_size, 128);
        assert_eq!(cfg.run.threads, 1);
        assert_eq!(cfg.eval.ece_bins, 15);
        assert!(matches!(cfg.optimizer, crate::config::OptimizerSection::Adamw { .. }));
    }

    #[test]
    fn unknown_key_names_file_and_path() {
        let e = load(&MINIMAL.replace("dataset = \"mnist\"", "dataset = \"mnist\"\nbatch_sise = 3")).unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("test.toml: "), "{msg}");
        assert!(msg.contains("batch_sise") && msg.contains("batch_size"), "{msg}");
        assert!(msg.contains("did you mean `batch_size`?"), "{msg}");
        let e = load(&MINIMAL.replace("epochs = 1", "epochs = 1\nteachr = \"a\"")).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("stages[0].teachr"), "{e}");
        assert!(e.to_string().contains("did you mean `teacher`?"), "{e}");
    }

    #[test]
    fn wrong_type_names_key_value_and_expectation() {
        let e = load(&MINIMAL.replace("epochs = 1", "epochs = \"many\"")).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("stages[0].epochs") && msg.contains("many") && msg.contains("integer"), "{msg}");
    }

    #[test]
    fn semantic_checks_name_the_key() {
        let e = load(&MINIMAL.replace("train = \"a\"", "train = \"b\"")).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("stages[0].train"));
        let e = load(&MINIMAL.replace("epochs = 1", "epochs = 1\nteacher = \"a\"")).unwrap_err();
        assert!(e.to_string().contains("into itself"), "{e}");
        let e = load(&MINIMAL.replace("dataset = \"mnist\"", "dataset = \"cifar\"")).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("data.dataset"));
        assert!(e.to_string().contains("cifar"));
    }

    #[test]
    fn missing_and_unknown_format_files() {
        let e = load_file(Path::new("/nonexistent/run.toml")).unwrap_err();
        assert_eq!(e.to_string(), "/nonexistent/run.toml: no such file");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("run.ini");
        std::fs::write(&p, "x").unwrap();
        assert!(load_file(&p).unwrap_err().to_string().contains("unknown config format"));
        let p = dir.path().join("run.yaml");
        std::fs::write(&p, "run:\n  name: y\ndata:\n  dataset: mnist\nmodels: {}\nstages: []\n").unwrap();
        assert!(load_file(&p).unwrap_err().to_string().contains("at least one stage"));
        let p = dir.path().join("run.toml");
        std::fs::write(&p, "[run\nname=").unwrap();
        assert!(load_file(&p).unwrap_err().to_string().starts_with(&p.display().to_string()));
    }

    #[test]
    fn text_keys_are_checked_with_their_paths() {
        let text = MINIMAL
            .replace("dataset = \"mnist\"", "dataset = \"moby-dick\"")
            .replace("plugin = \"mlp\"", "plugin = \"gpt\"");
        let cfg = load(&text).unwrap();
        assert!(cfg.data.is_text() && cfg.data.text.context == 128);
        let key = |extra: &str, at: &str| {
            let e = load(&text.replace(at, &format!("{at}\n{extra}"))).unwrap_err();
            e.key.clone().unwrap_or_default()
        };
        assert_eq!(
            key(
                "[data.text]\nvalidation = 0.6\ntest = 0.5",
                "epochs = 1\n        losses = [{ plugin = \"cross-entropy\" }]"
            ),
            "data.text.test"
        );
        assert_eq!(key("params = { context = 16 }", "plugin = \"gpt\""), "models.a.params.context");
        assert_eq!(key("jitter = 2", "dataset = \"moby-dick\""), "data.jitter");
        assert_eq!(
            key("[stages.on_policy]\nprompt = 500", "losses = [{ plugin = \"cross-entropy\" }]"),
            "stages[0].on_policy.prompt"
        );
        assert_eq!(
            key(
                "[stages.difference_sampling]\nteacher = \"a\"\nreference = \"nope\"",
                "losses = [{ plugin = \"cross-entropy\" }]"
            ),
            "stages[0].difference_sampling.reference"
        );
        assert_eq!(
            key("[monitor]\nstudent = \"a\"\nproxy = \"t\"", "losses = [{ plugin = \"cross-entropy\" }]"),
            "monitor.proxy"
        );
        // Image runs refuse the text-only sections.
        let e = load(&MINIMAL.replace(
            "losses = [{ plugin = \"cross-entropy\" }]",
            "losses = [{ plugin = \"cross-entropy\" }]\n[stages.on_policy]\nprompt = 4",
        ))
        .unwrap_err();
        assert_eq!(e.key.as_deref(), Some("stages[0].on_policy"));
    }
}
