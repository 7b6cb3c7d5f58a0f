//! `rkd`: relational KD (Park et al. 2019; methods spec §5.3), distance and angle terms on the
//! pooled embeddings. Distances `sqrt(clamp(‖a‖² + ‖b‖² − 2ab, 1e-12))` with a zero diagonal,
//! divided by the mean positive distance; angles the cosines at every vertex of every triplet;
//! both compared with Smooth L1 (δ = 1, mean). `L = w_D·L_D + w_A·L_A` (25 and 50, the code's).
use retort_sdk::{params, Batch, Ctx, Error, LossPlugin, Plugin, Result, Tensor};

use crate::taps::feature;

/// Parameters of `rkd`.
#[params]
pub struct Config {
    /// the student's embedding tap (its pooled features)
    #[param(default = "pooled".to_string())]
    pub student_tap: String,
    /// the teacher's embedding tap
    #[param(default = "pooled".to_string())]
    pub teacher_tap: String,
    /// w_D, the distance term's weight (25 in RepDistiller and mdistiller)
    #[param(default = 25.0, ge = 0.0)]
    pub distance_weight: f64,
    /// w_A, the angle term's weight (50 in the code)
    #[param(default = 50.0, ge = 0.0)]
    pub angle_weight: f64,
}

/// Relational KD.
pub struct Rkd {
    ctx: Ctx,
    cfg: Config,
    warned: bool,
}

impl Plugin for Rkd {
    const NAME: &'static str = "rkd";
    const SUMMARY: &'static str = "Relational KD (Park et al. 2019): Smooth-L1 between the student's and the \
        teacher's mean-normalised pairwise distances (w_D) and triplet angles (w_A) of the batch's embeddings. \
        Inputs: student_feature / teacher_feature, or the taps student_tap / teacher_tap.";
    type Config = Config;
    fn new(ctx: Ctx, cfg: Config) -> Result<Self> {
        Ok(Rkd { ctx, cfg, warned: false })
    }
}

/// Pairwise Euclidean distances `[B, B]` with a zero diagonal.
fn distances(ctx: &Ctx, e: &Tensor) -> Result<Tensor> {
    let b = e.dim(0)?;
    let sq = e.sqr()?.sum_keepdim(1)?;
    let prod = e.matmul(&e.t()?)?;
    let d2 = sq.broadcast_add(&sq.t()?)?.sub(&prod.affine(2.0, 0.0)?)?;
    let d = d2.clamp(1e-12, f64::INFINITY)?.sqrt()?;
    let eye: Vec<f32> = (0..b * b).map(|i| if i % (b + 1) == 0 { 0.0 } else { 1.0 }).collect();
    d.mul(&ctx.tensor(&eye, &[b, b])?)
}

/// Distances divided by their mean over the positive entries: every off-diagonal one, since the
/// clamp keeps even coincident points 1e-6 apart.
fn normalised_distances(ctx: &Ctx, e: &Tensor) -> Result<Tensor> {
    let d = distances(ctx, e)?;
    let b = e.dim(0)?;
    let mean = d.sum_all()?.affine(1.0 / (b * b.saturating_sub(1)).max(1) as f64, 0.0)?;
    d.broadcast_div(&mean)
}

/// The cosine at vertex i of every triplet (i, j, k), `[B, B, B]` (0 where j or k is i).
fn angles(e: &Tensor) -> Result<Tensor> {
    let diff = e.unsqueeze(0)?.broadcast_sub(&e.unsqueeze(1)?)?; // [i, j, D] = e_j − e_i
    let norm = diff.sqr()?.sum_keepdim(2)?.affine(1.0, 1e-24)?.sqrt()?;
    let unit = diff.broadcast_div(&norm)?;
    unit.matmul(&unit.transpose(1, 2)?)
}

/// Smooth L1 (δ = 1) averaged over every entry.
fn smooth_l1(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let d = a.sub(b)?.abs()?;
    let m = d.clamp(0.0, 1.0)?;
    m.sqr()?.affine(0.5, 0.0)?.add(&d.sub(&m)?)?.mean_all()
}

impl LossPlugin for Rkd {
    fn loss(&mut self, batch: &Batch) -> Result<Tensor> {
        let s = feature(&self.ctx, batch, "rkd", Some("student_feature"), "student", &self.cfg.student_tap)?;
        let t = feature(&self.ctx, batch, "rkd", Some("teacher_feature"), "teacher", &self.cfg.teacher_tap)?;
        let (s, t) = (s.flatten_from(1)?, t.flatten_from(1)?);
        if s.dim(0)? != t.dim(0)? {
            return Err(Error::invalid(format!("rkd: {:?} and {:?} are not the same batch", s.dims(), t.dims())));
        }
        let b = s.dim(0)?;
        if b > 256 && !self.warned && self.cfg.angle_weight > 0.0 {
            self.warned = true;
            self.ctx.warn(&format!("rkd: the angle term holds B³·D = {b}³·{} values at batch {b}", s.dim(1)?));
        }
        let ctx = &self.ctx;
        let mut loss = smooth_l1(&normalised_distances(ctx, &s)?, &normalised_distances(ctx, &t)?)?
            .affine(self.cfg.distance_weight, 0.0)?;
        if self.cfg.angle_weight > 0.0 {
            loss = loss.add(&smooth_l1(&angles(&s)?, &angles(&t)?)?.affine(self.cfg.angle_weight, 0.0)?)?;
        }
        Ok(loss)
    }
}
