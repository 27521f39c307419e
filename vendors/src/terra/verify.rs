//! Terra API webhooks (vendors.md §3.1), following the official SDK's
//! `verify_terra_webhook_signature`.

use std::time::Duration;

use crate::verify::partition::json_path;
use crate::verify::scheme::{
    Algorithm, Encoding, Redacted, TimestampUnit, any_secret_matches, check_window, header_bytes,
    parse_timestamp,
};
use crate::verify::{Head, Request, Verified, Verifier, VerifyError};

const SIGNATURE: &str = "terra-signature";
/// Orders redeliveries of cumulative payloads (vendors.md §3.2); the
/// processor needs it, verification does not.
const ORDERING: &str = "x-terra-ordering-timestamp";

/// Terra: `terra-signature: t=<unix s>,v1=<hex>[,v1=<hex>…]`, each v1 an
/// HMAC-SHA256(signing secret, `"<t>." + raw body`).
#[derive(Clone)]
pub struct TerraVerifier {
    secrets: Vec<Vec<u8>>,
    tolerance: Duration,
}

impl std::fmt::Debug for TerraVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TerraVerifier")
            .field("secrets", &Redacted(self.secrets.len()))
            .field("tolerance", &self.tolerance)
            .finish()
    }
}

impl TerraVerifier {
    /// `secrets`: the destination's signing secrets currently valid (any may
    /// match). `tolerance`: allowed distance of `t` from now, both ways (the
    /// SDK uses 300 s).
    pub fn new(secrets: Vec<Vec<u8>>, tolerance: Duration) -> Self {
        Self { secrets, tolerance }
    }
}

/// The parts of a `terra-signature` header that count.
struct Header<'h> {
    timestamp: &'h [u8],
    v1: Vec<&'h [u8]>,
}

/// Split on `,`, trim, split each element on its first `=`; elements without
/// `=` are skipped and a repeated `t` replaces the earlier one, as the SDK
/// does. Only `v1` signatures count, so a `v0` cannot downgrade the scheme.
fn parse_header(value: &[u8]) -> Option<Header<'_>> {
    let mut timestamp = None;
    let mut v1 = Vec::new();
    for element in value.split(|&b| b == b',') {
        let Some(eq) = element.iter().position(|&b| b == b'=') else {
            continue;
        };
        let (key, rest) = element.split_at(eq);
        let value = rest.get(1..).unwrap_or_default().trim_ascii();
        match key.trim_ascii() {
            b"t" => timestamp = Some(value),
            b"v1" => v1.push(value),
            _ => {}
        }
    }
    match timestamp {
        Some(timestamp) if !v1.is_empty() => Some(Header { timestamp, v1 }),
        _ => None,
    }
}

impl TerraVerifier {
    /// The `terra-signature` header, its signed time in ms, and the ordering check:
    /// the ordering header is not signed, so it may not claim a time later than the
    /// signed `t` plus the tolerance (a replayer's "newest ever" would otherwise win
    /// every later newer-wins comparison). No lower bound: a small value can only
    /// lose that comparison, so it cannot freeze or overwrite anything.
    fn head<'h>(&self, headers: &'h http::HeaderMap) -> Result<(Header<'h>, i128), VerifyError> {
        let value =
            header_bytes(headers, SIGNATURE).ok_or(VerifyError::MissingSignature(SIGNATURE))?;
        let header = parse_header(value).ok_or(VerifyError::MalformedSignature(SIGNATURE))?;
        let millis = parse_timestamp(header.timestamp, TimestampUnit::Seconds)
            .ok_or(VerifyError::MalformedSignature(SIGNATURE))?;
        if let Some(ordering) = headers.get(ORDERING) {
            let latest = millis + i128::try_from(self.tolerance.as_millis()).unwrap_or(i128::MAX);
            match parse_timestamp(ordering.as_bytes(), TimestampUnit::Milliseconds) {
                Some(ms) if ms <= latest => {}
                _ => return Err(VerifyError::ImplausibleOrdering),
            }
        }
        Ok((header, millis))
    }
}

impl Verifier for TerraVerifier {
    fn precheck(&self, head: &Head<'_>) -> Result<(), VerifyError> {
        let (header, millis) = self.head(head.headers)?;
        check_window(millis, head.now, self.tolerance)?;
        if header
            .v1
            .iter()
            .filter_map(|v| Encoding::Hex.decode(v))
            .any(|mac| mac.len() == Algorithm::Sha256.mac_len())
        {
            Ok(())
        } else {
            Err(VerifyError::BadSignature)
        }
    }

