//! One pre-LN transformer block: `x + attn(ln1(x))`, then `x + mlp(ln2(x))`.
use retort_sdk::{ctx::init, nn::LayerNorm, Ctx, Result, Tensor};

/// A linear map's weight `[out, in]` and bias `[out]`, GPT-2 initialised (N(0, std), bias 0).
pub struct Dense {
    w: Tensor,
    b: Tensor,
}

impl Dense {
    pub fn new(ctx: &Ctx, prefix: &str, d_in: usize, d_out: usize, std: f64) -> Result<Self> {
        Ok(Dense {
            w: ctx.var(&format!("{prefix}.weight"), &[d_out, d_in], init::normal(0.0, std))?,
            b: ctx.var(&format!("{prefix}.bias"), &[d_out], init::constant(0.0))?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.linear(&self.w, Some(&self.b))
    }
}

/// Keys and values of earlier positions, `[B, H, S, head_dim]` each (no graph).
pub type KeyValues = (Tensor, Tensor);

/// A block's layers.
pub struct Block {
    ln1: LayerNorm,
    qkv: Dense,
    proj: Dense,
    ln2: LayerNorm,
    fc: Dense,
    out: Dense,
    heads: usize,
}

impl Block {
    /// Block `i` (parameters `h{i}.…`); `std` initialises every weight, `residual_std` the two
    /// projections into the residual stream (GPT-2's 1/√(2·layers) scaling).
    pub fn new(
        ctx: &Ctx,
        i: usize,
        width: usize,
        heads: usize,
        hidden: usize,
        std: f64,
        residual_std: f64,
    ) -> Result<Self> {
        let p = |s: &str| format!("h{i}.{s}");
        Ok(Block {
            ln1: LayerNorm::new(ctx, &p("ln1"), width, 1e-5)?,
            qkv: Dense::new(ctx, &p("attn.qkv"), width, 3 * width, std)?,
            proj: Dense::new(ctx, &p("attn.proj"), width, width, residual_std)?,
            ln2: LayerNorm::new(ctx, &p("ln2"), width, 1e-5)?,
            fc: Dense::new(ctx, &p("mlp.fc"), width, hidden, std)?,
            out: Dense::new(ctx, &p("mlp.proj"), hidden, width, residual_std)?,
            heads,
        })
    }

    /// The block on `x` `[B, T, D]`. `mask` `[T, S]` is added to the attention scores (0 where a
    /// query may look, −∞ at later positions); `past` holds the keys and values of the S − T
    /// positions before `x`. Returns the output, the attention map `[B, H, T, S]` and, when `keep`,
    /// the keys and values of all S positions (for the next cached call).
    pub fn forward(
        &self,
        x: &Tensor,
        mask: &Tensor,
        past: Option<&KeyValues>,
        keep: bool,
    ) -> Result<(Tensor, Tensor, Option<KeyValues>)> {
        let (b, t, d) = (x.dim(0)?, x.dim(1)?, x.dim(2)?);
        let hd = d / self.heads;
        let qkv = self.qkv.forward(&self.ln1.forward(x)?)?;
        let split = |k: usize| -> Result<Tensor> {
            qkv.narrow(2, k * d, d)?.reshape(&[b, t, self.heads, hd])?.transpose(1, 2)?.contiguous()
        };
        let (q, mut k, mut v) = (split(0)?, split(1)?, split(2)?);
        if let Some((pk, pv)) = past {
            k = Tensor::cat(&[pk, &k], 2)?;
            v = Tensor::cat(&[pv, &v], 2)?;
        }
        let scores = q.matmul(&k.t()?.contiguous()?)?.affine(1.0 / (hd as f64).sqrt(), 0.0)?;
        let att = scores.broadcast_add(mask)?.softmax(-1)?;
        let y = att.matmul(&v)?.transpose(1, 2)?.reshape(&[b, t, d])?;
        let x = x.add(&self.proj.forward(&y)?)?;
        let h = self.fc.forward(&self.ln2.forward(&x)?)?.gelu()?;
        let x = x.add(&self.out.forward(&h)?)?;
        let kv = if keep { Some((k.detach()?, v.detach()?)) } else { None };
        Ok((x, att, kv))
    }
}
