//! `GENERIC_HMAC_SOURCES`: vendors without a built-in verifier, configured as JSON.
//!
//! ```json
//! [{"name": "fitbit", "signature_header": "x-fitbit-signature", "algorithm": "sha1",
//!   "encoding": "base64", "signed": "body", "secrets": ["client-secret&"],
//!   "partition_key_path": ["ownerId"]}]
//! ```
//! `signed` is `body`, `timestamp_body` or `timestamp_dot_body`; the last two need
//! `timestamp_header` and `timestamp_unit` (`s`, `ms` or `auto`). The processor has no
//! normalizer for these vendors: their envelopes reach the DLQ with reason
//! `unknown_vendor`, original bytes intact, until one is written.

use http::HeaderName;
use serde::Deserialize;

use bridge_core::config::ConfigError;
use vendors::Vendor;
use vendors::verify::{
    Algorithm, Encoding, GenericHmacConfig, SignedContent, TimestampHeader, TimestampUnit,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Source {
    name: String,
    signature_header: String,
    algorithm: String,
    encoding: String,
    signed: String,
    #[serde(default)]
    timestamp_header: Option<String>,
    #[serde(default)]
    timestamp_unit: Option<String>,
    secrets: Vec<String>,
    #[serde(default)]
    partition_key_path: Vec<String>,
}

/// One configured source: its route name, scheme and secrets.
#[derive(Debug)]
pub struct GenericSource {
    /// Route name: `/webhooks/<name>`.
    pub name: String,
    /// How it signs.
    pub config: GenericHmacConfig,
    /// Active secrets (rotation).
    pub secrets: Vec<Vec<u8>>,
}

fn err(message: String) -> ConfigError {
    ConfigError {
        var: "GENERIC_HMAC_SOURCES",
        message,
    }
}

/// Parses the variable's JSON; every mistake names the source and field.
pub fn parse(json: &str) -> Result<Vec<GenericSource>, ConfigError> {
    let sources: Vec<Source> =
        // Only the position: serde's message can quote a value, and values are secrets.
        serde_json::from_str(json).map_err(|e| {
            err(format!(
                "invalid JSON or wrong field type at line {} column {}",
                e.line(),
                e.column()
            ))
        })?;
    sources.into_iter().map(convert).collect()
}

fn convert(s: Source) -> Result<GenericSource, ConfigError> {
    let name = s.name;
    let valid_name = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if !valid_name || name.parse::<Vendor>().is_ok() {
        return Err(err(format!(
            "source name {name:?} must be [a-z0-9_-]+ and not a built-in vendor"
        )));
    }
    let header = |h: &str, field: &str| {
        HeaderName::from_bytes(h.to_ascii_lowercase().as_bytes())
            .map_err(|_| err(format!("{name}: {field} {h:?} is not a header name")))
    };
    let algorithm = match s.algorithm.as_str() {
        "sha256" => Algorithm::Sha256,
        "sha1" => Algorithm::Sha1,
        other => return Err(err(format!("{name}: algorithm {other:?} (sha256|sha1)"))),
    };
    let encoding = match s.encoding.as_str() {
        "hex" => Encoding::Hex,
        "base64" => Encoding::Base64,
        other => return Err(err(format!("{name}: encoding {other:?} (hex|base64)"))),
    };
    let timestamp = || -> Result<TimestampHeader, ConfigError> {
        let h = s.timestamp_header.as_deref().ok_or_else(|| {
            err(format!(
                "{name}: signed {:?} needs timestamp_header",
                s.signed
            ))
        })?;
        let unit = match s.timestamp_unit.as_deref().unwrap_or("s") {
            "s" => TimestampUnit::Seconds,
            "ms" => TimestampUnit::Milliseconds,
            "auto" => TimestampUnit::Auto,
            other => return Err(err(format!("{name}: timestamp_unit {other:?} (s|ms|auto)"))),
        };
        Ok(TimestampHeader {
            name: header(h, "timestamp_header")?,
            unit,
        })
    };
    let signed = match s.signed.as_str() {
        "body" => SignedContent::Body,
        // Without a separator, a unit that reads both s and ms would let digits move
        // between the timestamp and the body under the same signature.
        "timestamp_body" if s.timestamp_unit.as_deref() == Some("auto") => {
            return Err(err(format!(
                "{name}: timestamp_unit \"auto\" is unsafe with timestamp_body; choose s or ms"
            )));
        }
        "timestamp_body" => SignedContent::TimestampBody(timestamp()?),
        "timestamp_dot_body" => SignedContent::TimestampDotBody(timestamp()?),
        other => {
            return Err(err(format!(
                "{name}: signed {other:?} (body|timestamp_body|timestamp_dot_body)"
            )));
        }
    };
    let secrets: Vec<Vec<u8>> = s
        .secrets
        .iter()
        .filter(|x| !x.is_empty())
        .map(|x| x.as_bytes().to_vec())
        .collect();
    if secrets.is_empty() {
        return Err(err(format!("{name}: at least one secret is required")));
    }
    Ok(GenericSource {
        config: GenericHmacConfig {
            signature_header: header(&s.signature_header, "signature_header")?,
            algorithm,
            encoding,
            signed,
            partition_key_path: s.partition_key_path,
        },
        secrets,
        name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_fitbit_style_source() {
        let s = parse(
            r#"[{"name":"fitbit","signature_header":"X-Fitbit-Signature","algorithm":"sha1",
                 "encoding":"base64","signed":"body","secrets":["k&"],"partition_key_path":["ownerId"]}]"#,
        )
        .unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].name, "fitbit");
        assert_eq!(s[0].config.signature_header.as_str(), "x-fitbit-signature");
        assert_eq!(s[0].secrets, vec![b"k&".to_vec()]);
    }

    #[test]
    fn mistakes_name_the_variable_and_field() {
        for (json, needle) in [
            ("not json", "invalid JSON"),
            (
                r#"[{"name":"v","signature_header":"x","algorithm":"sha256","encoding":"hex","signed":"body","secrets":"TOPSECRET"}]"#,
                "line 1",
            ),
            (
                r#"[{"name":"terra","signature_header":"x","algorithm":"sha256","encoding":"hex","signed":"body","secrets":["a"]}]"#,
                "built-in",
            ),
            (
                r#"[{"name":"v","signature_header":"x","algorithm":"md5","encoding":"hex","signed":"body","secrets":["a"]}]"#,
                "algorithm",
            ),
            (
                r#"[{"name":"v","signature_header":"x","algorithm":"sha256","encoding":"hex","signed":"timestamp_body","secrets":["a"]}]"#,
                "timestamp_header",
            ),
            (
                r#"[{"name":"v","signature_header":"x","algorithm":"sha256","encoding":"hex","signed":"body","secrets":[]}]"#,
                "secret",
            ),
        ] {
            let e = parse(json).unwrap_err();
            assert_eq!(e.var, "GENERIC_HMAC_SOURCES");
            assert!(e.message.contains(needle), "{json}: {e}");
            assert!(!e.message.contains("TOPSECRET"), "secret echoed: {e}");
        }
    }
}
