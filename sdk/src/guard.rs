use std::panic::{catch_unwind, AssertUnwindSafe};

use retort_plugin_api::{abi_stable::std_types::RResult, codes::error as code, ApiError};

use crate::Result;

/// Runs a plugin entry point, turning an error or a panic into an [`ApiError`].
///
/// A panic must never unwind into the host (abi_stable would abort the process), so every
/// entry point of every plugin goes through here.
pub fn guard<T>(f: impl FnOnce() -> Result<T>) -> RResult<T, ApiError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => RResult::ROk(v),
        Ok(Err(e)) => RResult::RErr(e.into()),
        Err(payload) => RResult::RErr(ApiError::new(code::PANIC, format!("panicked: {}", panic_message(&*payload)))),
    }
}

/// The text of a panic payload, when it has one.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_becomes_error() {
        let r: RResult<(), ApiError> = guard(|| panic!("boom {}", 7));
        let e = r.into_result().unwrap_err();
        assert_eq!(e.code(), code::PANIC);
        assert_eq!(e.message.as_str(), "panicked: boom 7");
    }

    #[test]
    fn error_passes_through() {
        let r: RResult<(), ApiError> = guard(|| Err(crate::Error::invalid("bad shape")));
        let e = r.into_result().unwrap_err();
        assert_eq!(e.code(), code::INVALID);
        assert_eq!(e.message.as_str(), "bad shape");
        assert_eq!(guard(|| Ok(3)).into_result().ok(), Some(3));
    }
}
