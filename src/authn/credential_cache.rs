//! Per-worker memory of credentials that already passed the slow hash, so the
//! PBKDF2 cost is paid once per worker and credential, not on every request.
//!
//! Keys are SHA-256 over a per-worker random key, the configured hash text and
//! the presented secret: the cache never holds a secret, a changed configured
//! hash never matches an old entry, and lookups compare digests, not secrets.

use sha2::{Digest, Sha256};
use std::cell::RefCell;
use std::collections::HashSet;

use crate::config::secret_hash::SecretHash;

/// Interior mutability: a request paused on a remote store holds a shared
/// reference across the pause, and every use is one short synchronous call.
pub struct CredentialCache {
    key: [u8; 32],
    verified: RefCell<HashSet<[u8; 32]>>,
    capacity: usize,
}

impl CredentialCache {
    pub fn new(key: [u8; 32], capacity: usize) -> Self {
        CredentialCache {
            key,
            verified: RefCell::new(HashSet::new()),
            capacity: capacity.max(1),
        }
    }

    /// Whether `presented` already passed the check against `stored` on this
    /// worker: the cost of a digest, no slow hash.
    pub fn seen(&self, stored: &SecretHash, presented: &[u8]) -> bool {
        let digest = self.digest(stored, presented);
        self.verified
            .try_borrow()
            .is_ok_and(|v| v.contains(&digest))
    }

    /// Checks `presented` against `stored`, paying PBKDF2 only on a cache miss.
    pub fn verify(&self, stored: &SecretHash, presented: &[u8]) -> bool {
        let digest = self.digest(stored, presented);
        if self
            .verified
            .try_borrow()
            .is_ok_and(|v| v.contains(&digest))
        {
            return true;
        }
        if !stored.verify(presented) {
            return false;
        }
        if let Ok(mut verified) = self.verified.try_borrow_mut() {
            if verified.len() >= self.capacity {
                // Rare (capacity >> configured credentials): start over rather than track age.
                verified.clear();
            }
            verified.insert(digest);
        }
        true
    }

    pub fn len(&self) -> usize {
        self.verified.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.verified.borrow().is_empty()
    }

    fn digest(&self, stored: &SecretHash, presented: &[u8]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.key);
        h.update((stored.encoded.len() as u64).to_be_bytes());
        h.update(stored.encoded.as_bytes());
        h.update(presented);
        h.finalize().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::secret_hash::hash_secret;

    #[test]
    fn caches_successes_only_and_keys_by_the_configured_hash() {
        let a = SecretHash::parse(&hash_secret(b"pw", b"salt1salt1", 10_000)).unwrap();
        let b = SecretHash::parse(&hash_secret(b"pw", b"salt2salt2", 10_000)).unwrap();
        let c = CredentialCache::new([7; 32], 8);
        assert!(!c.verify(&a, b"wrong"));
        assert!(c.is_empty());
        assert!(!c.seen(&a, b"pw"));
        assert!(c.verify(&a, b"pw"));
        assert_eq!(c.len(), 1);
        assert!(c.seen(&a, b"pw"));
        assert!(!c.seen(&a, b"wrong"));
        assert!(c.verify(&a, b"pw"));
        assert_eq!(c.len(), 1);
        // The same secret under another configured hash is checked again.
        assert!(c.verify(&b, b"pw"));
        assert_eq!(c.len(), 2);
        assert!(!c.verify(&b, b"pw2"));
    }

    #[test]
    fn stays_within_capacity() {
        let a = SecretHash::parse(&hash_secret(b"pw", b"salt1salt1", 10_000)).unwrap();
        let c = CredentialCache::new([0; 32], 1);
        assert!(c.verify(&a, b"pw"));
        let b = SecretHash::parse(&hash_secret(b"x", b"salt1salt1", 10_000)).unwrap();
        assert!(c.verify(&b, b"x"));
        assert_eq!(c.len(), 1);
    }
}
