//! KD³'s knowledge memorization and its data (methods spec §4.4 item 3, §4.3 (b)): the student
//! shares the teacher's head (`init_from` + `freeze`) behind a projection g, a weighted
//! `feature-l2` aligns g(φ_S) with φ_T, and the stage trains on a transfer set of corrupted
//! images mixed with off-topic ones, labels withheld.
use candle_core::{Device, Tensor};
use retort::{Host, Inputs, Library, LossInstance};
use retort_e2e::{
    plugin,
    run::{fresh_dir, mnist_run, records, retort, train_records},
    workspace,
};

/// Teacher `t` (one hidden layer of 32, head `fc2`), student `s` (16 → projection 32 → the
/// teacher's `fc2`), stage 1 the teacher, stage 2 the student on the transfer set; `extra` goes
/// into the student's model table, `stage` into its stage.
fn config(dir: &std::path::Path, name: &str, extra: &str, stage: &str) -> String {
    format!(
        r#"{head}
[models.t]
plugin = "mlp"
params = {{ hidden = [32] }}

[models.s]
plugin = "mlp"
params = {{ hidden = [16], projection = 32 }}
{extra}

[models.blind]
plugin = "mlp"
params = {{ hidden = [16] }}

[routers.sel]
plugin = "selector"
params = {{ tau_sel = 0.5 }}

[logging]
every_steps = 1

[[stages]]
name = "teacher"
train = "t"
epochs = 1
subset = 600
losses = [{{ plugin = "cross-entropy" }}]

[[stages]]
name = "student"
train = "s"
teacher = "t"
teachers = ["t"]
router = "sel"
epochs = 1
subset = 300
losses = [
  {{ plugin = "cross-entropy" }},
  {{ plugin = "hinton-kd" }},
  {{ plugin = "feature-l2", params = {{ reduction = "mean" }}, inputs = {{ feature = "s.projection", target = "t.layer1" }} }},
]
{stage}

[[stages]]
name = "blind"
train = "blind"
epochs = 1
subset = 300
losses = [{{ plugin = "cross-entropy" }}]
[stages.transfer]
corruptions = ["invert"]
"#,
        head = mnist_run(dir, name, 4)
    )
}

const SHARED: &str = "init_from = { slot = \"t\", params = [\"fc2.weight\", \"fc2.bias\"] }\nfreeze = [\"fc2.*\"]";

fn transfer() -> String {
    format!(
        "[stages.transfer]\ncorruptions = [\"noise\", \"blur\", \"invert\", \"affine\"]\noff_topic = \"fashion-mnist\"\n\
         off_topic_dir = \"{}\"\noff_topic_fraction = 0.3\n",
        workspace().join("data/fashion-mnist").display()
    )
}

#[test]
fn the_student_classifies_with_the_teachers_frozen_head_on_a_withheld_label_transfer_set() {
    let tmp = fresh_dir("kd3-memory");
    let path = tmp.join("share.toml");
    std::fs::write(&path, config(&tmp, "share", SHARED, &transfer())).unwrap();
    let (ok, out, err) = retort(&["train", path.to_str().unwrap()], &[]);
    assert!(ok, "{out}\n{err}");
    let run = tmp.join("share");
    let load = |f: &str| candle_core::safetensors::load(run.join("models").join(f), &Device::Cpu).unwrap();
    let (t, s) = (load("t.safetensors"), load("s.safetensors"));
    let bits = |x: &Tensor| x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    for name in ["fc2.weight", "fc2.bias"] {
        // The teacher's head is never updated (it is a frozen teacher), and the student's is
        // that head, bit for bit, after a stage of training.
        assert_eq!(bits(&t[name]), bits(&s[name]), "{name}");
    }
    assert_eq!(s["proj.weight"].dims(), &[32, 16], "g maps the student's features to the teacher's width");
    assert_eq!(s["fc2.weight"].dims(), &[10, 32]);

    // The transfer set: 210 corrupted MNIST images and 90 Fashion-MNIST ones.
    let started: Vec<String> = records(&run.join("events.jsonl"))
        .iter()
        .filter(|e| e["event"] == "stage_started" && e["slot"] == "student")
        .filter_map(|e| e["reason"].as_str().map(String::from))
        .collect();
    assert!(started.iter().any(|d| d.contains("210 on-topic") && d.contains("90 off-topic")), "{started:?}");
    let recs = train_records(&run);
    let student: Vec<&serde_json::Value> = recs.iter().filter(|r| r["stage"] == "student").collect();
    assert_eq!(student.len(), 6);
    for r in &student {
        let f = r["terms"]["feature-l2"].as_f64().unwrap();
        assert!(f.is_finite() && f >= 0.0, "{r}");
    }
    // Withheld labels: a stage with no router to give pseudo-labels sees no label at all.
    let blind: Vec<f64> = recs.iter().filter(|r| r["stage"] == "blind").map(|r| r["loss"].as_f64().unwrap()).collect();
    assert_eq!(blind.len(), 6);
    assert!(blind.iter().all(|&l| l == 0.0), "{blind:?}");
}

