//! Configuration helpers shared by the binaries.

/// A configuration value that cannot work, naming its environment variable so the
/// operator knows what to fix.
#[derive(Debug, thiserror::Error)]
#[error("{var}: {message}")]
pub struct ConfigError {
    /// Environment variable at fault.
    pub var: &'static str,
    /// What is wrong with it.
    pub message: String,
}
