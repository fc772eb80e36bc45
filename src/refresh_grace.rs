//! Refresh-token grace period (RFC 9700 §4.14.2 allows it): a client that lost
//! the answer to a refresh may present the previous refresh token once more,
//! within a few seconds, and gets the same new pair back.
//!
//! The store keeps only hashes, so "the same pair" is recomputed: with a grace
//! period configured, the tokens of a rotation are HMAC-SHA256, under a 256-bit
//! key from the host CSPRNG kept in shared data (`oauth2/key`), of the presented
//! refresh token's hash. Without a grace period (the default) tokens come
//! straight from the CSPRNG and no key exists.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::host::{KvStore, RandomUnavailable, Randomness, WriteError};
use crate::token::TokenHash;

pub const KEY_NAME: &str = "oauth2/key";

/// Creates the key once (at configuration, on Envoy's main thread first).
pub fn ensure_key(kv: &dyn KvStore, rng: &dyn Randomness) -> Result<(), WriteError> {
    if read_key(kv).is_some() {
        return Ok(());
    }
    let mut key = [0u8; 32];
    rng.fill(&mut key).map_err(|_| WriteError::Failed)?;
    kv.set(KEY_NAME, &key, None)
}

pub fn read_key(kv: &dyn KvStore) -> Option<[u8; 32]> {
    kv.get(KEY_NAME).value.and_then(|v| v.try_into().ok())
}

/// Deterministic "randomness" for one rotation: each `label` (access, refresh)
/// gives its own stream.
pub struct DerivedSecret<'a> {
    pub key: &'a [u8; 32],
    pub seed: &'a TokenHash,
    pub label: u8,
}

impl Randomness for DerivedSecret<'_> {
    fn fill(&self, buf: &mut [u8]) -> Result<(), RandomUnavailable> {
        for (block, chunk) in buf.chunks_mut(32).enumerate() {
            let mut mac =
                <Hmac<Sha256> as Mac>::new_from_slice(self.key).map_err(|_| RandomUnavailable)?;
            mac.update(&[self.label, block as u8]);
            mac.update(&self.seed.0);
            let out = mac.finalize().into_bytes();
            chunk.copy_from_slice(&out[..chunk.len()]);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::memory::MemoryKv;
    use crate::host::HostRandomness;

    #[test]
    fn the_key_is_made_once_and_streams_are_deterministic_and_distinct() {
        let kv = MemoryKv::default();
        ensure_key(&kv, &HostRandomness).unwrap();
        let key = read_key(&kv).unwrap();
        ensure_key(&kv, &HostRandomness).unwrap();
        assert_eq!(read_key(&kv), Some(key));
        let seed = TokenHash([3; 16]);
        let fill = |label: u8| {
            let mut b = [0u8; 40];
            DerivedSecret {
                key: &key,
                seed: &seed,
                label,
            }
            .fill(&mut b)
            .unwrap();
            b
        };
        assert_eq!(fill(1), fill(1));
        assert_ne!(fill(1), fill(2));
        let other = TokenHash([4; 16]);
        let mut b = [0u8; 40];
        DerivedSecret {
            key: &key,
            seed: &other,
            label: 1,
        }
        .fill(&mut b)
        .unwrap();
        assert_ne!(b, fill(1));
    }
}
