//! Feature and relational distillation (methods spec §5): losses that read the taps of the
//! student and the teacher (`student_taps`/`teacher_taps`, or tensors mapped with `inputs`).
//! The teacher's features arrive detached; these losses never train the teacher.
mod at;
mod crd;
mod fitnets;
mod ofa;
mod rkd;
mod sp;
mod taps;

pub use at::{attention_map, At};
pub use crd::Crd;
pub use fitnets::{conv_reg_plan, FitNets};
pub use ofa::{ofa_rows, Ofa};
pub use rkd::Rkd;
pub use sp::Sp;

retort_sdk::export_plugins! {
    loss: [At, Rkd, Sp, FitNets, Crd, Ofa],
}
