//! Routers without parameters: `uniform` (every teacher 1/T), `confidence` (per sample, a
//! softmax over the teachers of their negative cross-entropy against the label, so the teachers
//! that are right on a sample get its weight) and `selector` (KD³'s instance selection). All read
//! `teachers` `[T, B, C]` and return `[B, T]`.
mod selector;

use retort_sdk::{export_plugins, params, Batch, Ctx, Error, Plugin, Result, RouterPlugin, Tensor};
pub use selector::Selector;

/// Parameters of `uniform` (none).
#[params]
pub struct UniformConfig {}

/// Every teacher weighs 1/T on every sample.
pub struct Uniform {
    ctx: Ctx,
}

impl Plugin for Uniform {
    const NAME: &'static str = "uniform";
    const SUMMARY: &'static str = "Uniform routing: weight 1/T for each of the stage's T model teachers on every \
        sample. Inputs: teachers [T, B, C].";
    type Config = UniformConfig;
    fn new(ctx: Ctx, _cfg: UniformConfig) -> Result<Self> {
        Ok(Uniform { ctx })
    }
}

impl RouterPlugin for Uniform {
    fn route(&mut self, batch: &Batch) -> Result<Tensor> {
        let t = batch.tensor("teachers")?;
        let (n, b) = (t.dim(0)?, t.dim(1)?);
        self.ctx.full(&[b, n], 1.0 / n as f64, retort_sdk::DType::F32)
    }
}

/// Parameters of `confidence`.
#[params]
pub struct ConfidenceConfig {
    /// temperature of the softmax over the teachers' negative cross-entropies (small: the best
    /// teacher takes the sample; large: towards uniform)
    #[param(default = 1.0)]
    pub temperature: f64,
}

/// Per-sample softmax over the teachers of −CE(teacher, label)/τ.
pub struct Confidence {
    cfg: ConfidenceConfig,
}

impl Plugin for Confidence {
    const NAME: &'static str = "confidence";
    const SUMMARY: &'static str = "Confidence routing: per sample, softmax over the teachers of −CE(teacherₜ, y)/τ \
        (the teachers right about a sample share it). Inputs: teachers [T, B, C], labels [B].";
    type Config = ConfidenceConfig;
    fn new(_ctx: Ctx, cfg: ConfidenceConfig) -> Result<Self> {
        if !(cfg.temperature > 0.0 && cfg.temperature.is_finite()) {
            return Err(Error::config(format!("confidence: temperature must be > 0, got {}", cfg.temperature)));
        }
        Ok(Confidence { cfg })
    }
}

impl RouterPlugin for Confidence {
    fn route(&mut self, batch: &Batch) -> Result<Tensor> {
        let t = batch.tensor("teachers")?.detach()?;
        let labels = batch.tensor("labels")?;
        let (n, b) = (t.dim(0)?, t.dim(1)?);
        // CE of every teacher on every sample: [T·B] rows against the labels repeated per teacher.
        let rows = t.flatten(0, 1)?;
        let y = Tensor::cat(&vec![&labels; n], 0)?;
        let ce = rows.cross_entropy_rows(&y)?.reshape(&[n, b])?;
        ce.affine(-1.0 / self.cfg.temperature, 0.0)?.t()?.softmax(-1)
    }
}

export_plugins! {
    router: [Uniform, Confidence, Selector],
}
