//! The shared HMAC mechanism: encodings, MAC comparison over several secrets,
//! timestamp parsing and the freshness window, and a constant-time compare for
//! shared secrets such as API keys.

use std::time::Duration;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use hmac::{Hmac, KeyInit, Mac};
use http::HeaderMap;
use sha1::Sha1;
use sha2::Sha256;

use super::VerifyError;

/// Hash function inside the HMAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// HMAC-SHA256, used by every built-in vendor.
    Sha256,
    /// HMAC-SHA1, still used by older vendors (Fitbit legacy).
    Sha1,
}

/// How the MAC is written in the signature header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Hexadecimal, either case: both sides are compared as bytes.
    Hex,
    /// Base64, standard or URL-safe alphabet, padding optional.
    Base64,
}

/// Unit of a signed timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampUnit {
    /// Unix seconds.
    Seconds,
    /// Unix milliseconds.
    Milliseconds,
    /// Seconds below 10^11, milliseconds above: unambiguous for any date
    /// between 1973 and 5138, and used where the vendor's unit is unverified.
    Auto,
}

/// Values at or above this are read as milliseconds by [`TimestampUnit::Auto`].
const AUTO_MILLIS_FROM: u64 = 100_000_000_000;

// Padding and alphabet are not part of what is authenticated, so accepting
// every variant costs nothing and survives vendors that strip `=`.
const BASE64_STANDARD: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
const BASE64_URL_SAFE: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

impl Algorithm {
    /// Length of the MAC in bytes.
    pub(crate) fn mac_len(self) -> usize {
        match self {
            Self::Sha256 => 32,
            Self::Sha1 => 20,
        }
    }
}

impl Encoding {
    /// Decode a presented MAC; `None` when the text is not in this encoding,
    /// which callers treat as a signature that does not match.
    pub(crate) fn decode(self, text: &[u8]) -> Option<Vec<u8>> {
        match self {
            Self::Hex => hex::decode(text).ok(),
            Self::Base64 => BASE64_STANDARD
                .decode(text)
                .or_else(|_| BASE64_URL_SAFE.decode(text))
                .ok(),
        }
    }
}

/// True when any candidate MAC equals HMAC(secret, message parts concatenated)
/// for any secret.
///
/// The MAC is computed once per secret and cloned per candidate, so a header
/// stuffed with candidates costs one finalisation each, not a pass over the
/// body. No early exit: the time taken does not depend on which secret matched.
pub(crate) fn any_secret_matches(
    algorithm: Algorithm,
    secrets: &[Vec<u8>],
    message: &[&[u8]],
    candidates: &[Vec<u8>],
) -> bool {
    match algorithm {
        Algorithm::Sha256 => matches::<Hmac<Sha256>>(secrets, message, candidates),
        Algorithm::Sha1 => matches::<Hmac<Sha1>>(secrets, message, candidates),
    }
}

fn matches<M: Mac + KeyInit + Clone>(
    secrets: &[Vec<u8>],
    message: &[&[u8]],
    candidates: &[Vec<u8>],
) -> bool {
    let mut matched = false;
    for secret in secrets {
        // HMAC accepts keys of any length, so this never fails; skipping
        // instead of `expect` keeps the verifier panic-free by construction.
        let Ok(mut mac) = <M as KeyInit>::new_from_slice(secret) else {
            continue;
        };
        for part in message {
            mac.update(part);
        }
        for candidate in candidates {
            // verify_slice is constant-time and rejects a wrong length
            // (e.g. a truncated signature) without panicking.
            matched |= mac.clone().verify_slice(candidate).is_ok();
        }
    }
    matched
}

/// A header value with surrounding whitespace removed; `None` if absent or
/// empty, since an empty signature is no signature.
pub(crate) fn header_bytes<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h [u8]> {
    headers
        .get(name)
        .map(|value| value.as_bytes().trim_ascii())
        .filter(|value| !value.is_empty())
}

/// Parse a unix timestamp into milliseconds: ASCII digits only. No fractional part,
/// sign or exponent: where the timestamp is concatenated with the body without a
/// separator (Oura, WHOOP), any flexibility in its format would let a replayer move
/// digits between timestamp and body and keep the signature valid.
pub(crate) fn parse_timestamp(text: &[u8], unit: TimestampUnit) -> Option<i128> {
    let whole = text.trim_ascii();
    // 18 digits always fit a u64; nothing legitimate is longer.
    if whole.is_empty() || whole.len() > 18 || !whole.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let value: u64 = std::str::from_utf8(whole).ok()?.parse().ok()?;
    let millis = match unit {
        TimestampUnit::Seconds => i128::from(value) * 1000,
        TimestampUnit::Milliseconds => i128::from(value),
        TimestampUnit::Auto if value >= AUTO_MILLIS_FROM => i128::from(value),
        TimestampUnit::Auto => i128::from(value) * 1000,
    };
    Some(millis)
}

