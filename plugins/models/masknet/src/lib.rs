//! `masknet`: MST-Distill's "plug-in masking module" (methods spec §1.3), a model plugin meant to
//! be installed as a tap rewrite on a teacher (`[[stages.experts]] masks = [{ tap, with }]`): its
//! `input` is the tapped feature `f` and its output `m ⊙ f` replaces it.
//!
//! 1-D features `f ∈ R^D` (or `[B, D, 1, 1]` maps, squeezed and restored): `H = ⌊D/(factor·heads)⌋·heads`,
//! `X = reshape(Linear_{D→D·H}(f), [D, H])` (one token of width H per feature), `Y = MHSA(X)`
//! (PyTorch `nn.MultiheadAttention` semantics), `m = sigmoid(Linear_{H→1}(Y)) ∈ (0,1)^D`.
//! 2-D maps `F ∈ R^{C×h×w}`: `v = GAP(ReLU(BN(Conv1x1(DWConv3x3_stride2(F)))))` (no conv biases,
//! padding 1), then the same steps on `v` give `m ∈ (0,1)^C`, and the output is `m[:,None,None] ⊙ F`.
//! Parameters are made at the first forward, when D (or C) is known.
use retort_sdk::{
    ctx::init,
    export_plugins,
    nn::{BatchNorm, Linear},
    params, Batch, Ctx, Error, ModelPlugin, Plugin, Result, Tensor,
};

/// Parameters of `masknet`.
#[params]
pub struct Config {
    /// H = ⌊D/(hidden_dim_factor·heads)⌋·heads: the embed layer has D·H·D weights, so raise this for wide taps
    #[param(default = 2, ge = 1)]
    pub hidden_dim_factor: usize,
    /// attention heads (the official default is 3)
    #[param(default = 3, ge = 1)]
    pub heads: usize,
    /// token width H when > 0, overriding hidden_dim_factor (a multiple of heads)
    pub hidden_dim: usize,
    /// initial bias of the final Linear H→1: a large value starts the mask at m ≈ 1 (the identity)
    pub gate_bias: f64,
    /// a fixed mask m ≡ c instead of the learned one (no parameters): checks a rewrite scales the tap by exactly c
    pub constant: Option<f64>,
}

/// The layers, made at the first forward.
struct Layers {
    /// Depthwise 3×3 stride-2 and 1×1 convolutions and their batch norm (2-D maps only).
    conv: Option<(Tensor, Tensor, BatchNorm)>,
    embed: Linear,
    in_proj: Linear,
    out_proj: Linear,
    /// The final Linear H→1 (weight, bias): its bias starts at `gate_bias`.
    gate: (Tensor, Tensor),
    tokens: usize,
    width: usize,
}

/// The MaskNet instance.
pub struct MaskNet {
    ctx: Ctx,
    cfg: Config,
    layers: Option<Layers>,
}

impl Plugin for MaskNet {
    const NAME: &'static str = "masknet";
    const SUMMARY: &'static str = "MST-Distill MaskNet (Li et al. 2025, spec §1.3): a sigmoid mask over a tapped \
        teacher feature from self-attention over its dimensions (1-D [B, D] or 2-D [B, C, h, w] via a depthwise \
        conv stem); returns m ⊙ input. Install it as a tap rewrite with [[stages.experts]].";
    type Config = Config;
    fn new(ctx: Ctx, cfg: Config) -> Result<Self> {
        if cfg.hidden_dim > 0 && cfg.hidden_dim % cfg.heads != 0 {
            return Err(Error::config(format!(
                "masknet: hidden_dim {} is not a multiple of heads {}",
                cfg.hidden_dim, cfg.heads
            )));
        }
        Ok(MaskNet { ctx, cfg, layers: None })
    }
}

impl MaskNet {
    /// The token width H for `d` features.
    fn width(&self, d: usize) -> Result<usize> {
        let h = if self.cfg.hidden_dim > 0 {
            self.cfg.hidden_dim
        } else {
            d / (self.cfg.hidden_dim_factor * self.cfg.heads) * self.cfg.heads
        };
        if h == 0 {
            return Err(Error::invalid(format!(
                "masknet: {d} features give H = 0 with hidden_dim_factor {} and {} heads; lower them or set hidden_dim",
                self.cfg.hidden_dim_factor, self.cfg.heads
            )));
        }
        Ok(h)
    }

