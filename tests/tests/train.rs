//! `retort train` end to end on real MNIST (a small subset): run directory contents, resume,
//! frozen teacher, config errors.
use std::path::Path;

use candle_core::Device;
use retort_e2e::{
    run::{fresh_dir, report, retort, without_timing},
    workspace,
};
use serde_json::Value;

fn config(out: &Path, name: &str) -> String {
    format!(
        r#"
[run]
name = "{name}"
seed = 7
output_dir = "{out}"

[data]
dataset = "mnist"
dir = "{data}"
batch_size = 50
eval_batch_size = 2500

[models.teacher]
plugin = "mlp"
params = {{ hidden = [64], dropout = 0.3 }}

[models.scratch]
plugin = "mlp"
params = {{ hidden = [32] }}

[models.student]
plugin = "mlp"
params = {{ hidden = [32] }}

[[stages]]
name = "teacher"
train = "teacher"
epochs = 2
subset = 1000
jitter = 1
losses = [{{ plugin = "cross-entropy" }}]

[[stages]]
name = "scratch"
train = "scratch"
epochs = 5
subset = 500
losses = [{{ plugin = "cross-entropy" }}]
optimizer = {{ kind = "sgd", lr = 0.05, momentum = 0.9, nesterov = true }}

[[stages]]
name = "student"
train = "student"
teacher = "teacher"
epochs = 5
subset = 500
clip_grad_norm = 5.0
losses = [
  {{ plugin = "hinton-kd", params = {{ temperature = 4.0 }} }},
  {{ plugin = "cross-entropy", weight = 0.5, weight_schedule = {{ kind = "linear", from = 1.0, to = 0.0 }} }},
]

[schedule]
kind = "cosine"
warmup_steps = 3

[checkpoint]
every_steps = 4

[logging]
every_steps = 3
"#,
        out = out.display(),
        data = workspace().join("data/mnist").display()
    )
}

#[test]
fn short_run_writes_metrics_report_and_models() {
    let tmp = tempfile_dir("short");
    let cfg = tmp.join("run.toml");
    std::fs::write(&cfg, config(&tmp, "short")).unwrap();
    let (ok, out, err) = retort(&["train", cfg.to_str().unwrap()], &[]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("teacher") && out.contains("student") && out.contains("errors"), "{out}");
    let dir = tmp.join("short");
    for f in ["config.toml", "metrics.jsonl", "report.json", "models/teacher.safetensors", "checkpoint/state.json"] {
        assert!(dir.join(f).exists(), "{f} missing");
    }
    let lines: Vec<Value> = std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let train: Vec<&Value> = lines.iter().filter(|v| v["type"] == "train").collect();
    let eval: Vec<&Value> = lines.iter().filter(|v| v["type"] == "eval").collect();
    assert!(!train.is_empty() && !eval.is_empty());
    for key in ["stage", "epoch", "step", "loss", "terms", "lr", "steps_per_s"] {
        assert!(train.iter().all(|r| r.get(key).is_some()), "train records lack {key}");
    }
    let kd = train.iter().find(|r| r["stage"] == "student").unwrap();
    assert!(kd["terms"]["hinton-kd"].is_number() && kd["terms"]["cross-entropy"].is_number(), "{kd}");
    for key in ["accuracy", "test_errors", "nll", "ece", "fidelity", "kl_to_teacher"] {
        assert!(eval.iter().all(|r| r.get(key).is_some()), "eval records lack {key}");
    }
    let steps: Vec<u64> = train.iter().map(|r| r["step"].as_u64().unwrap()).collect();
    assert!(steps.windows(2).all(|w| w[0] < w[1]), "steps increase: {steps:?}");
    let r = report(&dir);
    assert_eq!(r["test_samples"], 10000);
    for slot in ["teacher", "scratch", "student"] {
        let m = &r["models"][slot];
        for key in ["test_errors", "accuracy", "nll", "ece", "fidelity", "kl_to_teacher", "params", "train_seconds"] {
            assert!(m.get(key).is_some(), "{slot} lacks {key}: {m}");
        }
        let acc = m["accuracy"].as_f64().unwrap();
        assert!(acc > 0.5, "{slot} learned something: accuracy {acc}");
        assert_eq!(m["test_errors"].as_u64().unwrap(), (10000.0 * (1.0 - acc)).round() as u64);
    }
    assert_eq!(r["models"]["teacher"]["fidelity"], 1.0);
    assert_eq!(r["models"]["student"]["params"], 784 * 32 + 32 + 32 * 10 + 10);

    // The teacher stayed frozen while the student was distilled: its final weights are bit-identical
    // to those saved at the end of its own stage.
    let saved = candle_core::safetensors::load(dir.join("models/teacher.safetensors"), &Device::Cpu).unwrap();
    let state: Value = serde_json::from_slice(&std::fs::read(dir.join("checkpoint/state.json")).unwrap()).unwrap();
    let weights = dir.join("checkpoint").join(state["weights_file"].as_str().unwrap());
    let fin = candle_core::safetensors::load(weights, &Device::Cpu).unwrap();
    assert!(!saved.is_empty());
    for (name, t) in &saved {
        let f = &fin[&format!("teacher.{name}")];
        let a = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let b = f.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()), "teacher.{name} changed");
    }

    // `retort eval` re-evaluates the saved models and agrees with the report.
    let (ok, out, err) = retort(&["eval", dir.to_str().unwrap()], &[]);
    assert!(ok && out.contains("matches report.json: yes"), "{out}\n{err}");
}

