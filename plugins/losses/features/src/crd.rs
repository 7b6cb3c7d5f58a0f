//! `crd`: contrastive representation distillation (Tian et al. 2020; methods spec §5.5). Both
//! networks' embeddings go through a trainable linear head to `feat_dim` and are L2-normalised;
//! two memory banks `M_S`, `M_T` (`[N, feat_dim]`, buffers saved with the run) hold one embedding
//! per dataset sample (the batch's `ids`). Each anchor is scored against its own sample and `k`
//! negatives in the other network's bank, `P = exp(⟨m, v⟩/τ)/Z` with `Z` fixed at the first step,
//! and the NCE loss with `P_n = 1/N` is summed over both sides. After scoring, the banks' rows at
//! the batch's ids move to `normalize(μ·old + (1−μ)·v)`.
use retort_sdk::{
    ctx::init, functional::l2_normalize, params, Batch, Ctx, DType, Error, LossPlugin, Plugin, Result, Tensor,
};
use serde::{Deserialize, Serialize};

use crate::taps::feature;

/// Where the negatives come from.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug, Default)]
#[serde(rename_all = "snake_case")]
pub enum Negatives {
    /// Samples of other classes (CRD's `exact` mode); a sample whose label has not been seen yet
    /// counts as another class's, so the first epoch is close to uniform.
    #[default]
    OtherClass,
    /// Any sample but the anchor itself.
    Uniform,
}

/// Parameters of `crd`.
#[params]
pub struct Config {
    /// the student's embedding tap
    #[param(default = "pooled".to_string())]
    pub student_tap: String,
    /// the teacher's embedding tap
    #[param(default = "pooled".to_string())]
    pub teacher_tap: String,
    /// width of the embedding heads and the memories (128)
    #[param(default = 128)]
    pub feat_dim: usize,
    /// N: samples in the memories; every batch id must be below it (60,000 for MNIST's training file)
    #[param(default = 60000)]
    pub samples: usize,
    /// negatives per anchor, K (16384 in the paper; memory and time grow with B·K)
    #[param(default = 16384)]
    pub negatives: usize,
    /// τ of the scores (0.07)
    #[param(default = 0.07, gt = 0.0)]
    pub temperature: f64,
    /// μ, the memories' momentum (0.5)
    #[param(default = 0.5, ge = 0.0, le = 1.0)]
    pub momentum: f64,
    /// "other_class" (exact) or "uniform"
    #[param(default = Negatives::OtherClass)]
    pub sampling: Negatives,
}

/// CRD.
pub struct Crd {
    ctx: Ctx,
    cfg: Config,
    heads: Option<[(Tensor, Tensor); 2]>,
    /// M_S, M_T, labels seen per sample (−1: none yet), and [Z_S, Z_T] (0: not set yet).
    banks: Option<(Tensor, Tensor, Tensor, Tensor)>,
}

impl Plugin for Crd {
    const NAME: &'static str = "crd";
    const SUMMARY: &'static str = "Contrastive representation distillation (Tian et al. 2020): student and teacher \
        embeddings through trainable linear heads, normalised; NCE against each sample's row and K negatives of \
        the other network's memory bank (buffers of N rows by dataset id, momentum updates, Z fixed at the first \
        step). Inputs: ids, labels, and student_feature / teacher_feature or the taps student_tap / teacher_tap.";
    type Config = Config;
    fn new(ctx: Ctx, cfg: Config) -> Result<Self> {
        if cfg.negatives == 0 || cfg.samples < 2 || cfg.feat_dim == 0 {
            return Err(Error::config("crd: negatives, feat_dim ≥ 1 and samples ≥ 2"));
        }
        Ok(Crd { ctx, cfg, heads: None, banks: None })
    }
}

impl Crd {
    fn embed(&self, side: usize, x: &Tensor) -> Result<Tensor> {
        let (w, b) = self.heads.as_ref().map(|h| &h[side]).ok_or_else(|| Error::invalid("crd: no head"))?;
        l2_normalize(&x.flatten_from(1)?.linear(w, Some(b))?)
    }

    fn make(&mut self, ds: usize, dt: usize) -> Result<()> {
        let d = self.cfg.feat_dim;
        let head = |name: &str, fan: usize| -> Result<(Tensor, Tensor)> {
            Ok((
                self.ctx.var(&format!("{name}.weight"), &[d, fan], init::fan_in_uniform(fan))?,
                self.ctx.var(&format!("{name}.bias"), &[d], init::fan_in_uniform(fan))?,
            ))
        };
        self.heads = Some([head("embed_s", ds)?, head("embed_t", dt)?]);
        let s = 1.0 / (d as f64 / 3.0).sqrt();
        let n = self.cfg.samples;
        self.banks = Some((
            self.ctx.buffer("memory_s", &[n, d], init::uniform(-s, s))?,
            self.ctx.buffer("memory_t", &[n, d], init::uniform(-s, s))?,
            self.ctx.buffer("labels", &[n], init::constant(-1.0))?,
            self.ctx.buffer("z", &[2], init::constant(0.0))?,
        ));
        Ok(())
    }

    /// `[B, K+1]` indices: each anchor's own id, then K negatives from the seeded stream.
    fn contrast(&self, ids: &[u32], labels: &[i64], known: &[f32]) -> Result<Vec<u32>> {
        let (n, k, b) = (self.cfg.samples, self.cfg.negatives, ids.len());
        let mut out = Vec::with_capacity(b * (k + 1));
        let draws = self.ctx.rand(0.0, 1.0, &[b, k])?.flatten_all()?.to_vec1::<f32>()?;
        for (i, &id) in ids.iter().enumerate() {
            out.push(id);
            let y = labels.get(i).copied().unwrap_or(-1);
            for j in 0..k {
                // A draw that hits the anchor or (exact mode) a known sample of its class moves
                // on deterministically to the next eligible index.
                let mut c = ((draws[i * k + j] as f64 * n as f64) as usize).min(n - 1);
                for _ in 0..n {
                    let same_class = self.cfg.sampling == Negatives::OtherClass && y >= 0 && known[c] as i64 == y;
                    if c as u32 != id && !same_class {
                        break;
                    }
                    c = (c + 1) % n;
                }
                out.push(c as u32);
            }
        }
        Ok(out)
    }

