//! Polar AccessLink webhooks (vendors.md §5; the whole scheme is [C]).

use std::borrow::Cow;
use std::time::Duration;

use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::verify::partition::json_path;
use crate::verify::scheme::{Algorithm, Encoding, HeaderHmac};
use crate::verify::{Head, Request, Verified, Verifier, VerifyError};

const SIGNATURE: &str = "polar-webhook-signature";

/// A PING is `{"event":"PING"}`; anything much larger is not one, and is
/// never parsed before its signature has been checked.
const MAX_PING_BYTES: usize = 1024;

/// Polar AccessLink: `Polar-Webhook-Signature` = hex HMAC-SHA256(the
/// webhook's `signature_secret_key`, raw body); no timestamp. The
/// registration `PING` is answered without a valid signature.
#[derive(Debug, Clone)]
pub struct PolarVerifier {
    hmac: HeaderHmac,
}

impl PolarVerifier {
    /// `secrets`: the `signature_secret_key` values currently valid (any may
    /// match). Polar signs no timestamp, so there is no tolerance.
    pub fn new(secrets: Vec<Vec<u8>>) -> Self {
        Self {
            hmac: HeaderHmac {
                signature_header: SIGNATURE,
                algorithm: Algorithm::Sha256,
                // The hex case is unverified [C]: decoding accepts both.
                encoding: Encoding::Hex,
                timestamp: None,
                secrets,
                tolerance: Duration::ZERO,
            },
        }
    }
}

impl Verifier for PolarVerifier {
    /// A request without a well-formed signature can only be the unsigned PING,
    /// so it must announce a PING-sized body; anything else is refused unread.
    fn precheck(&self, head: &Head<'_>) -> Result<(), VerifyError> {
        match self.hmac.precheck(head.headers, head.now) {
            Ok(()) => Ok(()),
            Err(_)
                if head
                    .content_length
                    .is_some_and(|n| n <= MAX_PING_BYTES as u64) =>
            {
                Ok(())
            }
            Err(error) => Err(error),
        }
    }

    fn verify(&self, req: &Request<'_>) -> Result<Verified, VerifyError> {
        match self.hmac.verify(req.headers, req.body, req.now) {
            Ok(()) if is_ping(req.body) => Ok(Verified::Ping),
            Ok(()) => Ok(Verified::Accept { principal: None }),
            // Whether the PING is signed is unverified [U], and it arrives
            // while the webhook is being created, before the operator can
            // configure the secret that same call returns. A Ping appends
            // nothing, so any PING (unsigned, or signed with a key we do not
            // hold yet) gets its 200; every other event must be signed.
            Err(_) if is_ping(req.body) => Ok(Verified::Ping),
            Err(error) => Err(error),
        }
    }

    fn kept_headers(&self) -> &'static [&'static str] {
        &[SIGNATURE]
    }

    fn partition_key(&self, req: &Request<'_>, _principal: Option<&str>) -> Option<String> {
        json_path(req.body, &["user_id"])
    }
}

/// The fields that decide whether a small body is a PING.
#[derive(Deserialize)]
struct PingProbe<'a> {
    #[serde(borrow)]
    event: Option<Cow<'a, str>>,
    user_id: Option<IgnoredAny>,
    entity_id: Option<IgnoredAny>,
    url: Option<IgnoredAny>,
}

