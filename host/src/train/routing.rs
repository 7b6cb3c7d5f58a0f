//! How per-teacher loss values are combined with a route: `mean_b Σ_t route[b, t]·rows_t[b]`,
//! uniform weights without a router. Used by terms with `over_teachers`.
use candle_core::{Result, Tensor};

/// Combines one `[B]` row tensor per teacher (in `teachers` order) with `route` `[B, T]`, and
/// with per-sample weights `[B]` when given: `mean_b w_b·Σ_t route[b, t]·rows_t[b]`.
pub fn combine(rows: &[Tensor], route: Option<&Tensor>, sample_weight: Option<&Tensor>) -> Result<Tensor> {
    let rows = Tensor::stack(rows, 1)?;
    let w = match route {
        Some(r) => r.to_dtype(rows.dtype())?,
        None => (rows.ones_like()? / rows.dim(1)? as f64)?,
    };
    let per_sample = (rows * w)?.sum(1)?;
    match sample_weight {
        Some(sw) => (per_sample.clone() * sw.to_dtype(per_sample.dtype())?)?.mean_all(),
        None => per_sample.mean_all(),
    }
}
