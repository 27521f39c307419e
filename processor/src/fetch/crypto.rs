//! Token encryption at rest: XChaCha20-Poly1305 under `TOKEN_ENCRYPTION_KEY`.
//!
//! A stored value is `nonce (24 bytes) || ciphertext || tag`. The random 192-bit nonce
//! makes nonce reuse negligible without a counter; the associated data binds a value to
//! its row and column, so copying a ciphertext elsewhere makes it undecryptable.

use base64::Engine;
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use rand::RngCore;

const NONCE_LEN: usize = 24;

/// The key was not 32 bytes of base64 or hex.
#[derive(Debug, thiserror::Error)]
#[error("must be 32 bytes, as base64 (44 characters) or hex (64 characters)")]
pub struct KeyError;

/// A stored token could not be decrypted: wrong key, or a damaged or moved value.
#[derive(Debug, thiserror::Error)]
#[error("token does not decrypt with TOKEN_ENCRYPTION_KEY (wrong key or damaged value)")]
pub struct DecryptError;

/// Encrypts and decrypts linked-account tokens.
#[derive(Clone)]
pub struct TokenCipher {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for TokenCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.write_str("TokenCipher(..)")
    }
}

impl TokenCipher {
    /// Reads a 32-byte key written as hex (64 characters) or base64 (standard or URL-safe).
    pub fn from_env_value(value: &str) -> Result<Self, KeyError> {
        let value = value.trim();
        let bytes = if value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(value).map_err(|_| KeyError)?
        } else {
            base64::engine::general_purpose::STANDARD
                .decode(value)
                .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(value))
                .map_err(|_| KeyError)?
        };
        let cipher = XChaCha20Poly1305::new_from_slice(&bytes).map_err(|_| KeyError)?;
        Ok(Self { cipher })
    }

    /// Encrypts `token`, bound to `aad` (see [`aad`]).
    pub fn encrypt(&self, token: &str, aad: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let nonce = XNonce::from(nonce);
        let sealed = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: token.as_bytes(),
                    aad,
                },
            )
            // Only fails for messages beyond 256 GiB.
            .unwrap_or_default();
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Decrypts a value written by [`TokenCipher::encrypt`] with the same `aad`.
    pub fn decrypt(&self, stored: &[u8], aad: &[u8]) -> Result<String, DecryptError> {
        if stored.len() < NONCE_LEN {
            return Err(DecryptError);
        }
        let (nonce, sealed) = stored.split_at(NONCE_LEN);
        let nonce = XNonce::try_from(nonce).map_err(|_| DecryptError)?;
        let plain = self
            .cipher
            .decrypt(&nonce, Payload { msg: sealed, aad })
            .map_err(|_| DecryptError)?;
        String::from_utf8(plain).map_err(|_| DecryptError)
    }
}

/// Associated data for a token column of one account.
pub fn aad(vendor: &str, vendor_user_id: &str, column: &str) -> Vec<u8> {
    format!("{vendor}\0{vendor_user_id}\0{column}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn round_trip_and_binding() {
        let c = TokenCipher::from_env_value(HEX).unwrap();
        let a = aad("oura", "u1", "access_token");
        let sealed = c.encrypt("secret-token", &a);
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        assert_eq!(c.decrypt(&sealed, &a).unwrap(), "secret-token");
        // Another row or column, or a flipped bit, does not decrypt.
        assert!(
            c.decrypt(&sealed, &aad("oura", "u2", "access_token"))
                .is_err()
        );
        assert!(
            c.decrypt(&sealed, &aad("oura", "u1", "refresh_token"))
                .is_err()
        );
        let mut bad = sealed.clone();
        bad[30] ^= 1;
        assert!(c.decrypt(&bad, &a).is_err());
        assert!(c.decrypt(&sealed[..10], &a).is_err());
        // Fresh nonce each time.
        assert_ne!(c.encrypt("x", &a), c.encrypt("x", &a));
    }

    #[test]
    fn key_formats() {
        let b64 = base64::engine::general_purpose::STANDARD.encode(hex::decode(HEX).unwrap());
        let c1 = TokenCipher::from_env_value(HEX).unwrap();
        let c2 = TokenCipher::from_env_value(&b64).unwrap();
        let sealed = c1.encrypt("t", b"a");
        assert_eq!(c2.decrypt(&sealed, b"a").unwrap(), "t");
        assert!(TokenCipher::from_env_value("short").is_err());
        assert!(TokenCipher::from_env_value(&HEX[..62]).is_err());
        assert!(TokenCipher::from_env_value("").is_err());
    }
}
