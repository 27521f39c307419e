//! Suunto's processor settings: API base, APIM subscription key, OAuth client and
//! rate limits (accounts.md §4).

use bridge_core::config::Secret;

use super::fetch::SuuntoNotify;
use crate::fetch::{ClientAuth, FetchSpec, OAuth, Quota};

/// Suunto's settings in the processor.
#[derive(Debug, Clone, clap::Args)]
#[group(skip)]
#[command(next_help_heading = "Suunto")]
pub struct ProcessorArgs {
    /// Suunto Cloud API base URL.
    #[arg(
        long,
        env = "SUUNTO_API_BASE_URL",
        default_value = "https://cloudapi.suunto.com"
    )]
    pub suunto_api_base_url: String,

    /// Suunto OAuth2 token endpoint (refresh grant, client credentials by HTTP Basic).
    #[arg(
        long,
        env = "SUUNTO_TOKEN_URL",
        default_value = "https://cloudapi-oauth.suunto.com/oauth/token"
    )]
    pub suunto_token_url: String,

    /// Suunto OAuth client id (needed to refresh tokens).
    #[arg(long, env = "SUUNTO_CLIENT_ID")]
    pub suunto_client_id: Option<String>,

    /// Suunto OAuth client secret.
    #[arg(long, env = "SUUNTO_CLIENT_SECRET", hide_env_values = true)]
    pub suunto_client_secret: Option<Secret>,

    /// APIM subscription key, sent as `Ocp-Apim-Subscription-Key` on every data call.
    #[arg(long, env = "SUUNTO_SUBSCRIPTION_KEY", hide_env_values = true)]
    pub suunto_subscription_key: Option<Secret>,

    /// Suunto requests per period for the whole application (Suunto publishes no
    /// limit [unverified]; a conservative guess).
    #[arg(long, env = "SUUNTO_RATE_LIMIT", default_value = "100/1m")]
    pub suunto_rate_limit: Quota,

    /// Suunto requests per period for one linked account.
    #[arg(long, env = "SUUNTO_ACCOUNT_RATE_LIMIT", default_value = "60/1m")]
    pub suunto_account_rate_limit: Quota,
}

impl ProcessorArgs {
    /// Every Suunto event needs the linked account (its `username` names the user).
    pub fn fetch(&self) -> Option<FetchSpec> {
        Some(FetchSpec {
            notify: Box::new(SuuntoNotify),
            api_base: self.suunto_api_base_url.trim_end_matches('/').to_owned(),
            api_base_var: "SUUNTO_API_BASE_URL",
            headers: self
                .suunto_subscription_key
                .iter()
                .map(|key| ("ocp-apim-subscription-key", key.clone()))
                .collect(),
            oauth: OAuth {
                token_url: self.suunto_token_url.clone(),
                client_id: self.suunto_client_id.clone(),
                client_secret: self.suunto_client_secret.clone(),
                client_id_var: "SUUNTO_CLIENT_ID",
                client_secret_var: "SUUNTO_CLIENT_SECRET",
                token_url_var: "SUUNTO_TOKEN_URL",
                refresh_scope: None,
                client_auth: ClientAuth::Basic,
            },
            vendor_quota: self.suunto_rate_limit,
            account_quota: self.suunto_account_rate_limit,
        })
    }
}
