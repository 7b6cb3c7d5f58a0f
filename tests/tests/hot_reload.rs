//! Hot reload in a real (small) MNIST training run under `retort train --watch`: library swaps with
//! state hand-over, live config edits, rejected changes, and 100 swaps in a row.
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use retort_e2e::{
    fixture, fixture_build_as, install, retort_bin,
    run::{events, fresh_dir, last_step, spawn, stateful_config, train_records, wait_for},
};
use serde_json::Value;

fn dir(tag: &str) -> PathBuf {
    fresh_dir(&format!("hot-{tag}"))
}

fn config(d: &Path, weight: &str, sleep_ms: u64, epochs: usize) -> String {
    stateful_config(d, weight, sleep_ms, epochs, "")
}

fn start(cfg: &Path) -> Child {
    spawn(&["train", cfg.to_str().unwrap(), "--watch"])
}

const SLOT: &str = "loss.main.fixture-stateful";

#[test]
fn swaps_config_edits_and_rejections_during_a_run() {
    let d = dir("scenario");
    let v1 = fixture_build_as("fixture-stateful", &[("FIXTURE_SCALE", "1")], &d.join("v1.so"));
    let v3 = fixture_build_as("fixture-stateful", &[("FIXTURE_SCALE", "3")], &d.join("v3.so"));
    let broken = fixture("fixture-abi-break");
    let live_lib = d.join("plugins/libfixture_stateful.so");
    install(&v1, &live_lib);
    let cfg = d.join("run.toml");
    std::fs::write(&cfg, config(&d, "1.0", 8, 8)).unwrap();
    let child = start(&cfg);
    let run = d.join("hot");

    // 1. A rebuilt library (a different build-time scale) is swapped in within two steps.
    wait_for("training to start", || (last_step(&run) >= 20).then_some(()));
    install(&v3, &live_lib);
    let installed_at = last_step(&run);
    let swap = wait_for("the swap", || events(&run, "swap").into_iter().next());
    let s = swap["step"].as_u64().unwrap();
    assert!(s <= installed_at + 2, "swap at step {s}, installed at {installed_at}");
    assert_eq!(swap["slot"], SLOT);
    wait_for("steps after the swap", || (last_step(&run) >= s + 5).then_some(()));
    let recs = train_records(&run);
    let at = |step: u64| recs.iter().find(|r| r["step"] == step).unwrap_or_else(|| panic!("no record {step}"));
    let before = at(s);
    let after = at(s + 1);
    assert_eq!(before["plugin_metrics"][SLOT]["scale"], 1.0);
    assert_eq!(after["plugin_metrics"][SLOT]["scale"], 3.0);
    let calls = |r: &Value| r["plugin_metrics"][SLOT]["calls"].as_f64().unwrap();
    assert_eq!(calls(after), calls(before) + 1.0, "the state (call counter) continues across the swap");
    assert_eq!(after["opt_steps"].as_u64().unwrap(), before["opt_steps"].as_u64().unwrap() + 1);
    let term = |r: &Value| r["terms"]["fixture-stateful"].as_f64().unwrap();
    let mean = |rs: Vec<&Value>| rs.iter().map(|r| term(r)).sum::<f64>() / rs.len() as f64;
    let ratio = mean((s + 1..=s + 5).map(at).collect()) / mean((s - 4..=s).map(at).collect());
    assert!((2.0..4.5).contains(&ratio), "the logged loss follows the new scale: ratio {ratio}");
    assert_ne!(before["plugins"][SLOT], after["plugins"][SLOT], "records name the library build");

    // 2. Editing a loss weight in the config changes the weighted loss within two steps.
    std::fs::write(&cfg, config(&d, "2.0", 8, 8)).unwrap();
    let edited_at = last_step(&run);
    let applied = wait_for("config_applied", || events(&run, "config_applied").into_iter().next());
    let c = applied["step"].as_u64().unwrap();
    assert!(c <= edited_at + 2, "config applied at step {c}, edited at {edited_at}");
    wait_for("steps after the edit", || (last_step(&run) >= c + 2).then_some(()));
    let recs = train_records(&run);
    let r = recs.iter().find(|r| r["step"] == c + 1).unwrap();
    assert_eq!(r["config_rev"], 1);
    assert!((r["loss"].as_f64().unwrap() - 2.0 * term(r)).abs() < 1e-5, "{r}");
    let prev = recs.iter().find(|r| r["step"] == c).unwrap();
    assert!((prev["loss"].as_f64().unwrap() - term(prev)).abs() < 1e-5, "{prev}");

    // 3. An incompatible library and an invalid config are rejected; training goes on.
    install(&broken, &live_lib);
    let rejected = wait_for("swap_rejected", || events(&run, "swap_rejected").into_iter().next());
    assert!(rejected["reason"].as_str().unwrap().contains("incompatible"), "{rejected}");
    std::fs::write(&cfg, config(&d, "\"heavy\"", 8, 8)).unwrap();
    let bad = wait_for("config_rejected", || events(&run, "config_rejected").into_iter().next());
    assert!(bad["reason"].as_str().unwrap().contains("weight"), "{bad}");
    // A live edit passes the same plugin checks as a new run: a misspelt parameter is named.
    std::fs::write(&cfg, config(&d, "2.0", 8, 8).replace("sleep_ms =", "sleep_mss =")).unwrap();
    let typo = wait_for("a second config_rejected", || events(&run, "config_rejected").get(1).cloned());
    let why = typo["reason"].as_str().unwrap();
    assert!(why.contains("stages[0].losses[0].params.sleep_mss") && why.contains("did you mean `sleep_ms`"), "{why}");

    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(run.join("report.json").exists());
    let steps: Vec<u64> = train_records(&run).iter().map(|r| r["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, (1..=steps.len() as u64).collect::<Vec<_>>(), "the step counter never reset");

    // The timeline lists every event.
    let show = Command::new(retort_bin()).args(["runs", "show", run.to_str().unwrap()]).output().unwrap();
    let text = String::from_utf8_lossy(&show.stdout);
    for e in ["swap", "config_applied", "swap_rejected", "config_rejected"] {
        assert!(text.contains(e), "{e} missing from:\n{text}");
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).map(str::to_string))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

#[test]
fn a_hundred_swaps_in_a_row() {
    let d = dir("hundred");
    let v1 = fixture_build_as("fixture-stateful", &[("FIXTURE_SCALE", "1")], &d.join("v1.so"));
    let v3 = fixture_build_as("fixture-stateful", &[("FIXTURE_SCALE", "3")], &d.join("v3.so"));
    let live_lib = d.join("plugins/libfixture_stateful.so");
    install(&v1, &live_lib);
    let cfg = d.join("run.toml");
    std::fs::write(&cfg, config(&d, "1.0", 3, 40)).unwrap();
    let mut child = start(&cfg);
    let run = d.join("hot");
    wait_for("training to start", || (last_step(&run) >= 10).then_some(()));
    // Warm up with a couple of swaps, then measure.
    let mut swaps = 0;
    let swap_once = |n: usize| {
        install(if n % 2 == 0 { &v3 } else { &v1 }, &live_lib);
        wait_for("a swap", || (events(&run, "swap").len() > n).then_some(()));
    };
    for _ in 0..4 {
        swap_once(swaps);
        swaps += 1;
    }
    let rss0 = rss_kib(child.id());
    for _ in 0..100 {
        swap_once(swaps);
        swaps += 1;
    }
    let rss1 = rss_kib(child.id());
    assert!(child.try_wait().unwrap().is_none(), "the run is still going");
    let growth = rss1.saturating_sub(rss0);
    eprintln!("RSS over 100 swaps: {rss0} → {rss1} KiB (+{growth} KiB)");
    assert!(growth < 128 * 1024, "RSS grew {growth} KiB over 100 swaps");
    assert!(events(&run, "swap_rejected").is_empty());
    child.kill().unwrap();
    let _ = child.wait();
}

#[test]
fn resume_after_a_swap_uses_the_build_active_at_the_checkpoint() {
    let d = dir("resume");
    let v1 = fixture_build_as("fixture-stateful", &[("FIXTURE_SCALE", "1")], &d.join("v1.so"));
    let v3 = fixture_build_as("fixture-stateful", &[("FIXTURE_SCALE", "3")], &d.join("v3.so"));
    let live_lib = d.join("plugins/libfixture_stateful.so");
    install(&v1, &live_lib);
    let cfg = d.join("run.toml");
    std::fs::write(&cfg, config(&d, "1.0", 4, 4)).unwrap();
    let run = d.join("hot");
    let child = Command::new(retort_bin())
        .args(["train", cfg.to_str().unwrap(), "--watch", "--stop-after", "150"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("training to start", || (last_step(&run) >= 20).then_some(()));
    install(&v3, &live_lib);
    wait_for("the swap", || events(&run, "swap").into_iter().next());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The file on disk goes back to the old build; the checkpoint ran v3, archived in the run.
    install(&v1, &live_lib);
    let resume = |stop: &str| {
        Command::new(retort_bin())
            .args(["train", "--resume", run.to_str().unwrap(), "--stop-after", stop])
            .output()
            .unwrap()
    };
    let out = resume("160");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let recs = train_records(&run);
    let r = recs.iter().find(|r| r["step"] == 151).unwrap();
    assert_eq!(r["plugin_metrics"][SLOT]["scale"], 3.0, "resumed with the build active at the checkpoint");
    // Without the archived copy, resuming says which library is missing.
    for e in std::fs::read_dir(run.join("plugins")).unwrap().flatten() {
        std::fs::remove_file(e.path()).unwrap();
    }
    let out = resume("170");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(SLOT) && err.contains("libfixture_stateful") && err.contains("no copy"), "{err}");
}
