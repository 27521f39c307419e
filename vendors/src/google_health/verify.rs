//! Google Health API v4 webhooks (notes: google-spec.md §1–3).
//!
//! Notifications are signed: `X-HEALTHAPI-SIGNATURE` = ECDSA P-256 / SHA-256 over the raw
//! body [V discovery `EndpointAuthorization`], base64 of Tink's wire format
//! `0x01 ‖ key id (4 bytes) ‖ DER signature` [C: several independent clients, not in
//! Google's text]. The subscriber verification request `{"type":"verification"}` is not
//! signed [C]: it is answered here, 201 with the configured `Authorization`, 401 without,
//! and never appended.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, VerifyingKey};

use crate::verify::scheme::{SecretFingerprint, fingerprint_mac, header_bytes};
use crate::verify::{Head, Request, Verified, Verifier, VerifyError};

/// The header Google names in the discovery document.
const SIGNATURE: &str = "x-healthapi-signature";
/// The name two clients use [C/U]; accepted as well.
const SIGNATURE_ALT: &str = "google-health-api-signature";
const AUTHORIZATION: &str = "authorization";
/// Tink's output prefix: one version byte (`0x01` TINK, `0x00` LEGACY) and a 4-byte key id.
const TINK_PREFIX: usize = 5;
/// A DER P-256 signature is at most 72 bytes; base64 of prefix + that is about 104
/// characters. Anything far longer is not a signature, refused before the body is read.
const MAX_SIGNATURE_HEADER: usize = 512;
/// The verification body is `{"type": "verification"}`; a longer body is a notification.
const MAX_VERIFICATION_BODY: usize = 256;

/// Verifies Google Health API notifications and answers the subscriber verification.
#[derive(Debug, Clone)]
pub struct GoogleHealthVerifier {
    keys: Vec<VerifyingKey>,
    authorization: Option<SecretFingerprint>,
}

impl GoogleHealthVerifier {
    /// `keys`: Google's current public keys (any may verify; several during rotation).
    /// `authorization`: the full `Authorization` value configured on the subscriber
    /// (`endpointAuthorization.secret`, e.g. `Bearer …`); `None` refuses every
    /// verification request.
    pub fn new(keys: Vec<VerifyingKey>, authorization: Option<&str>) -> Self {
        Self {
            keys,
            authorization: authorization.map(|a| SecretFingerprint::of(a.trim().as_bytes())),
        }
    }

    fn authorization_matches(&self, presented: &[u8]) -> bool {
        let presented = fingerprint_mac(trim(presented));
        self.authorization
            .as_ref()
            .is_some_and(|expected| expected.matches(&presented))
    }

    /// The subscriber verification: 201 with the configured `Authorization`, 401 without
    /// or with another one.
    fn verification(&self, req: &Request<'_>) -> Result<Verified, VerifyError> {
        let presented = header_bytes(req.headers, AUTHORIZATION)
            .filter(|v| !trim(v).is_empty())
            .ok_or(VerifyError::MissingSignature(AUTHORIZATION))?;
        if !self.authorization_matches(presented) {
            return Err(VerifyError::BadSignature);
        }
        Ok(Verified::Answer {
            status: 201,
            body: r#"{"status":"verified"}"#,
        })
    }

    fn signature_header(headers: &http::HeaderMap) -> Option<&[u8]> {
        header_bytes(headers, SIGNATURE).or_else(|| header_bytes(headers, SIGNATURE_ALT))
    }
}

impl Verifier for GoogleHealthVerifier {
    fn precheck(&self, head: &Head<'_>) -> Result<(), VerifyError> {
        match Self::signature_header(head.headers) {
            Some(sig) if sig.len() > MAX_SIGNATURE_HEADER => {
                Err(VerifyError::MalformedSignature(SIGNATURE))
            }
            Some(_) => Ok(()),
            // Unsigned, it can only be the verification request, whose body is tiny: a
            // larger (or chunked) unsigned body is refused before a byte is buffered.
            None if head
                .content_length
                .is_some_and(|n| n <= MAX_VERIFICATION_BODY as u64) =>
            {
                Ok(())
            }
            None => Err(VerifyError::MissingSignature(SIGNATURE)),
        }
    }

