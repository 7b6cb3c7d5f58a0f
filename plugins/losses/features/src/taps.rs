//! Reading the features a loss works on: a tensor mapped into the batch with `inputs`, else the
//! named tap of the model in a role (`student`, `teacher`) recorded this step.
use retort_sdk::{Batch, Ctx, Error, Result, Tensor};

/// The feature `input` of the batch (when given and mapped), else tap `tap` of `role` (the
/// teacher's detached).
pub fn feature(ctx: &Ctx, batch: &Batch, loss: &str, input: Option<&str>, role: &str, tap: &str) -> Result<Tensor> {
    let input_name = input.unwrap_or("-");
    let t = match input.and_then(|i| batch.get(i)) {
        Some(t) => t,
        None => ctx.feature(role, tap)?.ok_or_else(|| {
            Error::invalid(format!(
                "{loss}: no `{input_name}` input and no {role} tap `{tap}` this step; name a tap the {role} model makes \
                 (its plugin's summary lists them) in the loss's params"
            ))
        })?,
    };
    if role == "teacher" {
        t.detach()
    } else {
        Ok(t)
    }
}
