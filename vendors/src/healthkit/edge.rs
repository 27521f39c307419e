//! Health Auto Export's edge settings.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bridge_core::config::ConfigError;

use super::verify::HealthKitVerifier;
use crate::verify::Verifier;

/// Health Auto Export's settings at the edge.
#[derive(Debug, Clone, clap::Args)]
#[group(skip)]
#[command(next_help_heading = "Health Auto Export")]
pub struct EdgeArgs {
    /// Health Auto Export API keys as `user_id=api_key` pairs. Unset disables `/webhooks/healthkit`.
    #[arg(
        long,
        env = "HEALTHKIT_API_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub healthkit_api_keys: Vec<String>,
}

impl EdgeArgs {
    /// The verifier, `None` when no key is configured. Two users with one key refuse
    /// start: the first configured would win, landing one user's data under another.
    pub fn verifier(&self, _tolerance: Duration) -> Result<Option<Arc<dyn Verifier>>, ConfigError> {
        let keys = self.keys()?;
        Ok((!keys.is_empty()).then(|| Arc::new(HealthKitVerifier::new(keys)) as Arc<dyn Verifier>))
    }

    /// `(user_id, api_key)` pairs, checked.
    fn keys(&self) -> Result<Vec<(String, String)>, ConfigError> {
        let err = |message: String| ConfigError {
            var: "HEALTHKIT_API_KEYS",
            message,
        };
        let mut pairs = Vec::new();
        let mut seen: HashMap<String, String> = HashMap::new();
        for pair in self
            .healthkit_api_keys
            .iter()
            .filter(|p| !p.trim().is_empty())
        {
            let (user, key) = match pair.split_once('=') {
                Some((u, k)) if !u.trim().is_empty() && !k.trim().is_empty() => (u.trim(), k.trim()),
                _ => return Err(err("expected comma-separated user_id=api_key pairs".into())),
            };
            if let Some(first) = seen.insert(key.to_string(), user.to_string()) {
                return Err(err(format!(
                    "users `{first}` and `{user}` have the same API key; every user needs their own"
                )));
            }
            pairs.push((user.to_string(), key.to_string()));
        }
        Ok(pairs)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: EdgeArgs,
    }

    fn keys(list: &str) -> Result<Vec<(String, String)>, ConfigError> {
        Cli::try_parse_from(["edge", "--healthkit-api-keys", list])
            .expect("parses")
            .args
            .keys()
    }

    #[test]
    fn duplicate_keys_refuse_start_without_naming_the_key() {
        assert_eq!(keys("alice=k1,bob=k2,alice=k3").expect("ok").len(), 3);
        let err = keys("alice=sk-secret-1,bob= sk-secret-1").expect_err("duplicate key");
        assert_eq!(err.var, "HEALTHKIT_API_KEYS");
        let text = err.to_string();
        assert!(text.contains("alice") && text.contains("bob"), "{text}");
        assert!(!text.contains("sk-secret-1"), "{text}");
        assert!(keys("alice").is_err());
    }
}
