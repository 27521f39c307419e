//! Oura's processor settings: where its API and token endpoint are, its client
//! credentials and rate limits.

use bridge_core::config::Secret;

use super::fetch::OuraNotify;
use crate::fetch::{ClientAuth, FetchSpec, OAuth, Quota};

/// Oura's settings in the processor.
#[derive(Debug, Clone, clap::Args)]
#[group(skip)]
#[command(next_help_heading = "Oura")]
pub struct ProcessorArgs {
    /// Oura REST base URL.
    #[arg(
        long,
        env = "OURA_API_BASE_URL",
        default_value = "https://api.ouraring.com"
    )]
    pub oura_api_base_url: String,

    /// Oura OAuth2 token endpoint (refresh grant).
    #[arg(
        long,
        env = "OURA_TOKEN_URL",
        default_value = "https://api.ouraring.com/oauth/token"
    )]
    pub oura_token_url: String,

    /// Oura OAuth client id (needed to refresh tokens).
    #[arg(long, env = "OURA_CLIENT_ID")]
    pub oura_client_id: Option<String>,

    /// Oura OAuth client secret(s), the same list the edge verifies webhooks with;
    /// token calls use the first, so during a rotation list the current one first.
    #[arg(
        long,
        env = "OURA_CLIENT_SECRET",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub oura_client_secret: Vec<Secret>,

    /// Oura requests per period for the whole application. Oura documents 5,000
    /// requests per 5 minutes (vendors.md §1.1).
    #[arg(long, env = "OURA_RATE_LIMIT", default_value = "5000/5m")]
    pub oura_rate_limit: Quota,

    /// Oura requests per period for one linked account (Oura does not say whether its
    /// limit is per application or per user, so both are enforced).
    #[arg(long, env = "OURA_ACCOUNT_RATE_LIMIT", default_value = "5000/5m")]
    pub oura_account_rate_limit: Quota,
}

impl ProcessorArgs {
    /// Oura is fetched after every notification.
    pub fn fetch(&self) -> Option<FetchSpec> {
        Some(FetchSpec {
            notify: Box::new(OuraNotify),
            api_base: self.oura_api_base_url.trim_end_matches('/').to_owned(),
            headers: Vec::new(),
            api_base_var: "OURA_API_BASE_URL",
            oauth: Some(OAuth {
                token_url: self.oura_token_url.clone(),
                client_id: self.oura_client_id.clone(),
                client_secret: self
                    .oura_client_secret
                    .iter()
                    .find(|s| !s.expose().trim().is_empty())
                    .cloned(),
                client_id_var: "OURA_CLIENT_ID",
                client_secret_var: "OURA_CLIENT_SECRET",
                token_url_var: "OURA_TOKEN_URL",
                refresh_scope: None,
                client_auth: ClientAuth::Post,
            }),
            on_link: None,
            vendor_quota: self.oura_rate_limit,
            account_quota: self.oura_account_rate_limit,
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ProcessorArgs,
    }

    #[test]
    fn token_calls_use_the_first_secret_of_the_edge_list() {
        let cli = Cli::try_parse_from(["processor", "--oura-client-secret", " ,current,old"])
            .expect("parses");
        let spec = cli.args.fetch().expect("Oura is fetched");
        let oauth = spec.oauth.expect("Oura refreshes tokens");
        assert_eq!(oauth.client_secret.map(|s| s.0), Some("current".to_owned()));
        let none = Cli::try_parse_from(["processor"]).expect("parses");
        let spec = none.args.fetch().expect("Oura is fetched");
        assert!(spec.oauth.expect("oauth").client_secret.is_none());
    }
}
