//! Teacher slots: several teachers per stage (`teachers`), teacher plugins (`[teachers.<slot>]`)
//! reading them, and the `teacher.<slot>` / `teachers` tensors; the `ensemble` teacher's math.
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use retort::{Host, Inputs, Library, TeacherInstance};
use retort_e2e::{
    plugin,
    run::{fresh_dir, report, retort, train_records, two_teachers_config},
};

fn ensemble(cfg: &str) -> TeacherInstance {
    let host = Box::leak(Box::new(Host::cpu(0)));
    let lib = Library::load(&plugin("retort-teacher-ensemble")).unwrap();
    TeacherInstance::new(host, &lib, "ensemble", "ens", cfg).unwrap_or_else(|e| panic!("{e}"))
}

fn softmax(v: &[f32]) -> Vec<f64> {
    let m = v.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
    let e: Vec<f64> = v.iter().map(|&x| (x as f64 - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|x| x / s).collect()
}

#[test]
fn ensemble_averages_logits_or_probabilities() {
    let a = [1f32, 2.0, 0.5, -1.0, 0.0, 3.0];
    let b = [0f32, -1.0, 2.0, 2.0, 1.0, 0.5];
    let stacked = Tensor::from_vec([a, b].concat(), (2, 2, 3), &Device::Cpu).unwrap();
    let inputs = Inputs::new().tensor("teachers", &stacked);
    let got = |cfg: &str| ensemble(cfg).logits(&inputs).unwrap().to_vec2::<f32>().unwrap();
    let mean = got("{}");
    let weighted = got(r#"{"weights": [3.0, 1.0]}"#);
    let probs = got(r#"{"over": "probs"}"#);
    for r in 0..2 {
        let (ra, rb) = (&a[r * 3..r * 3 + 3], &b[r * 3..r * 3 + 3]);
        let (pa, pb) = (softmax(ra), softmax(rb));
        for c in 0..3 {
            assert!((mean[r][c] - (ra[c] + rb[c]) / 2.0).abs() < 1e-6);
            assert!((weighted[r][c] - (0.75 * ra[c] + 0.25 * rb[c])).abs() < 1e-6);
            assert!((probs[r][c] as f64 - ((pa[c] + pb[c]) / 2.0).ln()).abs() < 1e-6);
        }
    }
    let err = ensemble(r#"{"weights": [1.0, 1.0, 1.0]}"#).logits(&inputs).unwrap_err().to_string();
    assert!(err.contains("ensemble") && err.contains("3 weights for 2 teachers"), "{err}");
}

/// Two small teachers, then a student distilled from their ensemble, with a second term reading
/// one teacher by name.
fn config(out: &Path, teacher_input: &str) -> String {
    let rest = format!(
        r#"
[teachers.avg]
plugin = "ensemble"
params = {{ over = "probs" }}

[[stages]]
name = "student"
train = "student"
teachers = ["t1", "t2"]
teacher = "avg"
epochs = 6
subset = 500

[[stages.losses]]
plugin = "hinton-kd"
params = {{ temperature = 4.0 }}

[[stages.losses]]
name = "kd_t1"
plugin = "hinton-kd"
weight = 0.5
inputs = {{ teacher = "{teacher_input}" }}

[eval]
reference = "t1"

[logging]
every_steps = 5
"#
    );
    two_teachers_config(out, "ens", 5, &rest)
}

#[test]
fn a_student_learns_from_an_ensemble_of_frozen_teachers() {
    let tmp = fresh_dir("ensemble");
    let cfg = tmp.join("run.toml");
    std::fs::write(&cfg, config(&tmp, "teacher.t1")).unwrap();
    let (ok, out, err) = retort(&["train", cfg.to_str().unwrap()], &[]);
    assert!(ok, "{out}\n{err}");
    let run = tmp.join("ens");
    let r = report(&run);
    assert!(r["models"]["student"]["accuracy"].as_f64().unwrap() > 0.6, "{}", r["models"]["student"]);
    let rec = train_records(&run);
    let student: Vec<_> = rec.iter().filter(|r| r["stage"] == "student").collect();
    assert!(!student.is_empty() && student.iter().all(|r| r["terms"]["kd_t1"].is_number()));
    // The teachers stayed frozen through the student stage.
    for t in ["t1", "t2"] {
        let saved = candle_core::safetensors::load(run.join(format!("models/{t}.safetensors")), &Device::Cpu).unwrap();
        let state: serde_json::Value =
            serde_json::from_slice(&std::fs::read(run.join("checkpoint/state.json")).unwrap()).unwrap();
        let fin = candle_core::safetensors::load(
            run.join("checkpoint").join(state["weights_file"].as_str().unwrap()),
            &Device::Cpu,
        )
        .unwrap();
        for (name, w) in &saved {
            let a = w.to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let b = fin[&format!("{t}.{name}")].flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()), "{t}.{name} changed");
        }
    }
}

#[test]
fn teacher_names_are_checked_before_training() {
    let tmp = fresh_dir("ensemble-bad");
    let cfg = tmp.join("run.toml");
    std::fs::write(&cfg, config(&tmp, "teacher.t3")).unwrap();
    let (ok, _, err) = retort(&["config", "check", cfg.to_str().unwrap()], &[]);
    assert!(!ok && err.contains("stages[2].losses[1].inputs.teacher") && err.contains("t3"), "{err}");
    std::fs::write(&cfg, config(&tmp, "teacher.t1").replace("plugin = \"ensemble\"", "plugin = \"ensembel\"")).unwrap();
    let (ok, _, err) = retort(&["config", "check", cfg.to_str().unwrap()], &[]);
    assert!(!ok && err.contains("teachers.avg.plugin") && err.contains("did you mean `ensemble`"), "{err}");
}
