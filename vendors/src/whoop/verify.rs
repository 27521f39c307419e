//! WHOOP developer API webhooks (vendors.md §2.2–2.3).

use std::time::Duration;

use crate::verify::partition::json_path;
use crate::verify::scheme::{Algorithm, Encoding, HeaderHmac, SignedTimestamp, TimestampUnit};
use crate::verify::{Head, Request, Verified, Verifier, VerifyError};

const SIGNATURE: &str = "x-whoop-signature";
const TIMESTAMP: &str = "x-whoop-signature-timestamp";

/// WHOOP: `X-WHOOP-Signature` = base64 HMAC-SHA256(client secret,
/// `X-WHOOP-Signature-Timestamp` + raw body), the timestamp in milliseconds.
#[derive(Debug, Clone)]
pub struct WhoopVerifier {
    hmac: HeaderHmac,
}

impl WhoopVerifier {
    /// `secrets`: the app's client secrets currently valid (any may match).
    /// `tolerance`: allowed distance of the signed timestamp from now, both ways.
    pub fn new(secrets: Vec<Vec<u8>>, tolerance: Duration) -> Self {
        Self {
            hmac: HeaderHmac {
                signature_header: SIGNATURE,
                algorithm: Algorithm::Sha256,
                // The scheme is corroborated, not verified [C]: padding and
                // alphabet are accepted in every form (they are not signed).
                encoding: Encoding::Base64,
                timestamp: Some(SignedTimestamp {
                    header: TIMESTAMP,
                    // Milliseconds per [C]. Deliberately not liberal here: with no
                    // separator between timestamp and body, accepting seconds too would
                    // let a replayer move three digits from the timestamp into the body
                    // and keep the signature (found in review).
                    unit: TimestampUnit::Milliseconds,
                    separator: b"",
                }),
                secrets,
                tolerance,
            },
        }
    }
}

impl Verifier for WhoopVerifier {
    fn precheck(&self, head: &Head<'_>) -> Result<(), VerifyError> {
        self.hmac.precheck(head.headers, head.now)
    }

    fn verify(&self, req: &Request<'_>) -> Result<Verified, VerifyError> {
        self.hmac.verify(req.headers, req.body, req.now)?;
        Ok(Verified::Accept { principal: None })
    }

