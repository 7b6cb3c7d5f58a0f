use retort_plugin_api::{codes::error as code, ApiError};

/// The SDK's error: an ABI error code and a message. Converts to and from [`ApiError`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    /// A code from `codes::error`.
    pub code: u32,
    pub message: String,
}

/// Result with the SDK's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error with an explicit code.
    pub fn new(code: u32, message: impl Into<String>) -> Self {
        Error { code, message: message.into() }
    }
    /// A bad argument or shape.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(code::INVALID, message)
    }
    /// A rejected config value.
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(code::CONFIG, message)
    }
    /// State that `load_state` cannot take.
    pub fn state(message: impl Into<String>) -> Self {
        Self::new(code::STATE, message)
    }
    /// The host lacks an appended table function.
    pub fn missing_function(name: &str) -> Self {
        Self::new(
            code::MISSING_FUNCTION,
            format!("the host does not provide `{name}` (it predates this plugin's plugin-api); upgrade retort"),
        )
    }
}

impl From<ApiError> for Error {
    fn from(e: ApiError) -> Self {
        Error { code: e.code(), message: e.message.into_string() }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError::new(e.code, e.message)
    }
}