/// True for a small JSON object whose `event` is `PING` and that carries none
/// of the fields that point at data (`user_id`, `entity_id`, `url`).
fn is_ping(body: &[u8]) -> bool {
    if body.len() > MAX_PING_BYTES {
        return false;
    }
    match serde_json::from_slice::<PingProbe<'_>>(body) {
        Ok(probe) => {
            probe.event.as_deref() == Some("PING")
                && probe.user_id.is_none()
                && probe.entity_id.is_none()
                && probe.url.is_none()
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::testing::{head, headers, request};

    const SECRET: &[u8] = b"polar-test-signature-secret-key";
    const BODY: &[u8] = br#"{"event":"EXERCISE","user_id":475,"entity_id":"aQlC83","timestamp":"2025-01-01T08:00:00Z","url":"https://www.polaraccesslink.com/v3/exercises/aQlC83"}"#;
    const SIG: &str = "f82f00ad41816022df974376e6257b82971e53d9738bac098c85789f16631f09";
    const PING: &[u8] = br#"{"event":"PING"}"#;
    /// hex HMAC-SHA256(SECRET, PING), computed with Python's `hmac`.
    const PING_SIG: &str = "8ff247836f72ad5d787c228a745272f9fdf4c08ddf1f04f95e02f2f322fcf3b7";
    const NOW: i64 = 1_735_718_400;

    const OK: Result<Verified, VerifyError> = Ok(Verified::Accept { principal: None });

    fn verifier() -> PolarVerifier {
        PolarVerifier::new(vec![SECRET.to_vec()])
    }

    fn check(sig: Option<&str>, body: &[u8]) -> Result<Verified, VerifyError> {
        let h = match sig {
            Some(sig) => headers(&[("Polar-Webhook-Signature", sig)]),
            None => headers(&[]),
        };
        verifier().verify(&request(&h, body, NOW))
    }

    #[test]
    fn precheck_lets_only_a_ping_sized_body_through_unsigned() {
        let v = verifier();
        let none = headers(&[]);
        let signed = headers(&[("Polar-Webhook-Signature", SIG)]);
        let short = headers(&[("Polar-Webhook-Signature", &SIG[..62])]);
        assert_eq!(v.precheck(&head(&signed, Some(1 << 20), NOW)), Ok(()));
        assert_eq!(
            v.precheck(&head(&none, Some(PING.len() as u64), NOW)),
            Ok(())
        );
        assert_eq!(v.precheck(&head(&short, Some(16), NOW)), Ok(()));
        assert_eq!(
            v.precheck(&head(&none, Some(4096), NOW)),
            Err(VerifyError::MissingSignature(SIGNATURE))
        );
        assert_eq!(
            v.precheck(&head(&none, None, NOW)),
            Err(VerifyError::MissingSignature(SIGNATURE))
        );
        assert_eq!(
            v.precheck(&head(&short, Some(4096), NOW)),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn accepts_the_vector_in_either_case() {
        assert_eq!(check(Some(SIG), BODY), OK);
        assert_eq!(check(Some(&SIG.to_uppercase()), BODY), OK);
    }

    #[test]
    fn rejects_forgeries() {
        let tampered = [BODY, b"\n"].concat();
        assert_eq!(check(Some(SIG), &tampered), Err(VerifyError::BadSignature));
        let base64 = "+C8ArUGBYCLfl0N25iV7gpceU9lzi6wJjIV4nxZjHwk=";
        assert_eq!(check(Some(base64), BODY), Err(VerifyError::BadSignature));
        assert_eq!(
            check(Some(&SIG[..62]), BODY),
            Err(VerifyError::BadSignature)
        );
        assert_eq!(
            check(Some(SIG), PING.get(..15).unwrap_or_default()),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn unsigned_ping_is_answered_but_unsigned_data_is_not() {
        assert_eq!(check(None, PING), Ok(Verified::Ping));
        assert_eq!(
            check(None, b" { \"event\" : \"PING\" }\n"),
            Ok(Verified::Ping)
        );
        assert_eq!(
            check(None, BODY),
            Err(VerifyError::MissingSignature(SIGNATURE))
        );
        assert_eq!(check(None, BODY).map_err(|e| e.status()), Err(401));
        // A PING dressed up with data fields is treated as data.
        let disguised = br#"{"event":"PING","user_id":475,"url":"https://x"}"#;
        assert_eq!(
            check(None, disguised),
            Err(VerifyError::MissingSignature(SIGNATURE))
        );
        assert_eq!(
            check(None, br#"{"event":"ping"}"#),
            Err(VerifyError::MissingSignature(SIGNATURE))
        );
        assert_eq!(
            check(None, b"[]"),
            Err(VerifyError::MissingSignature(SIGNATURE))
        );
    }

    #[test]
    fn signed_ping_is_a_ping_even_with_an_unknown_key() {
        assert_eq!(check(Some(PING_SIG), PING), Ok(Verified::Ping));
        assert_eq!(check(Some(SIG), PING), Ok(Verified::Ping));
    }

    #[test]
    fn rotated_secrets_any_may_match() {
        let v = PolarVerifier::new(vec![b"old".to_vec(), SECRET.to_vec()]);
        let h = headers(&[("polar-webhook-signature", SIG)]);
        assert_eq!(v.verify(&request(&h, BODY, NOW)), OK);
    }

    #[test]
    fn partition_key_is_top_level_user_id() {
        let h = headers(&[]);
        assert_eq!(
            verifier().partition_key(&request(&h, BODY, NOW), None),
            Some("475".to_owned())
        );
    }
}
