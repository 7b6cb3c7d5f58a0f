//! The host's own CUDA kernels (`host/kernels/retort.cu`, built by `build.rs` into a fatbin):
//! loading them once per device, and the launches behind the softmax losses, the optimizer
//! updates and dropout masks. Only compiled with the `cuda` feature.
use std::sync::{Arc, Mutex};

use candle_core::cuda_backend::cudarc::driver::{CudaFunction, CudaModule, CudaSlice, CudaView, LaunchConfig};
use candle_core::cuda_backend::cudarc::nvrtc::Ptx;
use candle_core::cuda_backend::{CudaDevice, DeviceId, WrapErr};
use candle_core::{CudaStorage, Layout, Result};

mod optim;
mod rows;
#[cfg(test)]
mod tests;

pub use optim::{adamw, sgd};
pub use rows::{ce_rows, ce_rows_grad, dropout_mask, kl_rows, kl_rows_grad};

/// The kernels as nvcc built them: SASS for the build's compute capability and PTX.
static FATBIN: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/retort.fatbin"));

/// The module loaded on a device, with the functions looked up in it so far.
struct Loaded {
    device: DeviceId,
    module: Arc<CudaModule>,
    functions: Vec<(&'static str, CudaFunction)>,
}

/// Modules loaded so far, one per device (a process rarely has more than one).
static MODULES: Mutex<Vec<Loaded>> = Mutex::new(Vec::new());

/// Kernel `name` of the host's module on `dev`, loading the module on first use; a launch after
/// the first costs a lock and a short scan, not a driver call.
fn function(dev: &CudaDevice, name: &'static str) -> Result<CudaFunction> {
    let mut mods = MODULES.lock().map_err(|_| candle_core::Error::Msg("cuda module cache poisoned".into()))?;
    let i = match mods.iter().position(|l| l.device == dev.id()) {
        Some(i) => i,
        None => {
            let module = dev.cuda_stream().context().load_module(Ptx::from_binary(FATBIN.to_vec())).w()?;
            mods.push(Loaded { device: dev.id(), module, functions: Vec::new() });
            mods.len() - 1
        }
    };
    let loaded = &mut mods[i];
    if let Some((_, f)) = loaded.functions.iter().find(|(n, _)| *n == name) {
        return Ok(f.clone());
    }
    let f = loaded.module.load_function(name).w()?;
    loaded.functions.push((name, f.clone()));
    Ok(f)
}

/// Loads the host's kernel module on `dev` now (start-up warm-up; see `retort device warm`).
pub fn load(dev: &CudaDevice) -> Result<()> {
    function(dev, "retort_adamw_f32").map(|_| ())
}

/// The f32 data of a contiguous operand, from its layout's start.
fn f32_view<'a>(s: &'a CudaStorage, l: &Layout, what: &str) -> Result<CudaView<'a, f32>> {
    let (a, b) = l
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg(format!("cuda kernel: {what} must be contiguous")))?;
    Ok(s.as_cuda_slice::<f32>()?.slice(a..b))
}

/// A launch over `n` elements for the grid-stride kernels.
fn elementwise(n: usize) -> LaunchConfig {
    let blocks = n.div_ceil(256).clamp(1, 65_535) as u32;
    LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 }
}

/// A launch with one warp per row, four rows per block (the row kernels' layout).
fn per_row(n: usize) -> LaunchConfig {
    LaunchConfig { grid_dim: (n.div_ceil(4).max(1) as u32, 1, 1), block_dim: (128, 1, 1), shared_mem_bytes: 0 }
}

/// A fresh `n`-element f32 buffer for a kernel to fill completely.
fn output(dev: &CudaDevice, n: usize) -> Result<CudaSlice<f32>> {
    // SAFETY: every kernel that receives it writes all n elements before anything reads them.
    unsafe { dev.alloc::<f32>(n) }
}

/// The first CUDA device for a GPU test, or `None` (with the reason on stderr) where there is
/// none: GPU tests skip cleanly on machines without one.
#[cfg(test)]
pub fn test_device() -> Option<candle_core::Device> {
    match candle_core::Device::new_cuda(0) {
        Ok(d) => Some(d),
        Err(e) => {
            eprintln!("skipped: no CUDA device ({e})");
            None
        }
    }
}
