//! How per-teacher loss values are combined with a route: `mean_b Σ_t route[b, t]·rows_t[b]`,
//! uniform weights without a router. Used by terms with `over_teachers`.
use candle_core::{Result, Tensor};

/// Combines one `[B]` row tensor per teacher (in `teachers` order) with `route` `[B, T]`.
pub fn combine(rows: &[Tensor], route: Option<&Tensor>) -> Result<Tensor> {
    let rows = Tensor::stack(rows, 1)?;
    let w = match route {
        Some(r) => r.to_dtype(rows.dtype())?,
        None => (rows.ones_like()? / rows.dim(1)? as f64)?,
    };
    (rows * w)?.sum(1)?.mean_all()
}
