//! Google's webhook public keys from configuration: PEM `PUBLIC KEY` blocks (SPKI) and/or
//! the Tink JSON public keyset Google publishes [C] at
//! `https://www.gstatic.com/googlehealthapi/webhooks/webhooks_public_keyset.json`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use p256::ecdsa::VerifyingKey;
use p256::pkcs8::DecodePublicKey as _;

const BEGIN: &str = "-----BEGIN PUBLIC KEY-----";
const END: &str = "-----END PUBLIC KEY-----";
/// The only key type a Google Health keyset is known to hold [C].
const ECDSA_PUBLIC_KEY: &str = "type.googleapis.com/google.crypto.tink.EcdsaPublicKey";

/// Tink's `EcdsaPublicKey` protobuf: the point's big-endian coordinates, possibly with a
/// leading zero byte (Java `BigInteger` encoding).
#[derive(Clone, PartialEq, prost::Message)]
struct EcdsaPublicKey {
    #[prost(bytes = "vec", tag = "3")]
    x: Vec<u8>,
    #[prost(bytes = "vec", tag = "4")]
    y: Vec<u8>,
}

#[derive(serde::Deserialize)]
struct Keyset {
    #[serde(default)]
    key: Vec<KeysetKey>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct KeysetKey {
    key_data: KeyData,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    key_id: Option<u64>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct KeyData {
    type_url: String,
    value: String,
}

/// Parse the setting. Literal `\n` sequences count as newlines (env files often carry a
/// PEM on one line). Errors say which key is at fault; an empty result is an error.
pub fn parse(text: &str) -> Result<Vec<VerifyingKey>, String> {
    let text = text.replace("\\n", "\n");
    let text = text.trim();
    let keys = if text.starts_with('{') {
        from_keyset(text)?
    } else {
        from_pem(text)?
    };
    if keys.is_empty() {
        return Err("no public key found (expected PEM `PUBLIC KEY` blocks or a Tink JSON keyset)".into());
    }
    Ok(keys)
}

fn from_pem(text: &str) -> Result<Vec<VerifyingKey>, String> {
    let mut keys = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(BEGIN) {
        let after = &rest[start..];
        let end = after
            .find(END)
            .ok_or_else(|| format!("PEM block {} has no `{END}`", keys.len() + 1))?;
        let block = &after[..end + END.len()];
        let key = VerifyingKey::from_public_key_pem(block)
            .map_err(|e| format!("PEM block {} is not a P-256 public key: {e}", keys.len() + 1))?;
        keys.push(key);
        rest = &after[end + END.len()..];
    }
    if !rest.trim().is_empty() && keys.is_empty() {
        return Err(format!("expected `{BEGIN}`"));
    }
    Ok(keys)
}

fn from_keyset(text: &str) -> Result<Vec<VerifyingKey>, String> {
    let keyset: Keyset =
        serde_json::from_str(text).map_err(|e| format!("not a Tink JSON keyset: {e}"))?;
    let mut keys = Vec::new();
    for entry in keyset.key {
        let id = entry.key_id.map_or_else(|| "?".to_owned(), |id| id.to_string());
        // Disabled and destroyed keys no longer verify in Tink either.
        if entry.status.as_deref().is_some_and(|s| s != "ENABLED") {
            continue;
        }
        if entry.key_data.type_url != ECDSA_PUBLIC_KEY {
            return Err(format!("keyset key {id}: unsupported type {}", entry.key_data.type_url));
        }
        let proto = STANDARD
            .decode(entry.key_data.value.trim())
            .map_err(|e| format!("keyset key {id}: value is not base64: {e}"))?;
        let point = <EcdsaPublicKey as prost::Message>::decode(proto.as_slice())
            .map_err(|e| format!("keyset key {id}: not an EcdsaPublicKey: {e}"))?;
        let mut sec1 = vec![0x04];
        sec1.extend(coordinate(&point.x).ok_or_else(|| format!("keyset key {id}: bad x"))?);
        sec1.extend(coordinate(&point.y).ok_or_else(|| format!("keyset key {id}: bad y"))?);
        let key = VerifyingKey::from_sec1_bytes(&sec1)
            .map_err(|e| format!("keyset key {id}: not a P-256 point: {e}"))?;
        keys.push(key);
    }
    Ok(keys)
}

/// A big-endian coordinate as exactly 32 bytes: leading zeros stripped, then left-padded.
fn coordinate(raw: &[u8]) -> Option<[u8; 32]> {
    let start = raw.iter().position(|b| *b != 0).unwrap_or(raw.len());
    let digits = &raw[start..];
    if digits.len() > 32 {
        return None;
    }
    let mut out = [0u8; 32];
    out[32 - digits.len()..].copy_from_slice(digits);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::google_health::verify::tests::key_pair;
    use p256::pkcs8::{EncodePublicKey as _, LineEnding};

    fn pem(key: &VerifyingKey) -> String {
        key.to_public_key_pem(LineEnding::LF).expect("pem")
    }

    /// A keyset as Google publishes it [C]: coordinates with a leading zero byte.
    pub(crate) fn keyset(keys: &[(u32, &VerifyingKey, &str)]) -> String {
        let entries: Vec<serde_json::Value> = keys
            .iter()
            .map(|(id, key, status)| {
                let point = key.to_sec1_point(false);
                let bytes = point.as_bytes();
                let mut x = vec![0];
                x.extend(&bytes[1..33]);
                let mut y = vec![0];
                y.extend(&bytes[33..65]);
                let proto = prost::Message::encode_to_vec(&EcdsaPublicKey { x, y });
                serde_json::json!({
                    "keyData": {
                        "typeUrl": ECDSA_PUBLIC_KEY,
                        "value": STANDARD.encode(proto),
                        "keyMaterialType": "ASYMMETRIC_PUBLIC"
                    },
                    "status": status,
                    "keyId": id,
                    "outputPrefixType": "TINK"
                })
            })
            .collect();
        serde_json::json!({ "primaryKeyId": keys[0].0, "key": entries }).to_string()
    }

    #[test]
    fn pem_blocks_one_or_several_even_on_one_line() {
        let (_, a) = key_pair();
        let (_, b) = key_pair();
        assert_eq!(parse(&pem(&a)), Ok(vec![a]));
        let both = format!("{}\n{}", pem(&a), pem(&b));
        assert_eq!(parse(&both), Ok(vec![a, b]));
        let escaped = both.replace('\n', "\\n");
        assert_eq!(parse(&escaped), Ok(vec![a, b]));
    }

    #[test]
    fn tink_keyset_as_published() {
        let (_, a) = key_pair();
        let (_, b) = key_pair();
        let (_, c) = key_pair();
        let text = keyset(&[(1, &a, "ENABLED"), (2, &b, "ENABLED"), (3, &c, "DISABLED")]);
        assert_eq!(parse(&text), Ok(vec![a, b]));
    }

    #[test]
    fn the_real_keyset_value_decodes() {
        // A value from Google's published keyset as quoted in an open-source client's
        // test [C]: params SHA256/NIST_P256/DER, x and y with a leading zero byte.
        let value = "EgYIAxACGAIaIQBDWg3kaiabjtrVXbSSbcn6e3QqiCLD+B4GuhC/Z1C6miIhACarm0VQv9WjNZG/AB0itXCIGFW5ddInmBFUjK/8w0v3";
        let text = serde_json::json!({"primaryKeyId": 1, "key": [{
            "keyData": {"typeUrl": ECDSA_PUBLIC_KEY, "value": value, "keyMaterialType": "ASYMMETRIC_PUBLIC"},
            "status": "ENABLED", "keyId": 1, "outputPrefixType": "TINK"}]})
        .to_string();
        assert_eq!(parse(&text).map(|k| k.len()), Ok(1));
    }

    #[test]
    fn errors_name_the_problem() {
        assert!(parse("").is_err());
        assert!(parse("not a key").unwrap_err().contains("BEGIN PUBLIC KEY"));
        assert!(parse("-----BEGIN PUBLIC KEY-----\nAAAA\n").unwrap_err().contains("END"));
        assert!(parse("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----").is_err());
        assert!(parse(r#"{"key":[]}"#).is_err());
        assert!(parse(r#"{"key":[{"keyData":{"typeUrl":"type.googleapis.com/google.crypto.tink.Ed25519PublicKey","value":"AA=="}}]}"#)
            .unwrap_err()
            .contains("unsupported"));
        assert!(parse(r#"{"key":[{"keyData":{"typeUrl":"type.googleapis.com/google.crypto.tink.EcdsaPublicKey","value":"%%"}}]}"#).is_err());
        assert_eq!(coordinate(&[0u8; 40]), Some([0u8; 32]));
        assert_eq!(coordinate(&[1u8; 33]), None);
    }
}
