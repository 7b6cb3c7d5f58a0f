//! `ofa`: One-for-All KD (Hao et al. 2023; methods spec §5.6). Each listed student stage gets a
//! projector head into the logit space, made at the first step and trained with the student:
//! for a map at stage s of n, `n − s` SepConv blocks (depthwise 3×3 stride 2 → pointwise 1×1 → BN
//! → ReLU → depthwise 3×3 → pointwise 1×1 → BN → ReLU, channels doubling, the last block giving
//! `max(d_S, d_T)`), or a 1×1 conv to that width at the last stage, then global average pooling
//! and a linear map to the classes; for a vector feature (an MLP layer: no tokens to merge, a
//! documented departure from the ViT/MLP projector) linear → ReLU → linear. The adaptive target
//! enhancement loss `ℓ(z, z_T) = mean_b −Σ_c [(p_T,c + e_y,c)^ε − e_y,c]·log p_S,c(z)` is applied to
//! the student's logits (`w_kd`) and to every projector's (`w_ofa`); the task CE is its own term.
use retort_sdk::{
    ctx::init,
    functional as f,
    nn::{BatchNorm, Linear},
    params, Batch, Ctx, DType, Error, LossPlugin, Plugin, Result, Tensor,
};

use crate::taps::feature;

/// Parameters of `ofa`.
#[params]
pub struct Config {
    /// the student's stage taps that get a projector (e.g. f1, f2, f3 of `resnet`; layer1… of `mlp`)
    #[param(default = vec!["f1".to_string(), "f2".to_string(), "f3".to_string()])]
    pub stage_taps: Vec<String>,
    /// ε of the target enhancement, one value or one per stage (the last also for the logits); 1 is plain soft-target CE
    #[param(default = vec![1.0])]
    pub eps: Vec<f64>,
    /// w_kd, the weight of ℓ on the student's own logits
    #[param(default = 1.0)]
    pub kd_weight: f64,
    /// w_ofa, the weight of Σ_s ℓ on the projectors' logits
    #[param(default = 1.0)]
    pub ofa_weight: f64,
    /// τ of both distributions (1 in the code)
    #[param(default = 1.0, gt = 0.0)]
    pub temperature: f64,
    /// the projectors' width max(d_S, d_T) (0: from the student's and the teacher's `final_tap`)
    pub width: usize,
    /// the taps whose width is d (the pooled features), used when width = 0
    #[param(default = "pooled".to_string())]
    pub final_tap: String,
}

/// Depthwise 3×3 (stride `s`) then pointwise 1×1, with batch norm and ReLU.
struct SepConv {
    dw: Tensor,
    pw: Tensor,
    bn: BatchNorm,
    stride: usize,
}

impl SepConv {
    fn new(ctx: &Ctx, name: &str, cin: usize, cout: usize, stride: usize) -> Result<Self> {
        Ok(SepConv {
            dw: ctx.var(&format!("{name}.dw"), &[cin, 1, 3, 3], init::fan_in_uniform(9))?,
            pw: ctx.var(&format!("{name}.pw"), &[cout, cin, 1, 1], init::fan_in_uniform(cin))?,
            bn: BatchNorm::new(ctx, &format!("{name}.bn"), cout, 1e-5, 0.1)?,
            stride,
        })
    }
    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let c = x.dim(1)?;
        let y = x.conv2d(&self.dw, 1, self.stride, 1, c)?.conv2d(&self.pw, 0, 1, 1, 1)?;
        self.bn.forward(&y, train)?.relu()
    }
}

/// A stage's projector into the logit space.
enum Projector {
    Map { convs: Vec<SepConv>, last: Option<(Tensor, BatchNorm)>, head: Linear },
    Vector { hidden: Linear, head: Linear },
}

impl Projector {
    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        match self {
            Projector::Map { convs, last, head } => {
                let mut y = x.clone();
                for c in convs {
                    y = c.forward(&y, train)?;
                }
                if let Some((w, bn)) = last {
                    y = bn.forward(&y.conv2d(w, 0, 1, 1, 1)?, train)?.relu()?;
                }
                head.forward(&y.mean(3)?.mean(2)?)
            }
            Projector::Vector { hidden, head } => head.forward(&hidden.forward(&x.flatten_from(1)?)?.relu()?),
        }
    }
}

/// OFA-KD.
pub struct Ofa {
    ctx: Ctx,
    cfg: Config,
    projectors: Vec<Projector>,
}

impl Plugin for Ofa {
    const NAME: &'static str = "ofa";
    const SUMMARY: &'static str = "One-for-All KD (Hao et al. 2023): projector heads from student stages into the \
        logit space (SepConv blocks + GAP + linear for maps, an MLP for vectors; made at the first step, trained \
        with the student) and the adaptive target enhancement loss −Σ_c [(p_T + e_y)^ε − e_y]·log p_S on the \
        student's logits (w_kd) and every projector's (w_ofa). Inputs: student, teacher, labels; stage taps.";
    type Config = Config;
    fn new(ctx: Ctx, cfg: Config) -> Result<Self> {
        if cfg.eps.is_empty() || (cfg.eps.len() != 1 && cfg.eps.len() != cfg.stage_taps.len()) {
            return Err(Error::config(format!(
                "ofa: eps has {} values; give one, or one per stage ({})",
                cfg.eps.len(),
                cfg.stage_taps.len()
            )));
        }
        Ok(Ofa { ctx, cfg, projectors: Vec::new() })
    }
}

