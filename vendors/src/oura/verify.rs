//! Oura Ring API v2 (vendors.md §1.1–1.3).

use std::time::Duration;

use crate::verify::partition::json_path;
use crate::verify::scheme::{
    Algorithm, Encoding, HeaderHmac, SecretFingerprint, SignedTimestamp, TimestampUnit,
    fingerprint_mac,
};
use crate::verify::{Head, Request, Verified, Verifier, VerifyError};

const SIGNATURE: &str = "x-oura-signature";
const TIMESTAMP: &str = "x-oura-timestamp";
const TOKEN_PARAM: &str = "verification_token";
const CHALLENGE_PARAM: &str = "challenge";

/// Oura: `x-oura-signature` = hex HMAC-SHA256(client secret,
/// `x-oura-timestamp` + raw body), plus the subscription handshake.
#[derive(Debug, Clone)]
pub struct OuraVerifier {
    hmac: HeaderHmac,
    verification_token: Option<SecretFingerprint>,
}

impl OuraVerifier {
    /// `secrets`: the OAuth client secrets currently valid (any may match).
    /// `tolerance`: allowed distance of `x-oura-timestamp` from now, both ways.
    /// `verification_token`: the token given when creating subscriptions;
    /// `None` (no subscriptions made by us) or an empty token makes every
    /// handshake fail.
    pub fn new(
        secrets: Vec<Vec<u8>>,
        tolerance: Duration,
        verification_token: Option<String>,
    ) -> Self {
        Self {
            hmac: HeaderHmac {
                signature_header: SIGNATURE,
                algorithm: Algorithm::Sha256,
                // Oura's example upper-cases the hex; decoding both sides
                // makes the case irrelevant, as vendors.md §1.2 recommends.
                encoding: Encoding::Hex,
                timestamp: Some(SignedTimestamp {
                    header: TIMESTAMP,
                    // Seconds, from the doc example `1234567890` [U]. Not liberal on
                    // purpose: timestamp and body are concatenated without a separator,
                    // so accepting a second unit lets digits move between them.
                    unit: TimestampUnit::Seconds,
                    separator: b"",
                }),
                secrets,
                tolerance,
            },
            verification_token: verification_token
                .map(|token| SecretFingerprint::of(token.as_bytes())),
        }
    }

    /// Answer the subscription handshake
    /// `GET ?verification_token=<token>&challenge=<random>`.
    ///
    /// `query` is the raw query string (a leading `?` is tolerated). Returns
    /// the decoded challenge, which the caller echoes as the JSON body
    /// `{"challenge": …}`; it is untrusted text, so serialize it with a JSON
    /// encoder, never by string interpolation. Errors: no token →
    /// `MissingSignature("verification_token")` (401), wrong token →
    /// `BadSignature` (401, as in Oura's example), no challenge →
    /// `MalformedSignature("challenge")` (400).
    pub fn challenge(&self, query: &str) -> Result<String, VerifyError> {
        let token = query_param(query, TOKEN_PARAM)
            .filter(|token| !token.is_empty())
            .ok_or(VerifyError::MissingSignature(TOKEN_PARAM))?;
        let presented = fingerprint_mac(&token);
        if !self
            .verification_token
            .as_ref()
            .is_some_and(|expected| expected.matches(&presented))
        {
            return Err(VerifyError::BadSignature);
        }
        let challenge = query_param(query, CHALLENGE_PARAM)
            .ok_or(VerifyError::MalformedSignature(CHALLENGE_PARAM))?;
        Ok(String::from_utf8_lossy(&challenge).into_owned())
    }
}

impl Verifier for OuraVerifier {
    fn precheck(&self, head: &Head<'_>) -> Result<(), VerifyError> {
        self.hmac.precheck(head.headers, head.now)
    }

    fn verify(&self, req: &Request<'_>) -> Result<Verified, VerifyError> {
        // Oura's docs sign `JSON.stringify(body)`; we sign-check the raw bytes
        // as real integrations do (vendors.md §1.2), never a re-serialization.
        self.hmac.verify(req.headers, req.body, req.now)?;
        Ok(Verified::Accept { principal: None })
    }

    fn handshake(&self, query: Option<&str>) -> Option<Result<String, VerifyError>> {
        let answer = self.challenge(query.unwrap_or(""));
        Some(answer.map(|challenge| serde_json::json!({ "challenge": challenge }).to_string()))
    }

