//! Host-side random draws from a plugin's seeded, checkpointed RNG stream (read back from the
//! device, for per-batch decisions such as mixing weights): uniforms, normals, Beta(α, α), permutations.
use crate::{Ctx, Result};

/// `n` draws from U(0, 1).
pub fn uniforms(ctx: &Ctx, n: usize) -> Result<Vec<f64>> {
    Ok(ctx.rand(0.0, 1.0, &[n.max(1)])?.to_vec1::<f32>()?.into_iter().take(n).map(|v| v as f64).collect())
}

/// `n` draws from N(0, 1).
pub fn normals(ctx: &Ctx, n: usize) -> Result<Vec<f64>> {
    Ok(ctx.randn(0.0, 1.0, &[n.max(1)])?.to_vec1::<f32>()?.into_iter().take(n).map(|v| v as f64).collect())
}

/// A random permutation of `0..n` (argsort of uniforms).
pub fn permutation(ctx: &Ctx, n: usize) -> Result<Vec<u32>> {
    let keys = uniforms(ctx, n)?;
    let mut idx: Vec<u32> = (0..n as u32).collect();
    idx.sort_by(|&a, &b| keys[a as usize].total_cmp(&keys[b as usize]));
    Ok(idx)
}

/// `n` draws from Gamma(shape, 1) (Marsaglia–Tsang; shape < 1 through Gamma(shape + 1)·U^{1/shape}).
fn gammas(ctx: &Ctx, shape: f64, n: usize) -> Result<Vec<f64>> {
    let boost = shape < 1.0;
    let a = if boost { shape + 1.0 } else { shape };
    let (d, c) = (a - 1.0 / 3.0, 1.0 / (9.0 * (a - 1.0 / 3.0)).sqrt());
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        // A chunk of candidates; the acceptance rate is above 95 %.
        let want = 2 * (n - out.len()) + 8;
        let (xs, us) = (normals(ctx, want)?, uniforms(ctx, want)?);
        for (x, u) in xs.into_iter().zip(us) {
            let v = (1.0 + c * x).powi(3);
            if v > 0.0 && u.max(1e-300).ln() < 0.5 * x * x + d - d * v + d * v.ln() {
                out.push(d * v);
                if out.len() == n {
                    break;
                }
            }
        }
    }
    if boost {
        let us = uniforms(ctx, n)?;
        for (g, u) in out.iter_mut().zip(us) {
            *g *= u.max(1e-300).powf(1.0 / shape);
        }
    }
    Ok(out)
}

/// `n` draws from Beta(α, α) (α = 1 is the uniform).
pub fn betas(ctx: &Ctx, alpha: f64, n: usize) -> Result<Vec<f64>> {
    if alpha == 1.0 {
        return uniforms(ctx, n);
    }
    let (x, y) = (gammas(ctx, alpha, n)?, gammas(ctx, alpha, n)?);
    Ok(x.into_iter().zip(y).map(|(x, y)| if x + y > 0.0 { x / (x + y) } else { 0.5 }).collect())
}
