//! Divergences between teacher and student distributions (LOGIT-LOSSES.md §2): reverse KL,
//! Jensen–Shannon, total variation, skew KL and skew reverse KL (DistiLLM), generalized JSD (GKD).
//!
//! All take `student`, `teacher` and an optional `mask`; `[B, L, V]` logits reduce as a token mean
//! over valid positions, `[B, C]` as a batch mean. Temperature defaults to 1 without τ² (the LLM
//! codebases' setting); both are knobs.
mod common;
mod family;

pub use family::{GeneralizedJsd, JensenShannon, ReverseKl, SkewKl, SkewReverseKl, TotalVariation};

retort_sdk::export_plugins! {
    loss: [ReverseKl, JensenShannon, TotalVariation, SkewKl, SkewReverseKl, GeneralizedJsd],
}
