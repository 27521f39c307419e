//! Apple HealthKit through Health Auto Export's REST automation
//! (vendors.md §4.1): no signature, a per-user API key instead.

use http::HeaderMap;
use http::header::AUTHORIZATION;

use crate::verify::scheme::{SecretFingerprint, fingerprint_mac};
use crate::verify::{Head, Request, Verified, Verifier, VerifyError};

/// The header Health Auto Export's reference server reads.
const API_KEY: &str = "api-key";

/// HealthKit pushes: `Authorization: Bearer <key>` or `api-key: <key>`, one
/// key per user, so a match also names the user.
#[derive(Debug, Clone)]
pub struct HealthKitVerifier {
    keys: Vec<(String, SecretFingerprint)>,
}

impl HealthKitVerifier {
    /// `keys`: `(user_id, api_key)` pairs. Keys are kept only as digests.
    /// An empty API key never matches. If two users share a key the first
    /// configured would win, which is why `Config::validate` refuses
    /// duplicates at start.
    pub fn new(keys: Vec<(String, String)>) -> Self {
        Self {
            keys: keys
                .into_iter()
                .map(|(user, key)| (user, SecretFingerprint::of(key.as_bytes())))
                .collect(),
        }
    }
}

/// The keys a request presents: a Bearer token and/or an `api-key` value.
/// The auth scheme name is case-insensitive (RFC 9110 §11.1).
fn presented_keys(headers: &HeaderMap) -> Vec<&[u8]> {
    let bearer = headers.get(AUTHORIZATION).and_then(|value| {
        let value = value.as_bytes().trim_ascii();
        let space = value.iter().position(|&b| b == b' ' || b == b'\t')?;
        let (scheme, token) = value.split_at(space);
        scheme
            .eq_ignore_ascii_case(b"bearer")
            .then(|| token.trim_ascii())
    });
    let api_key = headers
        .get(API_KEY)
        .map(|value| value.as_bytes().trim_ascii());
    bearer
        .into_iter()
        .chain(api_key)
        .filter(|key| !key.is_empty())
        .collect()
}

impl HealthKitVerifier {
    /// The user whose key the headers present.
    fn principal(&self, headers: &HeaderMap) -> Result<String, VerifyError> {
        let presented = presented_keys(headers);
        if presented.is_empty() {
            return Err(VerifyError::MissingApiKey);
        }
        let presented: Vec<_> = presented.iter().map(|key| fingerprint_mac(key)).collect();
        // Every configured key is compared, match or not, so the time taken
        // does not tell an attacker where in the list a key sits.
        let mut principal = None;
        for (user, stored) in &self.keys {
            for key in &presented {
                if stored.matches(key) && principal.is_none() {
                    principal = Some(user.clone());
                }
            }
        }
        principal.ok_or(VerifyError::UnknownApiKey)
    }
}

impl Verifier for HealthKitVerifier {
    /// The key is in the headers, so the whole check happens before the body.
    fn precheck(&self, head: &Head<'_>) -> Result<(), VerifyError> {
        self.principal(head.headers).map(|_| ())
    }

    fn verify(&self, req: &Request<'_>) -> Result<Verified, VerifyError> {
        Ok(Verified::Accept {
            principal: Some(self.principal(req.headers)?),
        })
    }

    /// The API key authenticates the whole request, query included.
    fn records_query(&self) -> bool {
        true
    }

    /// None: the only auth headers carry the API key itself, which must never
    /// reach the envelope.
    fn kept_headers(&self) -> &'static [&'static str] {
        &[]
    }

    fn partition_key(&self, _req: &Request<'_>, principal: Option<&str>) -> Option<String> {
        principal.map(str::to_owned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::testing::{head, headers, request};

    const BODY: &[u8] = br#"{"data":{"metrics":[]}}"#;
    const NOW: i64 = 1_735_718_400;

    fn verifier() -> HealthKitVerifier {
        HealthKitVerifier::new(vec![
            ("alice".to_owned(), "sk-alice-key".to_owned()),
            ("bob".to_owned(), "sk-bob-key".to_owned()),
            ("nobody".to_owned(), String::new()),
        ])
    }

    fn check(pairs: &[(&str, &str)]) -> Result<Verified, VerifyError> {
        let h = headers(pairs);
        verifier().verify(&request(&h, BODY, NOW))
    }

    fn user(name: &str) -> Result<Verified, VerifyError> {
        Ok(Verified::Accept {
            principal: Some(name.to_owned()),
        })
    }

    #[test]
    fn bearer_or_api_key_names_the_user() {
        assert_eq!(
            check(&[("Authorization", "Bearer sk-bob-key")]),
            user("bob")
        );
        assert_eq!(
            check(&[("authorization", "bearer   sk-bob-key")]),
            user("bob")
        );
        assert_eq!(check(&[("api-key", "sk-alice-key")]), user("alice"));
        assert_eq!(check(&[("API-Key", " sk-alice-key ")]), user("alice"));
        // A non-Bearer Authorization does not hide a valid api-key.
        assert_eq!(
            check(&[
                ("Authorization", "Basic Zm9vOmJhcg=="),
                ("api-key", "sk-bob-key")
            ]),
            user("bob")
        );
    }

    #[test]
    fn unknown_keys_are_403() {
        for pairs in [
            &[("api-key", "sk-alice-ke")][..],
            &[("api-key", "sk-alice-keyy")],
            &[("Authorization", "Bearer sk-carol-key")],
            &[("Authorization", "Bearer SK-ALICE-KEY")],
        ] {
            assert_eq!(check(pairs), Err(VerifyError::UnknownApiKey), "{pairs:?}");
        }
        assert_eq!(
            check(&[("api-key", "nope")]).map_err(|e| e.status()),
            Err(403)
        );
    }

    #[test]
    fn missing_keys_are_403() {
        for pairs in [
            &[][..],
            &[("api-key", "")],
            &[("Authorization", "Bearer ")],
            &[("Authorization", "sk-alice-key")],
            &[("Authorization", "Basic Zm9vOmJhcg==")],
            &[("x-api-key", "sk-alice-key")],
        ] {
            assert_eq!(check(pairs), Err(VerifyError::MissingApiKey), "{pairs:?}");
        }
        assert_eq!(check(&[]).map_err(|e| e.status()), Err(403));
    }

    #[test]
    fn the_key_is_checked_before_the_body() {
        let v = verifier();
        let ok = headers(&[("api-key", "sk-alice-key")]);
        let bad = headers(&[("api-key", "sk-alice-ke")]);
        assert_eq!(v.precheck(&head(&ok, None, NOW)), Ok(()));
        assert_eq!(
            v.precheck(&head(&bad, Some(1), NOW)),
            Err(VerifyError::UnknownApiKey)
        );
        assert_eq!(
            v.precheck(&head(&headers(&[]), Some(1), NOW)),
            Err(VerifyError::MissingApiKey)
        );
        assert!(v.records_query());
    }

    #[test]
    fn partition_key_is_the_principal_and_no_headers_are_kept() {
        let v = verifier();
        let h = headers(&[("api-key", "sk-alice-key")]);
        let req = request(&h, BODY, NOW);
        assert_eq!(
            v.partition_key(&req, Some("alice")),
            Some("alice".to_owned())
        );
        assert!(v.kept_headers().is_empty());
    }
}
