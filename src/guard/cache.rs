//! Per-worker cache of validated tokens, keyed by the token's hash, bounded in
//! size with first-in-first-out eviction. An entry never outlives its token.

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use crate::token::TokenHash;

/// What the upstream learns about a valid token; header values are built once,
/// at validation, so a cache hit formats nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub client_id: String,
    pub user: Option<String>,
    pub scope: String,
    pub expires_at: u64,
    pub expires_header: String,
    /// The token's fingerprint, for the audit trail (computed once, here).
    pub fingerprint: String,
}

impl Identity {
    pub fn has_scopes(&self, required: &[String]) -> bool {
        required
            .iter()
            .all(|r| self.scope.split(' ').any(|s| s == r))
    }
}

#[derive(Debug, Clone)]
pub struct CacheEntry {
    /// `None`: a negative entry (token known to be invalid).
    pub identity: Option<Rc<Identity>>,
    /// The entry is used only while `now < valid_until`.
    pub valid_until: u64,
    /// Revocation generation of the token's shard when the entry was made.
    pub generation: u64,
    /// The token's bucket, whose shard `generation` belongs to (a JWT's bucket
    /// is known only after verification; a hit must not need it).
    pub bucket: u32,
    seq: u64,
}

pub struct ValidationCache {
    entries: HashMap<TokenHash, CacheEntry>,
    order: VecDeque<(TokenHash, u64)>,
    capacity: usize,
    next_seq: u64,
}

impl ValidationCache {
    pub fn new(capacity: usize) -> Self {
        ValidationCache {
            entries: HashMap::with_capacity(capacity.min(1 << 16)),
            order: VecDeque::new(),
            capacity,
            next_seq: 0,
        }
    }

    /// A live entry, or `None` (and an expired one is dropped).
    pub fn get(&mut self, key: &TokenHash, now: u64) -> Option<&mut CacheEntry> {
        let expired = match self.entries.get(key) {
            None => return None,
            Some(e) => now >= e.valid_until,
        };
        if expired {
            self.entries.remove(key);
            return None;
        }
        self.entries.get_mut(key)
    }

    pub fn insert(
        &mut self,
        key: TokenHash,
        identity: Option<Rc<Identity>>,
        valid_until: u64,
        generation: u64,
        bucket: u32,
    ) {
        if self.capacity == 0 {
            return;
        }
        while self.entries.len() >= self.capacity && !self.entries.contains_key(&key) {
            let Some((old, seq)) = self.order.pop_front() else {
                break;
            };
            // Skip order records of entries replaced or dropped since.
            if self.entries.get(&old).is_some_and(|e| e.seq == seq) {
                self.entries.remove(&old);
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.entries.insert(
            key,
            CacheEntry {
                identity,
                valid_until,
                generation,
                bucket,
                seq,
            },
        );
        self.order.push_back((key, seq));
        // Order records of replaced entries pile up only until the next eviction
        // pass; keep them bounded regardless.
        if self.order.len() > self.capacity.saturating_mul(2) + 16 {
            let entries = &self.entries;
            self.order
                .retain(|(k, s)| entries.get(k).is_some_and(|e| e.seq == *s));
        }
    }

    pub fn remove(&mut self, key: &TokenHash) {
        self.entries.remove(key);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> Option<Rc<Identity>> {
        Some(Rc::new(Identity {
            client_id: "c".into(),
            user: None,
            scope: "a b".into(),
            expires_at: n,
            expires_header: n.to_string(),
            fingerprint: String::new(),
        }))
    }

    #[test]
    fn entries_expire() {
        let mut c = ValidationCache::new(4);
        c.insert(TokenHash([1; 16]), id(1), 100, 0, 0);
        assert!(c.get(&TokenHash([1; 16]), 99).is_some());
        assert!(c.get(&TokenHash([1; 16]), 100).is_none());
        assert!(c.is_empty());
    }

    #[test]
    fn bounded_with_fifo_eviction() {
        let mut c = ValidationCache::new(3);
        for n in 0..10u8 {
            c.insert(TokenHash([n; 16]), id(n as u64), 1000, 0, 0);
            // Re-inserting the same key does not grow anything.
            c.insert(TokenHash([n; 16]), id(n as u64), 1000, 0, 0);
            assert!(c.len() <= 3);
            assert!(c.order.len() <= 3 * 2 + 16);
        }
        assert!(c.get(&TokenHash([9; 16]), 0).is_some());
        assert!(c.get(&TokenHash([0; 16]), 0).is_none());
    }

    #[test]
    fn zero_capacity_caches_nothing() {
        let mut c = ValidationCache::new(0);
        c.insert(TokenHash([1; 16]), id(1), 1000, 0, 0);
        assert!(c.get(&TokenHash([1; 16]), 0).is_none());
    }

    #[test]
    fn scope_check_needs_every_required_scope() {
        let i = id(1).unwrap();
        assert!(i.has_scopes(&[]));
        assert!(i.has_scopes(&["a".into(), "b".into()]));
        assert!(!i.has_scopes(&["a".into(), "c".into()]));
    }
}
