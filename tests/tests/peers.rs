//! Peers: a stage that trains several slots together (`train = ["a", "b"]`), each by its own
//! optimizer on the terms placed `on` it, reading the other's logits as `peer.<slot>` (deep mutual
//! learning). Real MNIST, a small subset.
use std::path::Path;

use candle_core::Device;
use retort_e2e::run::{fresh_dir, mnist_run, report, retort, train_records, without_timing};
use serde_json::Value;

/// DML between two MLPs (CE + KL to the other's detached prediction at τ = 1); `b_weight` scales
/// peer b's terms, `b_from` loads b from a file.
fn config(out: &Path, name: &str, b_weight: f64, b_from: Option<&Path>) -> String {
    let b_ckpt = b_from.map(|p| format!("checkpoint = \"{}\"", p.display())).unwrap_or_default();
    format!(
        r#"
{head}

[models.a]
plugin = "mlp"
params = {{ hidden = [32] }}

[models.b]
plugin = "mlp"
params = {{ hidden = [48] }}
{b_ckpt}

[[stages]]
name = "dml"
train = ["a", "b"]
epochs = 2
subset = 500

[[stages.losses]]
name = "ce_a"
plugin = "cross-entropy"
on = "a"

[[stages.losses]]
name = "kl_a"
plugin = "hinton-kd"
on = "a"
inputs = {{ teacher = "peer.b" }}
params = {{ temperature = 1.0, tau_squared = false }}

[[stages.losses]]
name = "ce_b"
plugin = "cross-entropy"
on = "b"
weight = {b_weight}

[[stages.losses]]
name = "kl_b"
plugin = "hinton-kd"
on = "b"
weight = {b_weight}
inputs = {{ teacher = "peer.a" }}
params = {{ temperature = 1.0, tau_squared = false }}

[checkpoint]
every_steps = 4

[logging]
every_steps = 5
"#,
        head = mnist_run(out, name, 11)
    )
}

fn write(dir: &Path, text: String) -> String {
    let cfg = dir.join("run.toml");
    std::fs::write(&cfg, text).unwrap();
    cfg.to_str().unwrap().to_string()
}

/// The latest checkpoint's tensors.
fn checkpoint(run: &Path) -> std::collections::HashMap<String, candle_core::Tensor> {
    let state: Value = serde_json::from_slice(&std::fs::read(run.join("checkpoint/state.json")).unwrap()).unwrap();
    let file = run.join("checkpoint").join(state["weights_file"].as_str().unwrap());
    candle_core::safetensors::load(file, &Device::Cpu).unwrap()
}

fn bits(t: &candle_core::Tensor) -> Vec<u32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|v| v.to_bits()).collect()
}

#[test]
fn peers_learn_together_each_with_its_own_optimizer() {
    let tmp = fresh_dir("peers");
    let (ok, out, err) = retort(&["train", &write(&tmp, config(&tmp, "dml", 1.0, None))], &[]);
    assert!(ok, "{out}\n{err}");
    let run = tmp.join("dml");
    let r = report(&run);
    for slot in ["a", "b"] {
        let acc = r["models"][slot]["accuracy"].as_f64().unwrap();
        assert!(acc > 0.6, "peer {slot} learned: accuracy {acc}");
        assert!(run.join(format!("models/{slot}.safetensors")).exists());
    }
    let rec = train_records(&run);
    assert!(rec.iter().all(|r| ["ce_a", "kl_a", "ce_b", "kl_b"].iter().all(|t| r["terms"][t].is_number())));
    // Both optimizers keep moments for their own slot's parameters.
    let ck = checkpoint(&run);
    for slot in ["a", "b"] {
        assert!(ck.keys().any(|k| k.starts_with(&format!("__optimizer.m.{slot}."))), "moments of {slot}");
    }
}

#[test]
fn an_objective_updates_only_its_own_slot() {
    // Peer b comes from a file and its own terms weigh 0: a learns from b (through peer.b), and b
    // must come out bit-identical, so nothing of a's objective reached b.
    let tmp = fresh_dir("peers-own");
    assert!(retort(&["train", &write(&tmp, config(&tmp, "first", 1.0, None))], &[]).0);
    let b_file = tmp.join("first/models/b.safetensors");
    let (ok, out, err) = retort(&["train", &write(&tmp, config(&tmp, "second", 0.0, Some(&b_file)))], &[]);
    assert!(ok, "{out}\n{err}");
    let before = candle_core::safetensors::load(&b_file, &Device::Cpu).unwrap();
    let after = candle_core::safetensors::load(tmp.join("second/models/b.safetensors"), &Device::Cpu).unwrap();
    let a_before = candle_core::safetensors::load(tmp.join("first/models/a.safetensors"), &Device::Cpu).unwrap();
    let a_after = candle_core::safetensors::load(tmp.join("second/models/a.safetensors"), &Device::Cpu).unwrap();
    assert!(!before.is_empty());
    for (name, t) in &before {
        assert_eq!(bits(t), bits(&after[name]), "b.{name} changed");
    }
    assert!(a_before.iter().any(|(n, t)| bits(t) != bits(&a_after[n])), "a trained");
}

#[test]
fn a_resumed_peer_run_reports_what_an_uninterrupted_one_does() {
    let tmp = fresh_dir("peers-resume");
    assert!(retort(&["train", &write(&tmp, config(&tmp, "whole", 1.0, None))], &[]).0);
    let whole = without_timing(report(&tmp.join("whole")));
    let cfg = write(&tmp, config(&tmp, "cut", 1.0, None));
    let (ok, out, _) = retort(&["train", &cfg, "--stop-after", "7"], &[]);
    assert!(ok && out.contains("stopped after step 7"), "{out}");
    let run = tmp.join("cut");
    let (ok, out, err) = retort(&["train", "--resume", run.to_str().unwrap()], &[]);
    assert!(ok, "{out}\n{err}");
    let mut cut = without_timing(report(&run));
    cut["run"] = whole["run"].clone();
    assert_eq!(cut, whole);
}
