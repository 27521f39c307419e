//! Google Health API's edge settings.

use std::sync::Arc;
use std::time::Duration;

use bridge_core::config::ConfigError;

use super::keys;
use super::verify::GoogleHealthVerifier;
use crate::verify::Verifier;

/// Google Health API's settings at the edge.
#[derive(Debug, Clone, clap::Args)]
#[group(skip)]
#[command(next_help_heading = "Google Health API")]
pub struct EdgeArgs {
    /// Google's public key(s) for `X-HEALTHAPI-SIGNATURE`: PEM `PUBLIC KEY` blocks
    /// (several during rotation) or Google's Tink JSON keyset as published. Unset
    /// disables `/webhooks/google_health`.
    #[arg(long, env = "GOOGLE_HEALTH_PUBLIC_KEYS")]
    pub google_health_public_keys: Option<String>,

    /// The subscriber's `endpointAuthorization.secret`: the full `Authorization` value
    /// Google sends (`Bearer …`). Needed to pass Google's subscriber verification.
    #[arg(long, env = "GOOGLE_HEALTH_AUTHORIZATION", hide_env_values = true)]
    pub google_health_authorization: Option<String>,
}

impl EdgeArgs {
    /// The verifier, `None` when no public key is configured. Google signs no
    /// timestamp, so the tolerance is unused.
    pub fn verifier(&self, _tolerance: Duration) -> Result<Option<Arc<dyn Verifier>>, ConfigError> {
        let authorization = self
            .google_health_authorization
            .as_deref()
            .map(str::trim)
            .filter(|a| !a.is_empty());
        let Some(text) = self
            .google_health_public_keys
            .as_deref()
            .filter(|t| !t.trim().is_empty())
        else {
            if authorization.is_some() {
                return Err(ConfigError {
                    var: "GOOGLE_HEALTH_PUBLIC_KEYS",
                    message: "GOOGLE_HEALTH_AUTHORIZATION is set but no public key to verify \
                              notifications"
                        .into(),
                });
            }
            return Ok(None);
        };
        let keys = keys::parse(text).map_err(|message| ConfigError {
            var: "GOOGLE_HEALTH_PUBLIC_KEYS",
            message,
        })?;
        Ok(Some(Arc::new(GoogleHealthVerifier::new(keys, authorization))))
    }
}
