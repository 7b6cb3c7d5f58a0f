//! Run directories a researcher can trust: config mistakes caught before training, existing runs
//! never silently overwritten, resume from anywhere (and from a copy), loss-term parameters that
//! survive a resume, and loss terms added live that actually train.
use std::path::{Path, PathBuf};

use candle_core::Device;
use retort::{Host, Library, LossInstance};
use retort_e2e::{
    plugin,
    run::{events, fresh_dir, last_step, report, retort, retort_in, spawn, wait_for, without_timing},
    workspace,
};
use serde_json::Value;

/// A two-stage run: a small teacher, then a student distilled with `losses` (TOML array items).
fn config(out: &Path, name: &str, student_epochs: usize, losses: &str) -> String {
    format!(
        r#"
[run]
name = "{name}"
seed = 11
output_dir = "{out}"

[data]
dataset = "mnist"
dir = "{data}"
batch_size = 25
eval_batch_size = 5000

[models.teacher]
plugin = "mlp"
params = {{ hidden = [48] }}

[models.student]
plugin = "mlp"
params = {{ hidden = [16] }}

[[stages]]
name = "teacher"
train = "teacher"
epochs = 1
subset = 500
losses = [{{ plugin = "cross-entropy" }}]

[[stages]]
name = "student"
train = "student"
teacher = "teacher"
epochs = {student_epochs}
subset = 400
losses = [{losses}]

[eval]
every_epochs = 100

[checkpoint]
every_steps = 7

[logging]
every_steps = 1
progress = false
"#,
        out = out.display(),
        data = workspace().join("data/mnist").display()
    )
}

/// A loss term with parameters of its own (tgeo-kd's α network).
const TGEO: &str = "{ plugin = \"tgeo-kd\", params = { hidden = 8 } }";

fn write(dir: &Path, file: &str, text: &str) -> PathBuf {
    let p = dir.join(file);
    std::fs::write(&p, text).unwrap();
    p
}

fn weights(run: &Path) -> std::collections::HashMap<String, candle_core::Tensor> {
    let state: Value = serde_json::from_slice(&std::fs::read(run.join("checkpoint/state.json")).unwrap()).unwrap();
    let file = run.join("checkpoint").join(state["weights_file"].as_str().unwrap());
    candle_core::safetensors::load(file, &Device::Cpu).unwrap()
}

fn bits(t: &candle_core::Tensor) -> Vec<u32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|x| x.to_bits()).collect()
}

#[test]
fn plugin_mistakes_are_reported_before_training_with_file_key_and_suggestion() {
    let d = fresh_dir("runs-preflight");
    let good = config(&d, "p", 1, "{ plugin = \"hinton-kd\", params = { temperature = 4.0 } }");
    let cases = [
        (
            "temperature = 4.0",
            "temprature = 4.0",
            "stages[1].losses[0].params.temprature",
            "did you mean `temperature`",
        ),
        ("temperature = 4.0", "temperature = \"four\"", "stages[1].losses[0].params.temperature", "expects a number"),
        ("plugin = \"hinton-kd\"", "plugin = \"hinton-kdd\"", "stages[1].losses[0].plugin", "did you mean `hinton-kd`"),
        ("temperature = 4.0", "temperature = -4.0", "stages[1].losses[0].params", "temperature must be > 0"),
        ("hidden = [48]", "hidden = 48", "models.teacher.params.hidden", "expects a list"),
        ("plugin = \"cross-entropy\"", "plugin = \"mlp\"", "stages[0].losses[0].plugin", "is a model plugin"),
    ];
    for (from, to, key, hint) in cases {
        let cfg = write(&d, "bad.toml", &good.replacen(from, to, 1));
        for args in [vec!["config", "check"], vec!["train"]] {
            let mut args = args.clone();
            args.push(cfg.to_str().unwrap());
            let (ok, _, err) = retort(&args, &[]);
            assert!(!ok, "{to}: {args:?} must fail");
            assert!(err.contains("bad.toml") && err.contains(key) && err.contains(hint), "{to}: {err}");
        }
        assert!(!d.join("p").exists(), "{to}: no run directory is made before the check passes");
    }
}