#[test]
fn sharing_and_transfer_mistakes_are_named_before_training() {
    let tmp = fresh_dir("kd3-memory-bad");
    let cases = [
        ("freeze", "freeze = [\"head.weight\"]".to_string(), String::new(), "models.s.freeze[0]"),
        (
            "init",
            "init_from = { slot = \"t\", params = [\"fc2.weight = fc9.weight\"] }".to_string(),
            String::new(),
            "models.s.init_from.params[0]",
        ),
        (
            "slot",
            "init_from = { slot = \"nobody\", params = [\"fc2.weight\"] }".to_string(),
            String::new(),
            "models.s.init_from.slot",
        ),
        (
            "labels",
            SHARED.to_string(),
            transfer().replace("off_topic_fraction = 0.3", "off_topic_fraction = 0.3\nlabels = \"kept\""),
            "stages[1].transfer.labels",
        ),
    ];
    for (name, extra, stage, key) in cases {
        let path = tmp.join(format!("{name}.toml"));
        std::fs::write(&path, config(&tmp, name, &extra, &stage)).unwrap();
        let (ok, out, err) = retort(&["train", path.to_str().unwrap()], &[]);
        assert!(!ok, "{name}: {out}");
        assert!(err.contains(key), "{name}: the error names {key}: {err}");
        // Caught before the run directory is made: the corrected config runs without --overwrite.
        assert!(!tmp.join(name).exists(), "{name}: no run directory was created");
    }
}

/// `feature-l2`'s rows are `Σ_d (u − φ)²` (or the mean), and no gradient reaches the target.
#[test]
fn feature_l2_rows_are_squared_distances() {
    let host = Host::cpu(1);
    let lib = Library::load(&plugin("retort-loss-kd3")).unwrap();
    let u = Tensor::new(&[[1.0f32, 2.0, 3.0], [0.0, 0.0, 0.0]], &Device::Cpu).unwrap();
    let phi = Tensor::new(&[[1.0f32, 0.0, 0.0], [1.0, 1.0, 1.0]], &Device::Cpu).unwrap();
    let inputs = Inputs::new().tensor("feature", &u).tensor("target", &phi);
    for (cfg, want) in [("{}", [13.0f32, 3.0]), (r#"{"reduction": "mean"}"#, [13.0 / 3.0, 1.0])] {
        let mut l = LossInstance::new(&host, &lib, "feature-l2", "f", cfg).unwrap();
        let rows = l.rows(&inputs).unwrap().to_vec1::<f32>().unwrap();
        assert!((rows[0] - want[0]).abs() < 1e-6 && (rows[1] - want[1]).abs() < 1e-6, "{cfg}: {rows:?}");
        let loss = l.loss(&inputs).unwrap().to_scalar::<f32>().unwrap();
        assert!((loss - (want[0] + want[1]) / 2.0).abs() < 1e-6);
    }
    let mut l = LossInstance::new(&host, &lib, "feature-l2", "f", "{}").unwrap();
    let wide = Tensor::zeros((2, 4), candle_core::DType::F32, &Device::Cpu).unwrap();
    let e = l.loss(&Inputs::new().tensor("feature", &u).tensor("target", &wide)).unwrap_err();
    assert!(e.to_string().contains("projection"), "{e}");
}
