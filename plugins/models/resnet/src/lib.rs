//! `resnet`: a residual network of basic blocks (He et al. 2016, the CIFAR layout): a 3×3 stem
//! (stride 1, or 2 to quarter the compute),
//! stages of `blocks` blocks each (3×3 conv → BN → ReLU → 3×3 conv → BN, plus the input or a
//! 1×1 conv + BN projection, then ReLU; every stage after the first halves the size), global
//! average pooling and a linear head. Taps as feature methods index them (methods spec §5):
//! `f0` (stem), `f1…fN` (stage outputs, post-ReLU), `pooled` and `logits`.
use retort_sdk::{
    export_plugins,
    nn::{BatchNorm, Conv2d, Linear},
    params, Batch, Ctx, Error, ModelPlugin, Plugin, Result, Tensor,
};

/// Parameters of `resnet`.
#[params]
pub struct Config {
    /// input channels (1 for MNIST)
    #[param(default = 1)]
    pub in_channels: usize,
    /// width of the stem
    #[param(default = 16)]
    pub stem: usize,
    /// stride of the stem convolution (2 halves every map: a quarter of the compute on small budgets)
    #[param(default = 1)]
    pub stem_stride: usize,
    /// width of each stage; each stage after the first halves the spatial size
    #[param(default = vec![16, 32, 64])]
    pub widths: Vec<usize>,
    /// basic blocks per stage (one number for all stages, or one per stage)
    #[param(default = vec![1])]
    pub blocks: Vec<usize>,
    /// number of output logits
    #[param(default = 10)]
    pub classes: usize,
    /// batch normalisation after every convolution (off: convolutions get biases)
    #[param(default = true)]
    pub batch_norm: bool,
}

/// A convolution and its batch norm.
struct ConvBn {
    conv: Conv2d,
    bn: Option<BatchNorm>,
}

impl ConvBn {
    fn new(ctx: &Ctx, name: &str, cin: usize, cout: usize, k: usize, stride: usize, bn: bool) -> Result<Self> {
        let pad = k / 2;
        if bn {
            Ok(ConvBn {
                conv: Conv2d::no_bias(ctx, &format!("{name}.conv"), cin, cout, k, pad, stride)?,
                bn: Some(BatchNorm::new(ctx, &format!("{name}.bn"), cout, 1e-5, 0.1)?),
            })
        } else {
            Ok(ConvBn { conv: Conv2d::new(ctx, &format!("{name}.conv"), cin, cout, k, pad, stride)?, bn: None })
        }
    }

    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let y = self.conv.forward(x)?;
        match &self.bn {
            Some(bn) => bn.forward(&y, train),
            None => Ok(y),
        }
    }
}

/// A basic block: two 3×3 convolutions and a shortcut.
struct Block {
    a: ConvBn,
    b: ConvBn,
    shortcut: Option<ConvBn>,
}

impl Block {
    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let y = self.b.forward(&self.a.forward(x, train)?.relu()?, train)?;
        let skip = match &self.shortcut {
            Some(s) => s.forward(x, train)?,
            None => x.clone(),
        };
        y.add(&skip)?.relu()
    }
}

/// The plugin instance.
pub struct ResNet {
    ctx: Ctx,
    stem: ConvBn,
    stages: Vec<Vec<Block>>,
    head: Linear,
    in_channels: usize,
}

impl Plugin for ResNet {
    const NAME: &'static str = "resnet";
    const SUMMARY: &'static str = "Residual network (He et al. 2016, CIFAR layout): 3×3 stem, stages of basic \
        blocks (BN, identity or 1×1 projection shortcuts, stride 2 after the first stage), global average pool, \
        linear head. Taps f0 (stem), f1…fN (stages), pooled, logits.";
    type Config = Config;

    fn new(ctx: Ctx, cfg: Config) -> Result<Self> {
        if cfg.widths.is_empty() || cfg.widths.contains(&0) || cfg.stem == 0 || cfg.classes == 0 {
            return Err(Error::config("resnet: stem, widths (at least one stage) and classes must be > 0"));
        }
        let blocks: Vec<usize> = match cfg.blocks.len() {
            1 => vec![cfg.blocks[0]; cfg.widths.len()],
            n if n == cfg.widths.len() => cfg.blocks.clone(),
            n => {
                return Err(Error::config(format!(
                    "resnet: blocks has {n} entries; give one, or one per stage ({})",
                    cfg.widths.len()
                )))
            }
        };
        if blocks.contains(&0) {
            return Err(Error::config("resnet: every stage needs at least one block"));
        }
        let bn = cfg.batch_norm;
        if cfg.stem_stride == 0 {
            return Err(Error::config("resnet: stem_stride must be ≥ 1"));
        }
        let stem = ConvBn::new(&ctx, "stem", cfg.in_channels, cfg.stem, 3, cfg.stem_stride, bn)?;
        let mut stages = Vec::new();
        let mut cin = cfg.stem;
        for (s, (&w, &n)) in cfg.widths.iter().zip(&blocks).enumerate() {
            let mut stage = Vec::new();
            for k in 0..n {
                let stride = if s > 0 && k == 0 { 2 } else { 1 };
                let name = format!("layer{}.{k}", s + 1);
                let shortcut = if stride != 1 || cin != w {
                    Some(ConvBn::new(&ctx, &format!("{name}.down"), cin, w, 1, stride, bn)?)
                } else {
                    None
                };
                stage.push(Block {
                    a: ConvBn::new(&ctx, &format!("{name}.a"), cin, w, 3, stride, bn)?,
                    b: ConvBn::new(&ctx, &format!("{name}.b"), w, w, 3, 1, bn)?,
                    shortcut,
                });
                cin = w;
            }
            stages.push(stage);
        }
        let head = Linear::new(&ctx, "fc", cin, cfg.classes, true)?;
        Ok(ResNet { ctx, stem, stages, head, in_channels: cfg.in_channels })
    }
}

impl ModelPlugin for ResNet {
    fn forward(&mut self, batch: &Batch) -> Result<Tensor> {
        let train = batch.is_training();
        let input = batch.tensor("input")?;
        let x = retort_sdk::functional::as_images(input, self.in_channels, "resnet")?;
        let mut x = self.ctx.tap("f0", &self.stem.forward(&x, train)?.relu()?)?;
        for (s, stage) in self.stages.iter().enumerate() {
            for block in stage {
                x = block.forward(&x, train)?;
            }
            x = self.ctx.tap(&format!("f{}", s + 1), &x)?;
        }
        let pooled = self.ctx.tap("pooled", &x.mean(3)?.mean(2)?)?;
        self.ctx.tap("logits", &self.head.forward(&pooled)?)
    }
}

export_plugins! {
    model: [ResNet],
}
