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

/// The device named by a bench argument (`cpu`, `cuda`, `cuda:N`), opened as the trainer opens it.
pub fn device(name: &str) -> anyhow::Result<candle_core::Device> {
    Ok(retort::device::open(name)?)
}

/// The high-water mark of bytes allocated from `dev`'s default memory pool (where candle's
/// stream-ordered allocations live), the analog of PyTorch's `max_memory_allocated`; `None` on
/// the CPU or where the driver does not say.
#[cfg_attr(not(feature = "cuda"), allow(unused_variables))]
pub fn device_peak_bytes(dev: &candle_core::Device) -> Option<u64> {
    #[cfg(feature = "cuda")]
    if let candle_core::Device::Cuda(c) = dev {
        use candle_core::cuda_backend::cudarc::driver::sys;
        let cu = c.cuda_stream().context().cu_device();
        let mut pool: sys::CUmemoryPool = std::ptr::null_mut();
        let mut high = 0u64;
        // SAFETY: plain queries into locals of the types the driver API documents.
        let ok = unsafe {
            sys::cuDeviceGetDefaultMemPool(&mut pool, cu) == sys::CUresult::CUDA_SUCCESS
                && sys::cuMemPoolGetAttribute(
                    pool,
                    sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_USED_MEM_HIGH,
                    (&mut high as *mut u64).cast(),
                ) == sys::CUresult::CUDA_SUCCESS
        };
        return ok.then_some(high);
    }
    None
}
