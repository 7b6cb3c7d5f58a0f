//! `mlp`: a fully connected network with configurable widths, activation and dropout; taps
//! `layer1`, `layer2`, … after each hidden layer, `projection` after the optional linear
//! projection and `logits` at the output.
use retort_sdk::{
    export_plugins,
    nn::{Dropout, Linear},
    params, Batch, Ctx, Error, ModelPlugin, Plugin, Result, Tensor,
};
use serde::{Deserialize, Serialize};

/// Hidden-layer nonlinearity.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    Relu,
    Gelu,
    Tanh,
    Sigmoid,
}

/// Parameters of `mlp`.
#[params]
pub struct Config {
    /// number of input features (the input is flattened from dim 1)
    #[param(default = 784)]
    pub input_dim: usize,
    /// widths of the hidden layers, e.g. [1200, 1200]
    #[param(default = vec![800, 800])]
    pub hidden: Vec<usize>,
    /// number of output logits
    #[param(default = 10)]
    pub classes: usize,
    /// hidden nonlinearity: relu, gelu, tanh or sigmoid
    #[param(default = Activation::Relu)]
    pub activation: Activation,
    /// dropout probability after each hidden layer while training
    pub dropout: f64,
    /// dropout probability on the input while training
    pub input_dropout: f64,
    /// a second output head for DHO: tapped as logits_kd while training; in evaluation the output is log(α·softmax(h_ce) + (1−α)·softmax(h_kd/β))
    pub dual_head: bool,
    /// α of the dual-head inference mix (tune on validation data)
    #[param(default = 0.5)]
    pub dho_alpha: f64,
    /// β, the KD head's inference temperature (tune on validation data)
    #[param(default = 1.0)]
    pub dho_beta: f64,
    /// logits per class (LELP): training outputs classes × subclasses logits; evaluation sums each class's subclass probabilities
    #[param(default = 1)]
    pub subclasses: usize,
    /// width of a linear projection (no activation) between the last hidden layer and the head, tapped as `projection` (0: none); KD³'s g, which lets the student share a teacher's head
    pub projection: usize,
}

/// The plugin instance.
pub struct Mlp {
    ctx: Ctx,
    layers: Vec<Linear>,
    projection: Option<Linear>,
    kd_head: Option<Linear>,
    dho: (f64, f64),
    subclasses: usize,
    activation: Activation,
    dropout: Dropout,
    input_dropout: Dropout,
}

impl Plugin for Mlp {
    const NAME: &'static str = "mlp";
    const SUMMARY: &'static str = "Multi-layer perceptron: input (flattened) → hidden layers with activation \
        and dropout → (optional linear projection) → class logits. Taps layer1…layerN, projection and logits.";
    type Config = Config;

    fn new(ctx: Ctx, cfg: Config) -> Result<Self> {
        for (key, p) in [("dropout", cfg.dropout), ("input_dropout", cfg.input_dropout)] {
            if !(0.0..1.0).contains(&p) {
                return Err(Error::config(format!("mlp: {key} must be in [0, 1), got {p}")));
            }
        }
        if cfg.input_dim == 0 || cfg.classes == 0 || cfg.hidden.contains(&0) {
            return Err(Error::config("mlp: input_dim, classes and hidden widths must be > 0"));
        }
        if cfg.subclasses == 0 {
            return Err(Error::config("mlp: subclasses must be ≥ 1"));
        }
        let mut dims = vec![cfg.input_dim];
        dims.extend(&cfg.hidden);
        let mut layers = dims
            .windows(2)
            .enumerate()
            .map(|(i, w)| Linear::new(&ctx, &format!("fc{}", i + 1), w[0], w[1], true))
            .collect::<Result<Vec<_>>>()?;
        let features = *dims.last().unwrap_or(&cfg.input_dim);
        let projection = match cfg.projection {
            0 => None,
            p => Some(Linear::new(&ctx, "proj", features, p, true)?),
        };
        // The head is fc{H+1} with or without a projection, so a student's head is named like
        // that of a teacher with as many hidden layers.
        let last_in = if cfg.projection > 0 { cfg.projection } else { features };
        let head = format!("fc{}", cfg.hidden.len() + 1);
        layers.push(Linear::new(&ctx, &head, last_in, cfg.classes * cfg.subclasses, true)?);
        let kd_head =
            if cfg.dual_head { Some(Linear::new(&ctx, "head_kd", last_in, cfg.classes, true)?) } else { None };
        Ok(Mlp {
            ctx,
            layers,
            projection,
            kd_head,
            dho: (cfg.dho_alpha, cfg.dho_beta),
            subclasses: cfg.subclasses,
            activation: cfg.activation,
            dropout: Dropout::new(&ctx, cfg.dropout),
            input_dropout: Dropout::new(&ctx, cfg.input_dropout),
        })
    }
}

impl Mlp {
    fn activate(&self, x: &Tensor) -> Result<Tensor> {
        match self.activation {
            Activation::Relu => x.relu(),
            Activation::Gelu => x.gelu(),
            Activation::Tanh => x.tanh(),
            Activation::Sigmoid => x.sigmoid(),
        }
    }
}

impl ModelPlugin for Mlp {
    fn forward(&mut self, batch: &Batch) -> Result<Tensor> {
        let train = batch.is_training();
        let input = batch.tensor("input")?;
        let mut x = if input.rank() > 2 { input.flatten_from(1)? } else { input };
        x = self.input_dropout.forward(&x, train)?;
        let last = self.layers.len() - 1;
        let mut kd = None;
        for (i, layer) in self.layers.iter().enumerate() {
            if i == last {
                if let Some(p) = &self.projection {
                    x = self.ctx.tap("projection", &p.forward(&x)?)?;
                }
                if let Some(h) = &self.kd_head {
                    kd = Some(self.ctx.tap("logits_kd", &h.forward(&x)?)?);
                }
            }
            x = layer.forward(&x)?;
            if i < last {
                x = self.activate(&x)?;
                x = self.ctx.tap(&format!("layer{}", i + 1), &x)?;
                x = self.dropout.forward(&x, train)?;
            }
        }
        self.ctx.tap("classifier", self.layers[last].weight())?;
        if let (Some(h_kd), false) = (kd, train) {
            x = retort_sdk::functional::dho_combine(&x, &h_kd, self.dho.0, self.dho.1)?;
        }
        if self.subclasses > 1 && !train {
            let (n, k) = (x.dim(0)?, x.dim(1)? / self.subclasses);
            // softmax over these is the summed subclass probability of each class.
            x = x.reshape(&[n, k, self.subclasses])?.logsumexp(-1)?;
        }
        self.ctx.tap("logits", &x)
    }
}

export_plugins! {
    model: [Mlp],
}
