//! Brute-force throttling of failed authentication, per client_id and per
//! username, shared by every worker through the CAS store.
//!
//! Keys: `oauth2/throttle/<shard>` for 64 shards, each a small table of
//! `(subject hash, window start, failures)`; the key count and each table's
//! size are fixed, whatever names attackers try. When a table is full, the
//! entry with the fewest failures goes, so a flood of one-off names cannot
//! evict the counter of a name under attack.

use sha2::{Digest, Sha256};

pub use crate::config::ThrottlePolicy;
use crate::host::{KvStore, WriteError};
use crate::store::kv::Kv;

pub const THROTTLE_SHARDS: u32 = 64;
const ENTRIES_PER_SHARD: usize = 128;
const ENTRY_BYTES: usize = 8 + 8 + 4;
const VERSION: u8 = 1;

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

fn key_of(id: &[u8; 8]) -> String {
    format!(
        "oauth2/throttle/{}",
        u32::from_be_bytes([id[0], id[1], id[2], id[3]]) % THROTTLE_SHARDS
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    id: [u8; 8],
    window_start: u64,
    failures: u32,
}

fn decode(bytes: &[u8]) -> Vec<Entry> {
    // Anything unreadable counts as an empty table: throttling is best effort,
    // never a reason to refuse service.
    if bytes.first() != Some(&VERSION) || !(bytes.len() - 1).is_multiple_of(ENTRY_BYTES) {
        return Vec::new();
    }
    bytes[1..]
        .chunks_exact(ENTRY_BYTES)
        .map(|c| {
            let mut id = [0u8; 8];
            id.copy_from_slice(&c[..8]);
            let mut ws = [0u8; 8];
            ws.copy_from_slice(&c[8..16]);
            Entry {
                id,
                window_start: u64::from_be_bytes(ws),
                failures: u32::from_be_bytes([c[16], c[17], c[18], c[19]]),
            }
        })
        .collect()
}

fn encode(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + entries.len() * ENTRY_BYTES);
    out.push(VERSION);
    for e in entries {
        out.extend_from_slice(&e.id);
        out.extend_from_slice(&e.window_start.to_be_bytes());
        out.extend_from_slice(&e.failures.to_be_bytes());
    }
    out
}

impl ThrottlePolicy {
    pub fn enabled(&self) -> bool {
        self.max_failures > 0
    }

    /// Creates the shard keys (at configuration, like the token store's).
    pub fn ensure_created(kv: &dyn KvStore) -> Result<(), WriteError> {
        for shard in 0..THROTTLE_SHARDS {
            let key = format!("oauth2/throttle/{shard}");
            if kv.get(&key).cas.is_none() {
                kv.set(&key, &[VERSION], None)?;
            }
        }
        Ok(())
    }

    /// Seconds until `subject` may try again, if it is throttled now.
    /// A store that does not answer throttles nobody: the request then fails
    /// at the store anyway, with its own error.
    pub async fn retry_after(&self, kv: &Kv<'_>, subject: Subject<'_>, now: u64) -> Option<u64> {
        if !self.enabled() {
            return None;
        }
        let id = subject.digest();
        let current = kv.get(&key_of(&id)).await.ok()?;
        let entries = decode(current.value.as_deref().unwrap_or(&[]));
        let e = entries.iter().find(|e| e.id == id)?;
        let ends = e.window_start.saturating_add(self.window_seconds);
        (e.failures >= self.max_failures && now < ends).then(|| (ends - now).max(1))
    }

    /// Counts a failure. Bounded CAS retries; on persistent conflict the failure
    /// is dropped (others are being counted at that moment anyway).
    pub async fn record_failure(&self, kv: &Kv<'_>, subject: Subject<'_>, now: u64) {
        if !self.enabled() {
            return;
        }
        let id = subject.digest();
        let key = key_of(&id);
        for _ in 0..16 {
            let Ok(current) = kv.get(&key).await else {
                return;
            };
            let mut entries = decode(current.value.as_deref().unwrap_or(&[]));
            entries.retain(|e| now < e.window_start.saturating_add(self.window_seconds));
            match entries.iter_mut().find(|e| e.id == id) {
                Some(e) => e.failures = e.failures.saturating_add(1),
                None => {
                    if entries.len() >= ENTRIES_PER_SHARD {
                        if let Some(i) = (0..entries.len()).min_by_key(|i| entries[*i].failures) {
                            entries.swap_remove(i);
                        }
                    }
                    entries.push(Entry {
                        id,
                        window_start: now,
                        failures: 1,
                    });
                }
            }
            let expires_at = entries
                .iter()
                .map(|e| e.window_start.saturating_add(self.window_seconds))
                .max()
                .unwrap_or(now);
            match kv
                .put(&key, encode(&entries), current.version, expires_at)
                .await
            {
                Err(WriteError::CasMismatch) => continue,
                _ => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::memory::MemoryKv;
    #[allow(unused_imports)]
    use crate::store::kv::{Kv, Sync_};

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
            P.record_failure(&Kv::Local(&kv), s, 1000).sync();
            assert_eq!(P.retry_after(&Kv::Local(&kv), s, 1000).sync(), None);
        }
        P.record_failure(&Kv::Local(&kv), s, 1010).sync();
        assert_eq!(P.retry_after(&Kv::Local(&kv), s, 1010).sync(), Some(50));
        // Another subject is not affected; a client of the same name neither.
        assert_eq!(
            P.retry_after(&Kv::Local(&kv), Subject::User("other"), 1010)
                .sync(),
            None
        );
        assert_eq!(
            P.retry_after(&Kv::Local(&kv), Subject::Client("admin@carbon.super"), 1010)
                .sync(),
            None
        );
        assert_eq!(P.retry_after(&Kv::Local(&kv), s, 1060).sync(), None);
        assert_eq!(kv.key_count(), THROTTLE_SHARDS as usize);
    }

    #[test]
    fn a_flood_of_names_cannot_evict_a_name_under_attack() {
        let kv = MemoryKv::default();
        let target = Subject::Client("victim");
        for _ in 0..3 {
            P.record_failure(&Kv::Local(&kv), target, 1000).sync();
        }
        for i in 0..20_000 {
            P.record_failure(&Kv::Local(&kv), Subject::Client(&format!("junk-{i}")), 1001)
                .sync();
        }
        assert!(P
            .retry_after(&Kv::Local(&kv), target, 1002)
            .sync()
            .is_some());
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
        off.record_failure(&Kv::Local(&kv), Subject::User("u"), 1)
            .sync();
        assert_eq!(kv.key_count(), 0);
        let id = Subject::User("u").digest();
        kv.set(&key_of(&id), b"\x01\x02garbage", None).unwrap();
        assert_eq!(
            P.retry_after(&Kv::Local(&kv), Subject::User("u"), 1).sync(),
            None
        );
        P.record_failure(&Kv::Local(&kv), Subject::User("u"), 1)
            .sync();
    }
}
