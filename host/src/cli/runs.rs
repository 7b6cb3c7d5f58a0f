//! `retort runs show RUN_DIR`: the timeline of a run (stages, evaluations, live changes);
//! `plot` its curves; `compare` a results table over runs.
use std::{path::Path, process::ExitCode};

use anyhow::Context;
use clap::Subcommand;
use serde_json::Value;

use super::svg::{document, Panel, Series};

#[derive(Subcommand)]
pub enum RunsCommand {
    /// Print a run's timeline: stages, evaluations, swaps and config changes, by step.
    Show {
        /// The run directory (`runs/<name>`).
        run_dir: std::path::PathBuf,
    },
    /// Draw a run's curves as SVG: training loss and evaluation errors by step with live events
    /// marked, and the reliability diagram of every model.
    Plot {
        /// The run directory (`runs/<name>`).
        run_dir: std::path::PathBuf,
        /// Where to write the SVG (default: RUN_DIR/plot.svg).
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// A results table from finished runs: runs whose configs differ only in the seed are one
    /// experiment, each model slot a row, each metric mean ± sample std over the seeds.
    Compare {
        /// Run directories (e.g. `runs/kd3-s*`).
        #[arg(required = true)]
        runs: Vec<std::path::PathBuf>,
        /// Report metrics to show, in order (any number in report.json's model entries; text runs:
        /// `bits_per_byte`, `<domain>_bits_per_byte`, `kl_to_teacher`, `fidelity`).
        #[arg(long, value_delimiter = ',', default_value = "test_errors,ece")]
        metrics: Vec<String>,
        /// markdown or csv.
        #[arg(long, value_enum, default_value = "markdown")]
        format: super::compare::Format,
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
    match cmd {
        RunsCommand::Show { run_dir } => show(&run_dir),
        RunsCommand::Plot { run_dir, out } => plot(&run_dir, out),
        RunsCommand::Compare { runs, metrics, format } => {
            print!("{}", super::compare::table(&runs, &metrics, format)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Live events worth a marker on the curves.
const MARKED: [&str; 7] =
    ["stage_started", "swap", "swap_rolled_back", "config_applied", "stopped", "resumed", "step_skipped"];

fn plot(run_dir: &Path, out: Option<std::path::PathBuf>) -> anyhow::Result<ExitCode> {
    let metrics = run_dir.join("metrics.jsonl");
    if !metrics.exists() {
        anyhow::bail!("{}: no metrics.jsonl (not a run directory?)", run_dir.display());
    }
    let recs = lines(&metrics);
    let mut loss: Vec<Series> = Vec::new();
    let mut errors: Vec<Series> = Vec::new();
    for r in &recs {
        let step = r["step"].as_f64().unwrap_or(0.0);
        let (kind, list, y) = match s(r, "type").as_str() {
            "train" => (s(r, "stage"), &mut loss, r["loss"].as_f64()),
            "eval" => (s(r, "model"), &mut errors, r["test_errors"].as_f64()),
            _ => continue,
        };
        let Some(y) = y else { continue };
        match list.iter_mut().find(|x| x.name == kind) {
            Some(x) => x.points.push((step, y)),
            None => list.push(Series { name: kind, points: vec![(step, y)], dots: s(r, "type") == "eval" }),
        }
    }
    let markers: Vec<(f64, String)> = lines(&run_dir.join("events.jsonl"))
        .iter()
        .filter(|e| MARKED.contains(&s(e, "event").as_str()))
        .map(|e| (e["step"].as_f64().unwrap_or(0.0), format!("{} {}", s(e, "event"), s(e, "slot"))))
        .collect();
    let panel = |title: &str, y: &str, series: Vec<Series>| Panel {
        title: title.into(),
        x_label: "optimizer step".into(),
        y_label: y.into(),
        series,
        markers: markers.clone(),
        diagonal: false,
        x_range: None,
        y_range: None,
    };
    let mut panels = vec![
        panel("Training loss (weighted sum of terms)", "loss", loss),
        panel("Evaluation errors", "errors", errors),
    ];
    if let Ok(bytes) = std::fs::read(run_dir.join("report.json")) {
        let r: Value = serde_json::from_slice(&bytes).context("report.json")?;
        let mut series = Vec::new();
        for (slot, m) in r["models"].as_object().into_iter().flatten() {
            let points: Vec<(f64, f64)> = m["reliability"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|b| b["count"].as_u64().unwrap_or(0) > 0)
                .map(|b| (b["confidence"].as_f64().unwrap_or(0.0), b["accuracy"].as_f64().unwrap_or(0.0)))
                .collect();
            let ece = m["ece"].as_f64().unwrap_or(0.0);
            series.push(Series { name: format!("{slot} (ECE {ece:.3})"), points, dots: true });
        }
        panels.push(Panel {
            title: "Reliability on the test set (accuracy by confidence bin)".into(),
            x_label: "mean confidence".into(),
            y_label: "accuracy".into(),
            series,
            markers: Vec::new(),
            diagonal: true,
            x_range: Some((0.0, 1.0)),
            y_range: Some((0.0, 1.0)),
        });
    }
    let path = out.unwrap_or_else(|| run_dir.join("plot.svg"));
    std::fs::write(&path, document(&panels)).with_context(|| path.display().to_string())?;
    println!("wrote {}", path.display());
    Ok(ExitCode::SUCCESS)
}

fn show(run_dir: &Path) -> anyhow::Result<ExitCode> {
    let metrics = run_dir.join("metrics.jsonl");
    if !metrics.exists() {
        anyhow::bail!("{}: no metrics.jsonl (not a run directory?)", run_dir.display());
    }
    // At one step, an evaluation (closing the step) comes before the events applied after it.
    let mut rows: Vec<(u64, u8, String)> = Vec::new();
    let events = lines(&run_dir.join("events.jsonl"));
    // Runs from before stage_started events: a stage row at its first train record.
    let derive_stages = !events.iter().any(|e| s(e, "event") == "stage_started");
    let mut stage: Option<String> = None;
    let mut last_step = 0;
    for r in lines(&metrics) {
        let step = r.get("step").and_then(Value::as_u64).unwrap_or(0);
        if s(&r, "type") == "train" {
            let st = s(&r, "stage");
            if derive_stages && stage.as_deref() != Some(st.as_str()) {
                rows.push((step, 1, format!("stage {st} (first record; config rev {})", s(&r, "config_rev"))));
                stage = Some(st);
            }
            last_step = step;
        } else if s(&r, "type") == "eval" {
            rows.push((
                step,
                0,
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
    for e in events {
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
