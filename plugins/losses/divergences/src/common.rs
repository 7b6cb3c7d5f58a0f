//! What every divergence shares: temperature handling, log-probabilities, reduction.
use retort_sdk::{functional as f, Batch, Result, Tensor};

/// The student's and the teacher's log-probabilities at temperature τ, `[N, C]`, and the mask.
pub struct Pair {
    pub log_ps: Tensor,
    pub log_pt: Tensor,
    pub mask: Option<Tensor>,
}

/// Reads `student`, `teacher` (stop-gradient) and `mask` from the batch.
pub fn pair(batch: &Batch, tau: f64) -> Result<Pair> {
    let zs = f::rows(&batch.tensor("student")?)?;
    let zt = f::rows(&batch.tensor("teacher")?)?.detach()?;
    Ok(Pair { log_ps: f::log_probs(&zs, tau)?, log_pt: f::log_probs(&zt, tau)?, mask: batch.get("mask") })
}

/// log(w·e^a + (1−w)·e^b), element-wise, computed in log space.
pub fn log_mix(w: f64, log_a: &Tensor, log_b: &Tensor) -> Result<Tensor> {
    if w <= 0.0 {
        return Ok(log_b.clone());
    }
    if w >= 1.0 {
        return Ok(log_a.clone());
    }
    let a = log_a.affine(1.0, w.ln())?;
    let b = log_b.affine(1.0, (-w).ln_1p())?;
    // Two-term logsumexp: m + log(e^(a−m) + e^(b−m)), m = max(a, b) (no stacking copy).
    let m = a.maximum(&b)?.detach()?;
    (a.sub(&m)?.exp()? + b.sub(&m)?.exp()?)?.log()?.add(&m)
}

/// Reduces per-row values and applies τ² when asked.
pub fn finish(rows: &Tensor, p: &Pair, tau: f64, tau_squared: bool) -> Result<Tensor> {
    let v = f::reduce_rows(rows, p.mask.as_ref())?;
    if tau_squared {
        v.affine(tau * tau, 0.0)
    } else {
        Ok(v)
    }
}

/// Per-sample values (times τ² when asked) for `[B, C]` logits without a mask, from the rows the
/// divergence computes; `None` for sequences, whose reduction is a token mean.
pub fn per_sample(
    batch: &Batch,
    tau: f64,
    tau_squared: bool,
    rows: impl FnOnce(&Pair) -> Result<Tensor>,
) -> Result<Option<Tensor>> {
    if batch.tensor("student")?.rank() != 2 || batch.get("mask").is_some() {
        return Ok(None);
    }
    let r = rows(&pair(batch, tau)?)?;
    Ok(Some(if tau_squared { r.affine(tau * tau, 0.0)? } else { r }))
}

/// Checks a temperature.
pub fn check_tau(name: &str, tau: f64) -> Result<()> {
    if tau > 0.0 && tau.is_finite() {
        Ok(())
    } else {
        Err(retort_sdk::Error::config(format!("{name}: temperature must be > 0, got {tau}")))
    }
}

/// Checks a mixing weight in [0, 1].
pub fn check_unit(name: &str, key: &str, v: f64) -> Result<()> {
    if (0.0..=1.0).contains(&v) {
        Ok(())
    } else {
        Err(retort_sdk::Error::config(format!("{name}: {key} must be in [0, 1], got {v}")))
    }
}