/// Check `timestamp_ms` lies within `tolerance` of `now` (seconds) in both
/// directions; the bounds themselves are accepted.
pub(crate) fn check_window(
    timestamp_ms: i128,
    now: i64,
    tolerance: Duration,
) -> Result<(), VerifyError> {
    let age_ms = i128::from(now) * 1000 - timestamp_ms;
    let tolerance_ms = i128::try_from(tolerance.as_millis()).unwrap_or(i128::MAX);
    if age_ms > tolerance_ms {
        Err(VerifyError::StaleTimestamp)
    } else if -age_ms > tolerance_ms {
        Err(VerifyError::FutureTimestamp)
    } else {
        Ok(())
    }
}

/// Where the signed timestamp comes from and how it joins the body.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SignedTimestamp {
    /// Lower-case header carrying the timestamp.
    pub(crate) header: &'static str,
    /// Unit of the header value.
    pub(crate) unit: TimestampUnit,
    /// Bytes between the timestamp and the body in the signed message.
    pub(crate) separator: &'static [u8],
}

/// The common scheme: a MAC in one header over the raw body, optionally
/// prefixed by a timestamp header. Oura, WHOOP, Polar and configured sources
/// are all instances of it.
#[derive(Clone)]
pub(crate) struct HeaderHmac {
    /// Lower-case header carrying the MAC.
    pub(crate) signature_header: &'static str,
    /// Hash inside the HMAC.
    pub(crate) algorithm: Algorithm,
    /// Encoding of the MAC in the header.
    pub(crate) encoding: Encoding,
    /// The signed timestamp, if the scheme has one.
    pub(crate) timestamp: Option<SignedTimestamp>,
    /// Active secrets; any may match.
    pub(crate) secrets: Vec<Vec<u8>>,
    /// Allowed distance between the signed timestamp and now, both ways.
    pub(crate) tolerance: Duration,
}

impl std::fmt::Debug for HeaderHmac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeaderHmac")
            .field("signature_header", &self.signature_header)
            .field("algorithm", &self.algorithm)
            .field("encoding", &self.encoding)
            .field("timestamp", &self.timestamp)
            .field("secrets", &Redacted(self.secrets.len()))
            .field("tolerance", &self.tolerance)
            .finish()
    }
}

/// Stands in for secrets in `Debug` output, so a logged verifier leaks
/// only how many secrets are configured.
pub(crate) struct Redacted(pub(crate) usize);

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<{} redacted>", self.0)
    }
}

impl HeaderHmac {
    /// The checks that need no body: both headers present and parsable, the MAC in
    /// the right encoding and length, the timestamp within the window.
    pub(crate) fn precheck(&self, headers: &HeaderMap, now: i64) -> Result<(), VerifyError> {
        let signature = header_bytes(headers, self.signature_header)
            .ok_or(VerifyError::MissingSignature(self.signature_header))?;
        if let Some(spec) = self.timestamp {
            let raw = header_bytes(headers, spec.header)
                .ok_or(VerifyError::MissingSignature(spec.header))?;
            let millis = parse_timestamp(raw, spec.unit)
                .ok_or(VerifyError::MalformedSignature(spec.header))?;
            check_window(millis, now, self.tolerance)?;
        }
        match self.encoding.decode(signature) {
            Some(mac) if mac.len() == self.algorithm.mac_len() => Ok(()),
            _ => Err(VerifyError::BadSignature),
        }
    }

    /// Authenticate `body` against the headers. Order: both headers present
    /// and parsable (else 401/400), MAC matches (else 401), then freshness.
    pub(crate) fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: i64,
    ) -> Result<(), VerifyError> {
        let signature = header_bytes(headers, self.signature_header)
            .ok_or(VerifyError::MissingSignature(self.signature_header))?;
        let timestamp = match self.timestamp {
            None => None,
            Some(spec) => {
                let raw = header_bytes(headers, spec.header)
                    .ok_or(VerifyError::MissingSignature(spec.header))?;
                let millis = parse_timestamp(raw, spec.unit)
                    .ok_or(VerifyError::MalformedSignature(spec.header))?;
                Some((raw, spec.separator, millis))
            }
        };
        // Text in the wrong encoding cannot be this MAC: that is a bad
        // signature, not a malformed header.
        let candidate = self
            .encoding
            .decode(signature)
            .ok_or(VerifyError::BadSignature)?;
        let (prefix, separator) =
            timestamp.map_or((&b""[..], &b""[..]), |(raw, sep, _)| (raw, sep));
        if !any_secret_matches(
            self.algorithm,
            &self.secrets,
            &[prefix, separator, body],
            &[candidate],
        ) {
            return Err(VerifyError::BadSignature);
        }
        match timestamp {
            Some((_, _, millis)) => check_window(millis, now, self.tolerance),
            None => Ok(()),
        }
    }
}

/// Domain-separation key for [`SecretFingerprint`]; it need not be secret.
const FINGERPRINT_KEY: &[u8] = b"biometric-bridge/edge/verify: secret fingerprint";

