//! WHOOP's processor settings: where its API and token endpoint are, its client
//! credentials and rate limits.

use bridge_core::config::Secret;

use super::fetch::WhoopNotify;
use crate::fetch::{ClientAuth, FetchSpec, OAuth, Quota};

/// WHOOP's settings in the processor.
#[derive(Debug, Clone, clap::Args)]
#[group(skip)]
#[command(next_help_heading = "WHOOP")]
pub struct ProcessorArgs {
    /// WHOOP REST base URL (the `/v2/...` paths are appended).
    #[arg(
        long,
        env = "WHOOP_API_BASE_URL",
        default_value = "https://api.prod.whoop.com/developer"
    )]
    pub whoop_api_base_url: String,

    /// WHOOP OAuth2 token endpoint (refresh grant).
    #[arg(
        long,
        env = "WHOOP_TOKEN_URL",
        default_value = "https://api.prod.whoop.com/oauth/oauth2/token"
    )]
    pub whoop_token_url: String,

    /// WHOOP OAuth client id (needed to refresh tokens).
    #[arg(long, env = "WHOOP_CLIENT_ID")]
    pub whoop_client_id: Option<String>,

    /// WHOOP OAuth client secret(s), the same list the edge verifies webhooks with;
    /// token calls use the first, so during a rotation list the current one first.
    #[arg(
        long,
        env = "WHOOP_CLIENT_SECRET",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub whoop_client_secret: Vec<Secret>,

    /// WHOOP requests per period for the whole application (WHOOP's default app limit
    /// is 100 requests per minute).
    #[arg(long, env = "WHOOP_RATE_LIMIT", default_value = "100/1m")]
    pub whoop_rate_limit: Quota,

    /// WHOOP requests per period for one linked account.
    #[arg(long, env = "WHOOP_ACCOUNT_RATE_LIMIT", default_value = "100/1m")]
    pub whoop_account_rate_limit: Quota,
}

impl ProcessorArgs {
    /// WHOOP is fetched after every notification.
    pub fn fetch(&self) -> Option<FetchSpec> {
        Some(FetchSpec {
            notify: Box::new(WhoopNotify),
            api_base: self.whoop_api_base_url.trim_end_matches('/').to_owned(),
            headers: Vec::new(),
            api_base_var: "WHOOP_API_BASE_URL",
            oauth: OAuth {
                token_url: self.whoop_token_url.clone(),
                client_id: self.whoop_client_id.clone(),
                client_secret: self
                    .whoop_client_secret
                    .iter()
                    .find(|s| !s.expose().trim().is_empty())
                    .cloned(),
                client_id_var: "WHOOP_CLIENT_ID",
                client_secret_var: "WHOOP_CLIENT_SECRET",
                token_url_var: "WHOOP_TOKEN_URL",
                // WHOOP only issues a new refresh token when the refresh asks for it.
                refresh_scope: Some("offline"),
                client_auth: ClientAuth::Post,
            },
            vendor_quota: self.whoop_rate_limit,
            account_quota: self.whoop_account_rate_limit,
        })
    }
}
