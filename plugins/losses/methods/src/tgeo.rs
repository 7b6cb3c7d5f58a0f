//! TGeo-KD (ICLR 2024): a per-sample fusion ratio αᵢ between KD and CE from a small network fed
//! with trilateral relations among student S, teacher T and ground truth G (and the teacher's class
//! mean T̄). No public code: the input vector, the network and the outer objective are knobs.
use retort_sdk::{functional as f, nn::Linear, params, Batch, Ctx, DType, Error, LossPlugin, Plugin, Result, Tensor};
use serde::{Deserialize, Serialize};

use crate::state::{decode, encode};

/// Where αᵢ comes from.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug, Default)]
#[serde(rename_all = "snake_case")]
pub enum AlphaSource {
    /// [U] A two-layer network on [S−T, T−G, S−G, S−T̄, T−T̄], trained jointly with the student
    /// (the paper's bilevel outer loop on validation data is not reproduced).
    #[default]
    Network,
    /// Batch `alpha` ([N]) as given (wiring checks, external schedules).
    Given,
}

/// Parameters of `tgeo-kd`.
#[params]
pub struct Config {
    /// τ of the KD term
    #[param(default = 4.0)]
    pub temperature: f64,
    /// scale the KD term by τ² [U]
    #[param(default = true)]
    pub tau_squared: bool,
    /// "network" [U] or "given" (batch alpha)
    #[param(default = AlphaSource::Network)]
    pub alpha_source: AlphaSource,
    /// number of classes (sizes the network input 5·classes)
    #[param(default = 10)]
    pub classes: usize,
    /// hidden width of the α network [U]
    #[param(default = 32)]
    pub hidden: usize,
}

/// The plugin instance.
pub struct TgeoKd {
    ctx: Ctx,
    cfg: Config,
    net: Option<(Linear, Linear)>,
    /// Per-class running sums of teacher probabilities and counts (for T̄).
    sums: Vec<f64>,
    counts: Vec<f64>,
}

impl Plugin for TgeoKd {
    const NAME: &'static str = "tgeo-kd";
    const SUMMARY: &'static str = "TGeo-KD (ICLR 2024): Lᵢ = αᵢ·KDᵢ + (1−αᵢ)·CEᵢ, KD = τ²·KL at τ, αᵢ from a small \
        network on [S−T, T−G, S−G, S−T̄, T−T̄] (T̄: the teacher's running mean prediction for the sample's class, \
        kept as state). Unverified [U]: input vector, architecture, bilevel objective (not reproduced: the network \
        trains on this loss), τ². Inputs: student, teacher, labels (alpha when alpha_source = given).";
    type Config = Config;
    fn new(ctx: Ctx, cfg: Config) -> Result<Self> {
        if cfg.classes == 0 || cfg.temperature <= 0.0 {
            return Err(Error::config("tgeo-kd: classes and temperature must be > 0"));
        }
        let net = match cfg.alpha_source {
            AlphaSource::Network => Some((
                Linear::new(&ctx, "alpha.fc1", 5 * cfg.classes, cfg.hidden, true)?,
                Linear::new(&ctx, "alpha.fc2", cfg.hidden, 1, true)?,
            )),
            AlphaSource::Given => None,
        };
        let c = cfg.classes;
        Ok(TgeoKd { ctx, cfg, net, sums: vec![0.0; c * c], counts: vec![0.0; c] })
    }
    fn state(&self) -> Result<Vec<u8>> {
        Ok(encode(&[self.counts.clone(), self.sums.clone()].concat()))
    }
    fn load_state(&mut self, state: &[u8]) -> Result<()> {
        let c = self.cfg.classes;
        if let Some(w) = decode(state, c + c * c, Self::NAME)? {
            self.counts = w[..c].to_vec();
            self.sums = w[c..].to_vec();
        }
        Ok(())
    }
}

impl TgeoKd {
    /// T̄ for each row's class, updating the running means with this batch first.
    fn class_means(&mut self, t: &Tensor, y: &[i64]) -> Result<Tensor> {
        let c = self.cfg.classes;
        let rows = t.to_vec2::<f32>()?;
        for (r, &k) in rows.iter().zip(y) {
            let k = k as usize;
            self.counts[k] += 1.0;
            for (s, &v) in self.sums[k * c..(k + 1) * c].iter_mut().zip(r) {
                *s += v as f64;
            }
        }
        let mut out = Vec::with_capacity(y.len() * c);
        for &k in y {
            let k = k as usize;
            out.extend(self.sums[k * c..(k + 1) * c].iter().map(|s| (s / self.counts[k].max(1.0)) as f32));
        }
        self.ctx.tensor(&out, &[y.len(), c])
    }
}

impl LossPlugin for TgeoKd {
    fn loss(&mut self, batch: &Batch) -> Result<Tensor> {
        let tau = self.cfg.temperature;
        let zs = f::rows(&batch.tensor("student")?)?;
        let zt = f::rows(&batch.tensor("teacher")?)?.detach()?;
        let labels = batch.tensor("labels")?;
        let scale = if self.cfg.tau_squared { tau * tau } else { 1.0 };
        let kd = f::kl_rows(&f::log_probs(&zt, tau)?, &f::log_probs(&zs, tau)?)?.affine(scale, 0.0)?;
        let ce = f::hard_ce_rows(&zs.log_softmax(-1)?, &labels)?;
        let alpha = match self.net.as_ref().map(|_| ()) {
            None => batch.tensor("alpha")?.flatten_all()?.to_dtype(DType::F32)?,
            Some(()) => {
                let c = zs.dim(-1)?;
                if c != self.cfg.classes {
                    return Err(Error::invalid(format!(
                        "tgeo-kd: configured for {} classes, got {c}",
                        self.cfg.classes
                    )));
                }
                let y = labels.flatten_all()?.to_dtype(DType::I64)?;
                let s = zs.softmax(-1)?.detach()?;
                let t = zt.softmax(-1)?;
                let g = y.one_hot(c)?;
                let tbar = self.class_means(&t, &y.to_vec1::<i64>()?)?;
                let x = Tensor::cat(&[&s.sub(&t)?, &t.sub(&g)?, &s.sub(&g)?, &s.sub(&tbar)?, &t.sub(&tbar)?], 1)?;
                let (fc1, fc2) = self.net.as_ref().ok_or_else(|| Error::invalid("tgeo-kd: no network"))?;
                fc2.forward(&fc1.forward(&x)?.relu()?)?.sigmoid()?.flatten_all()?
            }
        };
        self.ctx.metric("alpha_mean", alpha.mean_all()?.to_scalar::<f64>()?);
        let rows = (kd.mul(&alpha)? + ce.mul(&alpha.affine(-1.0, 1.0)?)?)?;
        f::reduce_rows(&rows, None)
    }
}
