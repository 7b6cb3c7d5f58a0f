//! Spatial transformer ops (HARD's learned affine augmentation, methods spec §2): `affine_grid`
//! and bilinear `grid_sample` with zero padding, PyTorch's `align_corners = False` convention.
//! Built from differentiable tensor ops, so gradients reach both the image and the grid (and the
//! affine parameters behind it); the corner indices are constants of the backward.
use candle_core::{DType, Result, Tensor, D};

/// The sampling grid `[N, H, W, 2]` (x, y in [−1, 1]) of affine maps `theta` `[N, 2, 3]`.
pub fn affine_grid(theta: &Tensor, h: usize, w: usize) -> Result<Tensor> {
    let n = theta.dim(0)?;
    let dev = theta.device();
    let coord = |k: usize, size: usize| (2 * k + 1) as f32 / size as f32 - 1.0;
    let mut base = Vec::with_capacity(h * w * 3);
    for i in 0..h {
        for j in 0..w {
            base.extend([coord(j, w), coord(i, h), 1.0]);
        }
    }
    let base = Tensor::from_vec(base, (1, h * w, 3), dev)?.to_dtype(theta.dtype())?;
    // [1, HW, 3] · [N, 3, 2] → [N, HW, 2]
    let grid = base.broadcast_as((n, h * w, 3))?.contiguous()?.matmul(&theta.transpose(1, 2)?.contiguous()?)?;
    grid.reshape((n, h, w, 2))
}

/// Bilinear samples of `x` `[N, C, H, W]` at `grid` `[N, Ho, Wo, 2]`, zero outside the image.
pub fn grid_sample(x: &Tensor, grid: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let (gn, ho, wo, two) = grid.dims4()?;
    if gn != n || two != 2 {
        candle_core::bail!("grid_sample: grid {:?} does not fit input {:?}", grid.dims(), x.dims());
    }
    let g = grid.to_dtype(DType::F32)?.reshape((n, ho * wo, 2))?;
    // Pixel coordinates (align_corners = False).
    let ix = g.narrow(D::Minus1, 0, 1)?.squeeze(D::Minus1)?.affine(w as f64 / 2.0, (w as f64 - 1.0) / 2.0)?;
    let iy = g.narrow(D::Minus1, 1, 1)?.squeeze(D::Minus1)?.affine(h as f64 / 2.0, (h as f64 - 1.0) / 2.0)?;
    let (x0, y0) = (ix.detach().floor()?, iy.detach().floor()?);
    let (fx, fy) = ((&ix - &x0)?, (&iy - &y0)?);
    let flat = x.to_dtype(DType::F32)?.reshape((n, c, h * w))?;
    let mut out: Option<Tensor> = None;
    for (dy, wy) in [(0.0, fy.affine(-1.0, 1.0)?), (1.0, fy.clone())] {
        for (dx, wx) in [(0.0, fx.affine(-1.0, 1.0)?), (1.0, fx.clone())] {
            let (cx, cy) = (x0.affine(1.0, dx)?, y0.affine(1.0, dy)?);
            // In-bounds corners only; the others contribute zero.
            let inside =
                cx.ge(0.0)?.mul(&cx.lt(w as f64)?)?.mul(&cy.ge(0.0)?)?.mul(&cy.lt(h as f64)?)?.to_dtype(DType::F32)?;
            let idx = (cy.clamp(0.0, (h - 1) as f64)? * w as f64)?.add(&cx.clamp(0.0, (w - 1) as f64)?)?;
            let idx = idx.to_dtype(DType::U32)?.unsqueeze(1)?.broadcast_as((n, c, ho * wo))?.contiguous()?;
            let vals = flat.gather(&idx, 2)?;
            let weight = (wx * &wy)?.mul(&inside)?.unsqueeze(1)?;
            let term = vals.broadcast_mul(&weight)?;
            out = Some(match out {
                Some(o) => (o + term)?,
                None => term,
            });
        }
    }
    match out {
        Some(o) => o.reshape((n, c, ho, wo))?.to_dtype(x.dtype()),
        None => candle_core::bail!("grid_sample: no corners"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn image() -> Tensor {
        let v: Vec<f32> = (0..2 * 5 * 6).map(|i| ((i * 7 % 11) as f32) / 3.0).collect();
        Tensor::from_vec(v, (1, 2, 5, 6), &Device::Cpu).unwrap()
    }

    fn theta(tx: f32, ty: f32, s: f32) -> Tensor {
        Tensor::from_vec(vec![s, 0.0, tx, 0.0, s, ty], (1, 2, 3), &Device::Cpu).unwrap()
    }

    #[test]
    fn the_identity_map_returns_the_image_and_a_pixel_shift_moves_it_by_one() {
        let x = image();
        let same = grid_sample(&x, &affine_grid(&theta(0.0, 0.0, 1.0), 5, 6).unwrap()).unwrap();
        let d = (same - &x).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(d < 1e-5, "identity: {d}");
        // tx = 2/W samples one pixel to the right: out[.., j] = x[.., j + 1], zero past the edge.
        let moved = grid_sample(&x, &affine_grid(&theta(2.0 / 6.0, 0.0, 1.0), 5, 6).unwrap()).unwrap();
        let b = moved.squeeze(0).unwrap().to_vec3::<f32>().unwrap();
        let src = x.squeeze(0).unwrap().to_vec3::<f32>().unwrap();
        for ch in 0..2 {
            for r in 0..5 {
                for j in 0..6 {
                    let want = if j + 1 < 6 { src[ch][r][j + 1] } else { 0.0 };
                    assert!((b[ch][r][j] - want).abs() < 1e-5, "({ch}, {r}, {j}): {} vs {want}", b[ch][r][j]);
                }
            }
        }
    }

    #[test]
    fn gradients_reach_the_affine_parameters_and_match_finite_differences() {
        let x = image();
        let t = Var::from_tensor(&theta(0.13, -0.07, 0.9)).unwrap();
        let loss = |th: &Tensor| -> Tensor {
            let y = grid_sample(&x, &affine_grid(th, 5, 6).unwrap()).unwrap();
            y.sqr().unwrap().sum_all().unwrap()
        };
        let grads = loss(t.as_tensor()).backward().unwrap();
        let g = grads.get(t.as_tensor()).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let base = t.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for k in 0..6 {
            let eps = 1e-3f32;
            let at = |d: f32| {
                let mut v = base.clone();
                v[k] += d;
                loss(&Tensor::from_vec(v, (1, 2, 3), &Device::Cpu).unwrap()).to_scalar::<f32>().unwrap()
            };
            let fd = (at(eps) - at(-eps)) / (2.0 * eps);
            assert!((fd - g[k]).abs() < 2e-2 * (1.0 + fd.abs()), "θ[{k}]: analytic {} vs numeric {fd}", g[k]);
        }
        assert!(g.iter().any(|v| v.abs() > 1e-3));
    }
}
