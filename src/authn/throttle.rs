//! Brute-force throttling of failed authentication, per client_id and per
//! username: the policy and the subjects. The counters live in the store
//! (`store::throttle`), shared by every worker.

use sha2::{Digest, Sha256};

pub use crate::config::ThrottlePolicy;
use crate::host::{KvStore, WriteError};
use crate::store::throttle as counters;
pub use crate::store::throttle::THROTTLE_SHARDS;

#[derive(Debug, Clone, Copy)]
pub enum Subject<'a> {
    Client(&'a str),
    User(&'a str),
}

impl Subject<'_> {
    fn digest(&self) -> [u8; 8] {
        let mut h = Sha256::new();
        match self {
            Subject::Client(c) => {
                h.update(b"client\0");
                h.update(c.as_bytes());
            }
            Subject::User(u) => {
                h.update(b"user\0");
                h.update(u.as_bytes());
            }
        }
        let d = h.finalize();
        let mut out = [0u8; 8];
        out.copy_from_slice(&d[..8]);
        out
    }
}

impl ThrottlePolicy {
    pub fn enabled(&self) -> bool {
        self.max_failures > 0
    }

    /// Creates the counters' keys (at configuration, like the token store's).
    pub fn ensure_created(kv: &dyn KvStore) -> Result<(), WriteError> {
        counters::ensure_created(kv)
    }

    /// Seconds until `subject` may try again, if it is throttled now.
    pub fn retry_after(&self, kv: &dyn KvStore, subject: Subject, now: u64) -> Option<u64> {
        if !self.enabled() {
            return None;
        }
        let e = counters::read(kv, &subject.digest())?;
        let ends = e.window_start.saturating_add(self.window_seconds);
        (e.failures >= self.max_failures && now < ends).then(|| (ends - now).max(1))
    }

    /// Counts a failure (best effort: bounded CAS retries).
    pub fn record_failure(&self, kv: &dyn KvStore, subject: Subject, now: u64) {
        if !self.enabled() {
            return;
        }
        counters::record_failure(kv, &subject.digest(), now, self.window_seconds);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::memory::MemoryKv;
    use crate::store::throttle::{key_of, ENTRIES_PER_SHARD, ENTRY_BYTES};

    const P: ThrottlePolicy = ThrottlePolicy {
        max_failures: 3,
        window_seconds: 60,
    };

    #[test]
    fn throttles_after_the_limit_until_the_window_ends() {
        let kv = MemoryKv::default();
        ThrottlePolicy::ensure_created(&kv).unwrap();
        let s = Subject::User("admin@carbon.super");
        for _ in 0..2 {
            P.record_failure(&kv, s, 1000);
            assert_eq!(P.retry_after(&kv, s, 1000), None);
        }
        P.record_failure(&kv, s, 1010);
        assert_eq!(P.retry_after(&kv, s, 1010), Some(50));
        // Another subject is not affected; a client of the same name neither.
        assert_eq!(P.retry_after(&kv, Subject::User("other"), 1010), None);
        assert_eq!(
            P.retry_after(&kv, Subject::Client("admin@carbon.super"), 1010),
            None
        );
        assert_eq!(P.retry_after(&kv, s, 1060), None);
        assert_eq!(kv.key_count(), THROTTLE_SHARDS as usize);
    }

    #[test]
    fn a_flood_of_names_cannot_evict_a_name_under_attack() {
        let kv = MemoryKv::default();
        let target = Subject::Client("victim");
        for _ in 0..3 {
            P.record_failure(&kv, target, 1000);
        }
        for i in 0..20_000 {
            P.record_failure(&kv, Subject::Client(&format!("junk-{i}")), 1001);
        }
        assert!(P.retry_after(&kv, target, 1002).is_some());
        assert_eq!(kv.key_count(), THROTTLE_SHARDS as usize);
        assert!(
            kv.total_value_bytes()
                <= THROTTLE_SHARDS as usize * (1 + ENTRIES_PER_SHARD * ENTRY_BYTES)
        );
    }

    #[test]
    fn off_means_off_and_garbage_reads_as_empty() {
        let kv = MemoryKv::default();
        let off = ThrottlePolicy {
            max_failures: 0,
            window_seconds: 60,
        };
        off.record_failure(&kv, Subject::User("u"), 1);
        assert_eq!(kv.key_count(), 0);
        let id = Subject::User("u").digest();
        kv.set(&key_of(&id), b"\x01\x02garbage", None).unwrap();
        assert_eq!(P.retry_after(&kv, Subject::User("u"), 1), None);
        P.record_failure(&kv, Subject::User("u"), 1);
    }
}
