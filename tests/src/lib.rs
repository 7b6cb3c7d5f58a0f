//! Helpers for the end-to-end tests: build the workspace's plugins and the test fixtures with
//! cargo (once per test process) and hand out their library paths.
pub mod fuzz;
pub mod run;

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::{Mutex, OnceLock},
};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

/// The target directory cargo builds into.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace().join("target"))
}

fn profile_dir() -> &'static str {
    if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    }
}

fn cargo(args: &[&str]) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(args).current_dir(workspace());
    if !cfg!(debug_assertions) {
        cmd.arg("--release");
    }
    let out = cmd.output().expect("cannot run cargo");
    assert!(out.status.success(), "cargo {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
}

/// Builds the workspace (once per test process), returning the directory that holds the
/// `retort` binary and the plugin libraries; `RETORT_TEST_PLUGIN_DIR` names prebuilt ones instead
/// (a test binary carried to a GPU machine, which has no cargo).
pub fn build_dir() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            if let Some(dir) = std::env::var_os("RETORT_TEST_PLUGIN_DIR") {
                return PathBuf::from(dir);
            }
            // The whole workspace: every plugin crate (whatever its name) and the `retort` binary.
            cargo(&["build", "--quiet", "--workspace"]);
            target_dir().join(profile_dir())
        })
        .clone()
}

/// The device tests put their tensors on: `RETORT_TEST_DEVICE` (`cuda` in a CUDA build of the
/// tests on a GPU machine), else the CPU.
pub fn test_device() -> candle_core::Device {
    // One device for the process: tensors of two CUDA device handles do not mix.
    static DEVICE: OnceLock<candle_core::Device> = OnceLock::new();
    DEVICE
        .get_or_init(|| match std::env::var("RETORT_TEST_DEVICE") {
            Ok(name) => retort::device::open(&name).unwrap_or_else(|e| panic!("RETORT_TEST_DEVICE: {e}")),
            Err(_) => candle_core::Device::Cpu,
        })
        .clone()
}

/// The built library of a workspace plugin crate (`retort-loss-hinton-kd`).
pub fn plugin(package: &str) -> PathBuf {
    lib_path(&build_dir(), package)
}

fn lib_path(dir: &Path, package: &str) -> PathBuf {
    let stem = package.replace('-', "_");
    dir.join(format!("{}{stem}.{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_EXTENSION))
}

/// Builds the library of `package` from the crate at `manifest_dir` (the calling test's crate,
/// in any workspace) in this test's profile, and returns its path.
pub fn build_plugin(manifest_dir: &str, package: &str) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.args(["build", "--quiet", "--lib", "-p", package]).current_dir(manifest_dir);
    if !cfg!(debug_assertions) {
        cmd.arg("--release");
    }
    let out = cmd.output().expect("cannot run cargo");
    assert!(out.status.success(), "building {package} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let meta = Command::new(&cargo)
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .current_dir(manifest_dir)
        .output()
        .expect("cannot run cargo metadata");
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| {
        let v: serde_json::Value = serde_json::from_slice(&meta.stdout).expect("cargo metadata output");
        PathBuf::from(v["target_directory"].as_str().expect("target_directory"))
    });
    lib_path(&target.join(profile_dir()), package)
}

/// The `retort` executable.
pub fn retort_bin() -> PathBuf {
    build_dir().join(format!("retort{}", std::env::consts::EXE_SUFFIX))
}

/// Builds a fixture package of `tests/fixtures` (once each) into `target/fixtures`; returns the
/// output directory.
pub fn fixture_dir(package: &str) -> PathBuf {
    static DONE: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let mut done = DONE.lock().unwrap_or_else(|p| p.into_inner());
    let target = target_dir().join("fixtures");
    if !done.iter().any(|p| p == package) {
        let manifest = workspace().join("tests/fixtures/Cargo.toml");
        let (m, t) = (manifest.to_string_lossy().to_string(), target.to_string_lossy().to_string());
        cargo(&["build", "--quiet", "--manifest-path", &m, "--target-dir", &t, "-p", package]);
        done.push(package.to_string());
    }
    target.join(profile_dir())
}

/// The library of a fixture plugin package (`fixture-panicky`).
pub fn fixture(package: &str) -> PathBuf {
    lib_path(&fixture_dir(package), package)
}

/// Resident set size of this process in KiB (Linux).
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).map(|l| l.to_string()))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// Builds a fixture package with extra environment variables (e.g. a build-time constant) and
/// copies the library to `dest` (the next build overwrites cargo's output).
pub fn fixture_build_as(package: &str, env: &[(&str, &str)], dest: &Path) -> PathBuf {
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let target = target_dir().join("fixtures");
    let manifest = workspace().join("tests/fixtures/Cargo.toml");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "--manifest-path"]).arg(&manifest).arg("--target-dir").arg(&target);
    cmd.args(["-p", package]).current_dir(workspace());
    if !cfg!(debug_assertions) {
        cmd.arg("--release");
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("cannot run cargo");
    assert!(out.status.success(), "building {package} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let built = lib_path(&target.join(profile_dir()), package);
    std::fs::copy(&built, dest).expect("copy fixture");
    dest.to_path_buf()
}

/// Installs `src` at `dest` atomically (copy next to it, then rename over), as a build tool would.
pub fn install(src: &Path, dest: &Path) {
    let tmp = dest.with_extension("installing");
    std::fs::copy(src, &tmp).expect("copy");
    std::fs::rename(&tmp, dest).expect("rename");
}

/// A `shape` tensor of N(0, std²) draws from a seeded stream (Box–Muller over ChaCha8), so tests
/// that need random-looking inputs are deterministic.
pub fn seeded_normal(shape: &[usize], std: f32, seed: u64) -> candle_core::Tensor {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|_| {
            let (u1, u2): (f64, f64) = (rng.random::<f64>().max(1e-300), rng.random::<f64>());
            ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32 * std
        })
        .collect();
    candle_core::Tensor::from_vec(v, shape, &candle_core::Device::Cpu).expect("shape matches the data")
}