/// `mean_b −Σ_c [(p_T + e_y)^ε − e_y]·log softmax(z/τ)` per row (`[B]`); `e_y` is 0 for an
/// ignored label.
pub fn ofa_rows(z: &Tensor, p_t: &Tensor, onehot: &Tensor, eps: f64, tau: f64) -> Result<Tensor> {
    let w = if eps == 1.0 { p_t.clone() } else { p_t.add(onehot)?.powf(eps)?.sub(onehot)? };
    w.mul(&f::log_probs(z, tau)?)?.sum(1)?.neg()
}

impl Ofa {
    fn eps(&self, s: usize) -> f64 {
        *self.cfg.eps.get(s).unwrap_or(&self.cfg.eps[self.cfg.eps.len() - 1])
    }

    fn width(&self, batch: &Batch) -> Result<usize> {
        if self.cfg.width > 0 {
            return Ok(self.cfg.width);
        }
        let d = |role: &str| -> Result<usize> {
            feature(&self.ctx, batch, "ofa", None, role, &self.cfg.final_tap)?.flatten_from(1)?.dim(1)
        };
        Ok(d("student")?.max(d("teacher")?))
    }

    fn build(&mut self, feats: &[Tensor], classes: usize, width: usize) -> Result<()> {
        let n = feats.len();
        for (s, x) in feats.iter().enumerate() {
            let name = format!("proj{}", s + 1);
            let p = match x.dims().as_slice() {
                &[_, c, _, _] => {
                    let blocks = n - 1 - s;
                    let mut convs = Vec::new();
                    let mut cin = c;
                    for k in 0..blocks {
                        let cout = if k + 1 == blocks { width } else { cin * 2 };
                        convs.push(SepConv::new(&self.ctx, &format!("{name}.block{k}.a"), cin, cout, 2)?);
                        convs.push(SepConv::new(&self.ctx, &format!("{name}.block{k}.b"), cout, cout, 1)?);
                        cin = cout;
                    }
                    let last = if blocks == 0 {
                        let w = self.ctx.var(&format!("{name}.conv"), &[width, c, 1, 1], init::fan_in_uniform(c))?;
                        cin = width;
                        Some((w, BatchNorm::new(&self.ctx, &format!("{name}.bn"), width, 1e-5, 0.1)?))
                    } else {
                        None
                    };
                    Projector::Map {
                        convs,
                        last,
                        head: Linear::new(&self.ctx, &format!("{name}.head"), cin, classes, true)?,
                    }
                }
                &[_, d] => Projector::Vector {
                    hidden: Linear::new(&self.ctx, &format!("{name}.hidden"), d, width, true)?,
                    head: Linear::new(&self.ctx, &format!("{name}.head"), width, classes, true)?,
                },
                other => {
                    return Err(Error::invalid(format!(
                        "ofa: stage {} feature {other:?} is neither a map nor a vector",
                        s + 1
                    )))
                }
            };
            self.projectors.push(p);
        }
        Ok(())
    }

    fn rows(&mut self, batch: &Batch) -> Result<Tensor> {
        let zs = f::rows(&batch.tensor("student")?)?;
        let zt = f::rows(&batch.tensor("teacher")?)?.detach()?;
        let classes = zs.dim(1)?;
        let p_t = f::log_probs(&zt, self.cfg.temperature)?.exp()?;
        // e_y, a zero row for an ignored label (< 0) or when the batch has no labels.
        let b = zs.dim(0)?;
        let mut e = vec![0f32; b * classes];
        if let Some(y) = batch.get("labels") {
            for (i, &k) in y.flatten_all()?.to_dtype(DType::I64)?.to_vec1::<i64>()?.iter().enumerate() {
                if k >= 0 && (k as usize) < classes && i < b {
                    e[i * classes + k as usize] = 1.0;
                }
            }
        }
        let onehot = self.ctx.tensor(&e, &[b, classes])?;
        let feats: Vec<Tensor> = self
            .cfg
            .stage_taps
            .iter()
            .map(|t| feature(&self.ctx, batch, "ofa", None, "student", t))
            .collect::<Result<_>>()?;
        if self.projectors.is_empty() {
            let width = self.width(batch)?;
            self.build(&feats, classes, width)?;
        }
        let (tau, train) = (self.cfg.temperature, batch.is_training());
        let last = self.cfg.eps[self.cfg.eps.len() - 1];
        let mut rows = ofa_rows(&zs, &p_t, &onehot, last, tau)?.affine(self.cfg.kd_weight, 0.0)?;
        for (s, (p, x)) in self.projectors.iter().zip(&feats).enumerate() {
            let z = p.forward(x, train)?;
            let l = ofa_rows(&z, &p_t, &onehot, self.eps(s), tau)?;
            rows = rows.add(&l.affine(self.cfg.ofa_weight, 0.0)?)?;
        }
        Ok(rows)
    }
}

impl LossPlugin for Ofa {
    fn loss(&mut self, batch: &Batch) -> Result<Tensor> {
        self.rows(batch)?.mean_all()
    }
    fn loss_rows(&mut self, batch: &Batch) -> Result<Option<Tensor>> {
        Ok(Some(self.rows(batch)?))
    }
}
