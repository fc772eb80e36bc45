//! Brute-force throttling of failed authentication with slow-hashed
//! credentials (user passwords, human-chosen client secrets), shared by every
//! worker through the CAS store.
//!
//! Two counters per name, so that an attacker cannot turn the defence against
//! the victim:
//! - per (name, client address): `max_failures` per window, then that address
//!   waits out the window. An attacker locks out only himself.
//! - per name, from every address: only at `global_max_failures` per window is
//!   the name locked for everyone, and then for a growing delay (1 s, 2 s,
//!   4 s, … up to the window) rather than a wall. Attempts refused by a
//!   throttle are not checked and not counted, so one address adds at most
//!   `max_failures` per window to the name's count.
//!
//! Keys: `oauth2/throttle/<shard>` for 64 shards, each a small table of
//! entries; a name's entries (its own and its per-address ones) share the
//! name's shard, so one read and one compare-and-swap serve both counters.
//! The key count and each table's size are fixed, whatever names and
//! addresses attackers try. When a table is full, the entry that matters
//! least goes (not locked, fewest strikes, fewest failures), so a flood of
//! one-off names cannot evict the counter of a name under attack.

use sha2::{Digest, Sha256};

pub use crate::config::ThrottlePolicy;
use crate::host::{KvStore, WriteError};
use crate::store::kv::Kv;

pub const THROTTLE_SHARDS: u32 = 64;
const ENTRIES_PER_SHARD: usize = 128;
const ENTRY_BYTES: usize = 8 + 8 + 4 + 8 + 4;
const VERSION: u8 = 2;
/// The global lock's longest step before the window caps it: 2^16 s.
const MAX_DOUBLINGS: u32 = 16;

#[derive(Debug, Clone, Copy)]
pub enum Subject<'a> {
    Client(&'a str),
    User(&'a str),
}

impl Subject<'_> {
    fn hasher(&self) -> Sha256 {
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
        h
    }

    /// The name's own (global) entry.
    fn digest(&self) -> [u8; 8] {
        first8(&self.hasher().finalize())
    }

    /// The entry of this name tried from `address`.
    fn digest_at(&self, address: &str) -> [u8; 8] {
        let mut h = self.hasher();
        h.update(b"\0@");
        h.update(address.as_bytes());
        first8(&h.finalize())
    }
}

fn first8(d: &[u8]) -> [u8; 8] {
    let mut out = [0u8; 8];
    out.copy_from_slice(&d[..8]);
    out
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
    /// Global entries: locked for everyone until then (0: never locked).
    locked_until: u64,
    /// Global entries: locks in a row; each doubles the next lock's length.
    strikes: u32,
}

impl Entry {
    fn new(id: [u8; 8], now: u64) -> Entry {
        Entry {
            id,
            window_start: now,
            failures: 0,
            locked_until: 0,
            strikes: 0,
        }
    }

    /// Until when the entry still matters: its window, and a window's memory
    /// of its last lock (so strikes grow while an attack goes on).
    fn relevant_until(&self, window: u64) -> u64 {
        self.window_start
            .saturating_add(window)
            .max(self.locked_until.saturating_add(window))
    }
}

