//! Polar's edge settings.

use std::sync::Arc;
use std::time::Duration;

use bridge_core::config::ConfigError;

use super::verify::PolarVerifier;
use crate::verify::{Verifier, keys};

/// Polar's settings at the edge.
#[derive(Debug, Clone, clap::Args)]
#[group(skip)]
#[command(next_help_heading = "Polar")]
pub struct EdgeArgs {
    /// Polar AccessLink `signature_secret_key`(s). Unset disables `/webhooks/polar`.
    #[arg(
        long,
        env = "POLAR_SIGNATURE_SECRET",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub polar_signature_secret: Vec<String>,
}

impl EdgeArgs {
    /// The verifier, `None` when no secret is configured. Polar signs no timestamp.
    pub fn verifier(&self, _tolerance: Duration) -> Result<Option<Arc<dyn Verifier>>, ConfigError> {
        let secrets = keys(&self.polar_signature_secret);
        Ok((!secrets.is_empty())
            .then(|| Arc::new(PolarVerifier::new(secrets)) as Arc<dyn Verifier>))
    }
}
