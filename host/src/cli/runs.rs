//! `retort runs show RUN_DIR`: the timeline of a run (stages, evaluations, live changes).
use std::{path::Path, process::ExitCode};

use anyhow::Context;
use clap::Subcommand;
use serde_json::Value;

#[derive(Subcommand)]
pub enum RunsCommand {
    /// Print a run's timeline: stages, evaluations, swaps and config changes, by step.
    Show {
        /// The run directory (`runs/<name>`).
        run_dir: std::path::PathBuf,
    },
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap_or_default().lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

fn s(v: &Value, k: &str) -> String {
    match v.get(k) {
        Some(Value::String(x)) => x.clone(),
        Some(Value::Null) | None => String::new(),
        Some(x) => x.to_string(),
    }
}

pub fn run(cmd: RunsCommand) -> anyhow::Result<ExitCode> {
    let RunsCommand::Show { run_dir } = cmd;
    let metrics = run_dir.join("metrics.jsonl");
    if !metrics.exists() {
        anyhow::bail!("{}: no metrics.jsonl (not a run directory?)", run_dir.display());
    }
    let mut rows: Vec<(u64, u8, String)> = Vec::new();
    let mut stage: Option<String> = None;
    let mut last_step = 0;
    for r in lines(&metrics) {
        let step = r.get("step").and_then(Value::as_u64).unwrap_or(0);
        if s(&r, "type") == "train" {
            let st = s(&r, "stage");
            if stage.as_deref() != Some(st.as_str()) {
                rows.push((step, 0, format!("stage {st} (first record; config rev {})", s(&r, "config_rev"))));
                stage = Some(st);
            }
            last_step = step;
        } else if s(&r, "type") == "eval" {
            rows.push((
                step,
                2,
                format!(
                    "eval {} epoch {}: {} errors, accuracy {:.4}, ece {:.4}",
                    s(&r, "model"),
                    s(&r, "epoch"),
                    s(&r, "test_errors"),
                    r["accuracy"].as_f64().unwrap_or(0.0),
                    r["ece"].as_f64().unwrap_or(0.0)
                ),
            ));
        }
    }
    for e in lines(&run_dir.join("events.jsonl")) {
        let step = e.get("step").and_then(Value::as_u64).unwrap_or(0);
        let mut text = format!("{} {}", s(&e, "event"), s(&e, "slot"));
        let (from, to) = (s(&e, "from"), s(&e, "to"));
        if !from.is_empty() || !to.is_empty() {
            text.push_str(&format!(" {from} → {to}"));
        }
        let reason = s(&e, "reason");
        if !reason.is_empty() {
            text.push_str(&format!(": {}", reason.lines().next().unwrap_or("")));
        }
        rows.push((step, 1, text));
    }
    rows.sort_by_key(|(step, order, _)| (*step, *order));
    println!("run {} ({} steps recorded)", run_dir.display(), last_step);
    println!("{:>8}  event", "step");
    for (step, _, text) in rows {
        println!("{step:>8}  {text}");
    }
    if let Ok(report) = std::fs::read(run_dir.join("report.json")) {
        let r: Value = serde_json::from_slice(&report).context("report.json")?;
        if let Some(models) = r["models"].as_object() {
            for (slot, m) in models {
                println!("{:>8}  final {slot}: {} test errors", "end", s(m, "test_errors"));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
