//! Logit-level distillation methods of LOGIT-LOSSES.md (§3–§13) and MIX-KD's MIXSTD, one plugin
//! each. Unknowns of methods without public code are configuration knobs, documented as such.
mod bdkd;
mod dho;
mod dkd;
mod lelp;
mod margin_mse;
mod mixstd;
mod nd;
mod pld;
mod sinkd;
mod state;
mod swing;
mod taid;
mod tgeo;

pub use bdkd::BdKd;
pub use dho::Dho;
pub use dkd::Dkd;
pub use lelp::{null_space_projector, Lelp};
pub use margin_mse::MarginMse;
pub use mixstd::MixStd;
pub use nd::Nd;
pub use pld::Pld;
pub use sinkd::SinKd;
pub use swing::Swing;
pub use taid::{Taid, TaidState};
pub use tgeo::TgeoKd;

retort_sdk::export_plugins! {
    loss: [Taid, Dkd, SinKd, Pld, BdKd, MarginMse, Swing, MixStd, TgeoKd, Nd, Dho, Lelp],
}
