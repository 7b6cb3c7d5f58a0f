use crate::{Ctx, Result, Tensor};

/// Inverted dropout drawing from the instance's seeded host RNG stream.
pub struct Dropout {
    ctx: Ctx,
    p: f64,
}

impl Dropout {
    /// Drops each element with probability `p` while training.
    pub fn new(ctx: &Ctx, p: f64) -> Self {
        Dropout { ctx: *ctx, p }
    }

    /// Applies dropout when `train`, identity otherwise.
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        if self.p <= 0.0 || !train {
            return Ok(x.clone());
        }
        self.ctx.dropout(x, self.p, train)
    }
}
