//! Building blocks of logit-level distillation losses, shared by the loss plugins.
//!
//! Conventions follow `LOGIT-LOSSES.md`: logits are upcast to f32, probabilities come from
//! log-softmax, rows are flattened to `[N, C]` (N = B·L for sequences), and a row mask selects
//! valid tokens for the token mean.
use serde::{Deserialize, Serialize};

use crate::{DType, Error, Result, Tensor};

/// Which value a teacher-target loss reports: KL(p‖q), or the cross-entropy form −Σ p log q
/// (KL plus the target's entropy, as DistiLLM, TAID and SinKD report). Same student gradient.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug, Default)]
#[serde(rename_all = "lowercase")]
pub enum ValueForm {
    #[default]
    Kl,
    Ce,
}

/// Per-row `KL(p‖q)` or `−Σ p log q` from log-probabilities, as `form` asks.
pub fn teacher_target_rows(log_p: &Tensor, log_q: &Tensor, form: ValueForm) -> Result<Tensor> {
    match form {
        ValueForm::Kl => kl_rows(log_p, log_q),
        ValueForm::Ce => cross_entropy_rows(&log_p.exp()?, log_q),
    }
}

/// [`teacher_target_rows`] from logits at temperature τ: the KL form goes through the host's
/// fused softmax-KL op (one pass, its own backward), the CE form through log-probabilities.
pub fn teacher_target_logit_rows(p_logits: &Tensor, q_logits: &Tensor, tau: f64, form: ValueForm) -> Result<Tensor> {
    match form {
        ValueForm::Kl => p_logits.kl_div_rows(q_logits, tau),
        ValueForm::Ce => teacher_target_rows(&log_probs(p_logits, tau)?, &log_probs(q_logits, tau)?, form),
    }
}

/// Flattens `[B, C]` or `[B, L, C]` logits to `[N, C]` f32.
pub fn rows(logits: &Tensor) -> Result<Tensor> {
    let x = if logits.rank() > 2 { logits.flatten(0, -2)? } else { logits.clone() };
    if x.dtype()? == DType::F32 {
        Ok(x)
    } else {
        x.to_dtype(DType::F32)
    }
}

/// `log_softmax(z / τ)` over the last dim.
pub fn log_probs(z: &Tensor, tau: f64) -> Result<Tensor> {
    if tau == 1.0 {
        z.log_softmax(-1)
    } else {
        z.affine(1.0 / tau, 0.0)?.log_softmax(-1)
    }
}

/// `Σ_c p_c·(log p_c − log q_c)` per row, with `0·log 0 = 0` (masked vocabulary entries).
pub fn kl_rows(log_p: &Tensor, log_q: &Tensor) -> Result<Tensor> {
    let p = log_p.exp()?;
    let term = p.mul(&log_p.sub(log_q)?)?;
    zero_where_p_zero(&p, &term)?.sum(-1)
}

/// `−Σ_c p_c·log q_c` per row (the CE form of a KL), with `0·log 0 = 0`.
pub fn cross_entropy_rows(p: &Tensor, log_q: &Tensor) -> Result<Tensor> {
    let term = p.mul(log_q)?;
    zero_where_p_zero(p, &term)?.sum(-1)?.neg()
}

fn zero_where_p_zero(p: &Tensor, term: &Tensor) -> Result<Tensor> {
    // 0·(−inf) is NaN; keep the term only where p > 0. The zeros come from p, which is finite
    // (the term may hold NaN exactly where p = 0).
    let zero = p.detach()?.affine(0.0, 0.0)?;
    p.gt(&zero)?.where_cond(term, &zero)
}

/// Hard-label cross-entropy `−log softmax(z)[y]` per row; labels < 0 (e.g. −100) give 0 and are
/// excluded by [`valid_mask`].
pub fn hard_ce_rows(log_q: &Tensor, labels: &Tensor) -> Result<Tensor> {
    let y = labels.flatten_all()?.to_dtype(DType::I64)?;
    let zero = y.affine(0.0, 0.0)?;
    let valid = y.ge(&zero)?;
    let safe = valid.where_cond(&y, &zero)?;
    let picked = log_q.gather(&safe.unsqueeze(1)?, 1)?.squeeze(1)?;
    valid.to_dtype(DType::F32)?.mul(&picked)?.neg()
}

/// 1.0 for rows whose label is ≥ 0, else 0.0 (`[N]`, f32).
pub fn valid_mask(labels: &Tensor) -> Result<Tensor> {
    let y = labels.flatten_all()?.to_dtype(DType::F32)?;
    y.ge(&y.affine(0.0, 0.0)?)?.to_dtype(DType::F32)
}

/// Reduces per-row values: a mean over valid rows when a mask is given (token mean:
/// `Σ m·ℓ / max(1, Σ m)`), else the plain mean (PyTorch's `batchmean` for classification).
pub fn reduce_rows(rows: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
    match mask {
        None => rows.mean_all(),
        Some(m) => {
            let m = m.flatten_all()?.to_dtype(DType::F32)?;
            let total = rows.mul(&m)?.sum_all()?;
            total.div(&m.sum_all()?.clamp(1.0, f64::INFINITY)?)
        }
    }
}

/// Rows (the last dim) scaled to unit L2 norm, `v / √(‖v‖² + 1e-12)`: embeddings for contrastive
/// losses and memory banks.
pub fn l2_normalize(v: &Tensor) -> Result<Tensor> {
    v.broadcast_div(&v.sqr()?.sum_keepdim(v.rank() - 1)?.affine(1.0, 1e-12)?.sqrt()?)
}

/// A model's `input` as images `[B, C, H, W]`: as given, or `[B, C·H·W]` rows of square images
/// of `channels` channels reshaped; `model` names the plugin in the error for any other rank.
pub fn as_images(input: Tensor, channels: usize, model: &str) -> Result<Tensor> {
    match input.rank() {
        4 => Ok(input),
        2 => {
            let (b, n) = (input.dim(0)?, input.dim(1)?);
            let side = ((n / channels.max(1)) as f64).sqrt() as usize;
            input.reshape(&[b, channels, side, side])
        }
        r => Err(Error::invalid(format!("{model}: input of rank {r}; expected [B, C, H, W] or [B, H·W]"))),
    }
}

/// DHO's inference rule: log(α·softmax(h_ce) + (1−α)·softmax(h_kd/β)), usable as logits.
pub fn dho_combine(h_ce: &Tensor, h_kd: &Tensor, alpha: f64, beta: f64) -> Result<Tensor> {
    let a = h_ce.log_softmax(-1)?.affine(1.0, alpha.max(1e-300).ln())?;
    let b = h_kd.affine(1.0 / beta, 0.0)?.log_softmax(-1)?.affine(1.0, (1.0 - alpha).max(1e-300).ln())?;
    Tensor::stack(&[&a, &b], 0)?.logsumexp(0)
}
