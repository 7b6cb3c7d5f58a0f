//! `at`: attention transfer (Zagoruyko & Komodakis 2017; methods spec §5.2). Per stage j the
//! attention map `Q(F) = normalize_L2(vec(mean_c F^p))`; `code` mode (RepDistiller, mdistiller):
//! `ℓ_j = mean_{b,i}(Q_S − Q_T)²`; `paper` mode: `Σ_c` in the map and `ℓ_j = mean_b ‖Q_S − Q_T‖₂`.
//! `L = β·Σ_j ℓ_j`. A larger map is average-pooled to the smaller one's size first.
use retort_sdk::{params, Batch, Ctx, Error, LossPlugin, Plugin, Result, Tensor};
use serde::{Deserialize, Serialize};

use crate::taps::feature;

/// Which of the two published forms.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug, Default)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Mean over channels, squared differences averaged (the toolboxes' form).
    #[default]
    Code,
    /// Sum over channels, per-sample L2 distance (the paper's form, as torchdistill documents it).
    Paper,
}

/// Parameters of `at`.
#[params]
pub struct Config {
    /// student taps, one per stage (e.g. f1, f2, f3 of `resnet`)
    #[param(default = vec!["f1".to_string(), "f2".to_string(), "f3".to_string()])]
    pub student_taps: Vec<String>,
    /// teacher taps paired with them (empty: the same names)
    pub teacher_taps: Vec<String>,
    /// exponent p of the attention map
    #[param(default = 2.0, gt = 0.0)]
    pub p: f64,
    /// β, the feature weight (1000 in both toolboxes)
    #[param(default = 1000.0)]
    pub beta: f64,
    /// "code" (mean over channels, mean squared difference) or "paper" (sum, L2 distance)
    #[param(default = Mode::Code)]
    pub mode: Mode,
}

/// Attention transfer.
pub struct At {
    ctx: Ctx,
    cfg: Config,
}

impl Plugin for At {
    const NAME: &'static str = "at";
    const SUMMARY: &'static str = "Attention transfer (Zagoruyko & Komodakis 2017): L2-normalised spatial \
        attention maps mean_c F^p of paired student and teacher stages matched, β·Σ_j mean (Q_S − Q_T)² (code) or \
        β·Σ_j ‖Q_S − Q_T‖₂ (paper). Reads student_taps / teacher_taps ([B, C, H, W] maps).";
    type Config = Config;
    fn new(ctx: Ctx, cfg: Config) -> Result<Self> {
        if cfg.student_taps.is_empty() {
            return Err(Error::config("at: student_taps names no stage"));
        }
        if !cfg.teacher_taps.is_empty() && cfg.teacher_taps.len() != cfg.student_taps.len() {
            return Err(Error::config(format!(
                "at: {} student taps but {} teacher taps; pair them one to one",
                cfg.student_taps.len(),
                cfg.teacher_taps.len()
            )));
        }
        Ok(At { ctx, cfg })
    }
}

/// `normalize_L2(vec(reduce_c F^p))` per sample, `[B, H·W]`: the channel mean (`code`) or sum.
pub fn attention_map(f: &Tensor, p: f64, mode: Mode) -> Result<Tensor> {
    let a = f.abs()?.powf(p)?;
    let a = match mode {
        Mode::Code => a.mean(1)?,
        Mode::Paper => a.sum(1)?,
    };
    let a = a.flatten_from(1)?;
    let norm = a.sqr()?.sum_keepdim(1)?.sqrt()?.affine(1.0, 1e-12)?;
    a.broadcast_div(&norm)
}

/// Pools the larger of two square maps down to the other's size.
fn match_sizes(s: Tensor, t: Tensor) -> Result<(Tensor, Tensor)> {
    let (hs, ht) = (s.dim(2)?, t.dim(2)?);
    let pool = |x: Tensor, from: usize, to: usize| -> Result<Tensor> {
        if from % to != 0 {
            return Err(Error::invalid(format!("at: cannot pool a {from}×{from} map to {to}×{to} (not a multiple)")));
        }
        x.avg_pool2d(from / to)
    };
    Ok(match hs.cmp(&ht) {
        std::cmp::Ordering::Greater => (pool(s, hs, ht)?, t),
        std::cmp::Ordering::Less => {
            let t = pool(t, ht, hs)?;
            (s, t)
        }
        std::cmp::Ordering::Equal => (s, t),
    })
}

impl At {
    /// Per sample: `Σ_j ℓ_j(b)`, before β.
    fn rows(&self, batch: &Batch) -> Result<Tensor> {
        let mut total: Option<Tensor> = None;
        for (j, st) in self.cfg.student_taps.iter().enumerate() {
            let tt = self.cfg.teacher_taps.get(j).unwrap_or(st);
            let s = feature(&self.ctx, batch, "at", None, "student", st)?;
            let t = feature(&self.ctx, batch, "at", None, "teacher", tt)?;
            if s.rank() != 4 || t.rank() != 4 {
                return Err(Error::invalid(format!(
                    "at: stage {j} needs [B, C, H, W] maps, got {:?} ({st}) and {:?} ({tt})",
                    s.dims(),
                    t.dims()
                )));
            }
            let (s, t) = match_sizes(s, t)?;
            let d =
                attention_map(&s, self.cfg.p, self.cfg.mode)?.sub(&attention_map(&t, self.cfg.p, self.cfg.mode)?)?;
            let l = match self.cfg.mode {
                Mode::Code => d.sqr()?.mean(1)?,
                Mode::Paper => d.sqr()?.sum(1)?.affine(1.0, 1e-12)?.sqrt()?,
            };
            total = Some(match total {
                Some(x) => x.add(&l)?,
                None => l,
            });
        }
        total.ok_or_else(|| Error::config("at: no stage"))
    }
}

impl LossPlugin for At {
    fn loss(&mut self, batch: &Batch) -> Result<Tensor> {
        self.rows(batch)?.mean_all()?.affine(self.cfg.beta, 0.0)
    }
    fn loss_rows(&mut self, batch: &Batch) -> Result<Option<Tensor>> {
        Ok(Some(self.rows(batch)?.affine(self.cfg.beta, 0.0)?))
    }
}
