//! Google Health API's processor settings: API and token endpoint, client credentials,
//! rate limits.

use bridge_core::config::Secret;

use super::fetch::GoogleHealthNotify;
use crate::fetch::{ClientAuth, FetchSpec, OAuth, Quota};

/// Google Health API's settings in the processor.
#[derive(Debug, Clone, clap::Args)]
#[group(skip)]
#[command(next_help_heading = "Google Health API")]
pub struct ProcessorArgs {
    /// Google Health API base URL (the `/v4/...` paths are appended).
    #[arg(
        long,
        env = "GOOGLE_HEALTH_API_BASE_URL",
        default_value = "https://health.googleapis.com"
    )]
    pub google_health_api_base_url: String,

    /// Google's OAuth2 token endpoint (refresh grant, client credentials in the body).
    #[arg(
        long,
        env = "GOOGLE_HEALTH_TOKEN_URL",
        default_value = "https://oauth2.googleapis.com/token"
    )]
    pub google_health_token_url: String,

    /// Google OAuth client id (needed to refresh tokens).
    #[arg(long, env = "GOOGLE_HEALTH_CLIENT_ID")]
    pub google_health_client_id: Option<String>,

    /// Google OAuth client secret.
    #[arg(long, env = "GOOGLE_HEALTH_CLIENT_SECRET", hide_env_values = true)]
    pub google_health_client_secret: Option<Secret>,

    /// Requests per period for the whole application: Google allows 120,000 per minute
    /// per project (developers.google.com/health/rate-limits).
    #[arg(long, env = "GOOGLE_HEALTH_RATE_LIMIT", default_value = "120000/1m")]
    pub google_health_rate_limit: Quota,

    /// Requests per period for one linked account: Google allows 300 per minute per user.
    #[arg(long, env = "GOOGLE_HEALTH_ACCOUNT_RATE_LIMIT", default_value = "300/1m")]
    pub google_health_account_rate_limit: Quota,
}

impl ProcessorArgs {
    /// Google Health API is fetched after every notification.
    pub fn fetch(&self) -> Option<FetchSpec> {
        Some(FetchSpec {
            notify: Box::new(GoogleHealthNotify),
            api_base: self
                .google_health_api_base_url
                .trim_end_matches('/')
                .to_owned(),
            api_base_var: "GOOGLE_HEALTH_API_BASE_URL",
            headers: Vec::new(),
            oauth: Some(OAuth {
                token_url: self.google_health_token_url.clone(),
                client_id: self.google_health_client_id.clone(),
                client_secret: self
                    .google_health_client_secret
                    .clone()
                    .filter(|s| !s.expose().trim().is_empty()),
                client_id_var: "GOOGLE_HEALTH_CLIENT_ID",
                client_secret_var: "GOOGLE_HEALTH_CLIENT_SECRET",
                token_url_var: "GOOGLE_HEALTH_TOKEN_URL",
                refresh_scope: None,
                // Google documents the secret in the body for web-server apps.
                client_auth: ClientAuth::Post,
            }),
            on_link: None,
            vendor_quota: self.google_health_rate_limit,
            account_quota: self.google_health_account_rate_limit,
        })
    }
}
