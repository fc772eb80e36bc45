//! Refresh-token grace period (RFC 9700 §4.14.2 allows it): a client that lost
//! the answer to a refresh may present the previous refresh token once more,
//! within a few seconds, and gets the same new pair back.
//!
//! The store keeps only hashes, so "the same pair" is recomputed: with a grace
//! period configured, the secrets of a rotation are HMAC-SHA256, under the
//! store's key (`server_key`), of the presented refresh token's hash. Without a
//! grace period (the default) secrets come straight from the CSPRNG.

use crate::host::{RandomUnavailable, Randomness};
use crate::store::server_key;
use crate::token::TokenHash;

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
            let out: [u8; 32] = server_key::tag(self.key, &[self.label, block as u8], &self.seed.0)
                .ok_or(RandomUnavailable)?;
            chunk.copy_from_slice(&out[..chunk.len()]);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_deterministic_and_distinct() {
        let key = [7u8; 32];
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
