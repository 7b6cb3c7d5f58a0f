//! LELP (Learning Embedding Linear Projections, 2024): subclass distillation from the part of the
//! teacher's final embedding its classifier ignores. Confirmed: per class, project the teacher's
//! embeddings onto the null space of its classifier W, find informative directions (PCA), split each
//! class into pseudo-subclasses the student learns. Everything else is a knob, marked [U].
use retort_sdk::{functional as f, params, Batch, Ctx, DType, Error, LossPlugin, Plugin, Result, Tensor};

use crate::state::{decode, encode};

/// Parameters of `lelp`.
#[params]
pub struct Config {
    /// number of classes C (the student outputs 2·C subclass logits)
    #[param(default = 10)]
    pub classes: usize,
    /// teacher tap with the final embedding (when the batch has no teacher_features)
    #[param(default = "layer2")]
    pub teacher_tap: String,
    /// teacher tap with its classifier weight [C, D] (mlp taps `classifier`)
    #[param(default = "classifier")]
    pub classifier_tap: String,
    /// learning rate of the streaming PCA [U]
    #[param(default = 0.01)]
    pub oja_rate: f64,
    /// weight of the pseudo-subclass CE [U]
    #[param(default = 1.0)]
    pub subclass_weight: f64,
    /// weight of KD on class probabilities recovered by summing subclasses [U]
    #[param(default = 1.0)]
    pub kd_weight: f64,
    /// τ of that KD term [U]
    #[param(default = 1.0)]
    pub temperature: f64,
}

/// The plugin instance.
pub struct Lelp {
    ctx: Ctx,
    cfg: Config,
    /// Null-space projector I − Wᵀ(WWᵀ)⁻¹W, `[D, D]`, from the (frozen) teacher classifier.
    projector: Option<Tensor>,
    /// Per class: running mean of projected embeddings and the top principal direction (Oja).
    dim: usize,
    mean: Vec<f64>,
    count: Vec<f64>,
    dir: Vec<f64>,
}

/// The projector onto the null space of `w` (`[C, D]`, full row rank), row-major `[D, D]`.
pub fn null_space_projector(w: &[f64], c: usize, d: usize) -> std::result::Result<Vec<f64>, String> {
    // G = W Wᵀ (C×C), inverted by Gauss–Jordan.
    let mut g = vec![0.0; c * c];
    for i in 0..c {
        for j in 0..c {
            g[i * c + j] = (0..d).map(|k| w[i * d + k] * w[j * d + k]).sum();
        }
    }
    let mut inv = vec![0.0; c * c];
    for i in 0..c {
        inv[i * c + i] = 1.0;
    }
    for col in 0..c {
        let piv = (col..c).max_by(|&a, &b| g[a * c + col].abs().total_cmp(&g[b * c + col].abs())).unwrap_or(col);
        if g[piv * c + col].abs() < 1e-12 {
            return Err("the classifier's rows are linearly dependent".into());
        }
        for k in 0..c {
            g.swap(col * c + k, piv * c + k);
            inv.swap(col * c + k, piv * c + k);
        }
        let p = g[col * c + col];
        for k in 0..c {
            g[col * c + k] /= p;
            inv[col * c + k] /= p;
        }
        for r in 0..c {
            if r != col {
                let fct = g[r * c + col];
                for k in 0..c {
                    g[r * c + k] -= fct * g[col * c + k];
                    inv[r * c + k] -= fct * inv[col * c + k];
                }
            }
        }
    }
    // P = I − Wᵀ G⁻¹ W.
    let mut gw = vec![0.0; c * d];
    for i in 0..c {
        for k in 0..d {
            gw[i * d + k] = (0..c).map(|j| inv[i * c + j] * w[j * d + k]).sum();
        }
    }
    let mut p = vec![0.0; d * d];
    for a in 0..d {
        for b in 0..d {
            let s: f64 = (0..c).map(|i| w[i * d + a] * gw[i * d + b]).sum();
            p[a * d + b] = f64::from(u8::from(a == b)) - s;
        }
    }
    Ok(p)
}

impl Plugin for Lelp {
    const NAME: &'static str = "lelp";
    const SUMMARY: &'static str =
        "LELP (2024) subclass distillation: teacher embeddings projected onto the null space \
        of the teacher classifier W (confirmed), per-class top principal direction by Oja's streaming rule [U], \
        two pseudo-subclasses per class by the sign along it [U]; the student (classes × 2 logits, e.g. mlp \
        subclasses = 2) learns subclass CE [U] plus KD of class probabilities = summed subclass probabilities [U]. \
        Inputs: student, teacher, labels; teacher_features and teacher_classifier, or the teacher's taps.";
    type Config = Config;
    fn new(ctx: Ctx, cfg: Config) -> Result<Self> {
        if cfg.classes == 0 {
            return Err(Error::config("lelp: classes must be > 0"));
        }
        Ok(Lelp { ctx, cfg, projector: None, dim: 0, mean: Vec::new(), count: Vec::new(), dir: Vec::new() })
    }
    fn state(&self) -> Result<Vec<u8>> {
        Ok(encode(&[vec![self.dim as f64], self.count.clone(), self.mean.clone(), self.dir.clone()].concat()))
    }
    fn load_state(&mut self, state: &[u8]) -> Result<()> {
        if state.len() < 8 {
            return Ok(());
        }
        let d = f64::from_le_bytes(state[..8].try_into().unwrap_or([0; 8])) as usize;
        let c = self.cfg.classes;
        if let Some(w) = decode(state, 1 + c + 2 * c * d, Self::NAME)? {
            self.dim = d;
            self.count = w[1..1 + c].to_vec();
            self.mean = w[1 + c..1 + c + c * d].to_vec();
            self.dir = w[1 + c + c * d..].to_vec();
        }
        Ok(())
    }
}

