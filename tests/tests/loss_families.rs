//! One short real MNIST distillation per loss family, every loss plugin in turn on the same
//! student (tiny subset, few steps): no NaN (the trainer refuses non-finite losses), a report.
use std::process::Command;

use retort_e2e::{retort_bin, workspace};

#[test]
fn every_loss_trains_on_mnist_without_nan() {
    let out = std::env::temp_dir().join(format!("retort-families-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    let losses = [
        r#"{ plugin = "hinton-kd" }"#,
        r#"{ plugin = "cross-entropy", params = { target = "mixed", temperature = 2.0 } }"#,
        r#"{ plugin = "reverse-kl" }"#,
        r#"{ plugin = "jensen-shannon" }"#,
        r#"{ plugin = "total-variation" }"#,
        r#"{ plugin = "skew-kl" }"#,
        r#"{ plugin = "skew-reverse-kl" }"#,
        r#"{ plugin = "generalized-jsd", params = { beta = 0.1 } }"#,
        r#"{ plugin = "taid" }"#,
        r#"{ plugin = "dkd", params = { warmup_epochs = 1.0 } }"#,
        r#"{ plugin = "sinkd" }, { plugin = "cross-entropy" }"#,
        r#"{ plugin = "pld" }"#,
        r#"{ plugin = "bd-kd" }"#,
        r#"{ plugin = "swing", params = { noise_std = 0.1 } }"#,
        r#"{ plugin = "mixstd" }"#,
        r#"{ plugin = "tgeo-kd" }"#,
        r#"{ plugin = "nd", params = { student_tap = "layer1", teacher_tap = "layer1", student_dim = 16, teacher_dim = 32 } }, { plugin = "cross-entropy" }"#,
        r#"{ plugin = "dho" }"#,
        r#"{ plugin = "lelp", params = { teacher_tap = "layer1" } }"#,
    ];
    let mut cfg = format!(
        r#"
[run]
name = "families"
seed = 5
output_dir = "{out}"

[data]
dataset = "mnist"
dir = "{data}"
batch_size = 32
subset = 256

[models.teacher]
plugin = "mlp"
params = {{ hidden = [32] }}

[models.student]
plugin = "mlp"
params = {{ hidden = [16] }}

[models.dual]
plugin = "mlp"
params = {{ hidden = [16], dual_head = true }}

[models.sub]
plugin = "mlp"
params = {{ hidden = [16], subclasses = 2 }}

[eval]
every_epochs = 100

[[stages]]
name = "teacher"
train = "teacher"
epochs = 2
losses = [{{ plugin = "cross-entropy" }}]
"#,
        out = out.display(),
        data = workspace().join("data/mnist").display()
    );
    for (i, l) in losses.iter().enumerate() {
        let slot = if l.contains("\"dho\"") {
            "dual"
        } else if l.contains("\"lelp\"") {
            "sub"
        } else {
            "student"
        };
        cfg.push_str(&format!(
            "\n[[stages]]\nname = \"s{i}\"\ntrain = \"{slot}\"\nteacher = \"teacher\"\nepochs = 2\nlosses = [{l}]\n"
        ));
    }
    let file = out.join("run.toml");
    std::fs::write(&file, cfg).unwrap();
    let o = Command::new(retort_bin()).args(["train", file.to_str().unwrap()]).output().unwrap();
    assert!(o.status.success(), "{}\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("families/report.json")).unwrap()).unwrap();
    for slot in ["student", "dual", "sub"] {
        let acc = report["models"][slot]["accuracy"].as_f64().unwrap();
        assert!(acc.is_finite() && acc > 0.2, "{slot}: accuracy {acc}");
    }
}
