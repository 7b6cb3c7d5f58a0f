//! Tap rewrites (FW): model slots (MaskNets) installed at named taps of another model for one
//! forward; the model continues from the rewritten tensor, and gradients reach the rewriters'
//! parameters through it.
use candle_core::Tensor;

use crate::{
    backend::{Installed, TapRewrite, TapStore},
    Inputs, ModelInstance,
};

/// A model instance installed as a tap rewrite: its forward maps the tapped tensor.
struct ModelRewrite {
    model: ModelInstance,
    train: bool,
}

impl TapRewrite for ModelRewrite {
    fn rewrite(&mut self, x: &Tensor) -> Result<Tensor, String> {
        let inputs = Inputs::new().tensor("input", x).scalar("train", if self.train { 1.0 } else { 0.0 });
        self.model.forward(&inputs).map_err(|e| e.to_string())
    }
    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send> {
        self
    }
}

/// One rewrite to install: at tap `tap`, the model instance of slot `with`, run in training mode
/// when `train`.
pub struct Rewriter {
    pub tap: String,
    pub with: String,
    pub model: ModelInstance,
    pub train: bool,
}

/// What happened to the rewrites of one forward.
pub struct Rewritten<R> {
    /// The forward's result.
    pub result: R,
    /// The rewriting instances, by slot, to put back.
    pub models: Vec<(String, ModelInstance)>,
    /// Taps whose rewrite never ran (the model has no such tap).
    pub unused: Vec<String>,
    /// The first rewrite that failed: (its slot, the message).
    pub failed: Option<(String, String)>,
}

/// Runs `forward` (a forward of the model in `slot`) with `rewriters` installed at its taps.
pub fn with_rewrites<R>(
    taps: &TapStore,
    slot: &str,
    rewriters: Vec<Rewriter>,
    forward: impl FnOnce() -> R,
) -> Rewritten<R> {
    let list = rewriters
        .into_iter()
        .map(|r| Installed {
            slot: slot.to_string(),
            tap: r.tap,
            with: r.with,
            rewrite: Some(Box::new(ModelRewrite { model: r.model, train: r.train })),
            applied: 0,
        })
        .collect();
    taps.install(list);
    let result = forward();
    let (back, failed) = taps.uninstall();
    let unused = back.iter().filter(|r| r.applied == 0).map(|r| r.tap.clone()).collect();
    let models = back
        .into_iter()
        .filter_map(|r| {
            let m = r.rewrite?.into_any().downcast::<ModelRewrite>().ok()?;
            Some((r.with, m.model))
        })
        .collect();
    Rewritten { result, models, unused, failed }
}
