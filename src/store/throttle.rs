//! Failed-authentication counters, shared by every worker through the CAS
//! store: `oauth2/throttle/<shard>` for [`THROTTLE_SHARDS`] shards, each a
//! small table of `(subject digest, window start, failures)`. The key count
//! and each table's size are fixed, whatever names attackers try. When a table
//! is full, the entry with the fewest failures goes, so a flood of one-off
//! names cannot evict the counter of a name under attack. The policy (how many
//! failures, which subjects) is `authn::throttle`'s.

use crate::host::{KvStore, WriteError};
use crate::store::keys::throttle_key;
pub use crate::store::keys::THROTTLE_SHARDS;

pub(crate) const ENTRIES_PER_SHARD: usize = 128;
pub(crate) const ENTRY_BYTES: usize = 8 + 8 + 4;
const VERSION: u8 = 1;
/// CAS retries of one failure count; on persistent conflict it is dropped
/// (others are being counted at that moment anyway).
const RECORD_RETRIES: usize = 16;

/// A subject's counter: failures since `window_start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failures {
    pub window_start: u64,
    pub failures: u32,
}

pub(crate) fn key_of(id: &[u8; 8]) -> String {
    throttle_key(u32::from_be_bytes([id[0], id[1], id[2], id[3]]))
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

/// Creates the shard keys (at configuration, like the token store's).
pub fn ensure_created(kv: &dyn KvStore) -> Result<(), WriteError> {
    for shard in 0..THROTTLE_SHARDS {
        let key = throttle_key(shard);
        if kv.get(&key).cas.is_none() {
            kv.set(&key, &[VERSION], None)?;
        }
    }
    Ok(())
}

/// The counter of the subject with digest `id`, if it has one.
pub fn read(kv: &dyn KvStore, id: &[u8; 8]) -> Option<Failures> {
    let current = kv.get(&key_of(id));
    let entries = decode(current.value.as_deref().unwrap_or(&[]));
    entries.iter().find(|e| e.id == *id).map(|e| Failures {
        window_start: e.window_start,
        failures: e.failures,
    })
}

/// Counts a failure of `id` in a window of `window_seconds`; counters whose
/// window ended are dropped on the way.
pub fn record_failure(kv: &dyn KvStore, id: &[u8; 8], now: u64, window_seconds: u64) {
    let key = key_of(id);
    for _ in 0..RECORD_RETRIES {
        let current = kv.get(&key);
        let mut entries = decode(current.value.as_deref().unwrap_or(&[]));
        entries.retain(|e| now < e.window_start.saturating_add(window_seconds));
        match entries.iter_mut().find(|e| e.id == *id) {
            Some(e) => e.failures = e.failures.saturating_add(1),
            None => {
                if entries.len() >= ENTRIES_PER_SHARD {
                    if let Some(i) = (0..entries.len()).min_by_key(|i| entries[*i].failures) {
                        entries.swap_remove(i);
                    }
                }
                entries.push(Entry {
                    id: *id,
                    window_start: now,
                    failures: 1,
                });
            }
        }
        match kv.set(&key, &encode(&entries), current.cas) {
            Err(WriteError::CasMismatch) => continue,
            _ => return,
        }
    }
}
