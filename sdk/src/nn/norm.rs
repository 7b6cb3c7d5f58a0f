use crate::{ctx::init, Ctx, Error, Result, Tensor};

/// Batch normalisation over dim 1 of `[N, C]` or `[N, C, H, W]`, with running statistics kept in
/// host buffers (biased batch variance for normalising, unbiased for the running estimate).
pub struct BatchNorm {
    ctx: Ctx,
    weight: Tensor,
    bias: Tensor,
    running_mean: Tensor,
    running_var: Tensor,
    channels: usize,
    eps: f64,
    momentum: f64,
}

impl BatchNorm {
    /// Parameters `prefix.weight`, `prefix.bias`; buffers `prefix.running_mean`, `prefix.running_var`.
    pub fn new(ctx: &Ctx, prefix: &str, channels: usize, eps: f64, momentum: f64) -> Result<Self> {
        let j = |n| super::join(prefix, n);
        Ok(BatchNorm {
            ctx: *ctx,
            weight: ctx.var(&j("weight"), &[channels], init::constant(1.0))?,
            bias: ctx.var(&j("bias"), &[channels], init::constant(0.0))?,
            running_mean: ctx.buffer(&j("running_mean"), &[channels], init::constant(0.0))?,
            running_var: ctx.buffer(&j("running_var"), &[channels], init::constant(1.0))?,
            channels,
            eps,
            momentum,
        })
    }

    /// Normalises with batch statistics when `train` (updating the running ones), else running ones.
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let dims = x.dims();
        if dims.len() < 2 || dims[1] != self.channels {
            return Err(Error::invalid(format!("BatchNorm over {} channels got shape {dims:?}", self.channels)));
        }
        let mut bshape = vec![1usize; dims.len()];
        bshape[1] = self.channels;
        let reduce: Vec<usize> = (0..dims.len()).filter(|&d| d != 1).collect();
        let (mean, var) = if train {
            let mean = x.mean_keepdim(reduce.clone())?;
            let var = x.broadcast_sub(&mean)?.sqr()?.mean_keepdim(reduce.clone())?;
            let n = dims.iter().enumerate().filter(|(d, _)| *d != 1).map(|(_, s)| *s).product::<usize>() as f64;
            let unbiased = var.detach()?.affine(n / (n - 1.0).max(1.0), 0.0)?.reshape(&[self.channels])?;
            let m = self.momentum;
            let new_mean = (self.running_mean.affine(1.0 - m, 0.0)?
                + mean.detach()?.reshape(&[self.channels])?.affine(m, 0.0)?)?;
            let new_var = (self.running_var.affine(1.0 - m, 0.0)? + unbiased.affine(m, 0.0)?)?;
            self.ctx.assign(&self.running_mean, &new_mean)?;
            self.ctx.assign(&self.running_var, &new_var)?;
            (mean, var)
        } else {
            (self.running_mean.reshape(&bshape)?, self.running_var.reshape(&bshape)?)
        };
        let xn = x.broadcast_sub(&mean)?.broadcast_div(&var.affine(1.0, self.eps)?.sqrt()?)?;
        xn.broadcast_mul(&self.weight.reshape(&bshape)?)?.broadcast_add(&self.bias.reshape(&bshape)?)
    }
}

/// Layer normalisation over the last dim, with a learned scale and shift.
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    /// Parameters `prefix.weight` (ones) and `prefix.bias` (zeros) of `[dim]`.
    pub fn new(ctx: &Ctx, prefix: &str, dim: usize, eps: f64) -> Result<Self> {
        Ok(LayerNorm {
            weight: ctx.var(&super::join(prefix, "weight"), &[dim], init::constant(1.0))?,
            bias: ctx.var(&super::join(prefix, "bias"), &[dim], init::constant(0.0))?,
            eps,
        })
    }

    /// Normalises each row of the last dim (one host op where the host has it).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.layer_norm(&self.weight, &self.bias, self.eps)
    }
}
