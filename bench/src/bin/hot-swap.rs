//! Hot-reload costs at one thread: install → swap latency (median of the first 20), resident memory
//! after 10 and after 1000 swaps, and the step-time cost of `--watch` when nothing changes (ratio
//! against no watcher, median of 3 runs each). `hot-swap [swaps]` (default 1000).
//! Needs `cargo build --release` first. `cargo run --release -p retort-bench --bin hot-swap`
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use retort_bench::exe_dir;
use serde_json::Value;

fn config(d: &Path, epochs: usize) -> String {
    format!(
        r#"
[run]
name = "bench"
seed = 1
threads = 1
output_dir = "{out}"
plugin_dirs = ["{plugins}"]

[data]
dataset = "mnist"
dir = "{data}"
batch_size = 64
subset = 6400

[models.student]
plugin = "mlp"
params = {{ hidden = [256] }}

[[stages]]
name = "main"
train = "student"
epochs = {epochs}
losses = [{{ plugin = "cross-entropy" }}]

[eval]
every_epochs = 1000

[logging]
every_steps = 10
progress = false
"#,
        out = d.display(),
        plugins = d.join("plugins").display(),
        data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/mnist").display()
    )
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

fn lines(p: &Path) -> Vec<Value> {
    std::fs::read_to_string(p).unwrap_or_default().lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

/// A build of the template loss that differs only in its bytes (so in its hash): a trailing pad.
fn variant(base: &[u8], k: usize, dest: &Path) -> anyhow::Result<()> {
    let mut b = base.to_vec();
    b.extend(std::iter::repeat_n(0u8, k + 1));
    let tmp = dest.with_extension("tmp");
    std::fs::write(&tmp, b)?;
    std::fs::rename(tmp, dest)?;
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let bin = exe_dir().join("retort");
    let d: PathBuf = std::env::temp_dir().join(format!("retort-hot-bench-{}", std::process::id()));
    std::fs::create_dir_all(d.join("plugins"))?;
    // The cross-entropy loss from its own directory (found there before the executable's directory).
    let base = std::fs::read(exe_dir().join("libretort_loss_cross_entropy.so"))?;
    let lib = d.join("plugins/libretort_loss_cross_entropy.so");
    variant(&base, 0, &lib)?;
    let cfg = d.join("run.toml");
    std::fs::write(&cfg, config(&d, 1000))?;

    // Latency: install a new build, wait for the swap event.
    let mut child = Command::new(&bin)
        .args(["train", cfg.to_str().unwrap_or_default(), "--watch"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let run = d.join("bench");
    let start = Instant::now();
    while lines(&run.join("metrics.jsonl")).len() < 5 {
        anyhow::ensure!(start.elapsed() < Duration::from_secs(60), "run did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    let total: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1000).max(20);
    let rss = |pid: u32| -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).map(str::to_string))
            .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
            .unwrap_or(0)
    };
    let (mut lat, mut rss10) = (Vec::new(), 0);
    for k in 1..=total {
        let t0 = now();
        variant(&base, k, &lib)?;
        let n = loop {
            let swaps: Vec<Value> =
                lines(&run.join("events.jsonl")).into_iter().filter(|e| e["event"] == "swap").collect();
            if swaps.len() >= k {
                break swaps[k - 1].clone();
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        if k <= 20 {
            lat.push((n["time"].as_f64().unwrap_or(t0) - t0) * 1e3);
            std::thread::sleep(Duration::from_millis(50));
        }
        if k == 10 {
            rss10 = rss(child.id());
        }
    }
    let rss_end = rss(child.id());
    let archived = std::fs::read_dir(run.join("plugins")).map(|d| d.count()).unwrap_or(0);
    child.kill()?;
    let _ = child.wait();
    lat.sort_by(f64::total_cmp);
    println!(
        "install → swap latency over 20 swaps: median {:.1} ms (min {:.1}, max {:.1})",
        median(lat.clone()),
        lat[0],
        lat[lat.len() - 1]
    );

    println!(
        "resident memory: {rss10} KiB after 10 swaps, {rss_end} KiB after {total} ({:+} KiB, {:+.1} KiB per swap); \
         {archived} builds archived in the run directory",
        rss_end as i64 - rss10 as i64,
        (rss_end as f64 - rss10 as f64) / (total - 10) as f64
    );

    // Step time with and without a watcher on an unchanging run.
    std::fs::write(&cfg, config(&d, 3))?;
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for i in 0..6 {
        let watch = i % 2 == 1;
        let mut args = vec!["train", cfg.to_str().unwrap_or_default(), "--overwrite"];
        if watch {
            args.push("--watch");
        }
        let st = Command::new(&bin).args(&args).stdout(Stdio::null()).stderr(Stdio::null()).status()?;
        anyhow::ensure!(st.success(), "run failed");
        let r: Value = serde_json::from_slice(&std::fs::read(run.join("report.json"))?)?;
        let secs = r["models"]["student"]["train_seconds"].as_f64().unwrap_or(0.0);
        let ms = secs * 1e3 / 300.0;
        if watch {
            with.push(ms)
        } else {
            without.push(ms)
        }
    }
    let (w, n) = (median(with), median(without));
    println!("step time: {n:.3} ms without a watcher, {w:.3} ms with --watch; ratio {:.3}", w / n);
    let _ = std::fs::remove_dir_all(&d);
    Ok(())
}