#[test]
fn an_existing_run_is_refused_unless_overwritten_and_overwriting_clears_stale_models() {
    let d = fresh_dir("runs-overwrite");
    let cfg = write(&d, "run.toml", &config(&d, "o", 1, "{ plugin = \"cross-entropy\" }"));
    let c = cfg.to_str().unwrap();
    let (ok, _, err) = retort(&["train", c], &[]);
    assert!(ok, "{err}");
    let run = d.join("o");
    let before = std::fs::read(run.join("report.json")).unwrap();
    let (ok, _, err) = retort(&["train", c], &[]);
    assert!(
        !ok && err.contains("already exists") && err.contains("finished run") && err.contains("--overwrite"),
        "{err}"
    );
    assert_eq!(std::fs::read(run.join("report.json")).unwrap(), before, "the refused run touched nothing");
    std::fs::write(run.join("models/stale.safetensors"), b"old").unwrap();
    let (ok, _, err) = retort(&["train", c, "--overwrite"], &[]);
    assert!(ok, "{err}");
    assert!(!run.join("models/stale.safetensors").exists(), "stale models are gone");
    assert!(run.join("models/student.safetensors").exists());
    // A directory that is not a run directory is never deleted.
    std::fs::remove_file(run.join("config.toml")).unwrap();
    let (ok, _, err) = retort(&["train", c, "--overwrite"], &[]);
    assert!(!ok && err.contains("not a Retort run directory"), "{err}");
}

