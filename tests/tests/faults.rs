//! Bad steps in a live run: a hot-swapped build that returns NaN or panics is rolled back and the
//! run finishes; `stop` writes a checkpoint and a resume continues with the fixed build; `skip_step`
//! drops batches up to its limit. Every decision is an event that survives the resume.
use std::{path::Path, process::Child};

use retort_e2e::{
    fixture, fixture_build_as, install,
    run::{events, fresh_dir, last_step, records, retort, spawn, stateful_config, train_records, wait_for},
};
use serde_json::Value;

const SLOT: &str = "loss.main.fixture-stateful";

struct Builds {
    good: std::path::PathBuf,
    nan: std::path::PathBuf,
    panic: std::path::PathBuf,
    live: std::path::PathBuf,
}

fn builds(d: &Path) -> Builds {
    let b = Builds {
        good: fixture_build_as("fixture-stateful", &[("FIXTURE_SCALE", "1")], &d.join("good.so")),
        nan: fixture_build_as("fixture-stateful", &[("FIXTURE_SCALE", "nan")], &d.join("nan.so")),
        panic: fixture_build_as("fixture-stateful", &[("FIXTURE_SCALE", "panic")], &d.join("panic.so")),
        live: d.join("plugins/libfixture_stateful.so"),
    };
    install(&b.good, &b.live);
    b
}

fn start(d: &Path, epochs: usize, faults: &str) -> Child {
    let cfg = d.join("run.toml");
    std::fs::write(&cfg, stateful_config(d, "1.0", 4, epochs, faults)).unwrap();
    spawn(&["train", cfg.to_str().unwrap(), "--watch"])
}

fn output(child: Child) -> (bool, String) {
    let out = child.wait_with_output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn a_swapped_in_build_that_returns_nan_or_panics_is_rolled_back() {
    let d = fresh_dir("faults-rollback");
    let b = builds(&d);
    let child = start(&d, 4, "");
    let run = d.join("hot");
    wait_for("training to start", || (last_step(&run) >= 10).then_some(()));

    install(&b.nan, &b.live);
    let back = wait_for("the NaN build's rollback", || events(&run, "swap_rolled_back").into_iter().next());
    let swap = &events(&run, "swap")[0];
    assert_eq!(back["slot"], SLOT);
    assert_eq!(back["from"], swap["to"], "the failing build is the one swapped in");
    assert_eq!(back["to"], swap["from"], "back to the build that ran before");
    assert!(back["reason"].as_str().unwrap().contains("non-finite"), "{back}");

    let at = last_step(&run);
    wait_for("steps after the rollback", || (last_step(&run) >= at + 5).then_some(()));
    install(&b.panic, &b.live);
    wait_for("the panicking build's rollback", || (events(&run, "swap_rolled_back").len() >= 2).then_some(()));
    let back = &events(&run, "swap_rolled_back")[1];
    assert!(back["reason"].as_str().unwrap().contains("panic"), "{back}");

    let (ok, err) = output(child);
    assert!(ok, "{err}");
    assert!(run.join("report.json").exists());
    assert_eq!(err.matches("] swap_rolled_back").count(), 2, "one terminal line per rollback:\n{err}");
    let recs = train_records(&run);
    let steps: Vec<u64> = recs.iter().map(|r| r["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, (1..=steps.len() as u64).collect::<Vec<_>>(), "no step lost or repeated");
    assert!(recs.iter().all(|r| r["terms"]["fixture-stateful"].as_f64().is_some_and(f64::is_finite)));
}

#[test]
fn stop_writes_a_checkpoint_and_resume_continues_with_the_fixed_build() {
    let d = fresh_dir("faults-stop");
    let b = builds(&d);
    let child = start(&d, 2, "[faults]\non_nonfinite = \"stop\"");
    let run = d.join("hot");
    wait_for("training to start", || (last_step(&run) >= 10).then_some(()));
    install(&b.nan, &b.live);
    let (ok, err) = output(child);
    assert!(!ok, "the run stops");
    assert!(err.contains("stopped at step") && err.contains("retort train --resume"), "{err}");
    let stopped = events(&run, "stopped");
    assert_eq!(stopped.len(), 1);
    let state: Value = serde_json::from_slice(&std::fs::read(run.join("checkpoint/state.json")).unwrap()).unwrap();
    assert_eq!(state["global_step"], stopped[0]["step"], "the checkpoint holds the state before the failed step");

    install(&b.good, &b.live);
    let (ok, _, err) = retort(&["train", "--resume", run.to_str().unwrap()], &[]);
    assert!(ok, "{err}");
    let kinds: Vec<String> =
        records(&run.join("events.jsonl")).iter().map(|e| e["event"].as_str().unwrap().to_string()).collect();
    for k in ["swap", "stopped", "resumed"] {
        assert!(kinds.iter().any(|x| x == k), "{k} kept in events.jsonl: {kinds:?}");
    }
    let (ok, out, _) = retort(&["runs", "show", run.to_str().unwrap()], &[]);
    assert!(ok && out.contains("stopped") && out.contains("resumed"), "{out}");
}

#[test]
fn skip_step_drops_batches_up_to_its_limit() {
    let d = fresh_dir("faults-skip");
    let b = builds(&d);
    let child = start(&d, 4, "[faults]\non_nonfinite = \"skip_step\"\nmax_skipped_steps = 5");
    let run = d.join("hot");
    wait_for("training to start", || (last_step(&run) >= 10).then_some(()));
    install(&b.nan, &b.live);
    let (ok, err) = output(child);
    assert!(!ok, "stopped once the limit was reached");
    assert_eq!(events(&run, "step_skipped").len(), 5);
    assert!(err.contains("max_skipped_steps"), "{err}");
}

#[test]
fn a_failing_plugin_with_nothing_to_roll_back_to_stops_with_a_checkpoint() {
    let d = fresh_dir("faults-first");
    std::fs::copy(fixture("fixture-panicky"), d.join("plugins/libfixture_panicky.so")).unwrap();
    let cfg = d.join("run.toml");
    let text = stateful_config(&d, "1.0", 0, 1, "").replace(
        "{ plugin = \"fixture-stateful\", weight = 1.0, params = { sleep_ms = 0 } }",
        "{ plugin = \"fixture-panicky\" }",
    );
    std::fs::write(&cfg, text).unwrap();
    let (ok, _, err) = retort(&["train", cfg.to_str().unwrap()], &[]);
    assert!(!ok);
    assert!(err.contains("fixture-panicky") && err.contains("no earlier version to roll back to"), "{err}");
    assert!(d.join("hot/checkpoint/state.json").exists());
    assert_eq!(events(&d.join("hot"), "stopped").len(), 1);
}
