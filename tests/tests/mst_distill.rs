//! MST-Distill through the trainer (methods spec §1.6 item 2 and issue #12 item 8): MaskNets
//! fitted by their own objectives through a frozen teacher (stage 2), then the experts distilled
//! with a GateNet (stage 3); a stage-2 step changes only its own MaskNet; lazily created MaskNet
//! parameters and their optimizer moments resume exactly; a rewrite at a tap the model never
//! makes is an error naming it.
use std::{collections::HashMap, path::Path};

use candle_core::{Device, Tensor};
use retort_e2e::run::{fresh_dir, mnist_run, report, retort, without_timing};
use serde_json::Value;

/// Stages `t` and `s` (4 and 12 steps), `masks` (one objective per `optimize` slot, terms from
/// `terms`) and `distill` (the experts, a GateNet, top-1 KD and load balancing).
fn config(out: &Path, name: &str, optimize: &str, terms: &str, tap2: &str) -> String {
    format!(
        r#"{head}
[data.views.left]
cols = [0, 14]

[models.t]
plugin = "mlp"
params = {{ hidden = [16, 8] }}

[models.s]
plugin = "mlp"
view = "left"
params = {{ input_dim = 392, hidden = [16] }}

[models.m1]
plugin = "masknet"
params = {{ heads = 2 }}

[models.m2]
plugin = "masknet"
params = {{ heads = 2 }}

[routers.gate]
plugin = "gate-net"

[optimizer]
kind = "adamw"
lr = 0.005

[checkpoint]
every_steps = 2

[[stages]]
name = "t"
train = "t"
epochs = 1
subset = 200
losses = [{{ plugin = "cross-entropy" }}]

[[stages]]
name = "s"
train = "s"
epochs = 3
subset = 200
losses = [{{ plugin = "cross-entropy" }}]

[[stages]]
name = "masks"
teachers = ["s"]
optimize = {optimize}
frozen = ["t/1", "t/2"]
epochs = 1
subset = 200
experts = [{{ model = "t", composition = "independent", masks = [{{ tap = "layer1", with = "m1" }}, {{ tap = "{tap2}", with = "m2" }}] }}]
losses = [{terms}]

[[stages]]
name = "distill"
train = "s"
router = "gate"
epochs = 1
subset = 200
experts = [{{ model = "t", masks = [{{ tap = "layer1", with = "m1" }}, {{ tap = "{tap2}", with = "m2" }}] }}]
losses = [
  {{ plugin = "cross-entropy" }},
  {{ plugin = "hinton-kd", name = "kd", over_teachers = true, weight_schedule = {{ kind = "decay_after", every = 30, factor = 0.5 }} }},
  {{ plugin = "load-balance", name = "lb", inputs = {{ gate = "gate.gate" }} }},
]
"#,
        head = mnist_run(out, name, 21)
    )
}

fn term(slot: &str, expert: &str, weight: f64) -> String {
    format!(
        r#"{{ plugin = "hinton-kd", name = "fit_{slot}", on = "{slot}", weight = {weight}, inputs = {{ student = "teacher.{expert}", teacher = "teacher.s" }} }}"#
    )
}

fn both_terms() -> String {
    format!("{}, {}", term("m1", "t/1", 1.0), term("m2", "t/2", 1.0))
}

fn run(dir: &Path, name: &str, text: String, extra: &[&str]) -> (bool, String) {
    let cfg = dir.join(format!("{name}.toml"));
    std::fs::write(&cfg, text).unwrap();
    let mut args = vec!["train", cfg.to_str().unwrap()];
    args.extend(extra);
    let (ok, out, err) = retort(&args, &[]);
    (ok, format!("{out}\n{err}"))
}

/// The latest checkpoint's parameters by `group.name` (optimizer moments left out).
fn checkpoint(run: &Path) -> HashMap<String, Vec<u32>> {
    let state: Value = serde_json::from_slice(&std::fs::read(run.join("checkpoint/state.json")).unwrap()).unwrap();
    let file = run.join("checkpoint").join(state["weights_file"].as_str().unwrap());
    candle_core::safetensors::load(file, &Device::Cpu)
        .unwrap()
        .into_iter()
        .filter(|(k, _)| !k.starts_with("__"))
        .map(|(k, t)| (k, bits(&t)))
        .collect()
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.flatten_all()
        .unwrap()
        .to_dtype(candle_core::DType::F32)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .map(|v| v.to_bits())
        .collect()
}

fn model_file(run: &Path, slot: &str) -> Vec<u8> {
    std::fs::read(run.join(format!("models/{slot}.safetensors"))).unwrap()
}

