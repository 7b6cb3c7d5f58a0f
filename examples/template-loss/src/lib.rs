//! Template for a new loss plugin: `logit-mse`, the mean squared error between student and
//! teacher logits (logit matching, Ba & Caruana 2014, "Do Deep Nets Really Need to be Deep?").
//!
//! Copy this crate, rename the package and `NAME`, and change `loss`. Everything a plugin sees of
//! the host goes through `retort_sdk`: tensors are handles to host tensors (autograd and device stay
//! in the host), and parameters, if any, come from `ctx.var`.
use retort_sdk::{export_plugins, functional as f, Batch, Ctx, Error, LossPlugin, Plugin, Result, Tensor};
use serde::{Deserialize, Serialize};

/// The plugin's parameters. Field defaults are the documented defaults; unknown keys in a config
/// file are rejected with the key's name.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Multiplies the loss.
    pub scale: f64,
}

impl Default for Config {
    fn default() -> Self {
        Config { scale: 1.0 }
    }
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

    fn param_docs() -> &'static [(&'static str, &'static str)] {
        &[("scale", "factor applied to the mean squared error")]
    }

    fn new(_ctx: Ctx, cfg: Config) -> Result<Self> {
        if !cfg.scale.is_finite() {
            return Err(Error::config("logit-mse: scale must be finite"));
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
