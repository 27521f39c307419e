//! Oura's edge settings.

use std::sync::Arc;
use std::time::Duration;

use bridge_core::config::ConfigError;

use super::verify::OuraVerifier;
use crate::verify::{Verifier, keys};

/// Oura's settings at the edge.
#[derive(Debug, Clone, clap::Args)]
#[group(skip)]
#[command(next_help_heading = "Oura")]
pub struct EdgeArgs {
    /// Oura OAuth client secret(s); signs `x-oura-signature`. Unset disables `/webhooks/oura`.
    #[arg(
        long,
        env = "OURA_CLIENT_SECRET",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub oura_client_secret: Vec<String>,

    /// Token Oura echoes in the subscription handshake (`GET /webhooks/oura?verification_token=…`).
    #[arg(long, env = "OURA_VERIFICATION_TOKEN", hide_env_values = true)]
    pub oura_verification_token: Option<String>,

    /// Per-vendor override of the tolerance for Oura.
    #[arg(long, env = "OURA_SIGNATURE_TOLERANCE", value_parser = humantime::parse_duration)]
    pub oura_signature_tolerance: Option<Duration>,
}

impl EdgeArgs {
    /// The verifier, `None` when no secret is configured; `tolerance` is the edge-wide
    /// default window.
    pub fn verifier(&self, tolerance: Duration) -> Result<Option<Arc<dyn Verifier>>, ConfigError> {
        let secrets = keys(&self.oura_client_secret);
        let token = self
            .oura_verification_token
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string);
        if secrets.is_empty() {
            if token.is_some() {
                return Err(ConfigError {
                    var: "OURA_CLIENT_SECRET",
                    message:
                        "OURA_VERIFICATION_TOKEN is set but no client secret to verify deliveries"
                            .into(),
                });
            }
            return Ok(None);
        }
        Ok(Some(Arc::new(OuraVerifier::new(
            secrets,
            self.oura_signature_tolerance.unwrap_or(tolerance),
            token,
        ))))
    }
}
