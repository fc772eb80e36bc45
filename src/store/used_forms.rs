//! One-time use of login forms: the first POST that presents a form token
//! marks its nonce as used in `oauth2/p/<n>` (n in 0..[`USED_FORM_SLOTS`])
//! until the token would have expired, at most [`USED_PER_SLOT`] markers per
//! slot. A full slot drops the marker that expires first: under a flood of
//! posted forms, a form already posted could be posted once more before it
//! expires. What a form carries (the sealed request) is
//! `endpoint::authorize::pending`'s.

use crate::host::{KvStore, WriteError};
use crate::store::keys::used_form_key;
pub use crate::store::keys::USED_FORM_SLOTS;
use crate::store::{StoreError, CAS_RETRIES};

/// Used-token markers per slot (24 bytes each): 65,536 in all, 1.5 MiB at most.
pub const USED_PER_SLOT: usize = 64;
pub const FORM_NONCE_BYTES: usize = 16;
const MARKERS_VERSION: u8 = 2;
const MARKER_BYTES: usize = FORM_NONCE_BYTES + 8;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Marker {
    pub(crate) nonce: [u8; FORM_NONCE_BYTES],
    pub(crate) expires_at: u64,
}

/// Creates every marker slot key (at configuration, before any worker serves).
pub fn ensure_created(kv: &dyn KvStore) -> Result<u32, WriteError> {
    let mut created = 0;
    for slot in 0..USED_FORM_SLOTS {
        let key = used_form_key(slot);
        if kv.get(&key).cas.is_none() {
            kv.set(&key, &[], None)?;
            created += 1;
        }
    }
    Ok(created)
}

fn slot_of(nonce: &[u8; FORM_NONCE_BYTES]) -> u32 {
    u32::from_be_bytes([nonce[0], nonce[1], nonce[2], nonce[3]]) % USED_FORM_SLOTS
}

/// Marks `nonce` used until `expires_at`. `Ok(false)`: it was used already.
pub fn mark_used(
    kv: &dyn KvStore,
    nonce: &[u8; FORM_NONCE_BYTES],
    expires_at: u64,
    now: u64,
) -> Result<bool, StoreError> {
    update(kv, slot_of(nonce), |markers| {
        let before = markers.len();
        markers.retain(|m| now < m.expires_at);
        if markers.iter().any(|m| m.nonce == *nonce) {
            return (markers.len() != before, false);
        }
        if markers.len() >= USED_PER_SLOT {
            if let Some(i) = (0..markers.len()).min_by_key(|i| markers[*i].expires_at) {
                markers.remove(i);
            }
        }
        markers.push(Marker {
            nonce: *nonce,
            expires_at,
        });
        (true, true)
    })
}

/// Read-modify-write of one marker slot with bounded CAS retries; `f` says whether to write.
fn update<T>(
    kv: &dyn KvStore,
    slot: u32,
    mut f: impl FnMut(&mut Vec<Marker>) -> (bool, T),
) -> Result<T, StoreError> {
    let key = used_form_key(slot);
    for _ in 0..CAS_RETRIES {
        let current = kv.get(&key);
        // Unreadable data counts as empty: never trusted, never a panic.
        let mut markers =
            decode_markers(current.value.as_deref().unwrap_or(&[])).unwrap_or_default();
        let (write, out) = f(&mut markers);
        if !write {
            return Ok(out);
        }
        match kv.set(&key, &encode_markers(&markers), current.cas) {
            Ok(()) => return Ok(out),
            Err(WriteError::CasMismatch) => continue,
            Err(WriteError::Failed) => return Err(StoreError::Unavailable),
        }
    }
    Err(StoreError::Contended)
}

// `version u8 | count u8 | (nonce[16] | expires u64)*`
pub(crate) fn encode_markers(markers: &[Marker]) -> Vec<u8> {
    let mut out = vec![MARKERS_VERSION, markers.len().min(255) as u8];
    for m in markers.iter().take(255) {
        out.extend_from_slice(&m.nonce);
        out.extend_from_slice(&m.expires_at.to_be_bytes());
    }
    out
}

pub(crate) fn decode_markers(bytes: &[u8]) -> Option<Vec<Marker>> {
    let Some((&version, rest)) = bytes.split_first() else {
        return Some(Vec::new());
    };
    if version != MARKERS_VERSION {
        return None;
    }
    let (&count, body) = rest.split_first()?;
    if body.len() != count as usize * MARKER_BYTES {
        return None;
    }
    body.chunks_exact(MARKER_BYTES)
        .map(|c| {
            let (nonce, expires) = c.split_at(FORM_NONCE_BYTES);
            Some(Marker {
                nonce: nonce.try_into().ok()?,
                expires_at: u64::from_be_bytes(expires.try_into().ok()?),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::memory::MemoryKv;

    #[test]
    fn a_nonce_is_marked_once_and_slots_stay_bounded() {
        let kv = MemoryKv::default();
        ensure_created(&kv).unwrap();
        assert!(mark_used(&kv, &[7; FORM_NONCE_BYTES], 100, 1).unwrap());
        assert!(!mark_used(&kv, &[7; FORM_NONCE_BYTES], 100, 2).unwrap());
        // After its expiry the marker is gone (the seal refuses the token by then).
        assert!(mark_used(&kv, &[7; FORM_NONCE_BYTES], 200, 100).unwrap());
        for i in 0..(USED_PER_SLOT as u64 * 3) {
            let mut nonce = [0; FORM_NONCE_BYTES];
            nonce[8..].copy_from_slice(&i.to_be_bytes());
            assert!(mark_used(&kv, &nonce, 1000 + i, 3).unwrap());
        }
        let v = kv.get(&used_form_key(0)).value.unwrap_or_default();
        assert!(decode_markers(&v).unwrap().len() <= USED_PER_SLOT);
        assert_eq!(kv.key_count(), USED_FORM_SLOTS as usize);
    }

    #[test]
    fn decoding_never_panics_and_refuses_garbage() {
        let markers: Vec<Marker> = (0..4)
            .map(|n| Marker {
                nonce: [n; FORM_NONCE_BYTES],
                expires_at: 5,
            })
            .collect();
        let bytes = encode_markers(&markers);
        assert_eq!(decode_markers(&bytes), Some(markers));
        for cut in 1..bytes.len() {
            assert_eq!(decode_markers(&bytes[..cut]), None);
        }
    }
}
