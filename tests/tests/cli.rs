//! The `retort` command line: version, plugins list / inspect / check.
// Reference values are quoted to the spec's precision.
#![allow(clippy::excessive_precision, clippy::approx_constant)]
use std::process::Command;

use retort_e2e::{fixture, plugin, retort_bin};

fn run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(retort_bin()).args(args).env_remove("RETORT_PLUGIN_PATH").output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn version_names_the_abi() {
    let (ok, out, _) = run(&["--version"]);
    assert!(ok);
    assert!(out.contains("retort ") && out.contains("plugin-api 1."), "{out}");
}

#[test]
fn list_shows_every_built_plugin_with_kind_and_abi() {
    plugin("retort-model-mlp");
    let (ok, out, _) = run(&["plugins", "list"]);
    assert!(ok);
    assert!(out.lines().next().unwrap().starts_with("NAME"), "{out}");
    for (name, kind) in [("hinton-kd", "loss"), ("cross-entropy", "loss"), ("mlp", "model")] {
        let line = out.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name} missing:\n{out}"));
        assert!(line.contains(kind) && line.contains(retort_plugin_api::ABI_VERSION), "{line}");
    }
}

#[test]
fn inspect_shows_parameters_with_defaults_and_docs() {
    let (ok, out, _) = run(&["plugins", "inspect", "hinton-kd"]);
    assert!(ok, "{out}");
    assert!(out.contains("temperature") && out.contains("4.0") && out.contains("softening temperature"), "{out}");
    let (ok, _, err) = run(&["plugins", "inspect", "no-such-plugin"]);
    assert!(!ok);
    assert!(err.contains("no plugin named `no-such-plugin`") && err.contains("hinton-kd"), "{err}");
}

#[test]
fn check_exit_codes() {
    let good = plugin("retort-loss-hinton-kd");
    let (ok, out, _) = run(&["plugins", "check", good.to_str().unwrap()]);
    assert!(ok && out.starts_with("ok:") && out.contains("hinton-kd"), "{out}");
    let bad = fixture("fixture-abi-break");
    let (ok, out, _) = run(&["plugins", "check", bad.to_str().unwrap()]);
    assert!(!ok && out.contains("refused") && out.contains("u64"), "{out}");
    let (ok, out, _) = run(&["plugins", "check", "/nonexistent/libx.so"]);
    assert!(!ok && out.contains("/nonexistent/libx.so"), "{out}");
}

#[test]
fn plugin_dir_flag_adds_a_search_directory() {
    let dir = std::env::temp_dir().join(format!("retort-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = fixture("fixture-old-api");
    std::fs::copy(&src, dir.join(src.file_name().unwrap())).unwrap();
    let (ok, out, _) = run(&["plugins", "list", "--plugin-dir", dir.to_str().unwrap()]);
    assert!(ok && out.contains("fixture-old-api"), "{out}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn every_plugin_documents_every_parameter() {
    let reg = retort::Registry::discover(&[retort_e2e::build_dir()]);
    assert!(reg.entries().len() >= 20, "{} plugins found", reg.entries().len());
    for e in reg.entries() {
        assert!(!e.meta.summary.is_empty(), "{} has no summary", e.meta.name);
        for p in &e.meta.params {
            assert!(!p.doc.is_empty(), "{}: parameter `{}` has no doc line", e.meta.name, p.name);
            assert!(serde_json::from_str::<serde_json::Value>(&p.default_json).is_ok());
        }
    }
}
