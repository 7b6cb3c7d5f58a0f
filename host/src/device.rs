//! Opening the run's device (`cpu`, `cuda`, `cuda:N`) and warming a GPU's kernel cache.
//!
//! candle ships its CUDA kernels as PTX, which the driver compiles on first load and caches on
//! disk (`~/.nv/ComputeCache`, `CUDA_CACHE_PATH`); [`warm`] does that compile once, ahead of a run.
use candle_core::Device;

/// Errors opening or warming a device.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("device \"{0}\": expected \"cpu\", \"cuda\" or \"cuda:N\"")]
    Unknown(String),
    #[error(
        "device \"{0}\": this retort was built without CUDA; build it with scripts/cuda/build.sh (README, section GPU)"
    )]
    NoCudaBuild(String),
    #[error("device \"{name}\": {error}")]
    Open { name: String, error: candle_core::Error },
}

/// The device a name denotes, ready for training. On CUDA, cudarc's per-buffer event tracking is
/// turned off: Retort issues all work on one stream, where events only add a record and a wait per
/// launch (`RETORT_CUDA_EVENTS=1` keeps them).
pub fn open(name: &str) -> Result<Device, DeviceError> {
    let index = match name {
        "cpu" => return Ok(Device::Cpu),
        "cuda" => 0,
        s => match s.strip_prefix("cuda:").and_then(|i| i.parse::<usize>().ok()) {
            Some(i) => i,
            None => return Err(DeviceError::Unknown(name.into())),
        },
    };
    if !cfg!(feature = "cuda") {
        return Err(DeviceError::NoCudaBuild(name.into()));
    }
    let dev = Device::new_cuda(index).map_err(|error| DeviceError::Open { name: name.into(), error })?;
    #[cfg(feature = "cuda")]
    if let Device::Cuda(c) = &dev {
        if std::env::var_os("RETORT_CUDA_EVENTS").is_none() {
            // SAFETY: the trainer runs every kernel, copy and free of this device from one thread
            // on one stream, so no cross-stream ordering is needed.
            unsafe { c.disable_event_tracking() };
        }
    }
    Ok(dev)
}

/// How long each kernel module took to load on a device.
pub struct Warmed {
    pub modules: Vec<(&'static str, f64)>,
}

/// Loads every kernel module a run may use on `dev` (candle's and Retort's), so that the driver
/// compiles and caches them now rather than at a run's first step. A no-op on the CPU.
#[cfg_attr(not(feature = "cuda"), allow(unused_variables))]
pub fn warm(dev: &Device) -> Result<Warmed, DeviceError> {
    #[cfg(feature = "cuda")]
    if let Device::Cuda(c) = dev {
        return warm_cuda(dev, c);
    }
    Ok(Warmed { modules: Vec::new() })
}

#[cfg(feature = "cuda")]
fn warm_cuda(dev: &Device, c: &candle_core::CudaDevice) -> Result<Warmed, DeviceError> {
    use candle_core::cuda_backend::{cudarc::nvrtc::Ptx, kernels as k, WrapErr};
    use std::time::Instant;
    let err = |error| DeviceError::Open { name: format!("{:?}", dev.location()), error };
    let candle = [
        ("affine", k::AFFINE),
        ("binary", k::BINARY),
        ("cast", k::CAST),
        ("conv", k::CONV),
        ("fill", k::FILL),
        ("indexing", k::INDEXING),
        ("reduce", k::REDUCE),
        ("sort", k::SORT),
        ("ternary", k::TERNARY),
        ("unary", k::UNARY),
    ];
    let mut modules = Vec::new();
    for (name, m) in candle {
        let t0 = Instant::now();
        c.cuda_stream().context().load_module(Ptx::from_src(m.ptx())).w().map_err(err)?;
        modules.push((name, t0.elapsed().as_secs_f64()));
    }
    let t0 = Instant::now();
    crate::backend::cuda::load(c).map_err(err)?;
    modules.push(("retort", t0.elapsed().as_secs_f64()));
    Ok(Warmed { modules })
}
