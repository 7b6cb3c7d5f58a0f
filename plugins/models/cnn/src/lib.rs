//! `cnn`: a LeNet-style network (LeCun et al. 1998): blocks of 5×5 convolution + ReLU + 2×2 max
//! pooling, then a hidden fully connected layer with dropout, an optional linear projection and
//! the class logits. Taps `conv1`, `conv2`, …, `fc`, `projection` and `logits`.
use retort_sdk::{
    export_plugins,
    nn::{BatchNorm, Conv2d, Dropout, Linear},
    params, Batch, Ctx, Error, ModelPlugin, Plugin, Result, Tensor,
};

/// Parameters of `cnn`.
#[params]
pub struct Config {
    /// input channels (1 for MNIST)
    #[param(default = 1)]
    pub in_channels: usize,
    /// input height and width (square images)
    #[param(default = 28)]
    pub image_size: usize,
    /// output channels of each conv block; each block halves the spatial size
    #[param(default = vec![32, 64])]
    pub channels: Vec<usize>,
    /// odd convolution kernel size (same padding)
    #[param(default = 5)]
    pub kernel: usize,
    /// width of the fully connected hidden layer
    #[param(default = 128)]
    pub hidden: usize,
    /// number of output logits
    #[param(default = 10)]
    pub classes: usize,
    /// dropout probability before the output layer while training
    pub dropout: f64,
    /// batch normalisation after each convolution
    pub batch_norm: bool,
    /// width of a linear projection (no activation) between the hidden layer and the head, tapped as `projection` (0: none); KD³'s g, which lets the student share a teacher's head
    pub projection: usize,
}

struct Block {
    conv: Conv2d,
    bn: Option<BatchNorm>,
}

/// The plugin instance.
pub struct Cnn {
    ctx: Ctx,
    blocks: Vec<Block>,
    fc: Linear,
    projection: Option<Linear>,
    out: Linear,
    dropout: Dropout,
    in_channels: usize,
}

impl Plugin for Cnn {
    const NAME: &'static str = "cnn";
    const SUMMARY: &'static str = "LeNet-style CNN (LeCun et al. 1998): [conv k×k (same padding) → ReLU → \
        max-pool 2] per entry of `channels`, then fc → ReLU → dropout → (projection) → logits. Input [B, C, H, W] \
        (or [B, H·W] for one channel). Taps conv1…convN, fc, projection, logits.";
    type Config = Config;

    fn new(ctx: Ctx, cfg: Config) -> Result<Self> {
        if cfg.kernel % 2 == 0 || cfg.kernel == 0 {
            return Err(Error::config(format!("cnn: kernel must be odd, got {}", cfg.kernel)));
        }
        if !(0.0..1.0).contains(&cfg.dropout) {
            return Err(Error::config(format!("cnn: dropout must be in [0, 1), got {}", cfg.dropout)));
        }
        let mut size = cfg.image_size;
        let mut prev = cfg.in_channels;
        let mut blocks = Vec::new();
        for (i, &c) in cfg.channels.iter().enumerate() {
            let conv = Conv2d::new(&ctx, &format!("conv{}", i + 1), prev, c, cfg.kernel, cfg.kernel / 2, 1)?;
            let bn =
                if cfg.batch_norm { Some(BatchNorm::new(&ctx, &format!("bn{}", i + 1), c, 1e-5, 0.1)?) } else { None };
            blocks.push(Block { conv, bn });
            prev = c;
            size /= 2;
            if size == 0 {
                return Err(Error::config("cnn: too many blocks for the image size"));
            }
        }
        let flat = prev * size * size;
        let fc = Linear::new(&ctx, "fc", flat, cfg.hidden, true)?;
        let projection = match cfg.projection {
            0 => None,
            p => Some(Linear::new(&ctx, "proj", cfg.hidden, p, true)?),
        };
        let head_in = if cfg.projection > 0 { cfg.projection } else { cfg.hidden };
        Ok(Cnn {
            fc,
            projection,
            out: Linear::new(&ctx, "out", head_in, cfg.classes, true)?,
            dropout: Dropout::new(&ctx, cfg.dropout),
            blocks,
            ctx,
            in_channels: cfg.in_channels,
        })
    }
}

impl ModelPlugin for Cnn {
    fn forward(&mut self, batch: &Batch) -> Result<Tensor> {
        let train = batch.is_training();
        let input = batch.tensor("input")?;
        let mut x = retort_sdk::functional::as_images(input, self.in_channels, "cnn")?;
        for (i, b) in self.blocks.iter().enumerate() {
            x = b.conv.forward(&x)?;
            if let Some(bn) = &b.bn {
                x = bn.forward(&x, train)?;
            }
            x = x.relu()?.max_pool2d(2)?;
            x = self.ctx.tap(&format!("conv{}", i + 1), &x)?;
        }
        x = self.fc.forward(&x.flatten_from(1)?)?.relu()?;
        x = self.ctx.tap("fc", &x)?;
        x = self.dropout.forward(&x, train)?;
        if let Some(p) = &self.projection {
            x = self.ctx.tap("projection", &p.forward(&x)?)?;
        }
        let logits = self.out.forward(&x)?;
        self.ctx.tap("logits", &logits)
    }
}

export_plugins! {
    model: [Cnn],
}
