//! Margin-MSE (Hofstätter et al. 2020): match the student's positive–negative score margin to the
//! teacher's, for ranking models.
use retort_sdk::{params, Batch, Ctx, Error, LossPlugin, Plugin, Result, Tensor};

/// Parameters of `margin-mse` (none).
#[params]
pub struct Config {}

/// The plugin instance.
pub struct MarginMse;

impl Plugin for MarginMse {
    const NAME: &'static str = "margin-mse";
    const SUMMARY: &'static str = "Margin-MSE (Hofstätter et al. 2020): mean of ((s⁺ − s⁻) − (t⁺ − t⁻))² on raw \
        scores. Inputs: student_pos, student_neg, teacher_pos, teacher_neg ([B]), or student and teacher as \
        [B, 2] (positive, negative).";
    type Config = Config;
    fn new(_ctx: Ctx, _cfg: Config) -> Result<Self> {
        Ok(MarginMse)
    }
}

fn margin(batch: &Batch, who: &str) -> Result<Tensor> {
    if let (Some(p), Some(n)) = (batch.get(&format!("{who}_pos")), batch.get(&format!("{who}_neg"))) {
        return p.flatten_all()?.sub(&n.flatten_all()?);
    }
    let s = batch.tensor(who)?;
    if s.rank() != 2 || s.dim(1)? != 2 {
        return Err(Error::invalid(format!("margin-mse: `{who}` must be [B, 2] (positive, negative) scores")));
    }
    s.narrow(1, 0, 1)?.sub(&s.narrow(1, 1, 1)?)?.flatten_all()
}

impl LossPlugin for MarginMse {
    fn loss(&mut self, batch: &Batch) -> Result<Tensor> {
        let ds = margin(batch, "student")?;
        let dt = margin(batch, "teacher")?.detach()?;
        ds.sub(&dt)?.sqr()?.mean_all()
    }
}
