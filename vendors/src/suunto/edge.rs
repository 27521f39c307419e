//! Suunto's edge settings and verifier: `X-HMAC-SHA256-Signature` = lower-case hex
//! HMAC-SHA256 of the raw body with the app's notification secret (accounts.md §4,
//! corroborated by Open Wearables' handler, not by Suunto's partner docs). Suunto signs
//! no timestamp, so a captured delivery can be replayed; the processor's delivery dedup
//! and the table's keys make a replay change nothing. The scheme is the generic
//! body-HMAC mechanism with Suunto's constants, not code of its own.

use std::sync::Arc;
use std::time::Duration;

use bridge_core::config::ConfigError;
use http::HeaderName;

use crate::verify::{
    Algorithm, Encoding, GenericHmacConfig, GenericHmacVerifier, SignedContent, Verifier, keys,
};

/// Suunto's settings at the edge.
#[derive(Debug, Clone, clap::Args)]
#[group(skip)]
#[command(next_help_heading = "Suunto")]
pub struct EdgeArgs {
    /// Suunto notification secret(s) from the API Zone app settings; signs
    /// `X-HMAC-SHA256-Signature`. Unset disables `/webhooks/suunto`.
    #[arg(
        long,
        env = "SUUNTO_NOTIFICATION_SECRET",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub suunto_notification_secret: Vec<String>,
}

impl EdgeArgs {
    /// The verifier, `None` when no secret is configured.
    pub fn verifier(&self, tolerance: Duration) -> Result<Option<Arc<dyn Verifier>>, ConfigError> {
        let secrets = keys(&self.suunto_notification_secret);
        if secrets.is_empty() {
            return Ok(None);
        }
        let config = GenericHmacConfig {
            signature_header: HeaderName::from_static("x-hmac-sha256-signature"),
            algorithm: Algorithm::Sha256,
            // Lower-case hex per [C]; decoding makes the case irrelevant.
            encoding: Encoding::Hex,
            signed: SignedContent::Body,
            // Every Suunto event names the user as `username`.
            partition_key_path: vec!["username".into()],
        };
        Ok(Some(Arc::new(GenericHmacVerifier::new(
            config, secrets, tolerance,
        ))))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use hmac::{KeyInit, Mac};

    use super::*;
    use crate::verify::VerifyError;
    use crate::verify::testing::{head, headers, request};

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: EdgeArgs,
    }

    const BODY: &[u8] = br#"{"type":"SUUNTO_247_SLEEP_CREATED","username":"suunto-u1","samples":[]}"#;

    fn verifier(secrets: &str) -> Arc<dyn Verifier> {
        Cli::try_parse_from(["edge", "--suunto-notification-secret", secrets])
            .expect("parses")
            .args
            .verifier(Duration::from_secs(300))
            .expect("valid")
            .expect("configured")
    }

    fn sign(secret: &str, body: &[u8]) -> String {
        let mut mac =
            <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }

    #[test]
    fn signed_body_is_accepted_and_tampering_is_not() {
        let v = verifier("notif-secret");
        let sig = sign("notif-secret", BODY);
        let h = headers(&[("X-HMAC-SHA256-Signature", &sig)]);
        assert!(v.precheck(&head(&h, Some(BODY.len() as u64), 0)).is_ok());
        assert!(v.verify(&request(&h, BODY, 0)).is_ok());
        assert_eq!(
            v.partition_key(&request(&h, BODY, 0), None).as_deref(),
            Some("suunto-u1")
        );
        // Upper-case hex of the same MAC is the same MAC.
        let h = headers(&[("x-hmac-sha256-signature", &sig.to_uppercase())]);
        assert!(v.verify(&request(&h, BODY, 0)).is_ok());
        let mut tampered = BODY.to_vec();
        tampered[10] ^= 1;
        assert_eq!(
            v.verify(&request(&h, &tampered, 0)),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn rotation_wrong_key_and_missing_header() {
        let v = verifier("old-secret,new-secret");
        for secret in ["old-secret", "new-secret"] {
            let h = headers(&[("x-hmac-sha256-signature", &sign(secret, BODY))]);
            assert!(v.verify(&request(&h, BODY, 0)).is_ok(), "{secret}");
        }
        let h = headers(&[("x-hmac-sha256-signature", &sign("other", BODY))]);
        assert_eq!(
            v.verify(&request(&h, BODY, 0)),
            Err(VerifyError::BadSignature)
        );
        let h = headers(&[]);
        assert!(matches!(
            v.precheck(&head(&h, None, 0)),
            Err(VerifyError::MissingSignature(_))
        ));
        let none = Cli::try_parse_from(["edge"]).expect("parses").args;
        assert!(none.verifier(Duration::ZERO).expect("valid").is_none());
    }
}
