//! WHOOP's edge settings.

use std::sync::Arc;
use std::time::Duration;

use bridge_core::config::ConfigError;

use super::verify::WhoopVerifier;
use crate::verify::{Verifier, keys};

/// WHOOP's settings at the edge.
#[derive(Debug, Clone, clap::Args)]
#[group(skip)]
#[command(next_help_heading = "WHOOP")]
pub struct EdgeArgs {
    /// WHOOP OAuth client secret(s); signs `X-WHOOP-Signature`. Unset disables `/webhooks/whoop`.
    #[arg(
        long,
        env = "WHOOP_CLIENT_SECRET",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub whoop_client_secret: Vec<String>,

    /// Per-vendor override of the tolerance for WHOOP.
    #[arg(long, env = "WHOOP_SIGNATURE_TOLERANCE", value_parser = humantime::parse_duration)]
    pub whoop_signature_tolerance: Option<Duration>,
}

impl EdgeArgs {
    /// The verifier, `None` when no secret is configured.
    pub fn verifier(&self, tolerance: Duration) -> Result<Option<Arc<dyn Verifier>>, ConfigError> {
        let secrets = keys(&self.whoop_client_secret);
        Ok((!secrets.is_empty()).then(|| {
            Arc::new(WhoopVerifier::new(
                secrets,
                self.whoop_signature_tolerance.unwrap_or(tolerance),
            )) as Arc<dyn Verifier>
        }))
    }
}
