//! A configured HMAC source for vendors without a built-in verifier: the same
//! mechanism the built-ins use, with every choice taken from configuration.

use std::time::Duration;

use http::HeaderName;

use super::partition::json_path;
use super::scheme::{Algorithm, Encoding, HeaderHmac, SignedTimestamp, TimestampUnit};
use super::{Head, Request, Verified, Verifier, VerifyError};

/// A timestamp header that is part of the signed message.
#[derive(Debug, Clone)]
pub struct TimestampHeader {
    /// Header carrying the timestamp.
    pub name: HeaderName,
    /// Unit of its value.
    pub unit: TimestampUnit,
}

/// Which bytes the vendor signs. A timestamp exists only as part of the
/// signed message: an unsigned one could be rewritten by a replaying attacker.
#[derive(Debug, Clone)]
pub enum SignedContent {
    /// The raw body alone (Polar, Fitbit).
    Body,
    /// The timestamp header value immediately followed by the body (Oura, WHOOP).
    TimestampBody(TimestampHeader),
    /// The timestamp, a `.`, then the body (Terra, Stripe-style).
    TimestampDotBody(TimestampHeader),
}

/// How a configured vendor signs its webhooks.
#[derive(Debug, Clone)]
pub struct GenericHmacConfig {
    /// Header carrying the MAC.
    pub signature_header: HeaderName,
    /// Hash inside the HMAC.
    pub algorithm: Algorithm,
    /// Encoding of the MAC in the header.
    pub encoding: Encoding,
    /// The signed bytes.
    pub signed: SignedContent,
    /// Object keys from the JSON top level to the user id used as the
    /// partition key, e.g. `["user_id"]`; empty to let the caller hash the body.
    pub partition_key_path: Vec<String>,
}

/// Verifier for a [`GenericHmacConfig`].
#[derive(Debug, Clone)]
pub struct GenericHmacVerifier {
    hmac: HeaderHmac,
    kept_headers: &'static [&'static str],
    partition_key_path: Vec<String>,
}

impl GenericHmacVerifier {
    /// `secrets`: the keys currently valid (any may match), as raw bytes:
    /// vendors that derive the key (Fitbit's `client_secret + "&"`) are
    /// configured with the derived bytes. `tolerance` applies to the signed
    /// timestamp, both ways, and is unused for [`SignedContent::Body`].
    ///
    /// Header names are leaked once: `Verifier` hands out `&'static` names
    /// and error labels, and verifiers are built once at start-up.
    pub fn new(config: GenericHmacConfig, secrets: Vec<Vec<u8>>, tolerance: Duration) -> Self {
        let signature_header = leak(&config.signature_header);
        let timestamp = match &config.signed {
            SignedContent::Body => None,
            SignedContent::TimestampBody(ts) => Some((ts, &b""[..])),
            SignedContent::TimestampDotBody(ts) => Some((ts, &b"."[..])),
        }
        .map(|(ts, separator)| SignedTimestamp {
            header: leak(&ts.name),
            unit: ts.unit,
            separator,
        });
        let kept: Vec<&'static str> = std::iter::once(signature_header)
            .chain(timestamp.map(|ts| ts.header))
            .collect();
        Self {
            hmac: HeaderHmac {
                signature_header,
                algorithm: config.algorithm,
                encoding: config.encoding,
                timestamp,
                secrets,
                tolerance,
            },
            kept_headers: Box::leak(kept.into_boxed_slice()),
            partition_key_path: config.partition_key_path,
        }
    }
}

/// `HeaderName::as_str` is already lower-case.
fn leak(name: &HeaderName) -> &'static str {
    Box::leak(name.as_str().to_owned().into_boxed_str())
}

impl Verifier for GenericHmacVerifier {
    fn precheck(&self, head: &Head<'_>) -> Result<(), VerifyError> {
        self.hmac.precheck(head.headers, head.now)
    }

    fn verify(&self, req: &Request<'_>) -> Result<Verified, VerifyError> {
        self.hmac.verify(req.headers, req.body, req.now)?;
        Ok(Verified::Accept { principal: None })
    }

