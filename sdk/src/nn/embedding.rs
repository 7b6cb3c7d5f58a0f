use crate::{ctx::init, Ctx, Result, Tensor};

/// A lookup table of `[n, dim]` vectors, initialised N(0, 1) as in PyTorch.
pub struct Embedding {
    weight: Tensor,
    dim: usize,
}

impl Embedding {
    /// Parameter `prefix.weight` `[n, dim]`.
    pub fn new(ctx: &Ctx, prefix: &str, n: usize, dim: usize) -> Result<Self> {
        let weight = ctx.var(&super::join(prefix, "weight"), &[n, dim], init::normal(0.0, 1.0))?;
        Ok(Embedding { weight, dim })
    }

    /// Vectors for an integer index tensor of any shape: `[…, dim]`.
    pub fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        let mut shape = ids.dims();
        let flat = ids.flatten_all()?;
        let rows = self.weight.index_select(&flat, 0)?;
        shape.push(self.dim);
        rows.reshape(&shape)
    }
}
