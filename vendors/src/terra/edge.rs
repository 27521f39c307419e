//! Terra's edge settings.

use std::sync::Arc;
use std::time::Duration;

use bridge_core::config::ConfigError;

use super::verify::TerraVerifier;
use crate::verify::{Verifier, keys};

/// Terra's settings at the edge.
#[derive(Debug, Clone, clap::Args)]
#[group(skip)]
#[command(next_help_heading = "Terra")]
pub struct EdgeArgs {
    /// Terra destination signing secret(s). Unset disables `/webhooks/terra`.
    #[arg(
        long,
        env = "TERRA_SIGNING_SECRET",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub terra_signing_secret: Vec<String>,

    /// Per-vendor override of the tolerance for Terra.
    #[arg(long, env = "TERRA_SIGNATURE_TOLERANCE", value_parser = humantime::parse_duration)]
    pub terra_signature_tolerance: Option<Duration>,
}

impl EdgeArgs {
    /// The verifier, `None` when no secret is configured.
    pub fn verifier(&self, tolerance: Duration) -> Result<Option<Arc<dyn Verifier>>, ConfigError> {
        let secrets = keys(&self.terra_signing_secret);
        Ok((!secrets.is_empty()).then(|| {
            Arc::new(TerraVerifier::new(
                secrets,
                self.terra_signature_tolerance.unwrap_or(tolerance),
            )) as Arc<dyn Verifier>
        }))
    }
}
