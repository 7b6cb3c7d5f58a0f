//! `retort new`: a crate of each of the five kinds builds, passes its own test (which loads the
//! built library into a real host) and describes itself under its own name.
use std::process::Command;

use retort_e2e::{
    run::{fresh_dir, retort},
    target_dir, workspace,
};

const KINDS: [&str; 5] = ["loss", "model", "teacher", "router", "augmenter"];

#[test]
fn every_kind_scaffolds_builds_and_passes_its_own_test() {
    // A workspace of the user's own, outside the Retort checkout, holding one crate per kind.
    let ws = fresh_dir("scaffold");
    std::fs::write(ws.join("Cargo.toml"), "[workspace]\nresolver = \"2\"\nmembers = [\"scaffolded-*\"]\n").unwrap();
    // The checkout's lock file: same dependency versions, so the checkout's build is reused.
    std::fs::copy(workspace().join("Cargo.lock"), ws.join("Cargo.lock")).unwrap();
    let src = workspace();
    for kind in KINDS {
        let name = format!("scaffolded-{kind}");
        let dir = ws.join(&name);
        let args = ["new", kind, &name, "--dir", dir.to_str().unwrap(), "--retort-src", src.to_str().unwrap()];
        let (ok, out, err) = retort(&args, &[]);
        assert!(ok, "{out}{err}");
        assert!(out.contains("add it to the members of the workspace"), "{out}");
        let lib = std::fs::read_to_string(dir.join("src/lib.rs")).unwrap();
        assert!(lib.contains(&format!("const NAME: &'static str = \"{name}\"")), "{lib}");
        assert!(!lib.contains("__"), "no placeholder left");
    }
    // A second scaffold over an existing crate is refused.
    let existing = ws.join("scaffolded-loss");
    let again = ["new", "loss", "scaffolded-loss", "--dir", existing.to_str().unwrap()];
    let (ok, _, err) = retort(&again, &[]);
    assert!(!ok && err.contains("not empty"), "{err}");
    let (ok, _, err) = retort(&["new", "loss", "Bad_Name"], &[]);
    assert!(!ok && err.contains("lowercase"), "{err}");

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut test = Command::new(&cargo);
    test.args(["test", "--quiet", "--workspace"]).current_dir(&ws).env("CARGO_TARGET_DIR", target_dir());
    if !cfg!(debug_assertions) {
        test.arg("--release");
    }
    let out = test.output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let profile = if cfg!(debug_assertions) { "debug" } else { "release" };
    let libs: Vec<_> =
        KINDS.iter().map(|k| target_dir().join(profile).join(format!("libretort_{k}_scaffolded_{k}.so"))).collect();
    // Every scaffolded test ran and passed.
    assert!(out.status.success(), "{text}");
    assert_eq!(text.matches("1 passed").count(), KINDS.len(), "{text}");

    // Each describes itself under its own name.
    let dir = libs[0].parent().unwrap().to_path_buf();
    let (ok, out, err) =
        retort(&["plugins", "inspect", "scaffolded-router", "--plugin-dir", dir.to_str().unwrap()], &[]);
    assert!(ok && out.contains("router plugin") && out.contains("temperature"), "{out}{err}");
    // Keep the checkout's plugin directory as it was.
    for l in libs {
        let _ = std::fs::remove_file(l);
    }
}
