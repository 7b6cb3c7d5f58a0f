//! Crashes and hostile disks: `kill -9` at 20+ random points, each followed by a resume, gives
//! exactly the run that was never interrupted; a full disk or a read-only run directory gives a
//! clear error and never a corrupt checkpoint.
use std::{path::Path, process::Command};

use rand::{Rng, SeedableRng};
use retort_e2e::{
    fixture_build_as, install, retort_bin,
    run::{events, fresh_dir, last_step, records, report, retort, spawn, stateful_config, without_timing},
};
use serde_json::Value;

const CHECKPOINTS: &str = "[checkpoint]\nevery_steps = 5";

fn setup(tag: &str, sleep_ms: u64, epochs: usize) -> (std::path::PathBuf, std::path::PathBuf) {
    let d = fresh_dir(tag);
    let lib = fixture_build_as("fixture-stateful", &[("FIXTURE_SCALE", "1")], &d.join("v1.so"));
    install(&lib, &d.join("plugins/libfixture_stateful.so"));
    let cfg = d.join("run.toml");
    std::fs::write(&cfg, stateful_config(&d, "1.0", sleep_ms, epochs, CHECKPOINTS)).unwrap();
    (d, cfg)
}

/// (step, loss) of every train record, in order.
fn losses(run: &Path) -> Vec<(u64, u64)> {
    records(&run.join("metrics.jsonl"))
        .iter()
        .filter(|r| r["type"] == "train")
        .map(|r| (r["step"].as_u64().unwrap(), r["loss"].as_f64().unwrap().to_bits()))
        .collect()
}

fn final_weights(run: &Path) -> Vec<(String, Vec<u32>)> {
    let state: Value = serde_json::from_slice(&std::fs::read(run.join("checkpoint/state.json")).unwrap()).unwrap();
    let file = run.join("checkpoint").join(state["weights_file"].as_str().unwrap());
    let mut w: Vec<(String, Vec<u32>)> = candle_core::safetensors::load(file, &candle_core::Device::Cpu)
        .unwrap()
        .into_iter()
        .map(|(k, t)| (k, t.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|x| x.to_bits()).collect()))
        .collect();
    w.sort();
    w
}

#[test]
fn kill_dash_nine_at_twenty_random_steps_then_resume_is_bit_identical() {
    let (whole_dir, whole_cfg) = setup("crash-whole", 2, 3);
    let (ok, _, err) = retort(&["train", whole_cfg.to_str().unwrap()], &[]);
    assert!(ok, "{err}");
    let whole = whole_dir.join("hot");

    let (d, cfg) = setup("crash-killed", 2, 3);
    let run = d.join("hot");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(20);
    let (mut kills, mut target, mut first) = (0, 0u64, true);
    let mut killed_at = Vec::new();
    loop {
        let args: Vec<&str> =
            if first { vec!["train", cfg.to_str().unwrap()] } else { vec!["train", "--resume", run.to_str().unwrap()] };
        first = false;
        let mut child = spawn(&args);
        if kills == 20 {
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            break;
        }
        target += rng.random_range(3..20);
        let finished = loop {
            if child.try_wait().unwrap().is_some() {
                break true;
            }
            if last_step(&run) >= target {
                break false;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        };
        assert!(!finished, "the run ended before kill {} (target step {target})", kills + 1);
        child.kill().unwrap(); // SIGKILL
        let _ = child.wait();
        kills += 1;
        killed_at.push(last_step(&run));
    }
    eprintln!("killed at steps {killed_at:?}");
    assert_eq!(kills, 20);
    assert_eq!(without_timing(report(&run)), without_timing(report(&whole)), "same report");
    assert_eq!(losses(&run), losses(&whole), "the same loss at every step, no record lost or repeated");
    assert_eq!(final_weights(&run), final_weights(&whole), "bit-identical final weights");
    assert_eq!(events(&run, "resumed").len(), 20);
}

/// Runs a shell script (`$RETORT` is the binary): (success, stderr).
fn shell(script: &str) -> (bool, String) {
    let out = Command::new("sh").arg("-c").arg(script).env("RETORT", retort_bin()).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into())
}

