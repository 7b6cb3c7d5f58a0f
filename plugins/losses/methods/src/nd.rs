//! ND loss (Wang et al., ICCV 2023): align each student embedding with the normalised teacher class
//! centre of its label, normalised by the larger of the two embeddings' norms.
use std::collections::BTreeMap;

use retort_sdk::{functional as f, nn::Linear, params, Batch, Ctx, DType, Error, LossPlugin, Plugin, Result, Tensor};

use crate::state::{decode, encode};

/// Parameters of `nd`.
#[params]
pub struct Config {
    /// λ_nd (0.5–2 CIFAR, 1–4 ImageNet)
    #[param(default = 1.0)]
    pub lambda: f64,
    /// number of classes
    #[param(default = 10)]
    pub classes: usize,
    /// student tap with the penultimate embedding (when the batch has no student_features)
    #[param(default = "layer2")]
    pub student_tap: String,
    /// teacher tap with the penultimate embedding
    #[param(default = "layer2")]
    pub teacher_tap: String,
    /// student embedding width (with teacher_dim: adds a projection head when they differ)
    pub student_dim: usize,
    /// teacher embedding width
    pub teacher_dim: usize,
    /// epochs of teacher embeddings averaged into the class centres before the loss starts
    #[param(default = 1)]
    pub centre_epochs: u64,
    /// fixed class centres, e.g. { "0" = [..], "2" = [..] } (skips the accumulation)
    #[param(default = BTreeMap::new())]
    pub centres: BTreeMap<String, Vec<f64>>,
}

/// The plugin instance.
pub struct Nd {
    ctx: Ctx,
    cfg: Config,
    proj: Option<Linear>,
    /// Per-class sums of teacher embeddings and counts; frozen once `ready`.
    sums: Vec<f64>,
    counts: Vec<f64>,
    dim: usize,
    ready: bool,
}

impl Plugin for Nd {
    const NAME: &'static str = "nd";
    const SUMMARY: &'static str = "ND loss (Wang et al., ICCV 2023): λ·mean(1 − ⟨fˢᵢ, e_yᵢ⟩ / max(‖fˢᵢ‖, ‖fᵗᵢ‖)), \
        e_c the normalised mean teacher embedding of class c: given in config, or accumulated from the teacher \
        during the first centre_epochs epochs (loss 0 meanwhile) and kept as plugin state. A projection head \
        maps student to teacher width when they differ. Inputs: student_features/teacher_features, or the \
        models' taps; labels.";
    type Config = Config;
    fn new(ctx: Ctx, cfg: Config) -> Result<Self> {
        let proj = if cfg.student_dim > 0 && cfg.teacher_dim > 0 && cfg.student_dim != cfg.teacher_dim {
            Some(Linear::new(&ctx, "proj", cfg.student_dim, cfg.teacher_dim, false)?)
        } else {
            None
        };
        let mut nd = Nd { ctx, proj, sums: Vec::new(), counts: vec![0.0; cfg.classes], dim: 0, ready: false, cfg };
        if !nd.cfg.centres.is_empty() {
            let dim = nd.cfg.centres.values().next().map(Vec::len).unwrap_or(0);
            nd.dim = dim;
            nd.sums = vec![0.0; nd.cfg.classes * dim];
            for (k, v) in &nd.cfg.centres {
                let c: usize =
                    k.parse().map_err(|_| Error::config(format!("nd: centre key `{k}` is not a class index")))?;
                if c >= nd.cfg.classes || v.len() != dim {
                    return Err(Error::config(format!("nd: centre `{k}` out of range or of another width")));
                }
                nd.sums[c * dim..(c + 1) * dim].copy_from_slice(v);
                nd.counts[c] = 1.0;
            }
            nd.ready = true;
        }
        Ok(nd)
    }
    fn state(&self) -> Result<Vec<u8>> {
        Ok(encode(
            &[vec![self.dim as f64, f64::from(u8::from(self.ready))], self.counts.clone(), self.sums.clone()].concat(),
        ))
    }
    fn load_state(&mut self, state: &[u8]) -> Result<()> {
        if state.len() < 16 {
            return Ok(());
        }
        let raw = f64::from_le_bytes(state[..8].try_into().unwrap_or([0; 8]));
        let c = self.cfg.classes;
        // The first word sizes the rest: it must be a whole number whose table fits the blob.
        let words = (raw >= 0.0 && raw.fract() == 0.0 && raw <= (state.len() / 8) as f64)
            .then_some(raw as usize)
            .and_then(|dim| c.checked_mul(dim)?.checked_add(2 + c).map(|n| (dim, n)));
        let Some((dim, words)) = words else {
            return Err(Error::state(format!(
                "{}: state's feature dimension {raw} does not fit its length",
                Self::NAME
            )));
        };
        if let Some(w) = decode(state, words, Self::NAME)? {
            self.dim = dim;
            self.ready = w[1] != 0.0;
            self.counts = w[2..2 + c].to_vec();
            self.sums = w[2 + c..].to_vec();
        }
        Ok(())
    }
}

impl Nd {
    fn features(&self, batch: &Batch, role: &str, tap: &str) -> Result<Tensor> {
        match batch.get(&format!("{role}_features")) {
            Some(t) => f::rows(&t),
            None => self
                .ctx
                .feature(role, tap)?
                .ok_or_else(|| Error::invalid(format!("nd: no {role}_features in the batch and no {role} tap `{tap}`")))
                .and_then(|t| f::rows(&t.flatten_from(1)?)),
        }
    }
}

impl LossPlugin for Nd {
    fn loss(&mut self, batch: &Batch) -> Result<Tensor> {
        let mut fs = self.features(batch, "student", &self.cfg.student_tap)?;
        let ft = self.features(batch, "teacher", &self.cfg.teacher_tap)?.detach()?;
        if let Some(p) = &self.proj {
            fs = p.forward(&fs)?;
        }
        let y = batch.tensor("labels")?.flatten_all()?.to_dtype(DType::I64)?;
        let c = self.cfg.classes;
        if !self.ready {
            let rows = ft.to_vec2::<f32>()?;
            self.dim = rows.first().map(Vec::len).unwrap_or(0);
            if self.sums.len() != c * self.dim {
                self.sums = vec![0.0; c * self.dim];
            }
            for (r, &k) in rows.iter().zip(&y.to_vec1::<i64>()?) {
                let k = k as usize;
                self.counts[k] += 1.0;
                for (s, &v) in self.sums[k * self.dim..(k + 1) * self.dim].iter_mut().zip(r) {
                    *s += v as f64;
                }
            }
            if batch.epoch() > self.cfg.centre_epochs {
                self.ready = true;
            } else {
                return fs.sum_all()?.affine(0.0, 0.0);
            }
        }
        let d = self.dim;
        let mut unit = vec![0f32; c * d];
        for k in 0..c {
            let v = &self.sums[k * d..(k + 1) * d];
            let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-12);
            for (u, x) in unit[k * d..(k + 1) * d].iter_mut().zip(v) {
                *u = (x / norm) as f32;
            }
        }
        let e = self.ctx.tensor(&unit, &[c, d])?.index_select(&y, 0)?;
        let dot = fs.mul(&e)?.sum(-1)?;
        let ns = fs.sqr()?.sum(-1)?.sqrt()?;
        let nt = ft.sqr()?.sum(-1)?.sqrt()?;
        let rows = dot.div(&ns.maximum(&nt)?.clamp(1e-12, f64::INFINITY)?)?.affine(-1.0, 1.0)?;
        rows.mean_all()?.affine(self.cfg.lambda, 0.0)
    }
}
