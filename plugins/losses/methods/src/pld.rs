//! PLD (Plackett–Luce distillation, 2025): a list-wise loss over the teacher-optimal ranking
//! (true label first, then classes by descending teacher confidence), each position weighted by the
//! teacher's confidence.
use std::collections::HashMap;

use retort_sdk::{functional as f, params, Batch, Ctx, DType, Error, LossPlugin, Plugin, Result, Tensor};

/// Parameters of `pld`.
#[params]
pub struct Config {
    /// temperature of the teacher's position weights [U] (assumed 1)
    #[param(default = 1.0)]
    pub tau_w: f64,
}

/// The plugin instance.
pub struct Pld {
    ctx: Ctx,
    cfg: Config,
    /// Upper-triangular ones `[C, C]` by class count: the reverse cumulative sum as a matmul.
    tri: HashMap<usize, Tensor>,
}

impl Plugin for Pld {
    const NAME: &'static str = "pld";
    const SUMMARY: &'static str = "Plackett–Luce distillation (2025): Σ_k w_k·[logsumexp_{j≥k} zˢ_{π*_j} − zˢ_{π*_k}] \
        with π* = label first, then the rest by descending teacher logit (stable), w = softmax(zᵗ/τ_w)[π*]. \
        Unverified [U]: τ_w (assumed 1), no top-k truncation. Reads teacher logits on the CPU to sort (meant \
        for classification). Inputs: student, teacher, labels.";
    type Config = Config;
    fn new(ctx: Ctx, cfg: Config) -> Result<Self> {
        if cfg.tau_w <= 0.0 {
            return Err(Error::config("pld: tau_w must be > 0"));
        }
        Ok(Pld { ctx, cfg, tri: HashMap::new() })
    }
}

impl LossPlugin for Pld {
    fn loss(&mut self, batch: &Batch) -> Result<Tensor> {
        let zs = f::rows(&batch.tensor("student")?)?;
        let zt = f::rows(&batch.tensor("teacher")?)?.detach()?;
        let labels = batch.tensor("labels")?.flatten_all()?.to_vec1::<i64>()?;
        let (n, c) = (zs.dim(0)?, zs.dim(1)?);
        let t_rows = zt.to_vec2::<f32>()?;
        let mut order = Vec::with_capacity(n * c);
        for (row, &y) in t_rows.iter().zip(&labels) {
            let y =
                usize::try_from(y).ok().filter(|&y| y < c).ok_or_else(|| Error::invalid("pld: label out of range"))?;
            let mut rest: Vec<usize> = (0..c).filter(|&k| k != y).collect();
            rest.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
            order.push(y as i64);
            order.extend(rest.into_iter().map(|k| k as i64));
        }
        let pi = self.ctx.tensor(&order, &[n, c])?;
        let z_pi = zs.gather(&pi, 1)?;
        let w = f::log_probs(&zt, self.cfg.tau_w)?.exp()?.gather(&pi, 1)?;
        if !self.tri.contains_key(&c) {
            let mut u = vec![0f32; c * c];
            for j in 0..c {
                for k in 0..=j {
                    u[j * c + k] = 1.0;
                }
            }
            self.tri.insert(c, self.ctx.tensor(&u, &[c, c])?);
        }
        let tri = &self.tri[&c];
        let m = z_pi.max_keepdim(1)?.detach()?;
        let lse = z_pi.sub(&m)?.exp()?.matmul(tri)?.log()?.add(&m)?;
        let rows = w.mul(&lse.sub(&z_pi)?)?.sum(1)?;
        rows.to_dtype(DType::F32)?.mean_all()
    }
}
