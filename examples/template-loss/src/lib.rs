//! Template for a new loss plugin: `logit-mse`, the mean squared error between student and
//! teacher logits (logit matching, Ba & Caruana 2014, "Do Deep Nets Really Need to be Deep?").
//!
//! Copy this crate, rename the package and `NAME`, and change `loss`. Everything a plugin sees of
//! the host goes through `retort_sdk`: tensors are handles to host tensors (autograd and device stay
//! in the host), and parameters, if any, come from `ctx.var`.
use retort_sdk::{export_plugins, functional as f, params, Batch, Ctx, Error, LossPlugin, Plugin, Result, Tensor};

/// The plugin's parameters: each field's `///` line is what `retort plugins inspect` shows,
/// `#[param(...)]` gives its default and bounds (checked before the plugin is built); unknown keys in
/// a config file are rejected with the closest name.
#[params]
pub struct Config {
    /// factor applied to the mean squared error
    #[param(default = 1.0, ge = 0.0)]
    pub scale: f64,
}

/// One instance per loss slot in a run.
pub struct LogitMse {
    cfg: Config,
}

impl Plugin for LogitMse {
    const NAME: &'static str = "logit-mse";
    const SUMMARY: &'static str = "Mean squared error between student and teacher logits (logit matching, \
        Ba & Caruana 2014). Inputs: student, teacher, optional mask.";
    type Config = Config;

    fn new(_ctx: Ctx, cfg: Config) -> Result<Self> {
        if !cfg.scale.is_finite() {
            return Err(Error::config("scale must be finite"));
        }
        Ok(LogitMse { cfg })
    }
}

impl LossPlugin for LogitMse {
    fn loss(&mut self, batch: &Batch) -> Result<Tensor> {
        let zs = f::rows(&batch.tensor("student")?)?;
        let zt = f::rows(&batch.tensor("teacher")?)?.detach()?;
        let per_row = zs.sub(&zt)?.sqr()?.mean(-1)?;
        f::reduce_rows(&per_row, batch.get("mask").as_ref())?.affine(self.cfg.scale, 0.0)
    }
}

// Generates the library's root module: the host finds `logit-mse` here.
export_plugins! {
    loss: [LogitMse],
}
