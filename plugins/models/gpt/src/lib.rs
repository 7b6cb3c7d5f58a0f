//! `gpt`: a byte-level GPT — token and position embeddings, pre-LN causal self-attention blocks
//! with GELU MLPs, a final layer norm and an output head tied to the token embedding (Radford et
//! al. 2019; the layout of nanoGPT). Taps `block1…blockN` (hidden states after each block),
//! `attention1…attentionN` (attention maps `[B, H, T, S]`), `hidden` (after the final norm) and
//! `logits` `[B, T, vocab]`.
//!
//! The KV cache is a batch convention, not an ABI change: with the scalar `kv_cache` = 2 the model
//! forgets its cache and reads `input` as the first tokens of new sequences; with 1 it reads
//! `input` as the tokens after those it has cached. Either way it caches the new keys and values
//! and returns logits for the new tokens only. Without the scalar (training, evaluation) the cache
//! is neither read nor written. A host knows a model speaks this convention by its `kv_cache`
//! parameter.
mod block;

use block::{Block, KeyValues};
use retort_sdk::{
    ctx::init, export_plugins, nn::LayerNorm, params, Batch, Ctx, Error, ModelPlugin, Plugin, Result, Tensor,
};

/// Parameters of `gpt`.
#[params]
pub struct Config {
    /// vocabulary size (256 for bytes)
    #[param(default = 256, gt = 0)]
    pub vocab: usize,
    /// the most positions the model reads at once (its position table)
    #[param(default = 128, gt = 0)]
    pub context: usize,
    /// transformer blocks
    #[param(default = 4, gt = 0)]
    pub layers: usize,
    /// residual-stream width (a multiple of heads)
    #[param(default = 128, gt = 0)]
    pub width: usize,
    /// attention heads per block
    #[param(default = 4, gt = 0)]
    pub heads: usize,
    /// width of each MLP's hidden layer as a multiple of the width
    #[param(default = 4, gt = 0)]
    pub mlp_ratio: usize,
    /// dropout on the embeddings and on each block's output while training
    pub dropout: f64,
    /// std of the normal initialisation (GPT-2: 0.02); residual projections get std/√(2·layers)
    #[param(default = 0.02, gt = 0.0)]
    pub init_std: f64,
    /// serve the host's KV-cache calls (scalar `kv_cache`, used by generation); false makes the host generate without a cache
    #[param(default = true)]
    pub kv_cache: bool,
}

/// The plugin instance.
pub struct Gpt {
    ctx: Ctx,
    wte: Tensor,
    wpe: Tensor,
    blocks: Vec<Block>,
    ln_f: LayerNorm,
    context: usize,
    dropout: f64,
    kv_cache: bool,
    /// Keys and values of the cached positions, one per block.
    cache: Vec<KeyValues>,
    cached: usize,
    /// The last additive causal mask, by (new tokens, cached positions).
    mask: Option<((usize, usize), Tensor)>,
}

impl Plugin for Gpt {
    const NAME: &'static str = "gpt";
    const SUMMARY: &'static str = "Byte-level GPT: token + position embeddings, pre-LN causal self-attention \
        blocks with GELU MLPs, tied output head; logits [B, T, vocab]. Taps block1…N, attention1…N, hidden, \
        logits. Serves a KV cache for generation.";
    type Config = Config;