    fn verify(&self, req: &Request<'_>) -> Result<Verified, VerifyError> {
        let Some(header) = Self::signature_header(req.headers) else {
            if is_verification(req.body) {
                return self.verification(req);
            }
            return Err(VerifyError::MissingSignature(SIGNATURE));
        };
        let raw = decode_base64(header).ok_or(VerifyError::MalformedSignature(SIGNATURE))?;
        let signatures = candidates(&raw);
        if signatures.is_empty() {
            return Err(VerifyError::MalformedSignature(SIGNATURE));
        }
        // No early exit between keys: which key matched does not show in the timing
        // (the keys are public anyway; this keeps the loop simple to reason about).
        let mut ok = false;
        for key in &self.keys {
            for sig in &signatures {
                ok |= key.verify(req.body, sig).is_ok();
            }
        }
        if !ok {
            return Err(VerifyError::BadSignature);
        }
        // Google sends the subscriber's secret on notifications too [V]; one report says
        // it goes missing after verification [U], so absence is tolerated (the signature
        // is the authority) but a different value is refused.
        if let Some(presented) = header_bytes(req.headers, AUTHORIZATION)
            && self.authorization.is_some()
            && !self.authorization_matches(presented)
        {
            return Err(VerifyError::BadSignature);
        }
        if is_verification(req.body) {
            return self.verification(req);
        }
        Ok(Verified::Accept { principal: None })
    }

    fn kept_headers(&self) -> &'static [&'static str] {
        &[SIGNATURE, SIGNATURE_ALT]
    }

    fn partition_key(&self, req: &Request<'_>, _principal: Option<&str>) -> Option<String> {
        first_user(req.body)
    }
}

fn trim(bytes: &[u8]) -> &[u8] {
    bytes.trim_ascii()
}

/// Standard or URL-safe base64, padded or not [C: standard; liberal on purpose].
fn decode_base64(text: &[u8]) -> Option<Vec<u8>> {
    let text = trim(text);
    [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(text).ok())
}

/// Every reading of the decoded header as a signature: as is and without a Tink prefix,
/// each as DER or as raw `r ‖ s` [U: Google's encoding is DER per the keyset params].
fn candidates(raw: &[u8]) -> Vec<Signature> {
    let mut out = Vec::new();
    let mut push = |bytes: &[u8]| {
        if let Ok(sig) = Signature::from_der(bytes) {
            out.push(sig);
        } else if let Ok(sig) = Signature::from_slice(bytes) {
            out.push(sig);
        }
    };
    push(raw);
    if raw.len() > TINK_PREFIX && matches!(raw[0], 0x00 | 0x01) {
        push(&raw[TINK_PREFIX..]);
    }
    out
}

/// `{"type":"verification"}` (or that object alone in an array, as one client tolerates).
fn is_verification(body: &[u8]) -> bool {
    if body.len() > MAX_VERIFICATION_BODY {
        return false;
    }
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "type")]
        kind: Option<String>,
    }
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Body {
        One(Probe),
        Many(Vec<Probe>),
    }
    let verification = |p: &Probe| p.kind.as_deref() == Some("verification");
    match serde_json::from_slice::<Body>(body) {
        Ok(Body::One(p)) => verification(&p),
        Ok(Body::Many(list)) => list.len() == 1 && verification(&list[0]),
        Err(_) => false,
    }
}