/// A shared secret (API key, verification token) kept as a fixed-length digest.
///
/// Comparing digests with `verify_slice` is constant-time whatever the lengths
/// of the two secrets, which a byte-wise compare of the raw strings is not.
#[derive(Clone)]
pub(crate) struct SecretFingerprint([u8; 32]);

impl SecretFingerprint {
    /// Fingerprint a configured secret.
    pub(crate) fn of(secret: &[u8]) -> Self {
        Self(fingerprint_mac(secret).finalize().into_bytes().into())
    }

    /// Constant-time check of a presented secret, already run through
    /// [`fingerprint_mac`] so that checking many fingerprints hashes it once.
    pub(crate) fn matches(&self, presented: &Hmac<Sha256>) -> bool {
        presented.clone().verify_slice(&self.0).is_ok()
    }
}

impl std::fmt::Debug for SecretFingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretFingerprint(..)")
    }
}

/// The MAC state of a presented secret, ready to compare with fingerprints.
pub(crate) fn fingerprint_mac(secret: &[u8]) -> Hmac<Sha256> {
    // A non-empty constant key: `new_from_slice` cannot fail for HMAC, and
    // the fallback keeps this total without `expect`.
    let mac = <Hmac<Sha256> as KeyInit>::new_from_slice(FINGERPRINT_KEY)
        .unwrap_or_else(|_| <Hmac<Sha256> as KeyInit>::new(&Default::default()));
    mac.chain_update(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_parse_liberally_but_not_loosely() {
        assert_eq!(
            parse_timestamp(b"1735718400", TimestampUnit::Seconds),
            Some(1_735_718_400_000)
        );
        assert_eq!(
            parse_timestamp(b" 1735718400.9 ", TimestampUnit::Seconds),
            None
        );
        assert_eq!(
            parse_timestamp(b"1735718400000", TimestampUnit::Milliseconds),
            Some(1_735_718_400_000)
        );
        assert_eq!(
            parse_timestamp(b"1735718400", TimestampUnit::Auto),
            Some(1_735_718_400_000)
        );
        assert_eq!(
            parse_timestamp(b"1735718400000", TimestampUnit::Auto),
            Some(1_735_718_400_000)
        );
        for bad in [
            &b""[..],
            b"-1",
            b"+1",
            b"1e9",
            b"abc",
            b"1.2.3",
            b".5",
            b"9999999999999999999999",
        ] {
            assert_eq!(
                parse_timestamp(bad, TimestampUnit::Seconds),
                None,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn window_is_inclusive_both_ways() {
        let t = 1_735_718_400_000;
        let tol = Duration::from_secs(300);
        assert_eq!(check_window(t, 1_735_718_700, tol), Ok(()));
        assert_eq!(check_window(t, 1_735_718_100, tol), Ok(()));
        assert_eq!(
            check_window(t, 1_735_718_701, tol),
            Err(VerifyError::StaleTimestamp)
        );
        assert_eq!(
            check_window(t, 1_735_718_099, tol),
            Err(VerifyError::FutureTimestamp)
        );
        // Hostile extremes must not overflow.
        assert_eq!(
            check_window(i128::from(u64::MAX) * 1000, i64::MIN, Duration::MAX),
            Err(VerifyError::FutureTimestamp)
        );
        assert_eq!(check_window(0, 0, Duration::MAX), Ok(()));
        assert_eq!(
            check_window(0, i64::MAX, tol),
            Err(VerifyError::StaleTimestamp)
        );
    }

    #[test]
    fn base64_accepts_unpadded_and_url_safe() {
        let bytes = [0xfb, 0xff, 0x01];
        for text in ["+/8B", "-_8B"] {
            assert_eq!(
                Encoding::Base64.decode(text.as_bytes()),
                Some(bytes.to_vec())
            );
        }
        assert_eq!(Encoding::Base64.decode(b"+/8="), Some(vec![0xfb, 0xff]));
        assert_eq!(Encoding::Base64.decode(b"+/8"), Some(vec![0xfb, 0xff]));
        assert_eq!(Encoding::Hex.decode(b"zz"), None);
    }

    #[test]
    fn debug_output_hides_secrets() {
        let scheme = HeaderHmac {
            signature_header: "x-sig",
            algorithm: Algorithm::Sha256,
            encoding: Encoding::Hex,
            timestamp: None,
            secrets: vec![b"hunter2".to_vec()],
            tolerance: Duration::from_secs(1),
        };
        let debug = format!("{scheme:?}");
        assert!(debug.contains("<1 redacted>"), "{debug}");
        assert!(!debug.contains("104"), "{debug}"); // b'h'
        assert!(!format!("{:?}", SecretFingerprint::of(b"hunter2")).contains("hunter2"));
    }

    #[test]
    fn fingerprints_compare_by_value_not_length() {
        let stored = SecretFingerprint::of(b"sk-abc");
        assert!(stored.matches(&fingerprint_mac(b"sk-abc")));
        assert!(!stored.matches(&fingerprint_mac(b"sk-ab")));
        assert!(!stored.matches(&fingerprint_mac(b"sk-abcd")));
        assert!(!stored.matches(&fingerprint_mac(b"")));
    }
}
