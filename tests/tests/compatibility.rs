//! ABI compatibility: incompatible plugins are refused with a short summary, older plugins load on
//! this host, and a plugin needing a newer table function gets a clear error on an older host.
// Reference values are quoted to the spec's precision.
#![allow(clippy::excessive_precision, clippy::approx_constant)]
use std::process::Command;

use candle_core::{Device, Tensor};
use retort::{loader::search_dirs, Host, HostError, Inputs, Library, LossInstance, Registry};
use retort_e2e::{build_dir, fixture, fixture_dir, plugin};

#[test]
fn incompatible_plugin_is_refused_with_a_summary_and_others_still_load() {
    let path = fixture("fixture-abi-break");
    let err = Library::load(&path).expect_err("must be refused");
    let msg = err.to_string();
    assert!(matches!(err, HostError::Incompatible { .. }), "{msg}");
    assert!(msg.contains("expected u32, found u64"), "{msg}");
    assert!(msg.contains("code"), "summary must name the field path: {msg}");
    assert!(msg.lines().count() <= 3 && msg.len() < 600, "summary must be short, got {} chars: {msg}", msg.len());

    // A registry over a directory holding the broken fixture and the real plugins lists the real
    // ones and reports the broken one as a problem.
    let dir = std::env::temp_dir().join(format!("retort-compat-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
    std::fs::copy(plugin("retort-loss-hinton-kd"), dir.join("libretort_loss_hinton_kd.so")).unwrap();
    let reg = Registry::discover(std::slice::from_ref(&dir));
    assert!(reg.get("hinton-kd").is_some(), "the good plugin is listed");
    assert!(reg.get("fixture-abi-break").is_none());
    assert!(reg.problems.iter().any(|p| p.contains("fixture_abi_break") && p.contains("u64")), "{:?}", reg.problems);
    std::fs::remove_dir_all(&dir).ok();

    // The host keeps working: a good plugin still computes.
    let host = Host::cpu(1);
    let lib = Library::load(&plugin("retort-loss-hinton-kd")).unwrap();
    let mut l = LossInstance::new(&host, &lib, "hinton-kd", "kd", "{}").unwrap();
    let z = Tensor::ones((2, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
    assert!(l.loss(&Inputs::new().tensor("student", &z).tensor("teacher", &z)).is_ok());
}

#[test]
fn plugin_built_against_fewer_table_functions_runs_on_this_host() {
    let lib = Library::load(&fixture("fixture-old-api")).expect("older plugin must load");
    let host = Host::cpu(2);
    let mut loss = LossInstance::new(&host, &lib, "fixture-old-api", "loss", "{}").unwrap();
    let d = Device::Cpu;
    let s = Tensor::from_slice(&[1f32, 2.0, 3.0], 3, &d).unwrap();
    let t = Tensor::from_slice(&[1f32, 0.0, 0.0], 3, &d).unwrap();
    let inputs = Inputs::new().tensor("student", &s).tensor("teacher", &t);
    let v = loss.loss(&inputs).unwrap();
    assert!((v.to_scalar::<f32>().unwrap() - 13.0 / 3.0).abs() < 1e-6);
    // Its vtable ends before `loss_rows` (plugin-api 1.2): the method's default answers, so the
    // host sees "no per-sample form" rather than a crash.
    assert!(loss.loss_rows(&inputs).unwrap().is_none());
    let err = loss.weighted_loss(&inputs, &Tensor::ones(3, candle_core::DType::F32, &d).unwrap()).unwrap_err();
    assert!(err.to_string().contains("fixture-old-api") && err.to_string().contains("per-sample"), "{err}");
}

#[test]
fn plugin_needing_an_appended_function_gets_a_clear_error_on_an_older_host() {
    // On this host the function exists and the plugin works.
    let lib = Library::load(&fixture("fixture-needs-feature")).unwrap();
    let host = Host::cpu(3);
    let mut loss = LossInstance::new(&host, &lib, "fixture-needs-feature", "loss", "{}").unwrap();
    let s = Tensor::from_slice(&[2f32, 2.0], 2, &Device::Cpu).unwrap();
    let t = Tensor::from_slice(&[0f32, 0.0], 2, &Device::Cpu).unwrap();
    host.taps.record("student", "layer1", &t);
    let v = loss.loss(&Inputs::new().tensor("student", &s).tensor("teacher", &t)).unwrap();
    assert_eq!(v.to_scalar::<f32>().unwrap(), 4.0);

    // On a host built against the 1.0 table (no `feature`), the call fails cleanly.
    let old_host = fixture_dir("fixture-old-host").join(format!("fixture-old-host{}", std::env::consts::EXE_SUFFIX));
    let out =
        Command::new(old_host).arg(fixture("fixture-needs-feature")).arg("fixture-needs-feature").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "old host crashed: {}", String::from_utf8_lossy(&out.stderr));
    let code = retort_plugin_api::codes::error::MISSING_FUNCTION;
    assert!(stdout.contains(&format!("code={code}")) && stdout.contains("`feature`"), "{stdout}");
}

#[test]
fn search_path_order_and_duplicates() {
    let dir = std::env::temp_dir().join(format!("retort-dups-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join("libcopy_of_kd.so");
    std::fs::copy(plugin("retort-loss-hinton-kd"), &copy).unwrap();
    let reg = Registry::discover(&[dir.clone(), build_dir()]);
    let e = reg.get("hinton-kd").unwrap();
    assert_eq!(e.path, copy, "the first directory wins");
    assert!(reg.problems.iter().any(|p| p.contains("duplicate loss plugin `hinton-kd`")), "{:?}", reg.problems);
    assert!(reg.get("mlp").is_some() && reg.get("cross-entropy").is_some());
    std::fs::remove_dir_all(&dir).ok();
    // Config directories come first, the executable's directory last.
    let dirs = search_dirs(std::slice::from_ref(&dir));
    assert_eq!(dirs.first(), Some(&dir));
}
