//! Exposes the plugin-api version to the CLI's `--version`; with the `cuda` feature, compiles the
//! host's own kernels (`kernels/retort.cu`) with nvcc into a fatbin that the binary embeds.
use std::{env, path::PathBuf, process::Command};

fn main() {
    let v = std::fs::read_to_string("../plugin-api/Cargo.toml")
        .ok()
        .and_then(|t| t.lines().find_map(|l| l.strip_prefix("version = ").map(|v| v.trim_matches('"').to_string())))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=RETORT_ABI_VERSION={v}");
    println!("cargo:rerun-if-changed=../plugin-api/Cargo.toml");
    if env::var_os("CARGO_FEATURE_CUDA").is_some() {
        cuda_kernels();
    }
}

/// SASS for `CUDA_COMPUTE_CAP` (default 80) so that the driver has nothing to compile at start-up
/// on that architecture, plus PTX of the same level, which newer GPUs compile once and cache.
fn cuda_kernels() {
    println!("cargo:rerun-if-changed=kernels/retort.cu");
    println!("cargo:rerun-if-env-changed=CUDA_COMPUTE_CAP");
    let cap = env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| "80".into()).replace('.', "");
    let nvcc = match env::var_os("CUDA_ROOT").or_else(|| env::var_os("CUDA_HOME")) {
        Some(root) => PathBuf::from(root).join("bin/nvcc"),
        None => PathBuf::from("nvcc"),
    };
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("retort.fatbin");
    let status = Command::new(&nvcc)
        .args(["-fatbin", "-O3", "-std=c++17"])
        .arg(format!("-gencode=arch=compute_{cap},code=sm_{cap}"))
        .arg(format!("-gencode=arch=compute_{cap},code=compute_{cap}"))
        .arg("-o")
        .arg(&out)
        .arg("kernels/retort.cu")
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("{} failed on kernels/retort.cu ({s})", nvcc.display()),
        Err(e) => panic!("cannot run {}: {e} (set CUDA_ROOT or put nvcc on PATH)", nvcc.display()),
    }
}