fn du(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| if e.path().is_dir() { du(&e.path()) } else { e.metadata().map(|m| m.len()).unwrap_or(0) })
        .sum()
}

#[test]
fn a_full_disk_gives_a_clear_error_and_keeps_the_last_checkpoint_whole() {
    // A small filesystem of our own: a tmpfs in a private mount namespace (no privileges needed).
    if !shell("unshare -rm true").0 {
        eprintln!("skipped: no user and mount namespaces here (unshare -rm)");
        return;
    }
    let env = [("RETORT__LOGGING__EVERY_STEPS", "100")];
    let (whole_dir, whole_cfg) = setup("crash-full-whole", 0, 2);
    assert!(retort(&["train", whole_cfg.to_str().unwrap()], &env).0);
    let (d, cfg) = setup("crash-full", 0, 2);
    let run = d.join("hot");
    let (ok, _, err) = retort(&["train", cfg.to_str().unwrap(), "--stop-after", "50"], &env);
    assert!(ok, "{err}");
    let before = std::fs::read(run.join("checkpoint/state.json")).unwrap();
    let weights = std::fs::metadata(
        run.join("checkpoint")
            .join(serde_json::from_slice::<Value>(&before).unwrap()["weights_file"].as_str().unwrap()),
    )
    .unwrap()
    .len();
    // The run directory on a filesystem with room for less than one more weights file; resume
    // there, then copy what is left out of the namespace.
    let after = d.join("after");
    let size_kib = (du(&run) + weights / 2) / 1024 + 64;
    let script = format!(
        "unshare -rm sh -c 'mkdir -p {m} && mount -t tmpfs -o size={size_kib}k tmpfs {m} && cp -a {run}/. {m}/ && \
         RETORT__LOGGING__EVERY_STEPS=100 \"$RETORT\" train --resume {m}; rc=$?; cp -a {m}/. {after}/; exit $rc'",
        m = d.join("small").display(),
        run = run.display(),
        after = after.display(),
    );
    std::fs::create_dir_all(&after).unwrap();
    let (ok, err) = shell(&script);
    assert!(!ok, "the run stops");
    assert!(err.contains("cannot write the checkpoint") && err.contains("No space left"), "{err}");
    assert_eq!(std::fs::read(after.join("checkpoint/state.json")).unwrap(), before, "the last checkpoint stands");
    let names: Vec<String> = std::fs::read_dir(after.join("checkpoint"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    assert!(names.iter().all(|n| !n.ends_with(".tmp")), "no partial files: {names:?}");
    // With room again, resuming what the full disk left reaches the uninterrupted result.
    let (ok, _, err) = retort(&["train", "--resume", after.to_str().unwrap()], &env);
    assert!(ok, "{err}");
    assert_eq!(without_timing(report(&after)), without_timing(report(&whole_dir.join("hot"))));
}

#[test]
fn a_read_only_output_directory_is_refused_with_its_path() {
    // Tests often run as root, who may write anywhere: run this one as an ordinary user.
    let nobody = "setpriv --reuid=65534 --regid=65534 --clear-groups";
    if !shell(&format!("{nobody} true")).0 {
        eprintln!("skipped: cannot run as another user here (setpriv)");
        return;
    }
    // The test directory is root's (mode 755): readable, not writable, for that user.
    let (d, cfg) = setup("crash-readonly", 0, 1);
    let (ok, err) = shell(&format!("HOME=/tmp {nobody} \"$RETORT\" train {}", cfg.display()));
    assert!(!ok);
    assert!(err.contains(&d.join("hot").display().to_string()) && err.contains("ermission denied"), "{err}");
    assert!(!d.join("hot").exists());
}
