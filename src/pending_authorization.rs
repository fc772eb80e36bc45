//! Authorization requests waiting for the user at the login page. The page's
//! form carries only a one-time form token; the request itself (client,
//! redirect URI, scope, state, PKCE challenge) stays here, so the POST cannot
//! change it, and a token is consumed (CAS) by the first POST that presents it.
//! That token is the form's protection against cross-site request forgery.
//!
//! Bounded like the grant store: `oauth2/p/<n>` for n in 0..[`PENDING_SLOTS`],
//! each holding at most [`PENDING_PER_SLOT`] records that live
//! [`PENDING_LIFETIME`] seconds. A full slot drops its oldest record. The form
//! token has the token layout (`kind | slot | id | secret`); only its hash is
//! stored.

use crate::grant_store::{StoreError, CAS_RETRIES};
use crate::host::{KvStore, Randomness, WriteError};
use crate::pkce;
use crate::token::{self, GrantId, HandleKind, TokenHash, GRANT_ID_BYTES};

pub const PENDING_SLOTS: u32 = 1024;
pub const PENDING_PER_SLOT: usize = 16;
/// Seconds a user has to log in.
pub const PENDING_LIFETIME: u64 = 600;
/// Longest `state` accepted (it is stored and echoed).
pub const MAX_STATE_BYTES: usize = 512;
const VERSION: u8 = 1;

