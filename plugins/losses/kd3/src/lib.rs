//! KD³'s losses (Tang et al. 2023; methods spec §4.3, [unverified] reconstruction): `info-nce`
//! (instance alignment of clean and MixDistribution-perturbed embeddings) and `feature-l2`
//! (knowledge memorization's weighted feature alignment).
mod feature_l2;
mod info_nce;

pub use feature_l2::FeatureL2;
pub use info_nce::InfoNce;

retort_sdk::export_plugins! {
    loss: [InfoNce, FeatureL2],
}