#[test]
fn resume_works_from_any_directory_on_a_copied_run_and_before_any_checkpoint() {
    let d = fresh_dir("runs-resume");
    let whole = write(&d, "whole.toml", &config(&d, "whole", 2, "{ plugin = \"hinton-kd\" }"));
    assert!(retort(&["train", whole.to_str().unwrap()], &[]).0);
    let want = without_timing(report(&d.join("whole")));

    let cut = write(&d, "cut.toml", &config(&d, "cut", 2, "{ plugin = \"hinton-kd\" }"));
    let (ok, _, err) = retort(&["train", cut.to_str().unwrap(), "--stop-after", "30"], &[]);
    assert!(ok, "{err}");
    // Copy the run directory somewhere else and resume the copy from yet another directory.
    let copy = d.join("elsewhere/cut-copy");
    copy_dir(&d.join("cut"), &copy);
    let other = fresh_dir("runs-resume-cwd");
    let (ok, _, err) = retort_in(Some(&other), &["train", "--resume", copy.to_str().unwrap()], &[]);
    assert!(ok, "{err}");
    let mut got = without_timing(report(&copy));
    got["run"] = want["run"].clone();
    assert_eq!(got, want, "the resumed copy reports what the uninterrupted run does");
    assert!(!d.join("cut/report.json").exists(), "the original stays as it was");
    assert!(!other.join("runs").exists(), "nothing is written relative to the working directory");

    // A run killed before its first checkpoint (only config.toml so far) starts from the beginning.
    let early = d.join("early");
    std::fs::create_dir_all(&early).unwrap();
    std::fs::copy(d.join("whole/config.toml"), early.join("config.toml")).unwrap();
    let (ok, _, err) = retort(&["train", "--resume", early.to_str().unwrap()], &[]);
    assert!(ok, "{err}");
    assert_eq!(without_timing(report(&early)), want);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

#[test]
fn parameters_of_loss_terms_survive_a_resume() {
    // tgeo-kd's α network lives in the group `loss.student.tgeo-kd`, a name with dots.
    let d = fresh_dir("runs-lossparams");
    let losses = format!("{TGEO}, {{ plugin = \"cross-entropy\", weight = 0.5 }}");
    let whole = write(&d, "whole.toml", &config(&d, "whole", 2, &losses));
    assert!(retort(&["train", whole.to_str().unwrap()], &[]).0);
    let cut = write(&d, "cut.toml", &config(&d, "cut", 2, &losses));
    // Stop inside the student stage (20 teacher steps, then 16 per student epoch).
    let (ok, _, err) = retort(&["train", cut.to_str().unwrap(), "--stop-after", "29"], &[]);
    assert!(ok, "{err}");
    let (ok, _, err) = retort(&["train", "--resume", d.join("cut").to_str().unwrap()], &[]);
    assert!(ok, "{err}");
    let (a, b) = (weights(&d.join("whole")), weights(&d.join("cut")));
    let alpha: Vec<&String> = a.keys().filter(|k| k.starts_with("loss.student.tgeo-kd.")).collect();
    assert_eq!(alpha.len(), 4, "{:?}", a.keys().collect::<Vec<_>>());
    for k in alpha {
        assert_eq!(bits(&a[k]), bits(&b[k]), "{k} differs after resume");
    }
    let mut r = without_timing(report(&d.join("cut")));
    r["run"] = "whole".into();
    assert_eq!(r, without_timing(report(&d.join("whole"))));
}

#[test]
fn a_loss_term_added_by_a_live_config_edit_is_trained() {
    let d = fresh_dir("runs-liveterm");
    let ce = "{ plugin = \"cross-entropy\" }";
    let cfg = write(&d, "run.toml", &config(&d, "live", 60, ce));
    let child = spawn(&["train", cfg.to_str().unwrap(), "--watch"]);
    let run = d.join("live");
    wait_for("the student stage", || (last_step(&run) >= 25).then_some(()));
    write(&d, "run.toml", &config(&d, "live", 60, &format!("{ce}, {TGEO}")));
    wait_for("config_applied", || events(&run, "config_applied").into_iter().next());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // The α network as tgeo-kd initialises it in this slot (the stream depends on seed and slot).
    let host = Host::cpu(11);
    let lib = Library::load(&plugin("retort-loss-methods")).unwrap();
    let role = "loss.student.tgeo-kd";
    let _init = LossInstance::new(&host, &lib, "tgeo-kd", role, "{\"hidden\": 8}").unwrap();
    let init = host.params.group_tensors(role);
    let trained = weights(&run);
    assert_eq!(init.len(), 4);
    for (name, t) in init {
        let now = &trained[&format!("{role}.{name}")];
        assert_ne!(bits(now), bits(&t), "{name} was never updated: the optimizer did not get the new term");
    }
}

#[test]
fn a_run_leaves_tensorboard_events_a_plot_and_plain_progress_lines() {
    let d = fresh_dir("runs-observe");
    let cfg = write(&d, "run.toml", &config(&d, "obs", 1, "{ plugin = \"hinton-kd\" }"));
    // stderr is a pipe here, as in CI or `… 2> log`: plain lines, no colour codes.
    let env = [("RUST_LOG", "info"), ("RETORT__LOGGING__PROGRESS", "true")];
    let (ok, _, err) = retort(&["train", cfg.to_str().unwrap()], &env);
    assert!(ok, "{err}");
    assert!(err.contains("[teacher] step 20/20 (100%)") && err.contains("[student] step 16/16"), "{err}");
    assert!(!err.contains('\u{1b}'), "no escape codes in redirected output");
    let run = d.join("obs");
    let tb: Vec<PathBuf> = std::fs::read_dir(run.join("tensorboard")).unwrap().flatten().map(|e| e.path()).collect();
    assert_eq!(tb.len(), 1);
    let bytes = std::fs::read(&tb[0]).unwrap();
    for tag in ["brain.Event:2", "train/loss", "train/term/hinton-kd", "eval/student/errors", "stage_started"] {
        assert!(bytes.windows(tag.len()).any(|w| w == tag.as_bytes()), "{tag} in the event file");
    }
    let (ok, out, err) = retort(&["runs", "plot", run.to_str().unwrap()], &[]);
    assert!(ok, "{out}{err}");
    let svg = std::fs::read_to_string(run.join("plot.svg")).unwrap();
    for part in ["<svg", "Training loss", "Evaluation errors", "Reliability", "stage_started student", "ECE"] {
        assert!(svg.contains(part), "{part} in plot.svg");
    }
    let report = report(&run);
    assert_eq!(report["models"]["student"]["reliability"].as_array().unwrap().len(), 15, "ECE bins in the report");
}

/// `runs compare`: seeds of one config are one experiment (mean ± sample std per model slot);
/// a run with another config is another experiment; CSV carries the same numbers.
#[test]
fn runs_compare_groups_seeds_and_prints_mean_and_std() {
    let d = fresh_dir("runs-compare");
    let mut dirs = Vec::new();
    for (name, seed, temp) in [("kd-s1", 1, 4.0), ("kd-s2", 2, 4.0), ("hot-s1", 1, 8.0)] {
        let text = config(&d, name, 1, &format!("{{ plugin = \"hinton-kd\", params = {{ temperature = {temp} }} }}"))
            .replace("seed = 11", &format!("seed = {seed}"));
        let (ok, out, err) = retort(&["train", write(&d, &format!("{name}.toml"), &text).to_str().unwrap()], &[]);
        assert!(ok, "{out}\n{err}");
        dirs.push(d.join(name));
    }
    let errors: Vec<f64> =
        dirs.iter().map(|r| report(r)["models"]["student"]["test_errors"].as_f64().unwrap()).collect();
    let args: Vec<&str> = ["runs", "compare"].into_iter().chain(dirs.iter().map(|p| p.to_str().unwrap())).collect();
    let (ok, out, err) = retort(&args, &[]);
    assert!(ok, "{err}");
    let (mean, sd) = ((errors[0] + errors[1]) / 2.0, (errors[0] - errors[1]).abs() / 2f64.sqrt());
    let row = out.lines().find(|l| l.starts_with("| kd | student | 1 2 |")).unwrap_or_else(|| panic!("{out}"));
    assert!(row.contains(&format!("{mean:.1} ± {sd:.1}")), "{row}");
    let single = out.lines().find(|l| l.starts_with("| hot | student | 1 |")).unwrap_or_else(|| panic!("{out}"));
    assert!(single.contains(&format!("| {:.1} |", errors[2])), "{single}");
    assert_eq!(out.lines().filter(|l| l.contains("| teacher |")).count(), 2, "{out}");

    let mut csv_args = args.clone();
    csv_args.extend(["--format", "csv", "--metrics", "test_errors"]);
    let (ok, csv, err) = retort(&csv_args, &[]);
    assert!(ok, "{err}");
    assert_eq!(csv.lines().next(), Some("experiment,model,seeds,test_errors,test_errors_std"));
    let line = csv.lines().find(|l| l.starts_with("kd,student,")).unwrap();
    let cols: Vec<&str> = line.split(',').collect();
    assert_eq!(cols[3].parse::<f64>().unwrap(), mean);
    assert!((cols[4].parse::<f64>().unwrap() - sd).abs() < 1e-9);
    let (ok, _, err) = retort(&["runs", "compare", d.join("nowhere").to_str().unwrap()], &[]);
    assert!(!ok && err.contains("nowhere"), "{err}");
}

/// Taps are kept only once read: a term reading a feature the stage never read before, added
/// live, gets it (the step runs again keeping every tap) and trains, and the run does not stop.
#[test]
fn a_live_term_reading_a_new_tap_gets_it() {
    let d = fresh_dir("runs-livetap");
    let ce = "{ plugin = \"cross-entropy\" }";
    let cfg = write(&d, "run.toml", &config(&d, "live", 60, ce));
    let child = spawn(&["train", cfg.to_str().unwrap(), "--watch"]);
    let run = d.join("live");
    wait_for("the student stage", || (last_step(&run) >= 25).then_some(()));
    let hint = "{ plugin = \"fitnets\", params = { student_tap = \"layer1\", teacher_tap = \"layer1\" } }";
    write(&d, "run.toml", &config(&d, "live", 60, &format!("{ce}, {hint}")));
    wait_for("config_applied", || events(&run, "config_applied").into_iter().next());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let recs: Vec<Value> = retort_e2e::run::train_records(&run);
    let hinted: Vec<f64> = recs.iter().filter_map(|r| r["terms"].get("fitnets").and_then(Value::as_f64)).collect();
    assert!(!hinted.is_empty() && hinted.iter().all(|v| v.is_finite()), "{hinted:?}");
    assert!(events(&run, "step_skipped").is_empty() && events(&run, "stopped").is_empty());
}

/// A model checkpoint that is not there stops the run before its directory exists, so running it
/// again once the file is there is not refused as an existing run.
#[test]
fn a_missing_model_checkpoint_changes_nothing_on_disk() {
    let d = fresh_dir("runs-missing-ck");
    let text = config(&d, "nock", 1, "{ plugin = \"cross-entropy\" }").replace(
        "[models.teacher]\nplugin = \"mlp\"\nparams = { hidden = [48] }",
        "[models.teacher]\nplugin = \"mlp\"\nparams = { hidden = [48] }\ncheckpoint = \"nowhere/t.safetensors\"",
    );
    let cfg = write(&d, "nock.toml", &text);
    let (ok, _, err) = retort(&["train", cfg.to_str().unwrap()], &[]);
    assert!(!ok && err.contains("models.teacher.checkpoint") && err.contains("nowhere/t.safetensors"), "{err}");
    assert!(!d.join("nock").exists(), "no run directory");
}