    fn kept_headers(&self) -> &'static [&'static str] {
        &[SIGNATURE, TIMESTAMP]
    }

    fn partition_key(&self, req: &Request<'_>, _principal: Option<&str>) -> Option<String> {
        json_path(req.body, &["user_id"])
    }
}

/// First value of `name` in an `application/x-www-form-urlencoded` query,
/// decoded (`+` is a space, `%XX` a byte), as raw bytes.
fn query_param(query: &str, name: &str) -> Option<Vec<u8>> {
    let query = query.strip_prefix('?').unwrap_or(query);
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .find(|(key, _)| form_decode(key) == name.as_bytes())
        .map(|(_, value)| form_decode(value))
}

/// Form decoding as `form_urlencoded` does it: a `%` not followed by two hex
/// digits is kept literally rather than rejected.
fn form_decode(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(byte) = bytes.next() {
        match byte {
            b'+' => out.push(b' '),
            b'%' => {
                let mut lookahead = bytes.clone();
                match (
                    lookahead.next().and_then(hex_digit),
                    lookahead.next().and_then(hex_digit),
                ) {
                    (Some(high), Some(low)) => {
                        out.push(high << 4 | low);
                        bytes = lookahead;
                    }
                    _ => out.push(b'%'),
                }
            }
            other => out.push(other),
        }
    }
    out
}

