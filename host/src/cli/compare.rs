//! `retort runs compare RUN…`: a results table from run directories. Runs whose saved configs
//! differ only in `run.seed` (and name and output directory) are seeds of one experiment; each
//! of its model slots is a row with every metric's mean ± sample std over those seeds.
use std::{collections::BTreeMap, path::PathBuf};

use anyhow::Context;
use clap::ValueEnum;
use serde_json::Value;

/// Table output.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Format {
    Markdown,
    Csv,
}

/// One experiment: runs of one config at different seeds.
struct Group {
    label: String,
    seeds: Vec<u64>,
    /// Slot → metric → one value per run.
    rows: BTreeMap<String, BTreeMap<String, Vec<f64>>>,
    slots: Vec<String>,
}

/// The label of a run named `<base>-s3` or `<base>_seed3`: `<base>`.
fn base_name(name: &str) -> String {
    let t = name.trim_end_matches(|c: char| c.is_ascii_digit());
    if t.len() == name.len() {
        return name.to_string();
    }
    let u = t.strip_suffix("seed").or_else(|| t.strip_suffix('s')).unwrap_or(t);
    match u.strip_suffix(['-', '_']) {
        Some(base) if !base.is_empty() => base.to_string(),
        _ => name.to_string(),
    }
}

/// The saved config without what seeds of one experiment may differ in.
fn experiment_key(run: &std::path::Path) -> anyhow::Result<(String, String, u64)> {
    let path = run.join("config.toml");
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}: not a run directory", path.display()))?;
    let mut cfg: toml::Table = toml::from_str(&text).with_context(|| path.display().to_string())?;
    let section = cfg.get_mut("run").and_then(|r| r.as_table_mut());
    let (mut name, mut seed) = (String::new(), 0);
    if let Some(r) = section {
        name = r.remove("name").and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
        seed = r.remove("seed").and_then(|v| v.as_integer()).unwrap_or(0) as u64;
        r.remove("output_dir");
    }
    Ok((toml::to_string(&cfg)?, name, seed))
}

/// The metrics of a report's model entry worth a column: numbers other than reliability bins,
/// and a text run's bits per byte on each other domain as `<domain>_bits_per_byte`.
fn metrics(model: &Value) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> =
        model.as_object().into_iter().flatten().filter_map(|(k, v)| v.as_f64().map(|x| (k.clone(), x))).collect();
    for (d, v) in model["domains"].as_object().into_iter().flatten() {
        out.extend(v.as_f64().map(|x| (format!("{d}_bits_per_byte"), x)));
    }
    out
}

fn gather(runs: &[PathBuf]) -> anyhow::Result<Vec<Group>> {
    let mut groups: Vec<(String, Group)> = Vec::new();
    for run in runs {
        let (key, name, seed) = experiment_key(run)?;
        let path = run.join("report.json");
        let report: Value = serde_json::from_slice(
            &std::fs::read(&path).with_context(|| format!("{}: the run has not finished", path.display()))?,
        )
        .with_context(|| path.display().to_string())?;
        let g = match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, g)) => g,
            None => {
                let label = base_name(&name);
                groups.push((key, Group { label, seeds: Vec::new(), rows: BTreeMap::new(), slots: Vec::new() }));
                &mut groups.last_mut().expect("just pushed").1
            }
        };
        g.seeds.push(seed);
        for (slot, model) in report["models"].as_object().into_iter().flatten() {
            if !g.slots.contains(slot) {
                g.slots.push(slot.clone());
            }
            for (k, v) in metrics(model) {
                g.rows.entry(slot.clone()).or_default().entry(k).or_default().push(v);
            }
        }
    }
    Ok(groups.into_iter().map(|(_, g)| g).collect())
}

/// The mean and, over two or more values, the sample standard deviation.
fn mean_std(v: &[f64]) -> (f64, Option<f64>) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let sd = (v.len() > 1).then(|| (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt());
    (mean, sd)
}

/// `mean ± sample std` (just the value for one run), with `digits` decimals.
fn cell(v: &[f64], digits: usize) -> String {
    match mean_std(v) {
        (mean, Some(sd)) => format!("{mean:.digits$} ± {sd:.digits$}"),
        (mean, None) => format!("{mean:.digits$}"),
    }
}

fn digits(metric: &str) -> usize {
    match metric {
        "test_errors" | "shifted_errors" | "params" => 1,
        "train_seconds" => 1,
        m if m.ends_with("bits_per_byte") => 3,
        _ => 4,
    }
}

/// The table as text.
pub fn table(runs: &[PathBuf], columns: &[String], format: Format) -> anyhow::Result<String> {
    let groups = gather(runs)?;
    let many = groups.len() > 1;
    let mut out = String::new();
    let header: Vec<String> =
        ["experiment", "model", "seeds"].iter().map(|s| s.to_string()).chain(columns.iter().cloned()).collect();
    match format {
        Format::Markdown => {
            out.push_str(&format!("| {} |\n", header.join(" | ")));
            out.push_str(&format!("|{}\n", "---|".repeat(header.len())));
        }
        Format::Csv => {
            let mut h = header.clone();
            for c in columns {
                h.push(format!("{c}_std"));
            }
            out.push_str(&h.join(","));
            out.push('\n');
        }
    }
    for g in &groups {
        let label = if many || !g.label.is_empty() { g.label.as_str() } else { "" };
        let seeds = g.seeds.iter().map(u64::to_string).collect::<Vec<_>>().join(" ");
        for slot in &g.slots {
            let row = &g.rows[slot];
            match format {
                Format::Markdown => {
                    let cells: Vec<String> =
                        columns.iter().map(|c| row.get(c).map_or("–".into(), |v| cell(v, digits(c)))).collect();
                    out.push_str(&format!("| {label} | {slot} | {seeds} | {} |\n", cells.join(" | ")));
                }
                Format::Csv => {
                    let stat = |c: &String| -> (String, String) {
                        match row.get(c).map(|v| mean_std(v)) {
                            Some((mean, sd)) => (mean.to_string(), sd.map(|x| x.to_string()).unwrap_or_default()),
                            None => (String::new(), String::new()),
                        }
                    };
                    let (means, sds): (Vec<String>, Vec<String>) = columns.iter().map(stat).unzip();
                    out.push_str(&format!("{label},{slot},{seeds},{},{}\n", means.join(","), sds.join(",")));
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_domains_become_columns() {
        let m = serde_json::json!({"bits_per_byte": 2.5, "domains": {"sotu": 2.9}, "reliability": [], "plugin": "gpt"});
        let mut got = metrics(&m);
        got.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(got, vec![("bits_per_byte".to_string(), 2.5), ("sotu_bits_per_byte".to_string(), 2.9)]);
    }

    #[test]
    fn seed_suffixes_are_dropped_from_labels() {
        for (name, base) in [
            ("kd3-s2", "kd3"),
            ("hard_seed10", "hard"),
            ("mst-3", "mst"),
            ("plain", "plain"),
            ("s1", "s1"),
            ("kd3", "kd3"),
        ] {
            assert_eq!(base_name(name), base, "{name}");
        }
    }

    #[test]
    fn cells_are_mean_and_sample_std() {
        assert_eq!(cell(&[1.0, 2.0, 3.0], 1), "2.0 ± 1.0");
        assert_eq!(cell(&[0.5], 4), "0.5000");
    }
}