impl Lelp {
    fn input(&self, batch: &Batch, key: &str, tap: &str) -> Result<Tensor> {
        match batch.get(key) {
            Some(t) => t.to_dtype(DType::F32),
            None => self
                .ctx
                .feature("teacher", tap)?
                .ok_or_else(|| Error::invalid(format!("lelp: no {key} in the batch and no teacher tap `{tap}`"))),
        }
    }

    /// Pseudo-subclass (0 or 1) of each row, updating the per-class mean and direction.
    fn subclasses(&mut self, g: &[Vec<f32>], y: &[i64]) -> Vec<i64> {
        let (c, d) = (self.cfg.classes, self.dim);
        if self.mean.len() != c * d {
            self.mean = vec![0.0; c * d];
            self.count = vec![0.0; c];
            // A fixed, deterministic start for Oja's rule.
            self.dir = (0..c * d).map(|i| if i % d == 0 { 1.0 } else { 0.0 }).collect();
        }
        let mut out = Vec::with_capacity(y.len());
        for (row, &k) in g.iter().zip(y) {
            let k = (k.max(0) as usize).min(c - 1);
            self.count[k] += 1.0;
            let n = self.count[k];
            let (m, v) = (&mut self.mean[k * d..(k + 1) * d], &mut self.dir[k * d..(k + 1) * d]);
            for (mi, &x) in m.iter_mut().zip(row) {
                *mi += (x as f64 - *mi) / n;
            }
            let centred: Vec<f64> = row.iter().zip(m.iter()).map(|(&x, &mi)| x as f64 - mi).collect();
            let proj: f64 = centred.iter().zip(v.iter()).map(|(a, b)| a * b).sum();
            for (vi, ci) in v.iter_mut().zip(&centred) {
                *vi += self.cfg.oja_rate * proj * ci;
            }
            let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-12);
            v.iter_mut().for_each(|x| *x /= norm);
            out.push(2 * k as i64 + i64::from(proj >= 0.0));
        }
        out
    }
}

impl LossPlugin for Lelp {
    fn loss(&mut self, batch: &Batch) -> Result<Tensor> {
        let c = self.cfg.classes;
        let zs = f::rows(&batch.tensor("student")?)?;
        if zs.dim(-1)? != 2 * c {
            return Err(Error::invalid(format!("lelp: the student must output 2·classes = {} logits", 2 * c)));
        }
        let ft = self.input(batch, "teacher_features", &self.cfg.teacher_tap)?.detach()?;
        let ft = ft.flatten_from(1)?;
        if self.projector.is_none() {
            let w = self.input(batch, "teacher_classifier", &self.cfg.classifier_tap)?;
            let (wc, d) = (w.dim(0)?, w.dim(1)?);
            let p =
                null_space_projector(&w.to_vec1::<f64>()?, wc, d).map_err(|e| Error::invalid(format!("lelp: {e}")))?;
            let p32: Vec<f32> = p.iter().map(|&v| v as f32).collect();
            self.projector = Some(self.ctx.tensor(&p32, &[d, d])?);
            self.dim = d;
        }
        let g = ft.matmul(self.projector.as_ref().ok_or_else(|| Error::invalid("lelp: no projector"))?)?;
        let labels = batch.tensor("labels")?.flatten_all()?.to_dtype(DType::I64)?;
        let sub = self.subclasses(&g.to_vec2::<f32>()?, &labels.to_vec1::<i64>()?);
        let sub = self.ctx.tensor(&sub, &[sub.len()])?;
        let log_q = zs.log_softmax(-1)?;
        let ce = f::reduce_rows(&f::hard_ce_rows(&log_q, &sub)?, None)?;
        let n = zs.dim(0)?;
        let class_logits = zs.reshape(&[n, c, 2])?.logsumexp(-1)?;
        let zt = f::rows(&batch.tensor("teacher")?)?.detach()?;
        let tau = self.cfg.temperature;
        let kd = f::kl_rows(&f::log_probs(&zt, tau)?, &f::log_probs(&class_logits, tau)?)?.mean_all()?;
        ce.affine(self.cfg.subclass_weight, 0.0)? + kd.affine(self.cfg.kd_weight, 0.0)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_space_projection_reference() {
        let w = [1.0, 1.0, 0.0, 0.0, 1.0, 1.0];
        let p = null_space_projector(&w, 2, 3).unwrap();
        let e = [1.0, 2.0, 3.0];
        let got: Vec<f64> = (0..3).map(|a| (0..3).map(|b| p[a * 3 + b] * e[b]).sum()).collect();
        for (g, want) in got.iter().zip([0.66666667, -0.66666667, 0.66666667]) {
            assert!((g - want).abs() < 1e-8, "{got:?}");
        }
    }
}