fn decode(bytes: &[u8]) -> Vec<Entry> {
    // Anything unreadable (or of an older layout) counts as an empty table:
    // throttling is best effort, never a reason to refuse service.
    if bytes.first() != Some(&VERSION) || !(bytes.len() - 1).is_multiple_of(ENTRY_BYTES) {
        return Vec::new();
    }
    let u64_at = |c: &[u8], i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&c[i..i + 8]);
        u64::from_be_bytes(b)
    };
    let u32_at = |c: &[u8], i: usize| u32::from_be_bytes([c[i], c[i + 1], c[i + 2], c[i + 3]]);
    bytes[1..]
        .chunks_exact(ENTRY_BYTES)
        .map(|c| Entry {
            id: first8(c),
            window_start: u64_at(c, 8),
            failures: u32_at(c, 16),
            locked_until: u64_at(c, 20),
            strikes: u32_at(c, 28),
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
        out.extend_from_slice(&e.locked_until.to_be_bytes());
        out.extend_from_slice(&e.strikes.to_be_bytes());
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

    /// Seconds until `subject` may be tried again from `address`, if it is
    /// throttled now (for that address, or locked for everyone).
    /// A store that does not answer throttles nobody: the request then fails
    /// at the store anyway, with its own error.
    pub async fn retry_after(
        &self,
        kv: &Kv<'_>,
        subject: Subject<'_>,
        address: &str,
        now: u64,
    ) -> Option<u64> {
        if !self.enabled() {
            return None;
        }
        let global = subject.digest();
        let local = subject.digest_at(address);
        let current = kv.get(&key_of(&global)).await.ok()?;
        let entries = decode(current.value.as_deref().unwrap_or(&[]));
        let mut wait = None;
        if let Some(e) = entries.iter().find(|e| e.id == local) {
            let ends = e.window_start.saturating_add(self.window_seconds);
            if e.failures >= self.max_failures && now < ends {
                wait = Some(ends - now);
            }
        }
        if let Some(g) = entries.iter().find(|e| e.id == global) {
            if now < g.locked_until {
                wait = Some(wait.unwrap_or(0).max(g.locked_until - now));
            }
        }
        wait.map(|w| w.max(1))
    }

    /// Counts a failure from `address`. Bounded CAS retries; on persistent
    /// conflict the failure is dropped (others are being counted at that
    /// moment anyway).
    pub async fn record_failure(&self, kv: &Kv<'_>, subject: Subject<'_>, address: &str, now: u64) {
        if !self.enabled() {
            return;
        }
        let global = subject.digest();
        let local = subject.digest_at(address);
        let key = key_of(&global);
        for _ in 0..16 {
            let Ok(current) = kv.get(&key).await else {
                return;
            };
            let mut entries = decode(current.value.as_deref().unwrap_or(&[]));
            self.count(&mut entries, local, global, now);
            let expires_at = entries
                .iter()
                .map(|e| e.relevant_until(self.window_seconds))
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

    /// The table after one more failure of `local` (and so of `global`).
    fn count(&self, entries: &mut Vec<Entry>, local: [u8; 8], global: [u8; 8], now: u64) {
        let window = self.window_seconds;
        entries.retain(|e| now < e.relevant_until(window));
        for id in [local, global] {
            if !entries.iter().any(|e| e.id == id) {
                if entries.len() >= ENTRIES_PER_SHARD {
                    let least = (0..entries.len()).min_by_key(|i| {
                        let e = &entries[*i];
                        (e.locked_until > now, e.strikes, e.failures)
                    });
                    if let Some(i) = least {
                        entries.swap_remove(i);
                    }
                }
                entries.push(Entry::new(id, now));
            }
        }
        for e in entries.iter_mut() {
            if e.id != local && e.id != global {
                continue;
            }
            if now >= e.window_start.saturating_add(window) {
                e.window_start = now;
                e.failures = 0;
            }
            e.failures = e.failures.saturating_add(1);
            if e.id == global && self.global_max_failures > 0 {
                if now >= e.locked_until.saturating_add(window) {
                    e.strikes = 0;
                }
                if e.failures >= self.global_max_failures {
                    e.strikes = e.strikes.saturating_add(1);
                    let doubling = (e.strikes - 1).min(MAX_DOUBLINGS);
                    e.locked_until = now.saturating_add((1u64 << doubling).min(window));
                    e.window_start = now;
                    e.failures = 0;
                }
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
        global_max_failures: 6,
    };
    const A: &str = "192.0.2.1";
    const B: &str = "198.51.100.7";

    fn fail(kv: &MemoryKv, s: Subject, at: &str, now: u64) {
        P.record_failure(&Kv::Local(kv), s, at, now).sync();
    }

    fn wait(kv: &MemoryKv, s: Subject, at: &str, now: u64) -> Option<u64> {
        P.retry_after(&Kv::Local(kv), s, at, now).sync()
    }

    #[test]
    fn throttles_the_address_after_the_limit_until_the_window_ends() {
        let kv = MemoryKv::default();
        ThrottlePolicy::ensure_created(&kv).unwrap();
        let s = Subject::User("admin@carbon.super");
        for _ in 0..2 {
            fail(&kv, s, A, 1000);
            assert_eq!(wait(&kv, s, A, 1000), None);
        }
        fail(&kv, s, A, 1010);
        assert_eq!(wait(&kv, s, A, 1010), Some(50));
        // The same name from another address is not affected, nor another
        // name, nor a client of the same name.
        assert_eq!(wait(&kv, s, B, 1010), None);
        assert_eq!(wait(&kv, Subject::User("other"), A, 1010), None);
        assert_eq!(
            wait(&kv, Subject::Client("admin@carbon.super"), A, 1010),
            None
        );
        assert_eq!(wait(&kv, s, A, 1060), None);
        assert_eq!(kv.key_count(), THROTTLE_SHARDS as usize);
    }

    #[test]
    fn a_name_is_locked_for_everyone_only_at_the_global_rate_and_for_growing_delays() {
        let kv = MemoryKv::default();
        let s = Subject::Client("victim");
        let addresses: Vec<String> = (0..40).map(|i| format!("203.0.113.{i}")).collect();
        // 5 failures from 5 addresses: below the global limit of 6.
        for a in &addresses[..5] {
            fail(&kv, s, a, 1000);
        }
        assert_eq!(wait(&kv, s, B, 1000), None);
        // The 6th locks the name for 1 s, then 2 s, then 4 s.
        let mut now = 1000;
        let mut next = addresses[5..].iter();
        for expected in [1, 2, 4, 8] {
            for _ in 0..6 {
                if let Some(a) = next.next() {
                    fail(&kv, s, a, now);
                }
            }
            assert_eq!(wait(&kv, s, B, now), Some(expected), "at {now}");
            assert_eq!(wait(&kv, s, B, now + expected), None);
            now += expected;
            next = addresses[5..].iter();
        }
        // After a quiet window the strikes are forgotten.
        let quiet = now + 200;
        for a in &addresses[..6] {
            fail(&kv, s, a, quiet);
        }
        assert_eq!(wait(&kv, s, B, quiet), Some(1));
    }

    #[test]
    fn one_address_cannot_lock_the_name_for_others() {
        let kv = MemoryKv::default();
        let s = Subject::Client("victim");
        // The attacker's address is throttled after 3; the callers refuse it
        // before checking, so nothing more is counted for the name.
        for now in 1000..1600 {
            if wait(&kv, s, A, now).is_none() {
                fail(&kv, s, A, now);
            }
        }
        for now in 1000..1600 {
            assert_eq!(wait(&kv, s, B, now), None, "at {now}");
        }
    }

    #[test]
    fn a_flood_of_names_cannot_evict_a_name_under_attack() {
        let kv = MemoryKv::default();
        let target = Subject::Client("victim");
        for _ in 0..3 {
            fail(&kv, target, A, 1000);
        }
        for i in 0..20_000 {
            fail(
                &kv,
                Subject::Client(&format!("junk-{i}")),
                &format!("10.{i}"),
                1001,
            );
        }
        assert!(wait(&kv, target, A, 1002).is_some());
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
            global_max_failures: 0,
        };
        off.record_failure(&Kv::Local(&kv), Subject::User("u"), A, 1)
            .sync();
        assert_eq!(kv.key_count(), 0);
        let id = Subject::User("u").digest();
        kv.set(&key_of(&id), b"\x02\x02garbage", None).unwrap();
        assert_eq!(wait(&kv, Subject::User("u"), A, 1), None);
        fail(&kv, Subject::User("u"), A, 1);
        // Version 1 tables (before per-address counting) read as empty.
        kv.set(&key_of(&id), &[1u8; 21], None).unwrap();
        assert_eq!(wait(&kv, Subject::User("u"), A, 1), None);
    }
}
