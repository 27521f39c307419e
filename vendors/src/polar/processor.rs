//! Polar's processor settings: where AccessLink is and its rate limits. Polar issues no
//! refresh token, so there is no token endpoint and no client credential to set.

use super::fetch::{PolarNotify, registration};
use crate::fetch::{FetchSpec, Quota};

/// Polar's settings in the processor.
#[derive(Debug, Clone, clap::Args)]
#[group(skip)]
#[command(next_help_heading = "Polar")]
pub struct ProcessorArgs {
    /// Polar AccessLink base URL.
    #[arg(
        long,
        env = "POLAR_API_BASE_URL",
        default_value = "https://www.polaraccesslink.com"
    )]
    pub polar_api_base_url: String,

    /// Polar requests per period for the whole application. AccessLink allows
    /// 500 + 20 × registered users per 15 minutes (and 5,000 + 100 × users per day, left
    /// to its 429s); the default is the floor.
    #[arg(long, env = "POLAR_RATE_LIMIT", default_value = "500/15m")]
    pub polar_rate_limit: Quota,

    /// Polar requests per period for one linked account: the share each registered user
    /// adds to the application's 15-minute window.
    #[arg(long, env = "POLAR_ACCOUNT_RATE_LIMIT", default_value = "20/15m")]
    pub polar_account_rate_limit: Quota,
}

impl ProcessorArgs {
    /// Polar is fetched after every notification.
    pub fn fetch(&self) -> Option<FetchSpec> {
        Some(FetchSpec {
            notify: Box::new(PolarNotify),
            api_base: self.polar_api_base_url.trim_end_matches('/').to_owned(),
            api_base_var: "POLAR_API_BASE_URL",
            headers: Vec::new(),
            oauth: None,
            on_link: Some(registration),
            vendor_quota: self.polar_rate_limit,
            account_quota: self.polar_account_rate_limit,
        })
    }
}
