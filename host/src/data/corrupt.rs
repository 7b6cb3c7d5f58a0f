//! Image corruptions for a transfer set that stands in for webly collected images (KD³'s
//! setting): noise, blur, contrast inversion and affine warps of u8 grey images, seeded.
use rand::Rng;

use crate::config::Corruption;

/// The strengths of the corruptions (see `[stages.transfer]`).
#[derive(Debug, Clone, Copy)]
pub struct Strengths {
    pub noise_std: f64,
    pub blur_sigma: f64,
    pub affine_degrees: f64,
    pub affine_scale: [f64; 2],
    pub affine_shift: f64,
}

/// Applies `kind` to one `h × w` image in place, drawing what it needs from `rng`.
pub fn corrupt(img: &mut [u8], h: usize, w: usize, kind: Corruption, s: &Strengths, rng: &mut impl Rng) {
    match kind {
        Corruption::None => {}
        Corruption::Invert => img.iter_mut().for_each(|v| *v = 255 - *v),
        Corruption::Noise => {
            for v in img.iter_mut() {
                *v = to_u8(*v as f64 + normal(rng) * s.noise_std * 255.0);
            }
        }
        Corruption::Blur => blur(img, h, w, s.blur_sigma),
        Corruption::Affine => {
            let theta = rng.random_range(-1.0..=1.0) * s.affine_degrees.to_radians();
            let [lo, hi] = s.affine_scale;
            let scale = if hi > lo { rng.random_range(lo..=hi) } else { lo };
            let shift = (rng.random_range(-1.0..=1.0) * s.affine_shift, rng.random_range(-1.0..=1.0) * s.affine_shift);
            affine(img, h, w, theta, scale, shift);
        }
    }
}

fn to_u8(v: f64) -> u8 {
    v.round().clamp(0.0, 255.0) as u8
}

/// A standard normal draw (Box–Muller).
fn normal(rng: &mut impl Rng) -> f64 {
    let u1: f64 = rng.random_range(f64::MIN_POSITIVE..1.0);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Separable Gaussian blur, edges clamped.
fn blur(img: &mut [u8], h: usize, w: usize, sigma: f64) {
    if sigma <= 0.0 {
        return;
    }
    let r = (3.0 * sigma).ceil() as i64;
    let k: Vec<f64> = (-r..=r).map(|d| (-(d * d) as f64 / (2.0 * sigma * sigma)).exp()).collect();
    let norm: f64 = k.iter().sum();
    let src: Vec<f64> = img.iter().map(|&v| v as f64).collect();
    let mut tmp = vec![0.0; h * w];
    let at = |i: i64, n: usize| i.clamp(0, n as i64 - 1) as usize;
    for y in 0..h {
        for x in 0..w {
            tmp[y * w + x] = (-r..=r).zip(&k).map(|(d, kv)| kv * src[y * w + at(x as i64 + d, w)]).sum::<f64>() / norm;
        }
    }
    for y in 0..h {
        for x in 0..w {
            let v: f64 = (-r..=r).zip(&k).map(|(d, kv)| kv * tmp[at(y as i64 + d, h) * w + x]).sum();
            img[y * w + x] = to_u8(v / norm);
        }
    }
}

/// Rotation by `theta` and scaling by `scale` about the centre, then a shift `(dy, dx)` in pixels;
/// bilinear, zero (background) outside the image.
fn affine(img: &mut [u8], h: usize, w: usize, theta: f64, scale: f64, (dy, dx): (f64, f64)) {
    let src: Vec<f64> = img.iter().map(|&v| v as f64).collect();
    let (cy, cx) = ((h as f64 - 1.0) / 2.0, (w as f64 - 1.0) / 2.0);
    let (sin, cos) = theta.sin_cos();
    let px = |y: i64, x: i64| {
        if y < 0 || x < 0 || y >= h as i64 || x >= w as i64 {
            0.0
        } else {
            src[y as usize * w + x as usize]
        }
    };
    for y in 0..h {
        for x in 0..w {
            // The output pixel's source: the inverse of shift ∘ scale ∘ rotate.
            let (oy, ox) = ((y as f64 - cy - dy) / scale, (x as f64 - cx - dx) / scale);
            let (sy, sx) = (cos * oy - sin * ox + cy, sin * oy + cos * ox + cx);
            let (y0, x0) = (sy.floor(), sx.floor());
            let (fy, fx) = (sy - y0, sx - x0);
            let (y0, x0) = (y0 as i64, x0 as i64);
            let v = (1.0 - fy) * ((1.0 - fx) * px(y0, x0) + fx * px(y0, x0 + 1))
                + fy * ((1.0 - fx) * px(y0 + 1, x0) + fx * px(y0 + 1, x0 + 1));
            img[y * w + x] = to_u8(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    const S: Strengths = Strengths {
        noise_std: 0.3,
        blur_sigma: 1.0,
        affine_degrees: 30.0,
        affine_scale: [0.75, 1.25],
        affine_shift: 3.0,
    };

    fn image() -> Vec<u8> {
        (0..64u32).map(|i| ((i * 37) % 256) as u8).collect()
    }

    #[test]
    fn inversion_is_its_own_inverse_and_none_is_the_identity() {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let mut a = image();
        corrupt(&mut a, 8, 8, Corruption::Invert, &S, &mut rng);
        assert_eq!(a[1], 255 - image()[1]);
        corrupt(&mut a, 8, 8, Corruption::Invert, &S, &mut rng);
        corrupt(&mut a, 8, 8, Corruption::None, &S, &mut rng);
        assert_eq!(a, image());
    }

    #[test]
    fn blur_keeps_a_constant_image_and_smooths_an_impulse() {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let mut flat = vec![100u8; 64];
        corrupt(&mut flat, 8, 8, Corruption::Blur, &S, &mut rng);
        assert!(flat.iter().all(|&v| v == 100));
        let mut dot = vec![0u8; 81];
        dot[40] = 255;
        corrupt(&mut dot, 9, 9, Corruption::Blur, &S, &mut rng);
        // σ = 1: the centre keeps (1/Σk)² of the mass, k = exp(−d²/2) for |d| ≤ 3.
        let k: f64 = (-3i32..=3).map(|d| (-(d * d) as f64 / 2.0).exp()).sum();
        assert_eq!(dot[40], (255.0 / (k * k)).round() as u8);
        assert_eq!(dot[41], dot[39]);
        assert!(dot[41] > 0 && dot[41] < dot[40]);
    }

    #[test]
    fn the_identity_warp_changes_nothing_and_a_shift_moves_pixels() {
        let mut a = image();
        affine(&mut a, 8, 8, 0.0, 1.0, (0.0, 0.0));
        assert_eq!(a, image());
        let mut b = image();
        affine(&mut b, 8, 8, 0.0, 1.0, (1.0, 2.0));
        assert_eq!(b[3 * 8 + 4], image()[2 * 8 + 2]);
        assert_eq!(b[0], 0, "what comes in from outside is background");
    }

    #[test]
    fn noise_has_the_configured_spread() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut a = vec![128u8; 20_000];
        corrupt(&mut a, 100, 200, Corruption::Noise, &S, &mut rng);
        let mean = a.iter().map(|&v| v as f64).sum::<f64>() / a.len() as f64;
        let sd = (a.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / a.len() as f64).sqrt();
        // 0.3·255 = 76.5 before clipping at 0 and 255 (1.7 σ away), which trims it a little.
        assert!((mean - 128.0).abs() < 2.0, "mean {mean}");
        assert!(sd > 68.0 && sd < 77.0, "sd {sd}");
    }
}
