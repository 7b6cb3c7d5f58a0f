use serde::{de::DeserializeOwned, Serialize};

use crate::{Batch, Ctx, Result, Tensor};

/// What every plugin has: a name, a summary, a typed config and optional state.
///
/// The config's `Default` is the documented default; its fields are the plugin's parameters and
/// `param_docs` gives one line of meaning per field. Mark the config `#[serde(deny_unknown_fields)]`
/// so typos in config files are rejected with the field name.
pub trait Plugin: Sized + Send + 'static {
    /// The name config files use (`hinton-kd`).
    const NAME: &'static str;
    /// One or two sentences: what it computes and the paper it comes from.
    const SUMMARY: &'static str;
    /// The plugin's parameters.
    type Config: Serialize + DeserializeOwned + Default;

    /// `(field, meaning)` for every config field.
    fn param_docs() -> &'static [(&'static str, &'static str)] {
        &[]
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
