use crate::{ctx::init, Ctx, Result, Tensor};

/// `y = x·Wᵀ + b`, with PyTorch's default initialisation (U(±1/√in)).
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    /// Parameters `prefix.weight` `[out, in]` and `prefix.bias` `[out]`.
    pub fn new(ctx: &Ctx, prefix: &str, in_dim: usize, out_dim: usize, bias: bool) -> Result<Self> {
        let weight = ctx.var(&super::join(prefix, "weight"), &[out_dim, in_dim], init::fan_in_uniform(in_dim))?;
        let bias = if bias {
            Some(ctx.var(&super::join(prefix, "bias"), &[out_dim], init::fan_in_uniform(in_dim))?)
        } else {
            None
        };
        Ok(Linear { weight, bias })
    }

    /// Applies the layer to `[…, in]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.linear(&self.weight, self.bias.as_ref())
    }

    /// The weight `[out, in]`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }
}