#[test]
fn resumed_run_reports_exactly_what_an_uninterrupted_one_does() {
    let tmp = tempfile_dir("resume");
    let cfg = tmp.join("run.toml");
    std::fs::write(&cfg, config(&tmp, "whole")).unwrap();
    assert!(retort(&["train", cfg.to_str().unwrap()], &[]).0);
    let whole = without_timing(report(&tmp.join("whole")));

    std::fs::write(&cfg, config(&tmp, "cut")).unwrap();
    // Interrupt in the teacher stage, then in the scratch and the student stages.
    let (ok, out, _) = retort(&["train", cfg.to_str().unwrap(), "--stop-after", "35"], &[]);
    assert!(ok && out.contains("stopped after step 35"), "{out}");
    let dir = tmp.join("cut");
    assert!(!dir.join("report.json").exists());
    for stop in ["41", "120", "9999"] {
        let (ok, out, err) = retort(&["train", "--resume", dir.to_str().unwrap(), "--stop-after", stop], &[]);
        assert!(ok, "{out}\n{err}");
    }
    let mut cut = without_timing(report(&dir));
    cut["run"] = whole["run"].clone();
    assert_eq!(cut, whole);
    // No duplicated records after resuming.
    let steps: Vec<(String, u64)> = std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|v| (v["type"].as_str().unwrap().to_string(), v["step"].as_u64().unwrap()))
        .collect();
    let mut dedup = steps.clone();
    dedup.dedup();
    assert_eq!(steps, dedup, "no record written twice");
}

#[test]
fn config_errors_from_the_command_line() {
    let tmp = tempfile_dir("cfgerr");
    let cfg = tmp.join("run.toml");
    std::fs::write(&cfg, config(&tmp, "x")).unwrap();
    let c = cfg.to_str().unwrap();
    let (ok, out, _) = retort(&["config", "check", c], &[]);
    assert!(ok && out.starts_with("ok:"), "{out}");
    let (ok, _, err) = retort(&["config", "check", c], &[("RETORT__DATA__BATCH_SIZE", "lots")]);
    assert!(!ok);
    assert!(
        err.contains("data.batch_size") && err.contains("lots") && err.contains("RETORT__DATA__BATCH_SIZE"),
        "{err}"
    );
    let (ok, out, _) = retort(&["config", "show", c], &[("RETORT__DATA__BATCH_SIZE", "64")]);
    assert!(ok && out.contains("batch_size = 64"), "{out}");
    let (ok, _, err) = retort(&["config", "check", c], &[("RETORT__DATA__COLOUR", "red")]);
    assert!(!ok && err.contains("colour") && err.contains("RETORT__DATA__COLOUR"), "{err}");
    let (ok, _, err) = retort(&["train", "/nonexistent/x.toml"], &[]);
    assert!(!ok && err.contains("/nonexistent/x.toml: no such file"), "{err}");
    let (ok, out, _) = retort(&["config", "check"], &[]);
    assert!(ok && out.contains("built-in default"), "{out}");
}

fn tempfile_dir(tag: &str) -> std::path::PathBuf {
    fresh_dir(&format!("train-{tag}"))
}

#[test]
fn every_example_config_is_valid() {
    let mut n = 0;
    for dir in ["examples", "examples/losses"] {
        for e in std::fs::read_dir(workspace().join(dir)).unwrap().flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "toml") {
                let (ok, out, err) = retort(&["config", "check", p.to_str().unwrap()], &[]);
                assert!(ok, "{}: {out}{err}", p.display());
                n += 1;
            }
        }
    }
    assert!(n >= 20, "found {n} example configs");
}
