//! Client secrets and user passwords are configured only as salted PBKDF2
//! hashes, in PHC string format:
//!
//! `$pbkdf2-sha256$i=<iterations>$<salt>$<hash>` (salt and 32-byte hash in
//! standard base64 without padding; `make hash-secret` prints one).
//!
//! PBKDF2-HMAC-SHA256 (NIST SP 800-132, RustCrypto `pbkdf2`) needs no large
//! memory, which matters with one Wasm VM per Envoy worker.

use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine;
use sha2::Sha256;
use subtle::ConstantTimeEq;

pub const DEFAULT_ITERATIONS: u32 = 100_000;
pub const MIN_ITERATIONS: u32 = 10_000;
pub const MAX_ITERATIONS: u32 = 10_000_000;
const HASH_BYTES: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretHash {
    iterations: u32,
    salt: Vec<u8>,
    hash: [u8; HASH_BYTES],
    /// The configured text, used to key the verified-credential cache so that a
    /// changed hash never matches an old cache entry.
    pub encoded: String,
}

impl SecretHash {
    pub fn parse(text: &str) -> Result<SecretHash, String> {
        let parts: Vec<&str> = text.split('$').collect();
        if parts.len() != 5 || !parts[0].is_empty() || parts[1] != "pbkdf2-sha256" {
            return Err(
                "expected `$pbkdf2-sha256$i=<iterations>$<salt>$<hash>` (see `make hash-secret`)"
                    .into(),
            );
        }
        let iterations: u32 = parts[2]
            .strip_prefix("i=")
            .and_then(|n| n.parse().ok())
            .ok_or("the iteration count must look like `i=100000`")?;
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
            return Err(format!(
                "iterations must be between {MIN_ITERATIONS} and {MAX_ITERATIONS}"
            ));
        }
        let salt = STANDARD_NO_PAD
            .decode(parts[3])
            .map_err(|_| "the salt is not base64")?;
        if salt.len() < 8 {
            return Err("the salt must have at least 8 bytes".into());
        }
        let raw = STANDARD_NO_PAD
            .decode(parts[4])
            .map_err(|_| "the hash is not base64")?;
        let hash: [u8; HASH_BYTES] = raw.try_into().map_err(|_| "the hash must be 32 bytes")?;
        Ok(SecretHash {
            iterations,
            salt,
            hash,
            encoded: text.to_string(),
        })
    }

    /// The slow check. Constant-time comparison of the derived key.
    /// PBKDF2 rounds: what one verification costs.
    pub fn iterations(&self) -> u32 {
        self.iterations
    }

    pub fn verify(&self, presented: &[u8]) -> bool {
        let mut out = [0u8; HASH_BYTES];
        pbkdf2::pbkdf2_hmac::<Sha256>(presented, &self.salt, self.iterations, &mut out);
        out.ct_eq(&self.hash).into()
    }
}

/// Hashes a secret for the configuration.
pub fn hash_secret(secret: &[u8], salt: &[u8], iterations: u32) -> String {
    let mut out = [0u8; HASH_BYTES];
    pbkdf2::pbkdf2_hmac::<Sha256>(secret, salt, iterations, &mut out);
    format!(
        "$pbkdf2-sha256$i={iterations}${}${}",
        STANDARD_NO_PAD.encode(salt),
        STANDARD_NO_PAD.encode(out)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_then_verify() {
        let h = SecretHash::parse(&hash_secret(b"s3cret", b"saltsaltsalt", 10_000)).unwrap();
        assert!(h.verify(b"s3cret"));
        assert!(!h.verify(b"s3cret "));
        assert!(!h.verify(b""));
    }

    #[test]
    fn known_vector() {
        // RFC 7914 §11 PBKDF2-HMAC-SHA256 test vector has c=1; check the
        // parameters are passed through with a vector computed independently
        // (Python: hashlib.pbkdf2_hmac('sha256', b'password', b'saltsaltsalt', 10000)).
        let h = hash_secret(b"password", b"saltsaltsalt", 10_000);
        assert!(h.starts_with("$pbkdf2-sha256$i=10000$c2FsdHNhbHRzYWx0$"));
        assert_eq!(h, include_str!("../../tests/data/pbkdf2_vector.txt").trim());
    }

    #[test]
    fn malformed_hashes_are_refused_with_a_reason() {
        for bad in [
            "",
            "plain-secret",
            "$pbkdf2-sha1$i=10000$c2FsdHNhbHQ$AAAA",
            "$pbkdf2-sha256$10000$c2FsdHNhbHQ$AAAA",
            "$pbkdf2-sha256$i=5$c2FsdHNhbHRzYWx0$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "$pbkdf2-sha256$i=10000$c2Fs$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "$pbkdf2-sha256$i=10000$c2FsdHNhbHRzYWx0$AAAA",
        ] {
            assert!(SecretHash::parse(bad).is_err(), "{bad}");
        }
    }
}
