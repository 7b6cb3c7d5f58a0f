use retort_plugin_api::{
    abi_stable::std_types::{RSlice, RStr},
    codes::{dist, level},
    HostApiRef, InitSpec, PluginHost, RawCtx,
};

#[cfg(not(feature = "short-table"))]
use crate::Error;
use crate::{tensor::wrap, DType, Element, Result, Tensor};

/// A plugin instance's handle to the host: tensor creation on the run's device, its own seeded
/// RNG stream, host-owned parameters, taps, metrics and logs. Cheap to copy; keep it in the plugin.
#[derive(Clone, Copy)]
pub struct Ctx {
    host: PluginHost,
}

fn shape_arg(shape: &[usize]) -> Vec<u64> {
    shape.iter().map(|&d| d as u64).collect()
}

impl Ctx {
    /// Wraps what a constructor receives.
    pub fn new(host: PluginHost) -> Self {
        Ctx { host }
    }

    /// The host table.
    pub fn api(&self) -> HostApiRef {
        self.host.api
    }

    /// The raw context handle.
    pub fn raw(&self) -> RawCtx {
        self.host.ctx
    }

    /// A tensor from a slice and a shape.
    pub fn tensor<T: Element>(&self, data: &[T], shape: &[usize]) -> Result<Tensor> {
        let mut bytes = Vec::with_capacity(std::mem::size_of_val(data));
        for &x in data {
            x.put_le(&mut bytes);
        }
        let s = shape_arg(shape);
        wrap(
            self.api(),
            (self.api().from_bytes())(self.raw(), RSlice::from_slice(&bytes), T::DTYPE.code(), RSlice::from_slice(&s)),
        )
    }

    /// Every element `value`.
    pub fn full(&self, shape: &[usize], value: f64, dtype: DType) -> Result<Tensor> {
        let s = shape_arg(shape);
        wrap(self.api(), (self.api().full())(self.raw(), RSlice::from_slice(&s), value, dtype.code()))
    }

    /// f32 zeros.
    pub fn zeros(&self, shape: &[usize]) -> Result<Tensor> {
        self.full(shape, 0.0, DType::F32)
    }

    /// f32 ones.
    pub fn ones(&self, shape: &[usize]) -> Result<Tensor> {
        self.full(shape, 1.0, DType::F32)
    }

    /// `start, start + step, …` below `end`.
    pub fn arange(&self, start: f64, end: f64, step: f64, dtype: DType) -> Result<Tensor> {
        wrap(self.api(), (self.api().arange())(self.raw(), start, end, step, dtype.code()))
    }

    fn sample(&self, code: u32, a: f64, b: f64, shape: &[usize]) -> Result<Tensor> {
        let s = shape_arg(shape);
        wrap(self.api(), (self.api().rand())(self.raw(), code, a, b, RSlice::from_slice(&s), DType::F32.code()))
    }

    /// U(lo, hi) samples from this instance's seeded stream.
    pub fn rand(&self, lo: f64, hi: f64, shape: &[usize]) -> Result<Tensor> {
        self.sample(dist::UNIFORM, lo, hi, shape)
    }

    /// N(mean, std²) samples from this instance's seeded stream.
    pub fn randn(&self, mean: f64, std: f64, shape: &[usize]) -> Result<Tensor> {
        self.sample(dist::NORMAL, mean, std, shape)
    }

    /// Inverted dropout with probability `p` when `train`, identity otherwise.
    pub fn dropout(&self, x: &Tensor, p: f64, train: bool) -> Result<Tensor> {
        x.wrap((self.api().dropout())(self.raw(), x.raw(), p, train))
    }

    /// This instance's parameter `name`, created with `init` on first request. The host owns it.
    pub fn var(&self, name: &str, shape: &[usize], init: InitSpec) -> Result<Tensor> {
        self.var_impl(name, shape, init, true)
    }

    /// A non-trainable buffer (running statistics), saved in checkpoints like a parameter.
    pub fn buffer(&self, name: &str, shape: &[usize], init: InitSpec) -> Result<Tensor> {
        self.var_impl(name, shape, init, false)
    }

    fn var_impl(&self, name: &str, shape: &[usize], init: InitSpec, trainable: bool) -> Result<Tensor> {
        let s = shape_arg(shape);
        wrap(self.api(), (self.api().var())(self.raw(), RStr::from_str(name), RSlice::from_slice(&s), init, trainable))
    }

    /// Overwrites a parameter or buffer of this instance in place.
    pub fn assign(&self, target: &Tensor, value: &Tensor) -> Result<()> {
        Ok((self.api().assign())(self.raw(), target.raw(), value.raw()).into_result()?)
    }

    /// Records feature `name` and returns it (or the rewrite another plugin installed there).
    pub fn tap(&self, name: &str, x: &Tensor) -> Result<Tensor> {
        x.wrap((self.api().tap())(self.raw(), RStr::from_str(name), x.raw()))
    }

    /// A feature that the model in `role` tapped this step, for feature losses.
    /// Needs a host with plugin-api ≥ 1.0's appended `feature`; older hosts give a clear error.
    #[cfg(not(feature = "short-table"))]
    pub fn feature(&self, role: &str, name: &str) -> Result<Option<Tensor>> {
        let f = self.api().feature().ok_or_else(|| Error::missing_function("feature"))?;
        let r = f(self.raw(), RStr::from_str(role), RStr::from_str(name)).into_result()?;
        // SAFETY: the host returns an owned (+1) handle.
        Ok(r.into_option().map(|raw| unsafe { Tensor::from_raw_owned(raw, self.api()) }))
    }

    /// Logs a metric for this step under the plugin's name.
    pub fn metric(&self, name: &str, value: f64) {
        (self.api().metric())(self.raw(), RStr::from_str(name), value)
    }

    fn log(&self, lvl: u32, msg: &str) {
        (self.api().log())(self.raw(), lvl, RStr::from_str(msg))
    }
    /// A warning in the host's log, tagged with the plugin.
    pub fn warn(&self, msg: &str) {
        self.log(level::WARN, msg)
    }
    /// An info line in the host's log.
    pub fn info(&self, msg: &str) {
        self.log(level::INFO, msg)
    }
    /// A debug line in the host's log.
    pub fn debug(&self, msg: &str) {
        self.log(level::DEBUG, msg)
    }
}

/// Parameter initialisers.
pub mod init {
    use super::*;

    /// Every element `v`.
    pub fn constant(v: f64) -> InitSpec {
        InitSpec { dist: dist::CONSTANT, a: v, b: 0.0 }
    }
    /// U(lo, hi).
    pub fn uniform(lo: f64, hi: f64) -> InitSpec {
        InitSpec { dist: dist::UNIFORM, a: lo, b: hi }
    }
    /// N(mean, std²).
    pub fn normal(mean: f64, std: f64) -> InitSpec {
        InitSpec { dist: dist::NORMAL, a: mean, b: std }
    }
    /// PyTorch's default for Linear/Conv weights and biases: U(±1/√fan_in).
    pub fn fan_in_uniform(fan_in: usize) -> InitSpec {
        let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
        uniform(-bound, bound)
    }
}