    fn new(ctx: Ctx, cfg: Config) -> Result<Self> {
        if cfg.width % cfg.heads != 0 {
            return Err(Error::config(format!("gpt: width {} is not a multiple of heads {}", cfg.width, cfg.heads)));
        }
        if !(0.0..1.0).contains(&cfg.dropout) {
            return Err(Error::config(format!("gpt: dropout must be in [0, 1), got {}", cfg.dropout)));
        }
        let std = cfg.init_std;
        let residual = std / (2.0 * cfg.layers as f64).sqrt();
        let blocks = (0..cfg.layers)
            .map(|i| Block::new(&ctx, i, cfg.width, cfg.heads, cfg.mlp_ratio * cfg.width, std, residual))
            .collect::<Result<Vec<_>>>()?;
        Ok(Gpt {
            wte: ctx.var("wte.weight", &[cfg.vocab, cfg.width], init::normal(0.0, std))?,
            wpe: ctx.var("wpe.weight", &[cfg.context, cfg.width], init::normal(0.0, std))?,
            ln_f: LayerNorm::new(&ctx, "ln_f", cfg.width, 1e-5)?,
            blocks,
            context: cfg.context,
            dropout: cfg.dropout,
            kv_cache: cfg.kv_cache,
            cache: Vec::new(),
            cached: 0,
            mask: None,
            ctx,
        })
    }
}

impl Gpt {
    /// `[T, S]`: 0 where new token t (at position `past + t`) may attend to position s, −∞ after.
    fn causal_mask(&mut self, t: usize, past: usize) -> Result<Tensor> {
        if let Some((key, m)) = &self.mask {
            if *key == (t, past) {
                return Ok(m.clone());
            }
        }
        let s = past + t;
        let data: Vec<f32> = (0..t * s).map(|k| if k % s <= past + k / s { 0.0 } else { f32::NEG_INFINITY }).collect();
        let m = self.ctx.tensor(&data, &[t, s])?;
        self.mask = Some(((t, past), m.clone()));
        Ok(m)
    }
}

impl ModelPlugin for Gpt {
    fn forward(&mut self, batch: &Batch) -> Result<Tensor> {
        let train = batch.is_training();
        let ids = batch.tensor("input")?;
        if ids.rank() != 2 {
            return Err(Error::invalid(format!("gpt: input must be token ids [B, T], got {:?}", ids.dims())));
        }
        let (b, t) = (ids.dim(0)?, ids.dim(1)?);
        let mode = batch.scalar("kv_cache").unwrap_or(0.0) as u32;
        let caching = mode > 0 && self.kv_cache;
        if caching && mode >= 2 {
            self.cache.clear();
            self.cached = 0;
        }
        let past = if caching { self.cached } else { 0 };
        if past + t > self.context {
            return Err(Error::invalid(format!(
                "gpt: {} positions exceed the context of {} (the host must crop long sequences)",
                past + t,
                self.context
            )));
        }
        if caching && !self.cache.is_empty() && self.cache[0].0.dim(0)? != b {
            return Err(Error::invalid("gpt: a cached call changed the batch size; reset the cache (kv_cache = 2)"));
        }
        let pos = self.ctx.arange(past as f64, (past + t) as f64, 1.0, retort_sdk::DType::U32)?;
        let tok = self.wte.index_select(&ids.flatten_all()?, 0)?.reshape(&[b, t, self.wte.dim(1)?])?;
        let mut x = tok.broadcast_add(&self.wpe.index_select(&pos, 0)?)?;
        x = self.ctx.dropout(&x, self.dropout, train)?;
        let mask = self.causal_mask(t, past)?;
        let mut new_cache = Vec::with_capacity(self.blocks.len());
        for (i, blk) in self.blocks.iter().enumerate() {
            let prev = if caching { self.cache.get(i) } else { None };
            let (y, att, kv) = blk.forward(&x, &mask, prev, caching)?;
            self.ctx.tap(&format!("attention{}", i + 1), &att)?;
            x = self.ctx.tap(&format!("block{}", i + 1), &y)?;
            if self.dropout > 0.0 {
                x = self.ctx.dropout(&x, self.dropout, train)?;
            }
            new_cache.extend(kv);
        }
        if caching {
            self.cache = new_cache;
            self.cached = past + t;
        }
        let h = self.ctx.tap("hidden", &self.ln_f.forward(&x)?)?;
        self.ctx.tap("logits", &h.linear(&self.wte, None)?)
    }
}

export_plugins! {
    model: [Gpt],
}