    fn kept_headers(&self) -> &'static [&'static str] {
        self.kept_headers
    }

    fn partition_key(&self, req: &Request<'_>, _principal: Option<&str>) -> Option<String> {
        let path: Vec<&str> = self.partition_key_path.iter().map(String::as_str).collect();
        json_path(req.body, &path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::testing::{headers, request};

    const T: i64 = 1_735_718_400;
    const OK: Result<Verified, VerifyError> = Ok(Verified::Accept { principal: None });

    /// vendors.md §8.5: Fitbit legacy, base64 HMAC-SHA1 over the body with
    /// key `client_secret + "&"`.
    fn fitbit() -> GenericHmacVerifier {
        GenericHmacVerifier::new(
            GenericHmacConfig {
                signature_header: HeaderName::from_static("x-fitbit-signature"),
                algorithm: Algorithm::Sha1,
                encoding: Encoding::Base64,
                signed: SignedContent::Body,
                partition_key_path: Vec::new(),
            },
            vec![b"wrong&".to_vec(), b"fitbit-test-client-secret&".to_vec()],
            Duration::from_secs(300),
        )
    }
    const FITBIT_BODY: &[u8] = br#"[{"collectionType":"sleep","date":"2025-01-01","ownerId":"228S74","ownerType":"user","subscriptionId":"user-42-sleep"}]"#;
    const FITBIT_SIG: &str = "eD0NYUIehGEh8MAVeEs9of85+OU=";

    #[test]
    fn sha1_base64_over_the_body() {
        let v = fitbit();
        let h = headers(&[("X-Fitbit-Signature", FITBIT_SIG)]);
        assert_eq!(v.verify(&request(&h, FITBIT_BODY, T)), OK);
        let tampered = FITBIT_BODY.to_ascii_uppercase();
        assert_eq!(
            v.verify(&request(&h, &tampered, T)),
            Err(VerifyError::BadSignature)
        );
        // The same MAC in hex is the wrong encoding.
        let hex = headers(&[(
            "x-fitbit-signature",
            "783d0d61421e846121f0c015784b3da1ff39f8e5",
        )]);
        assert_eq!(
            v.verify(&request(&hex, FITBIT_BODY, T)),
            Err(VerifyError::BadSignature)
        );
        let none = headers(&[]);
        assert_eq!(
            v.verify(&request(&none, FITBIT_BODY, T)),
            Err(VerifyError::MissingSignature("x-fitbit-signature"))
        );
        // The array body has no top-level user id: the caller hashes it.
        assert_eq!(v.partition_key(&request(&h, FITBIT_BODY, T), None), None);
        assert_eq!(v.kept_headers(), &["x-fitbit-signature"]);
    }

    /// WHOOP's vector (vendors.md §8.2) expressed as configuration.
    #[test]
    fn timestamp_then_body_in_milliseconds() {
        let v = GenericHmacVerifier::new(
            GenericHmacConfig {
                signature_header: HeaderName::from_static("x-whoop-signature"),
                algorithm: Algorithm::Sha256,
                encoding: Encoding::Base64,
                signed: SignedContent::TimestampBody(TimestampHeader {
                    name: HeaderName::from_static("x-whoop-signature-timestamp"),
                    unit: TimestampUnit::Milliseconds,
                }),
                partition_key_path: vec!["user_id".to_owned()],
            },
            vec![b"whoop-test-client-secret".to_vec()],
            Duration::from_secs(300),
        );
        let body = br#"{"user_id":10129,"id":"ecfc6a15-4661-442f-a9a4-f160dd7afae8","type":"sleep.updated","trace_id":"e369c784-5100-49e8-8098-75d35c47b31b"}"#;
        let h = headers(&[
            (
                "x-whoop-signature",
                "46y7Fo1Y6q4bSMD+nDb9uis2C0IpcVjT6yWXXJ2LfgQ=",
            ),
            ("x-whoop-signature-timestamp", "1735718400000"),
        ]);
        assert_eq!(v.verify(&request(&h, body, T + 10)), OK);
        assert_eq!(
            v.verify(&request(&h, body, T + 301)),
            Err(VerifyError::StaleTimestamp)
        );
        assert_eq!(
            v.verify(&request(&h, body, T - 301)),
            Err(VerifyError::FutureTimestamp)
        );
        assert_eq!(
            v.partition_key(&request(&h, body, T), None),
            Some("10129".to_owned())
        );
        assert_eq!(
            v.kept_headers(),
            &["x-whoop-signature", "x-whoop-signature-timestamp"]
        );
    }

    /// Terra's vector (vendors.md §8.3) with `t` moved into its own header.
    #[test]
    fn timestamp_dot_body_in_seconds() {
        let v = GenericHmacVerifier::new(
            GenericHmacConfig {
                signature_header: HeaderName::from_static("x-sig"),
                algorithm: Algorithm::Sha256,
                encoding: Encoding::Hex,
                signed: SignedContent::TimestampDotBody(TimestampHeader {
                    name: HeaderName::from_static("x-ts"),
                    unit: TimestampUnit::Seconds,
                }),
                partition_key_path: vec!["user".to_owned(), "user_id".to_owned()],
            },
            vec![b"terra-test-signing-secret".to_vec()],
            Duration::from_secs(300),
        );
        let body = br#"{"type":"daily","user":{"user_id":"40f7b0e1-89e2-43ac-a5b8-1e29c8d47cad","provider":"GARMIN","reference_id":"user-42"},"data":[{"metadata":{"start_time":"2025-01-01T00:00:00.000000+00:00","end_time":"2025-01-02T00:00:00.000000+00:00","upload_type":1},"distance_data":{"steps":8421}}],"version":"2022-03-16"}"#;
        let sig = "1ab64352e509cc29c2fd8932739cc90e5bbf21ccb16c1154a87061e2f047c1d9";
        let h = headers(&[("X-Sig", sig), ("X-Ts", "1735718400")]);
        assert_eq!(v.verify(&request(&h, body, T + 299)), OK);
        let no_dot = headers(&[
            (
                "x-sig",
                "e86b007037597797bd1d0917adeced3732316f66711ee00fd528a668b9201770",
            ),
            ("x-ts", "1735718400"),
        ]);
        assert_eq!(
            v.verify(&request(&no_dot, body, T)),
            Err(VerifyError::BadSignature)
        );
        let bad_ts = headers(&[("x-sig", sig), ("x-ts", "noon")]);
        assert_eq!(
            v.verify(&request(&bad_ts, body, T)),
            Err(VerifyError::MalformedSignature("x-ts"))
        );
        let no_ts = headers(&[("x-sig", sig)]);
        assert_eq!(
            v.verify(&request(&no_ts, body, T)),
            Err(VerifyError::MissingSignature("x-ts"))
        );
        assert_eq!(
            v.partition_key(&request(&h, body, T), None),
            Some("40f7b0e1-89e2-43ac-a5b8-1e29c8d47cad".to_owned())
        );
    }
}
