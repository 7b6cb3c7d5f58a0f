//! Routers: per-sample teacher weights `route` `[B, T]` from a router plugin, and terms run over
//! the stage's model teachers (`over_teachers`) combined with them.
use std::path::Path;

use candle_core::{Device, Tensor};
use retort::{Host, Inputs, Library, RouterInstance};
use retort_e2e::{
    plugin,
    run::{fresh_dir, report, retort, train_records, two_teachers_config},
};

fn router(name: &str, cfg: &str) -> RouterInstance {
    let host = Box::leak(Box::new(Host::cpu(0)));
    let lib = Library::load(&plugin("retort-router-basic")).unwrap();
    RouterInstance::new(host, &lib, name, "r", cfg).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn uniform_and_confidence_routes() {
    // Two teachers, two samples, three classes; teacher 0 is right on sample 0, teacher 1 on 1.
    let t =
        Tensor::new(&[[[4f32, 0.0, 0.0], [4.0, 0.0, 0.0]], [[0.0, 0.0, 4.0], [0.0, 4.0, 0.0]]], &Device::Cpu).unwrap();
    let y = Tensor::new(&[0u32, 1], &Device::Cpu).unwrap();
    let inputs = Inputs::new().tensor("teachers", &t).tensor("labels", &y);
    let u = router("uniform", "{}").route(&inputs).unwrap().to_vec2::<f32>().unwrap();
    assert_eq!(u, vec![vec![0.5, 0.5], vec![0.5, 0.5]]);
    let tau = 2.0f64;
    let c = router("confidence", r#"{"temperature": 2.0}"#).route(&inputs).unwrap().to_vec2::<f32>().unwrap();
    let ce = |row: [f64; 3], k: usize| {
        let lse = row.iter().map(|v| v.exp()).sum::<f64>().ln();
        lse - row[k]
    };
    let rows = [[[4.0, 0.0, 0.0], [4.0, 0.0, 0.0]], [[0.0, 0.0, 4.0], [0.0, 4.0, 0.0]]];
    for b in 0..2 {
        let s: Vec<f64> = (0..2).map(|k| (-ce(rows[k][b], b) / tau).exp()).collect();
        let z: f64 = s.iter().sum();
        for k in 0..2 {
            assert!((c[b][k] as f64 - s[k] / z).abs() < 1e-6, "sample {b} teacher {k}: {} vs {}", c[b][k], s[k] / z);
        }
    }
    assert!(c[0][0] > 0.85 && c[1][1] > 0.85, "the right teacher takes the sample: {c:?}");
}

/// Two small teachers, then a student with an `over_teachers` KD term routed by router `r`
/// (plugin `router`, `params` its table), the same term against each teacher at weight 0, and
/// `extra_terms`.
fn config(out: &Path, router: &str, params: &str, extra_terms: &str) -> String {
    let rest = format!(
        r#"
[routers.r]
plugin = "{router}"
params = {{ {params} }}

[[stages]]
name = "student"
train = "student"
teachers = ["t1", "t2"]
router = "r"
epochs = 6
subset = 500

[[stages.losses]]
name = "kd_routed"
plugin = "hinton-kd"
over_teachers = true

[[stages.losses]]
name = "kd_t1"
plugin = "hinton-kd"
weight = 0.0
inputs = {{ teacher = "teacher.t1" }}

[[stages.losses]]
name = "kd_t2"
plugin = "hinton-kd"
weight = 0.0
inputs = {{ teacher = "teacher.t2" }}
{extra_terms}
[eval]
reference = "t1"

[logging]
every_steps = 5
"#
    );
    two_teachers_config(out, "routed", 3, &rest)
}

#[test]
fn a_routed_term_combines_its_per_teacher_values_with_the_route() {
    // Uniform routing: the routed term is the mean of the same term against each teacher.
    let tmp = fresh_dir("routed-uniform");
    let cfg = tmp.join("run.toml");
    std::fs::write(&cfg, config(&tmp, "uniform", "", "")).unwrap();
    let (ok, out, err) = retort(&["train", cfg.to_str().unwrap()], &[]);
    assert!(ok, "{out}\n{err}");
    let rec = train_records(&tmp.join("routed"));
    let student: Vec<_> = rec.iter().filter(|r| r["stage"] == "student").collect();
    assert!(!student.is_empty());
    for r in student {
        let t = &r["terms"];
        let (routed, a, b) =
            (t["kd_routed"].as_f64().unwrap(), t["kd_t1"].as_f64().unwrap(), t["kd_t2"].as_f64().unwrap());
        assert!((routed - (a + b) / 2.0).abs() <= 1e-5 * (1.0 + routed), "{routed} vs ({a} + {b}) / 2");
    }
    // Confidence routing trains a student too.
    let tmp = fresh_dir("routed-confidence");
    let cfg = tmp.join("run.toml");
    std::fs::write(&cfg, config(&tmp, "confidence", "", "")).unwrap();
    let (ok, out, err) = retort(&["train", cfg.to_str().unwrap()], &[]);
    assert!(ok, "{out}\n{err}");
    let acc = report(&tmp.join("routed"))["models"]["student"]["accuracy"].as_f64().unwrap();
    assert!(acc > 0.6, "student accuracy {acc}");
}

#[test]
fn router_mistakes_are_caught_before_training() {
    let tmp = fresh_dir("routed-bad");
    let cfg = tmp.join("run.toml");
    std::fs::write(&cfg, config(&tmp, "uniform", "", "").replace("router = \"r\"", "router = \"q\"")).unwrap();
    let (ok, _, err) = retort(&["config", "check", cfg.to_str().unwrap()], &[]);
    assert!(!ok && err.contains("stages[2].router") && err.contains("no router slot `q`"), "{err}");
    std::fs::write(
        &cfg,
        config(&tmp, "uniform", "", "").replace("teachers = [\"t1\", \"t2\"]\n", "teacher = \"t1\"\n"),
    )
    .unwrap();
    let (ok, _, err) = retort(&["config", "check", cfg.to_str().unwrap()], &[]);
    assert!(!ok && err.contains("stages[2].router"), "{err}");
    std::fs::write(&cfg, config(&tmp, "confidense", "", "")).unwrap();
    let (ok, _, err) = retort(&["config", "check", cfg.to_str().unwrap()], &[]);
    assert!(!ok && err.contains("routers.r.plugin") && err.contains("did you mean `confidence`"), "{err}");
}

#[test]
fn a_learned_router_trains_with_the_student_and_is_checkpointed() {
    // GateNet in the non-official mode with its load-balancing loss read from its tapped gate.
    let tmp = fresh_dir("routed-gate");
    let cfg = tmp.join("run.toml");
    let lb =
        "\n[[stages.losses]]\nname = \"lb\"\nplugin = \"load-balance\"\nweight = 0.5\ninputs = { gate = \"r.gate\" }\n";
    let text = config(&tmp, "gate-net", "mode = \"soft_weighted_gate_grad\"", lb);
    std::fs::write(&cfg, text).unwrap();
    let (ok, out, err) = retort(&["train", cfg.to_str().unwrap()], &[]);
    assert!(ok, "{out}\n{err}");
    let run = tmp.join("routed");
    let rec = train_records(&run);
    assert!(rec.iter().filter(|r| r["stage"] == "student").all(|r| r["terms"]["lb"].is_number()));
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("checkpoint/state.json")).unwrap()).unwrap();
    let ck = candle_core::safetensors::load(
        run.join("checkpoint").join(state["weights_file"].as_str().unwrap()),
        &Device::Cpu,
    )
    .unwrap();
    for name in ["r.fc1.weight", "r.fc2.bias"] {
        assert!(ck.contains_key(name), "router parameter {name} checkpointed");
        assert!(ck.contains_key(&format!("__optimizer.m.{name}")), "{name} is trained by the student's optimizer");
    }
}
