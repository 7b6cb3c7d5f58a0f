//! `sp`: similarity-preserving KD (Tung & Mori 2019; methods spec §5.4). `G = A·Aᵀ` of each
//! network's flattened features over the batch, rows L2-normalised; `L = γ·‖G_T − G_S‖_F² / B²`
//! (γ = 3000 in the code). Channel counts may differ: only the batch's similarity structure is
//! compared.
use retort_sdk::{params, Batch, Ctx, LossPlugin, Plugin, Result, Tensor};

use crate::taps::feature;

/// Parameters of `sp`.
#[params]
pub struct Config {
    /// the student's feature tap (the last stage's map, before pooling)
    #[param(default = "f3".to_string())]
    pub student_tap: String,
    /// the teacher's feature tap
    #[param(default = "f3".to_string())]
    pub teacher_tap: String,
    /// γ, the term's scale (3000 in RepDistiller)
    #[param(default = 3000.0)]
    pub gamma: f64,
}

/// Similarity-preserving KD.
pub struct Sp {
    ctx: Ctx,
    cfg: Config,
}

impl Plugin for Sp {
    const NAME: &'static str = "sp";
    const SUMMARY: &'static str = "Similarity-preserving KD (Tung & Mori 2019): row-normalised batch Gram matrices \
        of the student's and the teacher's flattened features matched, γ·‖G_T − G_S‖²_F / B². Inputs: \
        student_feature / teacher_feature, or the taps student_tap / teacher_tap.";
    type Config = Config;
    fn new(ctx: Ctx, cfg: Config) -> Result<Self> {
        Ok(Sp { ctx, cfg })
    }
}

/// The row-normalised Gram matrix `[B, B]` of `f` flattened per sample.
fn gram(f: &Tensor) -> Result<Tensor> {
    let a = f.flatten_from(1)?;
    let g = a.matmul(&a.t()?)?;
    let norm = g.sqr()?.sum_keepdim(1)?.sqrt()?.affine(1.0, 1e-12)?;
    g.broadcast_div(&norm)
}

impl LossPlugin for Sp {
    fn loss(&mut self, batch: &Batch) -> Result<Tensor> {
        let s = feature(&self.ctx, batch, "sp", Some("student_feature"), "student", &self.cfg.student_tap)?;
        let t = feature(&self.ctx, batch, "sp", Some("teacher_feature"), "teacher", &self.cfg.teacher_tap)?;
        let b = s.dim(0)? as f64;
        gram(&t)?.sub(&gram(&s)?)?.sqr()?.sum_all()?.affine(self.cfg.gamma / (b * b), 0.0)
    }
}
