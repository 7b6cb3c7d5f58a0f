//! `--dev CRATE_DIR`: rebuild a plugin crate whenever its sources change and hand the new library
//! to the run. Compiler errors are reported; the run goes on with the old version.
use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::mpsc::{self, Sender},
    time::Duration,
};

use notify::{event::EventKind, RecursiveMode, Watcher as _};

use super::Change;

/// A background rebuild loop for one crate.
pub struct DevBuilder {
    _watcher: notify::RecommendedWatcher,
    /// The package name from the crate's `Cargo.toml`.
    pub package: String,
    /// Where the rebuilt library appears.
    pub artifact: PathBuf,
}

/// The `[package] name` of a crate directory.
fn package_name(dir: &Path) -> Result<String, String> {
    let manifest = dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).map_err(|e| format!("{}: {e}", manifest.display()))?;
    let v: toml::Value = toml::from_str(&text).map_err(|e| format!("{}: {e}", manifest.display()))?;
    v.get("package")
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str())
        .map(str::to_string)
        .ok_or_else(|| format!("{}: no [package] name", manifest.display()))
}

/// The release target directory cargo uses for `dir` (CARGO_TARGET_DIR or the workspace's).
fn target_dir(dir: &Path) -> PathBuf {
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(t);
    }
    let out = Command::new("cargo")
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .current_dir(dir)
        .output()
        .ok()
        .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok());
    out.and_then(|v| v.get("target_directory").and_then(|t| t.as_str()).map(PathBuf::from))
        .unwrap_or_else(|| dir.join("target"))
}

/// Builds `package` in release mode from `dir`; cargo's error output on failure.
pub fn build(dir: &Path, package: &str) -> Result<(), String> {
    let out = Command::new("cargo")
        .args(["build", "--release", "--message-format", "short", "-p", package])
        .current_dir(dir)
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        let text = String::from_utf8_lossy(&out.stderr);
        let errors: Vec<&str> = text.lines().filter(|l| l.contains("error")).take(20).collect();
        Err(if errors.is_empty() { text.trim().to_string() } else { errors.join("\n") })
    }
}

impl DevBuilder {
    /// Watches `dir/src` and `dir/Cargo.toml`; after a change settles, rebuilds and sends
    /// [`Change::Library`] (or [`Change::BuildFailed`]) on `tx`.
    pub fn start(dir: &Path, tx: Sender<Change>) -> Result<DevBuilder, String> {
        let dir = std::path::absolute(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let package = package_name(&dir)?;
        let lib = format!(
            "{}{}.{}",
            std::env::consts::DLL_PREFIX,
            package.replace('-', "_"),
            std::env::consts::DLL_EXTENSION
        );
        let artifact = target_dir(&dir).join("release").join(lib);
        let (ftx, frx) = mpsc::channel::<()>();
        let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if let Ok(ev) = res {
                let relevant = ev.paths.iter().any(|p| p.extension().is_some_and(|e| e == "rs" || e == "toml"));
                if relevant && !matches!(ev.kind, EventKind::Access(_)) {
                    let _ = ftx.send(());
                }
            }
        })
        .map_err(|e| e.to_string())?;
        watcher.watch(&dir.join("src"), RecursiveMode::Recursive).map_err(|e| e.to_string())?;
        watcher.watch(&dir.join("Cargo.toml"), RecursiveMode::NonRecursive).map_err(|e| e.to_string())?;
        let (pkg, art) = (package.clone(), artifact.clone());
        std::thread::Builder::new()
            .name(format!("retort-dev-{package}"))
            .spawn(move || {
                while frx.recv().is_ok() {
                    // Let an editor's burst of writes settle.
                    while frx.recv_timeout(Duration::from_millis(300)).is_ok() {}
                    tracing::info!(package = %pkg, "source changed; rebuilding");
                    let change = match build(&dir, &pkg) {
                        Ok(()) => Change::Library(art.clone()),
                        Err(message) => Change::BuildFailed { krate: pkg.clone(), message },
                    };
                    if tx.send(change).is_err() {
                        return;
                    }
                }
            })
            .map_err(|e| e.to_string())?;
        Ok(DevBuilder { _watcher: watcher, package, artifact })
    }
}
