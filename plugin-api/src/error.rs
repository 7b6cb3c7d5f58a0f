use abi_stable::{std_types::RString, StableAbi};

/// An error crossing the boundary: a code from [`crate::codes::error`] and a message.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct ApiError {
    #[cfg(not(feature = "abi-break"))]
    pub code: u32,
    /// Deliberately different layout, for the incompatible-plugin test fixture only.
    #[cfg(feature = "abi-break")]
    pub code: u64,
    pub message: RString,
}

impl ApiError {
    /// Builds an error from a code and a message.
    #[allow(clippy::useless_conversion)]
    pub fn new(code: u32, message: impl Into<String>) -> Self {
        ApiError { code: code.into(), message: RString::from(message.into()) }
    }

    /// The error code as a `u32`, whatever the layout feature.
    #[allow(clippy::unnecessary_cast)]
    pub fn code(&self) -> u32 {
        self.code as u32
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ApiError {}