    fn layers(&mut self, d: usize, two_d: bool) -> Result<&Layers> {
        if self.layers.as_ref().is_some_and(|l| l.tokens != d || l.conv.is_some() != two_d) {
            return Err(Error::invalid(format!("masknet: built for {d} features, now given another shape")));
        }
        if self.layers.is_none() {
            let h = self.width(d)?;
            let ctx = &self.ctx;
            let conv = if two_d {
                let dw = ctx.var("stem.depthwise.weight", &[d, 1, 3, 3], init::fan_in_uniform(9))?;
                let pw = ctx.var("stem.pointwise.weight", &[d, d, 1, 1], init::fan_in_uniform(d))?;
                Some((dw, pw, BatchNorm::new(ctx, "stem.bn", d, 1e-5, 0.1)?))
            } else {
                None
            };
            let gate = (
                ctx.var("gate.weight", &[1, h], init::fan_in_uniform(h))?,
                ctx.var("gate.bias", &[1], init::constant(self.cfg.gate_bias))?,
            );
            self.layers = Some(Layers {
                conv,
                embed: Linear::new(ctx, "embed", d, d * h, true)?,
                in_proj: Linear::new(ctx, "attn.in_proj", h, 3 * h, true)?,
                out_proj: Linear::new(ctx, "attn.out_proj", h, h, true)?,
                gate,
                tokens: d,
                width: h,
            });
        }
        self.layers.as_ref().ok_or_else(|| Error::invalid("masknet: no layers"))
    }

    /// The mask `m ∈ (0,1)^{[B, D]}` for features `v` `[B, D]`.
    fn mask(l: &Layers, heads: usize, v: &Tensor) -> Result<Tensor> {
        let (b, d, h) = (v.dim(0)?, l.tokens, l.width);
        let dh = h / heads;
        // Tokens as rows `[B·D, H]` for the per-token layers.
        let x = l.embed.forward(v)?.reshape(&[b * d, h])?;
        let qkv = l.in_proj.forward(&x)?.reshape(&[b, d, 3 * h])?;
        let split = |k: usize| -> Result<Tensor> {
            qkv.narrow(2, k * h, h)?.reshape(&[b, d, heads, dh])?.transpose(1, 2)?.contiguous()
        };
        let (q, k, v) = (split(0)?, split(1)?, split(2)?);
        let scores = q.matmul(&k.transpose(2, 3)?.contiguous()?)?.affine(1.0 / (dh as f64).sqrt(), 0.0)?;
        let y = scores.softmax(-1)?.matmul(&v)?.transpose(1, 2)?.contiguous()?.reshape(&[b * d, h])?;
        let y = l.out_proj.forward(&y)?;
        y.linear(&l.gate.0, Some(&l.gate.1))?.reshape(&[b, d])?.sigmoid()
    }
}

impl ModelPlugin for MaskNet {
    fn forward(&mut self, batch: &Batch) -> Result<Tensor> {
        let train = batch.is_training();
        let f = batch.tensor("input")?;
        let dims = f.dims().to_vec();
        let (b, d) = (dims[0], *dims.get(1).ok_or_else(|| Error::invalid("masknet: input must be [B, D, …]"))?);
        let two_d = dims.len() == 4 && dims[2] * dims[3] > 1;
        if !(dims.len() == 2 || dims.len() == 4) {
            return Err(Error::invalid(format!("masknet: input {dims:?} is neither [B, D] nor [B, C, h, w]")));
        }
        let m = match self.cfg.constant {
            Some(c) => self.ctx.full(&[b, d], c, f.dtype()?)?,
            None => {
                let heads = self.cfg.heads;
                let l = self.layers(d, two_d)?;
                let v = match &l.conv {
                    Some((dw, pw, bn)) => {
                        let s = f.conv2d(dw, 1, 2, 1, d)?.conv2d(pw, 0, 1, 1, 1)?;
                        bn.forward(&s, train)?.relu()?.mean(vec![2i64, 3])?
                    }
                    None => f.reshape(&[b, d])?,
                };
                Self::mask(l, heads, &v)?
            }
        };
        let m = self.ctx.tap("mask", &m)?;
        if dims.len() == 4 {
            f.broadcast_mul(&m.reshape(&[b, d, 1, 1])?)
        } else {
            f.mul(&m)
        }
    }
}

export_plugins! {
    model: [MaskNet],
}