    /// Per anchor, the NCE terms of one side: `−log(P₀/(P₀ + mP_n + ε)) − Σ_j log(mP_n/(P_j + mP_n + ε))`.
    fn nce_rows(&self, scores: &Tensor) -> Result<Tensor> {
        let (m, pn, eps) = (self.cfg.negatives as f64, 1.0 / self.cfg.samples as f64, 1e-7);
        let k1 = scores.dim(1)?;
        let pos = scores.narrow(1, 0, 1)?.flatten_all()?;
        let neg = scores.narrow(1, 1, k1 - 1)?;
        let lp = pos.div(&pos.affine(1.0, m * pn + eps)?)?.log()?;
        let ln = neg.affine(1.0, m * pn + eps)?.recip()?.affine(m * pn, 0.0)?.log()?.sum(1)?;
        lp.add(&ln)?.neg()
    }

    fn rows(&mut self, batch: &Batch) -> Result<Tensor> {
        let fs = feature(&self.ctx, batch, "crd", Some("student_feature"), "student", &self.cfg.student_tap)?;
        let ft = feature(&self.ctx, batch, "crd", Some("teacher_feature"), "teacher", &self.cfg.teacher_tap)?;
        if self.heads.is_none() {
            self.make(fs.flatten_from(1)?.dim(1)?, ft.flatten_from(1)?.dim(1)?)?;
        }
        let (vs, vt) = (self.embed(0, &fs)?, self.embed(1, &ft)?);
        let Some((ms, mt, seen, z)) = self.banks.clone() else { return Err(Error::invalid("crd: no memory")) };
        let ids: Vec<u32> = batch.tensor("ids")?.flatten_all()?.to_dtype(DType::U32)?.to_vec1::<u32>()?;
        if let Some(&bad) = ids.iter().find(|&&i| i as usize >= self.cfg.samples) {
            return Err(Error::invalid(format!(
                "crd: sample id {bad} is outside the memory of {} rows; set samples to the dataset's size",
                self.cfg.samples
            )));
        }
        let labels: Vec<i64> = match batch.get("labels") {
            Some(l) => l.flatten_all()?.to_dtype(DType::I64)?.to_vec1::<i64>()?,
            None => vec![-1; ids.len()],
        };
        let known = seen.to_vec1::<f32>()?;
        let (b, k1, d) = (ids.len(), self.cfg.negatives + 1, self.cfg.feat_dim);
        let idx = self.ctx.tensor(&self.contrast(&ids, &labels, &known)?, &[b * k1])?;
        let tau = self.cfg.temperature;
        // exp(⟨m, v⟩/τ): the teacher's anchor against the student's memory and vice versa.
        let score = |mem: &Tensor, v: &Tensor| -> Result<Tensor> {
            let rows = mem.index_select(&idx, 0)?.reshape(&[b, k1, d])?;
            rows.matmul(&v.unsqueeze(2)?)?.reshape(&[b, k1])?.affine(1.0 / tau, 0.0)?.exp()
        };
        let (et, es) = (score(&ms, &vt)?, score(&mt, &vs)?);
        let mut zv = z.to_vec1::<f32>()?;
        if zv[0] == 0.0 {
            let n = self.cfg.samples as f64;
            zv = vec![
                (es.mean_all()?.to_scalar::<f32>()? as f64 * n) as f32,
                (et.mean_all()?.to_scalar::<f32>()? as f64 * n) as f32,
            ];
            self.ctx.assign(&z, &self.ctx.tensor(&zv, &[2])?)?;
        }
        let (ps, pt) = (es.affine(1.0 / zv[0] as f64, 0.0)?, et.affine(1.0 / zv[1] as f64, 0.0)?);
        let rows = self.nce_rows(&ps)?.add(&self.nce_rows(&pt)?)?;
        // The memories move towards this batch's embeddings (no graph), and learn its labels.
        let mu = self.cfg.momentum;
        let at = self.ctx.tensor(&ids, &[b])?;
        let rows_at =
            self.ctx.tensor(&ids.iter().flat_map(|&i| std::iter::repeat_n(i, d)).collect::<Vec<u32>>(), &[b, d])?;
        for (mem, v) in [(&ms, vs.detach()?), (&mt, vt.detach()?)] {
            let old = mem.index_select(&at, 0)?;
            let new = l2_normalize(&old.affine(mu, 0.0)?.add(&v.affine(1.0 - mu, 0.0)?)?)?;
            self.ctx.assign(mem, &mem.scatter_add(&rows_at, &new.sub(&old)?, 0)?)?;
        }
        if labels.iter().any(|&y| y >= 0) {
            let mut seen_now = known;
            for (&i, &y) in ids.iter().zip(&labels) {
                if y >= 0 {
                    seen_now[i as usize] = y as f32;
                }
            }
            self.ctx.assign(&seen, &self.ctx.tensor(&seen_now, &[self.cfg.samples])?)?;
        }
        Ok(rows)
    }
}

impl LossPlugin for Crd {
    fn loss(&mut self, batch: &Batch) -> Result<Tensor> {
        self.rows(batch)?.mean_all()
    }
    fn loss_rows(&mut self, batch: &Batch) -> Result<Option<Tensor>> {
        Ok(Some(self.rows(batch)?))
    }
}
