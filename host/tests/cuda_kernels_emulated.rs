//! The host's CUDA kernels (`host/kernels/retort.cu`) on any machine: compiled as C++ under the
//! SIMT emulator of `scripts/cuda/emu` and run against double-precision references, so the
//! kernels' indexing, warp reductions and branches are checked where no GPU is (CI). Skips, saying
//! why, where no C++20 compiler is installed.
use std::{path::Path, process::Command};

#[test]
fn cuda_kernels_match_their_references_under_emulation() {
    let emu = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/cuda/emu");
    let dir = tempfile::tempdir().expect("temp dir");
    let exe = dir.path().join("check");
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "g++".into());
    let built =
        Command::new(&cxx).args(["-std=c++20", "-O1", "-pthread", "-o"]).arg(&exe).arg(emu.join("check.cpp")).output();
    let built = match built {
        Ok(o) => o,
        Err(e) => {
            eprintln!("skipped: no C++ compiler ({cxx}: {e})");
            return;
        }
    };
    assert!(built.status.success(), "{cxx} failed on check.cpp:\n{}", String::from_utf8_lossy(&built.stderr));
    let run = Command::new(&exe).output().expect("run the emulated kernels");
    let out = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "kernels differ from their references:\n{out}");
    assert!(out.contains("all kernels match"), "{out}");
}
