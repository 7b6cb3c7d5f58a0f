use crate::{ctx::init, Ctx, Result, Tensor};

/// 2-D convolution over NCHW input with a square kernel.
pub struct Conv2d {
    weight: Tensor,
    bias: Option<Tensor>,
    padding: usize,
    stride: usize,
}

impl Conv2d {
    /// Parameters `prefix.weight` `[out, in, k, k]` and `prefix.bias` `[out]`, PyTorch's init.
    pub fn new(
        ctx: &Ctx,
        prefix: &str,
        in_ch: usize,
        out_ch: usize,
        kernel: usize,
        padding: usize,
        stride: usize,
    ) -> Result<Self> {
        let mut conv = Self::no_bias(ctx, prefix, in_ch, out_ch, kernel, padding, stride)?;
        let fan_in = in_ch * kernel * kernel;
        conv.bias = Some(ctx.var(&super::join(prefix, "bias"), &[out_ch], init::fan_in_uniform(fan_in))?);
        Ok(conv)
    }

    /// As [`Conv2d::new`] without a bias (a convolution followed by batch norm, whose shift
    /// would cancel it).
    pub fn no_bias(
        ctx: &Ctx,
        prefix: &str,
        in_ch: usize,
        out_ch: usize,
        kernel: usize,
        padding: usize,
        stride: usize,
    ) -> Result<Self> {
        let fan_in = in_ch * kernel * kernel;
        let weight =
            ctx.var(&super::join(prefix, "weight"), &[out_ch, in_ch, kernel, kernel], init::fan_in_uniform(fan_in))?;
        Ok(Conv2d { weight, bias: None, padding, stride: stride.max(1) })
    }

    /// Applies the convolution.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match &self.bias {
            Some(b) => x.conv2d_bias(&self.weight, b, self.padding, self.stride),
            None => x.conv2d(&self.weight, self.padding, self.stride, 1, 1),
        }
    }
}