    fn kept_headers(&self) -> &'static [&'static str] {
        &[SIGNATURE, TIMESTAMP]
    }

    /// `user_id` is an int64 in WHOOP bodies; rendered in decimal.
    fn partition_key(&self, req: &Request<'_>, _principal: Option<&str>) -> Option<String> {
        json_path(req.body, &["user_id"])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::testing::{head, headers, request};

    const SECRET: &[u8] = b"whoop-test-client-secret";
    const T_MS: &str = "1735718400000";
    const T: i64 = 1_735_718_400;
    const BODY: &[u8] = br#"{"user_id":10129,"id":"ecfc6a15-4661-442f-a9a4-f160dd7afae8","type":"sleep.updated","trace_id":"e369c784-5100-49e8-8098-75d35c47b31b"}"#;
    const SIG: &str = "46y7Fo1Y6q4bSMD+nDb9uis2C0IpcVjT6yWXXJ2LfgQ=";
    /// vendors.md §8.2 "must fail": with a `.` separator, and hex instead of base64.
    const SIG_DOT: &str = "h/OeMoRz6LSMQ64WvnNiMoZsNuYUp+Db9IQZEXkwbrw=";
    const SIG_HEX: &str = "e3acbb168d58eaae1b48c0fe9c36fdba2b360b42297158d3eb25975c9d8b7e04";

    const OK: Result<Verified, VerifyError> = Ok(Verified::Accept { principal: None });

    fn verifier() -> WhoopVerifier {
        WhoopVerifier::new(vec![SECRET.to_vec()], Duration::from_secs(300))
    }

    fn check(sig: &str, ts: &str, body: &[u8], now: i64) -> Result<Verified, VerifyError> {
        let h = headers(&[
            ("X-WHOOP-Signature", sig),
            ("X-WHOOP-Signature-Timestamp", ts),
        ]);
        verifier().verify(&request(&h, body, now))
    }

    #[test]
    fn precheck_checks_presence_shape_and_window_unread() {
        let v = verifier();
        let pre = |pairs: &[(&str, &str)], now| v.precheck(&head(&headers(pairs), Some(10), now));
        let ts = ("x-whoop-signature-timestamp", T_MS);
        assert_eq!(pre(&[("x-whoop-signature", SIG), ts], T), Ok(()));
        assert_eq!(
            pre(&[ts], T),
            Err(VerifyError::MissingSignature("x-whoop-signature"))
        );
        assert_eq!(
            pre(&[("x-whoop-signature", SIG)], T),
            Err(VerifyError::MissingSignature("x-whoop-signature-timestamp"))
        );
        assert_eq!(
            pre(
                &[
                    ("x-whoop-signature", SIG),
                    ("x-whoop-signature-timestamp", "x")
                ],
                T
            ),
            Err(VerifyError::MalformedSignature(
                "x-whoop-signature-timestamp"
            ))
        );
        assert_eq!(
            pre(&[("x-whoop-signature", SIG), ts], T + 301),
            Err(VerifyError::StaleTimestamp)
        );
        // Hex is the wrong encoding; a truncated MAC the wrong length.
        assert_eq!(
            pre(&[("x-whoop-signature", SIG_HEX), ts], T),
            Err(VerifyError::BadSignature)
        );
        assert_eq!(
            pre(
                &[("x-whoop-signature", "46y7Fo1Y6q4bSMD+nDb9uis2C0Ip"), ts],
                T
            ),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn accepts_the_vector_with_a_millisecond_timestamp() {
        // A seconds reading of the header would put it ~55,000 years ahead.
        assert_eq!(check(SIG, T_MS, BODY, T + 10), OK);
        // Padding is not signed; a sender that strips it is still accepted.
        assert_eq!(check(SIG.trim_end_matches('='), T_MS, BODY, T + 10), OK);
    }

    #[test]
    fn rejects_forgeries() {
        let tampered = [BODY, b" "].concat();
        assert_eq!(
            check(SIG, T_MS, &tampered, T),
            Err(VerifyError::BadSignature)
        );
        assert_eq!(
            check(SIG_DOT, T_MS, BODY, T),
            Err(VerifyError::BadSignature)
        );
        assert_eq!(
            check(SIG_HEX, T_MS, BODY, T),
            Err(VerifyError::BadSignature)
        );
        assert_eq!(
            check(&SIG[..40], T_MS, BODY, T),
            Err(VerifyError::BadSignature)
        );
        assert_eq!(
            check(&SIG[..41], T_MS, BODY, T),
            Err(VerifyError::BadSignature)
        );
        assert_eq!(
            check(SIG, "1735718400001", BODY, T),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn digits_cannot_move_from_the_timestamp_into_the_body() {
        // Same signed bytes: "1735718400" + "000" + BODY == T_MS + BODY.
        let shifted = [&b"000"[..], BODY].concat();
        assert_ne!(check(SIG, "1735718400", &shifted, T), OK);
    }

    #[test]
    fn missing_headers() {
        let v = verifier();
        let h = headers(&[("X-WHOOP-Signature-Timestamp", T_MS)]);
        assert_eq!(
            v.verify(&request(&h, BODY, T)),
            Err(VerifyError::MissingSignature(SIGNATURE))
        );
        let h = headers(&[("X-WHOOP-Signature", SIG)]);
        assert_eq!(
            v.verify(&request(&h, BODY, T)),
            Err(VerifyError::MissingSignature(TIMESTAMP))
        );
        assert_eq!(
            check(SIG, "17357184OO000", BODY, T),
            Err(VerifyError::MalformedSignature(TIMESTAMP))
        );
    }

    #[test]
    fn window_both_ways() {
        assert_eq!(check(SIG, T_MS, BODY, T + 299), OK);
        assert_eq!(
            check(SIG, T_MS, BODY, T + 301),
            Err(VerifyError::StaleTimestamp)
        );
        assert_eq!(
            check(SIG, T_MS, BODY, T - 301),
            Err(VerifyError::FutureTimestamp)
        );
    }

    #[test]
    fn rotated_secrets_any_may_match() {
        let v = WhoopVerifier::new(
            vec![b"retired".to_vec(), SECRET.to_vec()],
            Duration::from_secs(300),
        );
        let h = headers(&[
            ("x-whoop-signature", SIG),
            ("x-whoop-signature-timestamp", T_MS),
        ]);
        assert_eq!(v.verify(&request(&h, BODY, T)), OK);
    }

    #[test]
    fn partition_key_renders_the_integer_user_id() {
        let h = headers(&[]);
        assert_eq!(
            verifier().partition_key(&request(&h, BODY, T), None),
            Some("10129".to_owned())
        );
    }
}
