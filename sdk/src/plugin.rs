use serde::{de::DeserializeOwned, Serialize};

use crate::{Batch, Ctx, Result, Tensor};

/// A plugin's parameters: deserialised from the config file, with documented defaults and checks.
///
/// Write it with [`crate::params`] (one struct, a `///` line per field, `#[param(default = …, gt = …)]`),
/// which derives all of this. By hand: serde with `#[serde(deny_unknown_fields, default)]` so typos
/// are rejected by name, `Default` as the documented defaults, and optionally the two methods.
pub trait Params: Serialize + DeserializeOwned + Default {
    /// `(field, meaning)` for every field, shown by `retort plugins inspect`.
    fn docs() -> &'static [(&'static str, &'static str)] {
        &[]
    }
    /// Range checks, run before the plugin is built: the message names the parameter.
    fn check(&self) -> std::result::Result<(), String> {
        Ok(())
    }
}

/// What every plugin has: a name, a summary, typed parameters and optional state.
pub trait Plugin: Sized + Send + 'static {
    /// The name config files use (`hinton-kd`).
    const NAME: &'static str;
    /// One or two sentences: what it computes and the paper it comes from.
    const SUMMARY: &'static str;
    /// The plugin's parameters (see [`Params`]).
    type Config: Params;

    /// `(field, meaning)` for every parameter; by default the docs of [`Params`].
    fn param_docs() -> &'static [(&'static str, &'static str)] {
        <Self::Config as Params>::docs()
    }

    /// Builds an instance; `ctx` is its handle to the host for its whole life.
    fn new(ctx: Ctx, config: Self::Config) -> Result<Self>;

    /// Serialised state for checkpoints and hot-reload hand-over (empty when stateless).
    fn state(&self) -> Result<Vec<u8>> {
        Ok(Vec::new())
    }

    /// Takes over state from [`Plugin::state`] of an earlier instance (possibly an older build).
    fn load_state(&mut self, _state: &[u8]) -> Result<()> {
        Ok(())
    }
}

/// A loss term.
pub trait LossPlugin: Plugin {
    /// A scalar loss whose graph reaches the student's outputs.
    fn loss(&mut self, batch: &Batch) -> Result<Tensor>;

    /// The loss before its batch reduction, one value per sample (`[B]`) whose mean is what
    /// [`LossPlugin::loss`] returns, so that the host can apply sample weights, router weights
    /// and masks; `None` (the default) when the loss has no per-sample form.
    fn loss_rows(&mut self, _batch: &Batch) -> Result<Option<Tensor>> {
        Ok(None)
    }
}

/// A model (student or teacher).
pub trait ModelPlugin: Plugin {
    /// Logits for the batch's `input`; call `ctx.tap` at named points.
    fn forward(&mut self, batch: &Batch) -> Result<Tensor>;
}

/// A teacher that is not a plain model.
pub trait TeacherPlugin: Plugin {
    /// Teacher logits for the batch.
    fn logits(&mut self, batch: &Batch) -> Result<Tensor>;
}

/// A per-sample teacher router.
pub trait RouterPlugin: Plugin {
    /// `[B, teachers]` weights.
    fn route(&mut self, batch: &Batch) -> Result<Tensor>;
}

/// A batch augmenter.
pub trait AugmenterPlugin: Plugin {
    /// The batch tensors it replaces, by name.
    fn augment(&mut self, batch: &Batch) -> Result<Vec<(String, Tensor)>>;
}
