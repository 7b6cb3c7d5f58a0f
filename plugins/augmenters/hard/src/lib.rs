//! HARD (Nix, Burg & Sinz 2023; methods spec §2, every quantity [unverified] and a knob): augmenters
//! with parameters, trained by their own objective (`optimize = ["<slot>"]`) to make teacher and
//! student disagree, while the student distils on the batch they produce.
//!
//! Both augmenters keep the first `B − k` samples clean and replace the last `k = ⌊f·B⌋` (f ≤ ½)
//! with augmented copies of the first `k`, so each augmented sample's clean source is in the same
//! batch; they tap `source` and `augmented` (the row indices of the pairs) for the objective.
//! `hard-affine`: `θ = θ₀ + μ + σ ⊙ ε` (reparameterised, global or input-conditioned, optionally
//! translation only), `x̂ = grid_sample(x, affine_grid(θ))` with the background filled; taps `theta`.
//! `pixel-adversarial`: `x̂ = x + ε·tanh(δ)` with one learned perturbation δ for every image (the
//! spec's cheap pixel baseline). `hard-adversarial` (loss): `−τ²·KL(p_T(x̂) ‖ p_S(x̂)) + λ_T·R_T +
//! λ_θ·‖θ − θ₀‖²`, `R_T = KL(p_T(x) ‖ p_T(x̂))` (`kl_to_clean`) or `CE(z_T(x̂), y)` (`ce_to_label`).
mod augment;
mod objective;

pub use augment::{HardAffine, PixelAdversarial};
pub use objective::HardAdversarial;

retort_sdk::export_plugins! {
    loss: [HardAdversarial],
    augmenter: [HardAffine, PixelAdversarial],
}
