//! `feature-l2`: `‖u_S − φ_T‖²` per sample between a student feature and a teacher feature of the
//! same width (KD³'s `μ_f` term, §4.3 (b); the term's weight is μ_f). Per-sample rows, so a
//! router's weights (the selector's confidence) weigh it like every other term.
use retort_sdk::{params, Batch, Ctx, Error, LossPlugin, Plugin, Result, Tensor};
use serde::{Deserialize, Serialize};

/// How a row reduces over the feature dims.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug, Default)]
#[serde(rename_all = "snake_case")]
pub enum Reduction {
    /// `Σ_d (u − φ)²`, the squared norm of the formula.
    #[default]
    Sum,
    /// `(1/D) Σ_d (u − φ)²`.
    Mean,
}

/// Parameters of `feature-l2`.
#[params]
pub struct Config {
    /// over the feature dims: "sum" (‖·‖², the formula) or "mean"
    #[param(default = Reduction::Sum)]
    pub reduction: Reduction,
}

/// The squared feature distance.
pub struct FeatureL2 {
    cfg: Config,
}

impl Plugin for FeatureL2 {
    const NAME: &'static str = "feature-l2";
    const SUMMARY: &'static str = "Squared L2 distance per sample between a student feature and a teacher \
        feature of the same shape (KD³'s weighted feature alignment; the teacher side carries no gradient). \
        Inputs: feature, target (map them from taps, e.g. student.projection and teacher.layer2).";
    type Config = Config;
    fn new(_ctx: Ctx, cfg: Config) -> Result<Self> {
        Ok(FeatureL2 { cfg })
    }
}

impl FeatureL2 {
    fn rows(&self, batch: &Batch) -> Result<Tensor> {
        let u = batch.tensor("feature")?.flatten_from(1)?;
        let phi = batch.tensor("target")?.flatten_from(1)?.detach()?;
        if u.dims() != phi.dims() {
            return Err(Error::invalid(format!(
                "feature-l2: feature {:?} and target {:?} differ; give the student a projection to the teacher's width",
                u.dims(),
                phi.dims()
            )));
        }
        let sq = u.sub(&phi)?.sqr()?;
        match self.cfg.reduction {
            Reduction::Sum => sq.sum(1),
            Reduction::Mean => sq.mean(1),
        }
    }
}

impl LossPlugin for FeatureL2 {
    fn loss(&mut self, batch: &Batch) -> Result<Tensor> {
        self.rows(batch)?.mean_all()
    }
    fn loss_rows(&mut self, batch: &Batch) -> Result<Option<Tensor>> {
        Ok(Some(self.rows(batch)?))
    }
}