    fn verify(&self, req: &Request<'_>) -> Result<Verified, VerifyError> {
        let (header, millis) = self.head(req.headers)?;
        // A v1 that is not hex cannot match; drop it rather than fail the
        // header, since another v1 may still be right.
        let candidates: Vec<Vec<u8>> = header
            .v1
            .iter()
            .filter_map(|v| Encoding::Hex.decode(v))
            .collect();
        let message: [&[u8]; 3] = [header.timestamp, b".", req.body];
        if !any_secret_matches(Algorithm::Sha256, &self.secrets, &message, &candidates) {
            return Err(VerifyError::BadSignature);
        }
        check_window(millis, req.now, self.tolerance)?;
        Ok(Verified::Accept { principal: None })
    }

    fn kept_headers(&self) -> &'static [&'static str] {
        &[SIGNATURE, ORDERING]
    }

    /// Terra's `user.user_id`, stable per connection. It sits one level down,
    /// so this scans the whole body (see `partition.rs` for the cost). A
    /// `user_reauth` event has no `user`; it goes to `new_user`'s partition so
    /// it stays ordered with the data that follows it.
    fn partition_key(&self, req: &Request<'_>, _principal: Option<&str>) -> Option<String> {
        json_path(req.body, &["user", "user_id"])
            .or_else(|| json_path(req.body, &["new_user", "user_id"]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::testing::{head, headers, request};

    const SECRET: &[u8] = b"terra-test-signing-secret";
    const T: i64 = 1_735_718_400;
    const BODY: &[u8] = br#"{"type":"daily","user":{"user_id":"40f7b0e1-89e2-43ac-a5b8-1e29c8d47cad","provider":"GARMIN","reference_id":"user-42"},"data":[{"metadata":{"start_time":"2025-01-01T00:00:00.000000+00:00","end_time":"2025-01-02T00:00:00.000000+00:00","upload_type":1},"distance_data":{"steps":8421}}],"version":"2022-03-16"}"#;
    const V1: &str = "1ab64352e509cc29c2fd8932739cc90e5bbf21ccb16c1154a87061e2f047c1d9";
    /// vendors.md §8.3 "must fail": without the dot, and over body + "\n".
    const V1_NO_DOT: &str = "e86b007037597797bd1d0917adeced3732316f66711ee00fd528a668b9201770";
    const V1_NEWLINE: &str = "705c00adab8289c4260dbeac3577604be9bf054ae68aa2b5e1159f1acf4328de";

    const OK: Result<Verified, VerifyError> = Ok(Verified::Accept { principal: None });

    fn verifier() -> TerraVerifier {
        TerraVerifier::new(vec![SECRET.to_vec()], Duration::from_secs(300))
    }

    fn check(header: &str, body: &[u8], now: i64) -> Result<Verified, VerifyError> {
        let h = headers(&[("Terra-Signature", header)]);
        verifier().verify(&request(&h, body, now))
    }

    fn valid() -> String {
        format!("t=1735718400,v1={V1}")
    }

    #[test]
    fn accepts_the_vector() {
        assert_eq!(check(&valid(), BODY, T + 10), OK);
        // Terra sends lowercase hex; decoding makes case irrelevant anyway.
        assert_eq!(
            check(&format!("t=1735718400,v1={}", V1.to_uppercase()), BODY, T),
            OK
        );
    }

    #[test]
    fn parser_is_tolerant_of_spacing_and_multiple_v1() {
        assert_eq!(check(&format!("t=1735718400, v1={V1}"), BODY, T), OK);
        assert_eq!(
            check(&format!(" t = 1735718400 ,  v1 = {V1} ,"), BODY, T),
            OK
        );
        let several = format!("t=1735718400, v1={V1_NO_DOT}, v1=zz, junk, v1={V1}");
        assert_eq!(check(&several, BODY, T), OK);
    }

    #[test]
    fn rejects_forgeries() {
        let tampered = String::from_utf8_lossy(BODY).replace("8421", "9421");
        let tampered = tampered.as_bytes();
        assert_eq!(check(&valid(), tampered, T), Err(VerifyError::BadSignature));
        assert_eq!(
            check(&format!("t=1735718400,v1={V1_NO_DOT}"), BODY, T),
            Err(VerifyError::BadSignature)
        );
        assert_eq!(
            check(&format!("t=1735718400,v1={V1_NEWLINE}"), BODY, T),
            Err(VerifyError::BadSignature)
        );
        // The newline vector is right for the body with a trailing newline.
        let with_newline = [BODY, b"\n"].concat();
        assert_eq!(
            check(&format!("t=1735718400,v1={V1_NEWLINE}"), &with_newline, T),
            OK
        );
        assert_eq!(
            check(&format!("t=1735718401,v1={V1}"), BODY, T),
            Err(VerifyError::BadSignature)
        );
        assert_eq!(
            check(&format!("t=1735718400,v1={}", &V1[..62]), BODY, T),
            Err(VerifyError::BadSignature)
        );
        let base64 = "GrZDUuUJzCnC/Ykyc5zJDlu/IcyxbBFUqHBh4vBHwdk=";
        assert_eq!(
            check(&format!("t=1735718400,v1={base64}"), BODY, T),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn malformed_headers_are_400() {
        let malformed = Err(VerifyError::MalformedSignature(SIGNATURE));
        assert_eq!(check(&format!("t=1735718400,v0={V1}"), BODY, T), malformed);
        assert_eq!(check(&format!("v1={V1}"), BODY, T), malformed);
        assert_eq!(check("t=1735718400", BODY, T), malformed);
        assert_eq!(check(&format!("t=soon,v1={V1}"), BODY, T), malformed);
        assert_eq!(
            check(&format!("t=1735718400000,v1={V1}"), BODY, T),
            Err(VerifyError::BadSignature)
        );
        assert_eq!(check("garbage", BODY, T).map_err(|e| e.status()), Err(400));
        let none = headers(&[]);
        assert_eq!(
            verifier().verify(&request(&none, BODY, T)),
            Err(VerifyError::MissingSignature(SIGNATURE))
        );
    }

    fn pre(pairs: &[(&str, &str)], now: i64) -> Result<(), VerifyError> {
        let h = headers(pairs);
        verifier().precheck(&head(&h, Some(BODY.len() as u64), now))
    }

    #[test]
    fn precheck_refuses_what_the_head_gives_away() {
        let sig = valid();
        assert_eq!(pre(&[("terra-signature", &sig)], T), Ok(()));
        assert_eq!(pre(&[], T), Err(VerifyError::MissingSignature(SIGNATURE)));
        assert_eq!(
            pre(&[("terra-signature", "garbage")], T),
            Err(VerifyError::MalformedSignature(SIGNATURE))
        );
        assert_eq!(
            pre(&[("terra-signature", &sig)], T + 301),
            Err(VerifyError::StaleTimestamp)
        );
        // No v1 of the right shape (hex, 32 bytes): cannot match, refused unread.
        assert_eq!(
            pre(
                &[("terra-signature", &format!("t={T},v1={}", &V1[..62]))],
                T
            ),
            Err(VerifyError::BadSignature)
        );
        assert_eq!(
            pre(&[("terra-signature", &format!("t={T},v1=zz"))], T),
            Err(VerifyError::BadSignature)
        );
        // A forged MAC of the right shape passes the precheck; verify refuses it.
        let forged = format!("t={T},v1={V1_NO_DOT}");
        assert_eq!(pre(&[("terra-signature", &forged)], T), Ok(()));
    }

    #[test]
    fn ordering_must_be_plausible_unix_ms_no_later_than_t_plus_tolerance() {
        let sig = valid();
        let with = |ordering: &str| {
            let pairs = [("terra-signature", sig.as_str()), (ORDERING, ordering)];
            let h = headers(&pairs);
            (
                verifier().precheck(&head(&h, Some(BODY.len() as u64), T)),
                verifier().verify(&request(&h, BODY, T)),
            )
        };
        for ok in ["1735718400123", "1735718700000", "1000", "0"] {
            assert_eq!(with(ok), (Ok(()), OK), "{ok}");
        }
        for bad in [
            "9223372036854775807",
            "1735718700001",
            "-1",
            "1.7e12",
            "soon",
            "",
        ] {
            assert_eq!(
                with(bad),
                (
                    Err(VerifyError::ImplausibleOrdering),
                    Err(VerifyError::ImplausibleOrdering)
                ),
                "{bad}"
            );
        }
        assert!(!verifier().records_query());
    }

    #[test]
    fn window_both_ways() {
        assert_eq!(check(&valid(), BODY, T + 299), OK);
        assert_eq!(
            check(&valid(), BODY, T + 301),
            Err(VerifyError::StaleTimestamp)
        );
        assert_eq!(
            check(&valid(), BODY, T - 301),
            Err(VerifyError::FutureTimestamp)
        );
    }

    #[test]
    fn rotated_secrets_any_may_match() {
        let v = TerraVerifier::new(
            vec![b"previous".to_vec(), SECRET.to_vec()],
            Duration::from_secs(300),
        );
        let h = headers(&[("terra-signature", &valid())]);
        assert_eq!(v.verify(&request(&h, BODY, T)), OK);
    }

    #[test]
    fn partition_key_is_the_nested_terra_user_id() {
        let h = headers(&[]);
        let v = verifier();
        assert_eq!(
            v.partition_key(&request(&h, BODY, T), None),
            Some("40f7b0e1-89e2-43ac-a5b8-1e29c8d47cad".to_owned())
        );
        let reauth =
            br#"{"type":"user_reauth","old_user":{"user_id":"old"},"new_user":{"user_id":"new"}}"#;
        assert_eq!(
            v.partition_key(&request(&h, reauth, T), None),
            Some("new".to_owned())
        );
        assert_eq!(
            v.partition_key(&request(&h, br#"{"type":"healthcheck"}"#, T), None),
            None
        );
        assert_eq!(
            v.kept_headers(),
            &["terra-signature", "x-terra-ordering-timestamp"]
        );
    }
}