/// The first notification's `healthUserId` (array, enveloped or bare object), for the
/// partition key: a user's notifications stay in order on one partition.
fn first_user(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let first = match &value {
        serde_json::Value::Array(items) => items.first()?,
        other => other,
    };
    let data = first.get("data").unwrap_or(first);
    data.get("healthUserId")
        .and_then(serde_json::Value::as_str)
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::verify::testing::{head, headers, request};
    use p256::ecdsa::SigningKey;
    use p256::ecdsa::signature::Signer as _;
    use p256::elliptic_curve::Generate as _;

    const BODY: &[u8] = br#"[{"data":{"version":"1","healthUserId":"ghu-1a2b3c","operation":"UPSERT","dataType":"steps","intervals":[{"physicalTimeInterval":{"startTime":"2025-01-01T07:00:00Z","endTime":"2025-01-01T08:00:00Z"}}]}}]"#;
    const AUTH: &str = "Bearer s3cret-subscriber";
    const T: i64 = 1_735_718_400;

    pub(crate) fn key_pair() -> (SigningKey, VerifyingKey) {
        let sk = SigningKey::try_generate().expect("random key");
        let vk = *sk.verifying_key();
        (sk, vk)
    }

    fn der(sk: &SigningKey, body: &[u8]) -> Vec<u8> {
        let sig: Signature = sk.sign(body);
        sig.to_der().as_bytes().to_vec()
    }

    /// Google's wire format as Tink writes it: `0x01 ‖ key id ‖ DER`, standard base64.
    pub(crate) fn tink_header(sk: &SigningKey, body: &[u8]) -> String {
        let mut raw = vec![0x01, 0x12, 0x34, 0x56, 0x78];
        raw.extend(der(sk, body));
        STANDARD.encode(raw)
    }

    fn verifier(keys: Vec<VerifyingKey>) -> GoogleHealthVerifier {
        GoogleHealthVerifier::new(keys, Some(AUTH))
    }

    fn check(v: &GoogleHealthVerifier, pairs: &[(&str, &str)], body: &[u8]) -> Result<Verified, VerifyError> {
        v.verify(&request(&headers(pairs), body, T))
    }

    const OK: Result<Verified, VerifyError> = Ok(Verified::Accept { principal: None });

    #[test]
    fn accepts_the_tink_wire_format_over_the_exact_bytes() {
        let (sk, vk) = key_pair();
        let v = verifier(vec![vk]);
        assert_eq!(check(&v, &[("X-HEALTHAPI-SIGNATURE", &tink_header(&sk, BODY))], BODY), OK);
        // Authorization echoed as documented: fine.
        assert_eq!(
            check(&v, &[("x-healthapi-signature", &tink_header(&sk, BODY)), ("authorization", AUTH)], BODY),
            OK
        );
    }

    #[test]
    fn liberal_in_encoding_name_and_prefix() {
        let (sk, vk) = key_pair();
        let v = verifier(vec![vk]);
        let sig: Signature = sk.sign(BODY);
        let raw_der = der(&sk, BODY);
        let mut legacy = vec![0x00, 0, 0, 0, 7];
        legacy.extend(&raw_der);
        for header in [
            STANDARD.encode(&raw_der),
            URL_SAFE_NO_PAD.encode(&raw_der),
            STANDARD.encode(legacy),
            STANDARD.encode(sig.to_bytes()),
            format!("  {}\t", tink_header(&sk, BODY)),
        ] {
            assert_eq!(check(&v, &[("x-healthapi-signature", &header)], BODY), OK, "{header}");
        }
        assert_eq!(check(&v, &[("Google-Health-API-Signature", &tink_header(&sk, BODY))], BODY), OK);
    }

    #[test]
    fn high_s_signatures_verify_too() {
        // Java and Go signers do not normalize s; ECDSA accepts (r, n − s) as well.
        let (sk, vk) = key_pair();
        let sig: Signature = sk.sign(BODY);
        let (r, s) = sig.split_scalars();
        let high = Signature::from_scalars(r, -s).expect("valid scalars");
        let header = STANDARD.encode(high.to_der().as_bytes());
        assert_eq!(check(&verifier(vec![vk]), &[("x-healthapi-signature", &header)], BODY), OK);
    }

    #[test]
    fn tampered_body_or_signature_is_refused() {
        let (sk, vk) = key_pair();
        let v = verifier(vec![vk]);
        let header = tink_header(&sk, BODY);
        let mut tampered = BODY.to_vec();
        tampered[40] ^= 1;
        assert_eq!(check(&v, &[("x-healthapi-signature", &header)], &tampered), Err(VerifyError::BadSignature));
        let mut appended = BODY.to_vec();
        appended.push(b' ');
        assert_eq!(check(&v, &[("x-healthapi-signature", &header)], &appended), Err(VerifyError::BadSignature));
        let mut raw = STANDARD.decode(&header).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        let flipped = STANDARD.encode(raw);
        assert!(matches!(
            check(&v, &[("x-healthapi-signature", &flipped)], BODY),
            Err(VerifyError::BadSignature | VerifyError::MalformedSignature(_))
        ));
    }

    #[test]
    fn rotation_any_configured_key_may_verify() {
        let (old_sk, old_vk) = key_pair();
        let (new_sk, new_vk) = key_pair();
        let v = verifier(vec![old_vk, new_vk]);
        assert_eq!(check(&v, &[("x-healthapi-signature", &tink_header(&old_sk, BODY))], BODY), OK);
        assert_eq!(check(&v, &[("x-healthapi-signature", &tink_header(&new_sk, BODY))], BODY), OK);
        // The old key retired: its signatures stop verifying.
        let retired = verifier(vec![new_vk]);
        assert_eq!(
            check(&retired, &[("x-healthapi-signature", &tink_header(&old_sk, BODY))], BODY),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn wrong_key_is_refused() {
        let (sk, _) = key_pair();
        let (_, other) = key_pair();
        let v = verifier(vec![other]);
        let result = check(&v, &[("x-healthapi-signature", &tink_header(&sk, BODY))], BODY);
        assert_eq!(result, Err(VerifyError::BadSignature));
        assert_eq!(result.map_err(|e| e.status()), Err(401));
    }

    #[test]
    fn missing_or_malformed_signature() {
        let (sk, vk) = key_pair();
        let v = verifier(vec![vk]);
        let missing = check(&v, &[("authorization", AUTH)], BODY);
        assert_eq!(missing, Err(VerifyError::MissingSignature(SIGNATURE)));
        assert_eq!(missing.map_err(|e| e.status()), Err(401));
        for bad in ["not base64 !!", "AAAA", &STANDARD.encode([1u8; 20])] {
            let result = check(&v, &[("x-healthapi-signature", bad)], BODY);
            assert_eq!(result, Err(VerifyError::MalformedSignature(SIGNATURE)), "{bad:?}");
            assert_eq!(result.map_err(|e| e.status()), Err(400));
        }
        assert_eq!(
            check(&v, &[("x-healthapi-signature", "")], BODY),
            Err(VerifyError::MissingSignature(SIGNATURE))
        );
        // An oversized header is refused before the body is read; a missing one is not
        // (it may be the unsigned verification request).
        let long = "A".repeat(MAX_SIGNATURE_HEADER + 1);
        let h = headers(&[("x-healthapi-signature", &long)]);
        assert_eq!(v.precheck(&head(&h, Some(10), T)), Err(VerifyError::MalformedSignature(SIGNATURE)));
        let h = headers(&[]);
        assert_eq!(v.precheck(&head(&h, Some(10), T)), Ok(()));
        assert_eq!(
            v.precheck(&head(&h, Some(MAX_VERIFICATION_BODY as u64 + 1), T)),
            Err(VerifyError::MissingSignature(SIGNATURE))
        );
        assert_eq!(
            v.precheck(&head(&h, None, T)),
            Err(VerifyError::MissingSignature(SIGNATURE))
        );
        let h = headers(&[("x-healthapi-signature", &tink_header(&sk, BODY))]);
        assert_eq!(v.precheck(&head(&h, Some(10), T)), Ok(()));
    }

    #[test]
    fn a_signed_notification_with_another_authorization_is_refused() {
        let (sk, vk) = key_pair();
        let v = verifier(vec![vk]);
        let result = check(
            &v,
            &[("x-healthapi-signature", &tink_header(&sk, BODY)), ("authorization", "Bearer other")],
            BODY,
        );
        assert_eq!(result, Err(VerifyError::BadSignature));
    }

    #[test]
    fn subscriber_verification_201_with_the_secret_401_without() {
        let (_, vk) = key_pair();
        let v = verifier(vec![vk]);
        let body = br#"{"type": "verification"}"#;
        let created = Ok(Verified::Answer { status: 201, body: r#"{"status":"verified"}"# });
        assert_eq!(check(&v, &[("authorization", AUTH)], body), created);
        assert_eq!(check(&v, &[("Authorization", &format!(" {AUTH} "))], body), created);
        assert_eq!(check(&v, &[("authorization", AUTH)], br#"[{"type":"verification"}]"#), created);
        let without = check(&v, &[], body);
        assert_eq!(without, Err(VerifyError::MissingSignature(AUTHORIZATION)));
        assert_eq!(without.map_err(|e| e.status()), Err(401));
        let wrong = check(&v, &[("authorization", "Bearer s3cret-subscribe")], body);
        assert_eq!(wrong.map_err(|e| e.status()), Err(401));
        assert_eq!(check(&v, &[("authorization", "")], body).map_err(|e| e.status()), Err(401));
        // No secret configured: every verification fails rather than any passing.
        let unconfigured = GoogleHealthVerifier::new(vec![vk], None);
        assert_eq!(check(&unconfigured, &[("authorization", AUTH)], body).map_err(|e| e.status()), Err(401));
        // Something that only looks like it is a notification without a signature.
        for other in [&br#"{"type":"verification","data":{}}"#[..], br#"{"type":"other"}"#, b"[]", b"{"] {
            let result = check(&v, &[("authorization", AUTH)], other);
            assert!(
                result == Err(VerifyError::MissingSignature(SIGNATURE)) || result == created,
                "{:?} -> {result:?}",
                String::from_utf8_lossy(other)
            );
        }
        assert_eq!(
            check(&v, &[("authorization", AUTH)], br#"{"type":"other"}"#),
            Err(VerifyError::MissingSignature(SIGNATURE))
        );
    }

    #[test]
    fn partition_key_is_the_first_health_user_id() {
        let (_, vk) = key_pair();
        let v = verifier(vec![vk]);
        let key = |body: &[u8]| v.partition_key(&request(&headers(&[]), body, T), None);
        assert_eq!(key(BODY), Some("ghu-1a2b3c".to_owned()));
        assert_eq!(key(br#"{"data":{"healthUserId":"u2"}}"#), Some("u2".to_owned()));
        assert_eq!(key(br#"{"healthUserId":"u3"}"#), Some("u3".to_owned()));
        assert_eq!(key(br#"[]"#), None);
        assert_eq!(key(br#"{"data":{"healthUserId":""}}"#), None);
        assert_eq!(key(b"nope"), None);
        assert_eq!(v.kept_headers(), &[SIGNATURE, SIGNATURE_ALT]);
    }
}