#[test]
fn a_stage_two_step_changes_only_its_own_masknet() {
    // One step of stage 2 (after 4 + 12 steps of t and s), MaskNet m1's term weighted 1 or 0:
    // m1 differs between the two runs, and the teacher, the student and m2 are bit-identical.
    let tmp = fresh_dir("mst-isolation");
    let after = |name: &str, w: f64| {
        let (ok, log) =
            run(&tmp, name, config(&tmp, name, r#"["m1"]"#, &term("m1", "t/1", w), "layer2"), &["--stop-after", "17"]);
        assert!(ok, "{log}");
        checkpoint(&tmp.join(name))
    };
    let (trained, still) = (after("w1", 1.0), after("w0", 0.0));
    let groups = |p: &str| trained.keys().filter(|k| k.starts_with(p)).count();
    assert!(groups("m1.") > 0 && groups("m2.") > 0 && groups("t.") > 0 && groups("s.") > 0);
    for (k, v) in &trained {
        if k.starts_with("m1.") {
            continue;
        }
        assert_eq!(v, &still[k], "{k} changed in a step of m1's objective");
    }
    assert!(trained.iter().any(|(k, v)| k.starts_with("m1.") && v != &still[k]), "m1 learned");
    // The frozen teacher's weights are the ones its stage saved.
    let t_saved = candle_core::safetensors::load(tmp.join("w1/models/t.safetensors"), &Device::Cpu).unwrap();
    for (name, t) in t_saved {
        assert_eq!(bits(&t), trained[&format!("t.{name}")], "t.{name}");
    }
}

#[test]
fn masknets_fit_then_distil_and_a_resumed_run_ends_where_an_uninterrupted_one_does() {
    let tmp = fresh_dir("mst-resume");
    let text = |name: &str| config(&tmp, name, r#"["m1", "m2"]"#, &both_terms(), "layer2");
    let (ok, log) = run(&tmp, "whole", text("whole"), &[]);
    assert!(ok, "{log}");
    let whole = tmp.join("whole");
    let r = report(&whole);
    let models: Vec<&String> = r["models"].as_object().unwrap().keys().collect();
    assert_eq!(models, ["s", "t"], "MaskNets are not classifiers in the report");
    let acc = r["models"]["s"]["accuracy"].as_f64().unwrap();
    assert!(acc > 0.3, "the left-half student learned: accuracy {acc}");
    // Stop inside stage 2 (its parameters exist, its moments are non-zero), then resume.
    let (ok, log) = run(&tmp, "cut", text("cut"), &["--stop-after", "18"]);
    assert!(ok, "{log}");
    let cut = tmp.join("cut");
    let (ok, out, err) = retort(&["train", "--resume", cut.to_str().unwrap()], &[]);
    assert!(ok, "{out}\n{err}");
    let mut a = without_timing(report(&cut));
    a["run"] = Value::from("whole");
    assert_eq!(a, without_timing(r));
    for slot in ["m1", "m2", "s"] {
        assert_eq!(model_file(&cut, slot), model_file(&whole, slot), "models/{slot}.safetensors");
    }
}

#[test]
fn a_rewrite_at_a_tap_the_model_never_makes_is_an_error_naming_it() {
    let tmp = fresh_dir("mst-tap");
    let (ok, log) = run(&tmp, "bad", config(&tmp, "bad", r#"["m1", "m2"]"#, &both_terms(), "layer9"), &[]);
    assert!(!ok);
    assert!(log.contains("never tapped [\"layer9\"]") && log.contains("layer1"), "{log}");
}

#[test]
fn step_graph_mistakes_are_caught_before_training_with_their_key() {
    let tmp = fresh_dir("mst-bad");
    let good = config(&tmp, "bad", r#"["m1", "m2"]"#, &both_terms(), "layer2");
    let cases = [
        (
            good.replacen(r#"with = "m2""#, r#"with = "zz""#, 1),
            "stages[2].experts[0].masks[1].with",
            "no model slot `zz`",
        ),
        (good.replace(r#"frozen = ["t/1", "t/2"]"#, r#"frozen = ["t/3"]"#), "stages[2].frozen[0]", "`t/3`"),
        (
            good.replace(r#"optimize = ["m1", "m2"]"#, r#"optimize = ["m1"]"#),
            "stages[2].losses[1].on",
            "`m2` is not trained",
        ),
        (good.replace(r#"view = "left""#, r#"view = "middle""#), "models.s.view", "no view `middle`"),
        (good.replace("cols = [0, 14]", "cols = [14, 14]"), "data.views.left.cols", "is empty"),
        (
            good.replace(r#"gate = "gate.gate""#, r#"gate = "input.nope""#),
            "stages[3].losses[2].inputs.gate",
            "no view `nope`",
        ),
        (
            good.replace(r#"model = "t", composition = "independent""#, r#"model = "m2", composition = "independent""#),
            "stages[2].experts[0].model",
            "must be trained by an earlier stage",
        ),
    ];
    for (text, key, what) in cases {
        assert_ne!(text, good, "the case changes the config ({key})");
        let cfg = tmp.join("bad.toml");
        std::fs::write(&cfg, text).unwrap();
        let (ok, _, err) = retort(&["config", "check", cfg.to_str().unwrap()], &[]);
        assert!(!ok && err.contains(key) && err.contains(what), "{key}: {err}");
    }
}
