//! Shared timing helpers for the bench binaries (not part of CI).
use std::time::Instant;

/// Median nanoseconds per call of `f` over `reps` batches of `iters` calls.
pub fn median_ns(reps: usize, iters: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..iters.min(100) {
        f();
    }
    let mut v: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..iters {
                f();
            }
            t.elapsed().as_nanos() as f64 / iters as f64
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The directory of the running executable (where cargo puts the plugin libraries too).
pub fn exe_dir() -> std::path::PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.to_path_buf()))
        .map(|d| if d.ends_with("deps") { d.parent().map(|p| p.to_path_buf()).unwrap_or(d) } else { d })
        .unwrap_or_default()
}

/// This process's peak resident set (VmHWM) in KiB, 0 where /proc is not available.
pub fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}
