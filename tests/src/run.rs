//! Helpers for tests that drive `retort` processes and read their run directories.
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{retort_bin, workspace};

/// The `[run]` and `[data]` tables of a small MNIST run `name` in `out` (batch 50, evaluation
/// batch 2500, the vendored data): the start of the e2e tests' configs.
pub fn mnist_run(out: &Path, name: &str, seed: u64) -> String {
    format!(
        "[run]\nname = \"{name}\"\nseed = {seed}\noutput_dir = \"{}\"\n\n[data]\ndataset = \"mnist\"\ndir = \"{}\"\n\
         batch_size = 50\neval_batch_size = 2500\n",
        out.display(),
        workspace().join("data/mnist").display()
    )
}

/// The `[run]` and `[data]` head of a Moby Dick run (byte rows of `context + 1`, 1 % of the text
/// as the test block, its first 4 KiB scored, the SOTU test block as a second domain).
pub fn text_run(out: &Path, name: &str, seed: u64, context: usize) -> String {
    format!(
        "[run]\nname = \"{name}\"\nseed = {seed}\noutput_dir = \"{}\"\nthreads = 1\n\n[data]\ndataset = \"moby-dick\"\n\
         dir = \"{}\"\nbatch_size = 16\neval_batch_size = 32\n\n[data.text]\ncontext = {context}\nvalidation = 0.0\n\
         test = 0.01\neval_bytes = 4096\ndomains = [\"sotu\"]\n",
        out.display(),
        workspace().join("data/text").display()
    )
}

/// A small MNIST run `name` in `out` that trains two MLP teachers, `t1` (64 hidden) and `t2` (48),
/// for 2 epochs on 600 images (stages 0 and 1) and has a `student` slot (32); `rest` adds what
/// the test is about (teacher or router tables, the student's stage, `[eval]`, `[logging]`).
pub fn two_teachers_config(out: &Path, name: &str, seed: u64, rest: &str) -> String {
    let stage = |t: &str| {
        format!("[[stages]]\nname = \"{t}\"\ntrain = \"{t}\"\nepochs = 2\nsubset = 600\nlosses = [{{ plugin = \"cross-entropy\" }}]\n")
    };
    format!(
        r#"
{head}

[models.t1]
plugin = "mlp"
params = {{ hidden = [64] }}

[models.t2]
plugin = "mlp"
params = {{ hidden = [48] }}

[models.student]
plugin = "mlp"
params = {{ hidden = [32] }}

{t1}
{t2}
{rest}
"#,
        head = mnist_run(out, name, seed),
        t1 = stage("t1"),
        t2 = stage("t2"),
    )
}

/// A small MNIST run in `d` (run `hot`) training an MLP on the `fixture-stateful` loss, found in
/// `d/plugins`; `extra` is appended (a `[faults]` section, say).
pub fn stateful_config(d: &Path, weight: &str, sleep_ms: u64, epochs: usize, extra: &str) -> String {
    format!(
        r#"
[run]
name = "hot"
seed = 3
output_dir = "{out}"
plugin_dirs = ["{plugins}"]

[data]
dataset = "mnist"
dir = "{data}"
batch_size = 16
eval_batch_size = 5000
subset = 1600

[models.student]
plugin = "mlp"
params = {{ hidden = [16] }}

[[stages]]
name = "main"
train = "student"
epochs = {epochs}
losses = [{{ plugin = "fixture-stateful", weight = {weight}, params = {{ sleep_ms = {sleep_ms} }} }}]

[eval]
every_epochs = 100

[logging]
every_steps = 1
progress = false
{extra}
"#,
        out = d.display(),
        plugins = d.join("plugins").display(),
        data = workspace().join("data/mnist").display()
    )
}

/// A fresh directory `retort-<tag>-<pid>` under the temp dir, with a `plugins/` folder.
pub fn fresh_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("retort-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("plugins")).expect("create test dir");
    d
}

/// Runs `retort ARGS` to completion: (success, stdout, stderr).
pub fn retort(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    retort_in(None, args, env)
}

/// As [`retort`], in working directory `cwd` when given.
pub fn retort_in(cwd: Option<&Path>, args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut cmd = Command::new(retort_bin());
    cmd.args(args);
    if let Some(d) = cwd {
        cmd.current_dir(d);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run retort");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

/// Starts `retort ARGS` in the background (stdout and stderr piped).
pub fn spawn(args: &[&str]) -> Child {
    Command::new(retort_bin())
        .args(args)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start retort")
}

/// The JSON records of a `.jsonl` file (none when it does not exist).
pub fn records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap_or_default().lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

/// Polls `f` until it returns a value (60 s at most).
pub fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let t = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(t.elapsed() < Duration::from_secs(60), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(3));
    }
}

/// The highest step recorded in a run's `metrics.jsonl`.
pub fn last_step(run: &Path) -> u64 {
    records(&run.join("metrics.jsonl")).iter().filter_map(|r| r["step"].as_u64()).max().unwrap_or(0)
}

/// The run's events of one kind.
pub fn events(run: &Path, kind: &str) -> Vec<Value> {
    records(&run.join("events.jsonl")).into_iter().filter(|e| e["event"] == kind).collect()
}

/// The run's `type = "train"` metrics records.
pub fn train_records(run: &Path) -> Vec<Value> {
    records(&run.join("metrics.jsonl")).into_iter().filter(|r| r["type"] == "train").collect()
}

/// `report.json` of a run.
pub fn report(run: &Path) -> Value {
    let bytes = std::fs::read(run.join("report.json")).expect("report.json");
    serde_json::from_slice(&bytes).expect("report.json parses")
}

/// A report without its timings (which differ between equal runs).
pub fn without_timing(mut r: Value) -> Value {
    if let Some(o) = r.as_object_mut() {
        o.remove("wall_seconds");
    }
    if let Some(models) = r["models"].as_object_mut() {
        for m in models.values_mut() {
            if let Some(o) = m.as_object_mut() {
                o.remove("train_seconds");
            }
        }
    }
    r
}

/// Every tensor of a run's last checkpoint, by name (`<slot>.<param>`).
pub fn checkpoint_weights(run: &Path) -> std::collections::HashMap<String, candle_core::Tensor> {
    let state: Value = serde_json::from_slice(&std::fs::read(run.join("checkpoint/state.json")).expect("state.json"))
        .expect("state.json is JSON");
    let file = run.join("checkpoint").join(state["weights_file"].as_str().expect("weights_file"));
    candle_core::safetensors::load(file, &candle_core::Device::Cpu).expect("checkpoint weights")
}

/// Asserts that two runs' last checkpoints hold the same tensors, bit for bit.
pub fn assert_same_checkpoints(a: &Path, b: &Path) {
    let (x, y) = (checkpoint_weights(a), checkpoint_weights(b));
    let bits = |t: &candle_core::Tensor| -> Vec<u32> {
        let f = t.flatten_all().and_then(|t| t.to_dtype(candle_core::DType::F32)).expect("tensor");
        f.to_vec1::<f32>().expect("f32").iter().map(|v| v.to_bits()).collect()
    };
    assert_eq!(x.len(), y.len(), "the same tensors");
    for (name, t) in &x {
        assert_eq!(bits(t), bits(&y[name]), "{name}");
    }
}