pub fn slot_key(slot: u32) -> String {
    format!("oauth2/p/{slot}")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseType {
    /// `response_type=code`
    Code,
    /// `response_type=token` (implicit)
    Token,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingAuthorization {
    pub response_type: ResponseType,
    pub client_id: String,
    /// The redirect URI to answer at (registered, exact).
    pub redirect_uri: String,
    /// The request named `redirect_uri` itself.
    pub redirect_given: bool,
    /// Space-delimited scope asked for (within the client's scopes).
    pub scope: String,
    pub state: Option<String>,
    pub challenge: Option<(pkce::Method, String)>,
    /// Failed logins on this request so far.
    pub failures: u8,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Record {
    id: GrantId,
    hash: TokenHash,
    expires_at: u64,
    req: PendingAuthorization,
}

/// Creates every slot key (at configuration, before any worker serves).
pub fn ensure_created(kv: &dyn KvStore) -> Result<u32, WriteError> {
    let mut created = 0;
    for slot in 0..PENDING_SLOTS {
        let key = slot_key(slot);
        if kv.get(&key).cas.is_none() {
            kv.set(&key, &[], None)?;
            created += 1;
        }
    }
    Ok(created)
}

/// Stores `req` and returns its one-time form token.
pub fn create(
    kv: &dyn KvStore,
    rng: &dyn Randomness,
    req: &PendingAuthorization,
    now: u64,
) -> Result<String, StoreError> {
    let mut pick = [0u8; 4];
    rng.fill(&mut pick)?;
    let slot = u32::from_be_bytes(pick) % PENDING_SLOTS;
    let id = token::new_grant_id(rng)?;
    let form_token = token::mint_handle(HandleKind::LoginForm, slot, &id, rng)?;
    let record = Record {
        id,
        hash: form_token.hash,
        expires_at: now.saturating_add(PENDING_LIFETIME),
        req: req.clone(),
    };
    update(kv, slot, |records| {
        records.retain(|r| now < r.expires_at);
        if records.len() >= PENDING_PER_SLOT {
            if let Some(i) = (0..records.len()).min_by_key(|i| records[*i].expires_at) {
                records.remove(i);
            }
        }
        records.push(record.clone());
        (true, ())
    })?;
    Ok(form_token.text)
}

/// Consumes the request a form token names: `Ok(None)` when the token is
/// malformed, unknown, expired or already used.
pub fn take(
    kv: &dyn KvStore,
    form_token: &str,
    now: u64,
) -> Result<Option<PendingAuthorization>, StoreError> {
    let Some(t) = token::parse_handle(form_token, HandleKind::LoginForm) else {
        return Ok(None);
    };
    if t.bucket >= PENDING_SLOTS {
        return Ok(None);
    }
    update(kv, t.bucket, |records| {
        let before = records.len();
        records.retain(|r| now < r.expires_at);
        let found = records
            .iter()
            .position(|r| r.id == t.grant_id && r.hash.matches(&t.hash));
        match found {
            Some(i) => (true, Some(records.remove(i).req)),
            None => (records.len() != before, None),
        }
    })
}

/// Read-modify-write of one slot with bounded CAS retries; `f` says whether to write.
fn update<T>(
    kv: &dyn KvStore,
    slot: u32,
    mut f: impl FnMut(&mut Vec<Record>) -> (bool, T),
) -> Result<T, StoreError> {
    let key = slot_key(slot);
    for _ in 0..CAS_RETRIES {
        let current = kv.get(&key);
        // Unreadable data counts as empty: never trusted, never a panic.
        let mut records = decode(current.value.as_deref().unwrap_or(&[])).unwrap_or_default();
        let (write, out) = f(&mut records);
        if !write {
            return Ok(out);
        }
        match kv.set(&key, &encode(&records), current.cas) {
            Ok(()) => return Ok(out),
            Err(WriteError::CasMismatch) => continue,
            Err(WriteError::Failed) => return Err(StoreError::Unavailable),
        }
    }
    Err(StoreError::Contended)
}

const F_TOKEN: u8 = 1;
const F_REDIRECT_GIVEN: u8 = 2;
const F_STATE: u8 = 4;
const F_CHALLENGE: u8 = 8;
const F_PLAIN: u8 = 16;
const F_KNOWN: u8 = F_TOKEN | F_REDIRECT_GIVEN | F_STATE | F_CHALLENGE | F_PLAIN;

// `version u8 | count u8 | record*`, record:
// `id[11] | hash[16] | expires u64 | failures u8 | flags u8 | client u8-len
//  | redirect u16-len | scope u16-len | (state u16-len)? | (challenge u8-len)?`
fn encode(records: &[Record]) -> Vec<u8> {
    let mut out = vec![VERSION, records.len().min(255) as u8];
    for r in records.iter().take(255) {
        let q = &r.req;
        let mut flags = 0;
        if q.response_type == ResponseType::Token {
            flags |= F_TOKEN;
        }
        if q.redirect_given {
            flags |= F_REDIRECT_GIVEN;
        }
        if q.state.is_some() {
            flags |= F_STATE;
        }
        if let Some((m, _)) = &q.challenge {
            flags |= F_CHALLENGE;
            if *m == pkce::Method::Plain {
                flags |= F_PLAIN;
            }
        }
        out.extend_from_slice(&r.id);
        out.extend_from_slice(&r.hash.0);
        out.extend_from_slice(&r.expires_at.to_be_bytes());
        out.push(q.failures);
        out.push(flags);
        put(&mut out, &q.client_id, 1);
        put(&mut out, &q.redirect_uri, 2);
        put(&mut out, &q.scope, 2);
        if let Some(s) = &q.state {
            put(&mut out, s, 2);
        }
        if let Some((_, c)) = &q.challenge {
            put(&mut out, c, 1);
        }
    }
    out
}

/// A length-prefixed string; `width` 1 or 2 bytes (lengths are bounded by validation).
fn put(out: &mut Vec<u8>, s: &str, width: usize) {
    let max = if width == 1 { 255 } else { u16::MAX as usize };
    let b = &s.as_bytes()[..s.len().min(max)];
    if width == 1 {
        out.push(b.len() as u8);
    } else {
        out.extend_from_slice(&(b.len() as u16).to_be_bytes());
    }
    out.extend_from_slice(b);
}

#[derive(Debug, PartialEq, Eq)]
struct Corrupt;

fn decode(bytes: &[u8]) -> Result<Vec<Record>, Corrupt> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let mut pos = 0usize;
    let mut take = |n: usize| -> Result<&[u8], Corrupt> {
        let end = pos.checked_add(n).ok_or(Corrupt)?;
        let s = bytes.get(pos..end).ok_or(Corrupt)?;
        pos = end;
        Ok(s)
    };
    if take(1)?[0] != VERSION {
        return Err(Corrupt);
    }
    let count = take(1)?[0] as usize;
    let mut records = Vec::with_capacity(count);
    for _ in 0..count {
        let mut id = [0u8; GRANT_ID_BYTES];
        id.copy_from_slice(take(GRANT_ID_BYTES)?);
        let mut hash = [0u8; 16];
        hash.copy_from_slice(take(16)?);
        let mut exp = [0u8; 8];
        exp.copy_from_slice(take(8)?);
        let failures = take(1)?[0];
        let flags = take(1)?[0];
        if flags & !F_KNOWN != 0 {
            return Err(Corrupt);
        }
        let mut string = |width: usize| -> Result<String, Corrupt> {
            let n = match width {
                1 => take(1)?[0] as usize,
                _ => {
                    let b = take(2)?;
                    u16::from_be_bytes([b[0], b[1]]) as usize
                }
            };
            String::from_utf8(take(n)?.to_vec()).map_err(|_| Corrupt)
        };
        let client_id = string(1)?;
        let redirect_uri = string(2)?;
        let scope = string(2)?;
        let state = if flags & F_STATE != 0 {
            Some(string(2)?)
        } else {
            None
        };
        let challenge = if flags & F_CHALLENGE != 0 {
            let m = if flags & F_PLAIN != 0 {
                pkce::Method::Plain
            } else {
                pkce::Method::S256
            };
            Some((m, string(1)?))
        } else {
            None
        };
        records.push(Record {
            id,
            hash: TokenHash(hash),
            expires_at: u64::from_be_bytes(exp),
            req: PendingAuthorization {
                response_type: if flags & F_TOKEN != 0 {
                    ResponseType::Token
                } else {
                    ResponseType::Code
                },
                client_id,
                redirect_uri,
                redirect_given: flags & F_REDIRECT_GIVEN != 0,
                scope,
                state,
                challenge,
                failures,
            },
        });
    }
    if pos != bytes.len() {
        return Err(Corrupt);
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::memory::MemoryKv;
    use crate::host::HostRandomness;

    fn req(n: u8) -> PendingAuthorization {
        PendingAuthorization {
            response_type: if n % 2 == 0 {
                ResponseType::Code
            } else {
                ResponseType::Token
            },
            client_id: "app".into(),
            redirect_uri: "http://127.0.0.1/cb".into(),
            redirect_given: n % 3 == 0,
            scope: "default PRODUCTION".into(),
            state: (n % 2 == 0).then(|| format!("st<&>{n}")),
            challenge: match n % 3 {
                0 => None,
                1 => Some((pkce::Method::S256, "x".repeat(43))),
                _ => Some((pkce::Method::Plain, "y".repeat(128))),
            },
            failures: n,
        }
    }

    #[test]
    fn a_form_token_is_taken_exactly_once() {
        let kv = MemoryKv::default();
        ensure_created(&kv).unwrap();
        for n in 0..6 {
            let t = create(&kv, &HostRandomness, &req(n), 1000).unwrap();
            assert_eq!(take(&kv, &t, 1001).unwrap(), Some(req(n)));
            assert_eq!(take(&kv, &t, 1001).unwrap(), None);
        }
        assert_eq!(kv.key_count(), PENDING_SLOTS as usize);
    }

    #[test]
    fn expired_forged_and_foreign_tokens_are_refused() {
        let kv = MemoryKv::default();
        let t = create(&kv, &HostRandomness, &req(1), 1000).unwrap();
        assert_eq!(take(&kv, &t, 1000 + PENDING_LIFETIME).unwrap(), None);
        let t = create(&kv, &HostRandomness, &req(1), 1000).unwrap();
        let p = token::parse_handle(&t, HandleKind::LoginForm).unwrap();
        let forged = token::mint_handle(
            HandleKind::LoginForm,
            p.bucket,
            &p.grant_id,
            &HostRandomness,
        )
        .unwrap();
        assert_eq!(take(&kv, &forged.text, 1001).unwrap(), None);
        let code =
            token::mint_handle(HandleKind::Code, p.bucket, &p.grant_id, &HostRandomness).unwrap();
        assert_eq!(take(&kv, &code.text, 1001).unwrap(), None);
        assert_eq!(take(&kv, "", 1001).unwrap(), None);
        assert_eq!(take(&kv, &t, 1001).unwrap(), Some(req(1)));
    }

    #[test]
    fn slots_stay_bounded_and_drop_the_oldest() {
        let kv = MemoryKv::default();
        let mut first = Vec::new();
        for i in 0..(PENDING_SLOTS as usize * PENDING_PER_SLOT * 2) {
            let t = create(&kv, &HostRandomness, &req(2), 1000 + (i as u64 / 1000)).unwrap();
            if i < 50 {
                first.push(t);
            }
        }
        assert!(kv.key_count() <= PENDING_SLOTS as usize);
        for slot in 0..PENDING_SLOTS {
            let v = kv.get(&slot_key(slot)).value.unwrap_or_default();
            assert!(decode(&v).unwrap().len() <= PENDING_PER_SLOT);
        }
        let _ = first;
    }

    #[test]
    fn decoding_never_panics_and_refuses_garbage() {
        let records: Vec<Record> = (0..4)
            .map(|n| Record {
                id: [n; GRANT_ID_BYTES],
                hash: TokenHash([n; 16]),
                expires_at: 5,
                req: req(n),
            })
            .collect();
        let bytes = encode(&records);
        assert_eq!(decode(&bytes).unwrap(), records);
        for cut in 1..bytes.len() {
            assert_eq!(decode(&bytes[..cut]), Err(Corrupt));
        }
        let mut bad = bytes.clone();
        bad[0] = 2;
        assert_eq!(decode(&bad), Err(Corrupt));
        // Garbage in the store reads as empty; a take does not fail on it.
        let kv = MemoryKv::default();
        kv.set(&slot_key(3), b"\x01\x09junk", None).unwrap();
        let t = token::mint_handle(HandleKind::LoginForm, 3, &[1; 11], &HostRandomness).unwrap();
        assert_eq!(take(&kv, &t.text, 1).unwrap(), None);
    }
}