fn hex_digit(byte: u8) -> Option<u8> {
    char::from(byte)
        .to_digit(16)
        .and_then(|digit| u8::try_from(digit).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::testing::{headers, request};

    const SECRET: &[u8] = b"oura-test-client-secret";
    const T: i64 = 1_735_718_400;
    const BODY: &[u8] = br#"{"event_type":"update","data_type":"daily_sleep","object_id":"8f9a5221-639e-4a85-81cb-4065ef23f979","event_time":"2025-01-01T08:00:00+00:00","user_id":"oura-user-123"}"#;
    const SIG: &str = "5A07BE9638D8EBC5CBA46A35E62FD4143F1AFA2DD8650B52843C9875F2768B10";
    /// Over the body alone, without the timestamp (vendors.md §8.1 "must fail").
    const SIG_BODY_ONLY: &str = "30859C77F97919F3BE41B6CA0655F6B2A2A45A41BEEF70842FCACCAD3DE2969D";

    fn verifier() -> OuraVerifier {
        OuraVerifier::new(
            vec![SECRET.to_vec()],
            Duration::from_secs(300),
            Some("tok-123".to_owned()),
        )
    }

    fn check(sig: &str, ts: &str, body: &[u8], now: i64) -> Result<Verified, VerifyError> {
        let h = headers(&[("X-Oura-Signature", sig), ("X-Oura-Timestamp", ts)]);
        verifier().verify(&request(&h, body, now))
    }

    const OK: Result<Verified, VerifyError> = Ok(Verified::Accept { principal: None });

    #[test]
    fn accepts_the_vector_in_either_case() {
        assert_eq!(check(SIG, "1735718400", BODY, T + 10), OK);
        assert_eq!(check(&SIG.to_lowercase(), "1735718400", BODY, T + 10), OK);
    }

    #[test]
    fn rejects_forgeries() {
        let mut tampered = BODY.to_vec();
        tampered[20] ^= 1;
        assert_eq!(
            check(SIG, "1735718400", &tampered, T),
            Err(VerifyError::BadSignature)
        );
        assert_eq!(
            check(SIG_BODY_ONLY, "1735718400", BODY, T),
            Err(VerifyError::BadSignature)
        );
        // The timestamp is signed: shifting it breaks the MAC.
        assert_eq!(
            check(SIG, "1735718401", BODY, T),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn wrong_encoding_or_truncation_is_bad_not_a_panic() {
        // The right MAC, base64-encoded instead of hex.
        let base64 = "Wge+ljjY68XLpGo15i/UFD8a+i3YZQtShDyYdfJ2ixA=";
        assert_eq!(
            check(base64, "1735718400", BODY, T),
            Err(VerifyError::BadSignature)
        );
        assert_eq!(
            check(&SIG[..62], "1735718400", BODY, T),
            Err(VerifyError::BadSignature)
        );
        assert_eq!(
            check(&SIG[..63], "1735718400", BODY, T),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn missing_or_malformed_headers() {
        let v = verifier();
        let only_ts = headers(&[("x-oura-timestamp", "1735718400")]);
        assert_eq!(
            v.verify(&request(&only_ts, BODY, T)),
            Err(VerifyError::MissingSignature(SIGNATURE))
        );
        let only_sig = headers(&[("x-oura-signature", SIG)]);
        assert_eq!(
            v.verify(&request(&only_sig, BODY, T)),
            Err(VerifyError::MissingSignature(TIMESTAMP))
        );
        assert_eq!(
            check(SIG, "yesterday", BODY, T),
            Err(VerifyError::MalformedSignature(TIMESTAMP))
        );
        assert_eq!(
            check(SIG, "yesterday", BODY, T).map_err(|e| e.status()),
            Err(400)
        );
    }

    #[test]
    fn window_both_ways() {
        assert_eq!(check(SIG, "1735718400", BODY, T + 299), OK);
        assert_eq!(check(SIG, "1735718400", BODY, T - 299), OK);
        assert_eq!(
            check(SIG, "1735718400", BODY, T + 301),
            Err(VerifyError::StaleTimestamp)
        );
        assert_eq!(
            check(SIG, "1735718400", BODY, T - 301),
            Err(VerifyError::FutureTimestamp)
        );
    }

    #[test]
    fn rotated_secrets_any_may_match() {
        let v = OuraVerifier::new(
            vec![b"old-secret".to_vec(), SECRET.to_vec()],
            Duration::from_secs(300),
            Some("tok-123".to_owned()),
        );
        let h = headers(&[
            ("x-oura-signature", SIG),
            ("x-oura-timestamp", "1735718400"),
        ]);
        assert_eq!(v.verify(&request(&h, BODY, T)), OK);
        let none = OuraVerifier::new(vec![b"old-secret".to_vec()], Duration::from_secs(300), None);
        assert_eq!(
            none.verify(&request(&h, BODY, T)),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn handshake() {
        let v = verifier();
        assert_eq!(
            v.challenge("verification_token=tok-123&challenge=abc"),
            Ok("abc".to_owned())
        );
        assert_eq!(
            v.challenge("?challenge=a%20b+c&verification_token=tok%2D123"),
            Ok("a b c".to_owned())
        );
        assert_eq!(
            v.challenge("verification_token=tok-124&challenge=abc"),
            Err(VerifyError::BadSignature)
        );
        assert_eq!(
            v.challenge("verification_token=tok-12&challenge=abc"),
            Err(VerifyError::BadSignature)
        );
        assert_eq!(
            v.challenge("verification_token=nope&challenge=abc")
                .map_err(|e| e.status()),
            Err(401)
        );
        assert_eq!(
            v.challenge("challenge=abc"),
            Err(VerifyError::MissingSignature(TOKEN_PARAM))
        );
        assert_eq!(
            v.challenge("verification_token=&challenge=abc"),
            Err(VerifyError::MissingSignature(TOKEN_PARAM))
        );
        assert_eq!(
            v.challenge("verification_token=tok-123"),
            Err(VerifyError::MalformedSignature(CHALLENGE_PARAM))
        );
        assert_eq!(
            v.challenge(""),
            Err(VerifyError::MissingSignature(TOKEN_PARAM))
        );
    }

    #[test]
    fn form_decoding_edge_cases() {
        assert_eq!(form_decode("a+b%41%4a%zz%4"), b"a bAJ%zz%4");
        assert_eq!(form_decode("%"), b"%");
        assert_eq!(form_decode("%e2%9c%93"), "✓".as_bytes());
        assert_eq!(query_param("a&b=1&b=2", "b"), Some(b"1".to_vec()));
        assert_eq!(query_param("a&b=1", "a"), Some(Vec::new()));
    }

    #[test]
    fn partition_key_is_top_level_user_id() {
        let h = headers(&[]);
        assert_eq!(
            verifier().partition_key(&request(&h, BODY, T), None),
            Some("oura-user-123".to_owned())
        );
        assert_eq!(
            verifier().kept_headers(),
            &["x-oura-signature", "x-oura-timestamp"]
        );
    }
}
