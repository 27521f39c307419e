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

/// A secret setting: never printed by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

impl Secret {
    /// The value.
    pub fn expose(&self) -> &str {
        &self.0
    }
}
