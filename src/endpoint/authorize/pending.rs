//! Authorization requests waiting for the user at the login page. The page
//! carries the request itself: its form token is the request (client, redirect
//! URI, scope, state, PKCE challenge, failed logins so far, expiry and a random
//! nonce) sealed with HMAC-SHA256 under the store's key (`server_key`). The POST
//! cannot change what it carries, and showing a page writes nothing to shared
//! data, so a flood of `GET /authorize` cannot push anybody's open form out.
//!
//! One-time use: the first POST that presents a token marks its nonce as used in
//! `oauth2/p/<n>` (n in 0..[`PENDING_SLOTS`]) until the token would have expired,
//! at most [`USED_PER_SLOT`] markers per slot. A full slot drops the marker that
//! expires first: under a flood of posted forms, a form already posted could be
//! posted once more before it expires, which still needs the user's password
//! and counts against the per-user throttle.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use subtle::ConstantTimeEq;

use crate::endpoint::authorize::browser_binding::Binding;
use crate::host::{KvStore, Randomness, WriteError};
use crate::oauth::pkce;
use crate::store::kv::Kv;
use crate::store::server_key::{self, ServerKey};
use crate::store::{StoreError, CAS_RETRIES};

pub const PENDING_SLOTS: u32 = 1024;
/// Used-token markers per slot (24 bytes each): 65,536 in all, 1.5 MiB at most.
pub const USED_PER_SLOT: usize = 64;
/// Seconds a user has to log in.
pub const PENDING_LIFETIME: u64 = 600;
/// Longest `state` accepted (it is carried and echoed).
pub const MAX_STATE_BYTES: usize = 512;
/// Longest form token read (a sealed request is far smaller: validation bounds
/// every field); anything longer is refused before decoding.
const MAX_FORM_TOKEN_CHARS: usize = 8192;
const SEAL_VERSION: u8 = 0x52;
const MARKERS_VERSION: u8 = 2;
const NONCE_BYTES: usize = 16;
const MAC_BYTES: usize = 16;

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
    /// The browser that opened the form (see `browser_binding`).
    pub browser: Binding,
}

/// Creates every marker slot key (at configuration, before any worker serves).
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

/// Seals `req` into a one-time form token valid for [`PENDING_LIFETIME`].
pub async fn create(
    kv: &Kv<'_>,
    rng: &dyn Randomness,
    req: &PendingAuthorization,
    now: u64,
) -> Result<String, StoreError> {
    let key = server_key::load(kv, rng).await?;
    let mut nonce = [0u8; NONCE_BYTES];
    rng.fill(&mut nonce)?;
    let mut sealed = vec![SEAL_VERSION];
    sealed.extend_from_slice(&now.saturating_add(PENDING_LIFETIME).to_be_bytes());
    sealed.extend_from_slice(&nonce);
    encode_request(&mut sealed, req);
    let mac = seal_mac(&key, &sealed).ok_or(StoreError::Unavailable)?;
    sealed.extend_from_slice(&mac);
    Ok(URL_SAFE_NO_PAD.encode(sealed))
}

/// Opens a form token and uses it up: `Ok(None)` when it is malformed, forged,
/// expired or already used.
pub async fn take(
    kv: &Kv<'_>,
    rng: &dyn Randomness,
    form_token: &str,
    now: u64,
) -> Result<Option<PendingAuthorization>, StoreError> {
    match open_unused(kv, rng, form_token, now).await? {
        Some(form) => use_up(kv, form, now).await,
        None => Ok(None),
    }
}

/// A form token whose seal and expiry checked out, not yet used up: the POST
/// can be refused (another browser's cookie, another site) without spending it.
pub struct OpenForm {
    expires_at: u64,
    nonce: [u8; NONCE_BYTES],
    req: PendingAuthorization,
}

impl OpenForm {
    pub fn request(&self) -> &PendingAuthorization {
        &self.req
    }
}

/// Opens a form token without using it up: `Ok(None)` when it is malformed,
/// forged or expired. Whether it was used already is [`use_up`]'s answer.
pub async fn open_unused(
    kv: &Kv<'_>,
    rng: &dyn Randomness,
    form_token: &str,
    now: u64,
) -> Result<Option<OpenForm>, StoreError> {
    let key = server_key::load(kv, rng).await?;
    Ok(open(&key, form_token).filter(|opened| now < opened.expires_at))
}

/// Marks an open form used: its request the first time, `Ok(None)` after.
pub async fn use_up(
    kv: &Kv<'_>,
    opened: OpenForm,
    now: u64,
) -> Result<Option<PendingAuthorization>, StoreError> {
    let slot = u32::from_be_bytes([
        opened.nonce[0],
        opened.nonce[1],
        opened.nonce[2],
        opened.nonce[3],
    ]) % PENDING_SLOTS;
    let fresh = update(kv, slot, |markers| {
        let before = markers.len();
        markers.retain(|m| now < m.expires_at);
        if markers.iter().any(|m| m.nonce == opened.nonce) {
            return (markers.len() != before, false);
        }
        if markers.len() >= USED_PER_SLOT {
            if let Some(i) = (0..markers.len()).min_by_key(|i| markers[*i].expires_at) {
                markers.remove(i);
            }
        }
        markers.push(Marker {
            nonce: opened.nonce,
            expires_at: opened.expires_at,
        });
        (true, true)
    })
    .await?;
    Ok(fresh.then_some(opened.req))
}

/// Checks the seal (constant time) before reading anything else.
fn open(key: &ServerKey, form_token: &str) -> Option<OpenForm> {
    if form_token.len() > MAX_FORM_TOKEN_CHARS {
        return None;
    }
    let raw = URL_SAFE_NO_PAD.decode(form_token).ok()?;
    let body_len = raw.len().checked_sub(MAC_BYTES)?;
    let (body, mac) = raw.split_at(body_len);
    let expected = seal_mac(key, body)?;
    if !bool::from(expected.ct_eq(mac)) {
        return None;
    }
    let mut r = Reader {
        bytes: body,
        pos: 0,
    };
    if r.take(1)?[0] != SEAL_VERSION {
        return None;
    }
    let expires_at = u64::from_be_bytes(r.take(8)?.try_into().ok()?);
    let nonce: [u8; NONCE_BYTES] = r.take(NONCE_BYTES)?.try_into().ok()?;
    let req = decode_request(&mut r)?;
    (r.pos == body.len()).then_some(OpenForm {
        expires_at,
        nonce,
        req,
    })
}

fn seal_mac(key: &ServerKey, body: &[u8]) -> Option<[u8; MAC_BYTES]> {
    server_key::tag(key, b"oauth2 login form", body)
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Marker {
    nonce: [u8; NONCE_BYTES],
    expires_at: u64,
}

/// Read-modify-write of one marker slot with bounded CAS retries; `f` says whether to write.
async fn update<T>(
    kv: &Kv<'_>,
    slot: u32,
    mut f: impl FnMut(&mut Vec<Marker>) -> (bool, T),
) -> Result<T, StoreError> {
    let key = slot_key(slot);
    for _ in 0..CAS_RETRIES {
        let current = kv.get(&key).await?;
        // Unreadable data counts as empty: never trusted, never a panic.
        let mut markers =
            decode_markers(current.value.as_deref().unwrap_or(&[])).unwrap_or_default();
        let (write, out) = f(&mut markers);
        if !write {
            return Ok(out);
        }
        let expires_at = markers.iter().map(|m| m.expires_at).max().unwrap_or(0);
        match kv
            .put(&key, encode_markers(&markers), current.version, expires_at)
            .await
        {
            Ok(()) => return Ok(out),
            Err(WriteError::CasMismatch) => continue,
            Err(WriteError::Failed) => return Err(StoreError::Unavailable),
        }
    }
    Err(StoreError::Contended)
}

// `version u8 | count u8 | (nonce[16] | expires u64)*`
fn encode_markers(markers: &[Marker]) -> Vec<u8> {
    let mut out = vec![MARKERS_VERSION, markers.len().min(255) as u8];
    for m in markers.iter().take(255) {
        out.extend_from_slice(&m.nonce);
        out.extend_from_slice(&m.expires_at.to_be_bytes());
    }
    out
}

fn decode_markers(bytes: &[u8]) -> Option<Vec<Marker>> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let mut r = Reader { bytes, pos: 0 };
    if r.take(1)?[0] != MARKERS_VERSION {
        return None;
    }
    let count = r.take(1)?[0] as usize;
    let mut markers = Vec::with_capacity(count);
    for _ in 0..count {
        let nonce = r.take(NONCE_BYTES)?.try_into().ok()?;
        let expires_at = u64::from_be_bytes(r.take(8)?.try_into().ok()?);
        markers.push(Marker { nonce, expires_at });
    }
    (r.pos == bytes.len()).then_some(markers)
}

const F_TOKEN: u8 = 1;
const F_REDIRECT_GIVEN: u8 = 2;
const F_STATE: u8 = 4;
const F_CHALLENGE: u8 = 8;
const F_PLAIN: u8 = 16;
const F_KNOWN: u8 = F_TOKEN | F_REDIRECT_GIVEN | F_STATE | F_CHALLENGE | F_PLAIN;

// `failures u8 | flags u8 | browser[16] | client u8-len | redirect u16-len
//  | scope u16-len | (state u16-len)? | (challenge u8-len)?`
fn encode_request(out: &mut Vec<u8>, q: &PendingAuthorization) {
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
    out.push(q.failures);
    out.push(flags);
    out.extend_from_slice(&q.browser);
    put(out, &q.client_id, 1);
    put(out, &q.redirect_uri, 2);
    put(out, &q.scope, 2);
    if let Some(s) = &q.state {
        put(out, s, 2);
    }
    if let Some((_, c)) = &q.challenge {
        put(out, c, 1);
    }
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

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.bytes.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    fn string(&mut self, width: usize) -> Option<String> {
        let n = match width {
            1 => self.take(1)?[0] as usize,
            _ => {
                let b = self.take(2)?;
                u16::from_be_bytes([b[0], b[1]]) as usize
            }
        };
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
}

fn decode_request(r: &mut Reader) -> Option<PendingAuthorization> {
    let failures = r.take(1)?[0];
    let flags = r.take(1)?[0];
    if flags & !F_KNOWN != 0 {
        return None;
    }
    let browser: Binding = r.take(16)?.try_into().ok()?;
    let client_id = r.string(1)?;
    let redirect_uri = r.string(2)?;
    let scope = r.string(2)?;
    let state = if flags & F_STATE != 0 {
        Some(r.string(2)?)
    } else {
        None
    };
    let challenge = if flags & F_CHALLENGE != 0 {
        let m = if flags & F_PLAIN != 0 {
            pkce::Method::Plain
        } else {
            pkce::Method::S256
        };
        Some((m, r.string(1)?))
    } else {
        None
    };
    Some(PendingAuthorization {
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
        browser,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::memory::MemoryKv;
    use crate::host::HostRandomness;
    #[allow(unused_imports)]
    use crate::store::kv::{Kv, Sync_};

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
            browser: [n; 16],
        }
    }

    fn store() -> MemoryKv {
        let kv = MemoryKv::default();
        ensure_created(&kv).unwrap();
        server_key::ensure_key(&kv, &HostRandomness).unwrap();
        kv
    }

    #[test]
    fn a_form_token_is_taken_exactly_once() {
        let kv = store();
        for n in 0..6 {
            let t = create(&Kv::Local(&kv), &HostRandomness, &req(n), 1000)
                .sync()
                .unwrap();
            assert_eq!(
                take(&Kv::Local(&kv), &HostRandomness, &t, 1001)
                    .sync()
                    .unwrap(),
                Some(req(n))
            );
            assert_eq!(
                take(&Kv::Local(&kv), &HostRandomness, &t, 1001)
                    .sync()
                    .unwrap(),
                None
            );
        }
        assert_eq!(kv.key_count(), PENDING_SLOTS as usize + 1);
    }

    #[test]
    fn opening_a_form_uses_nothing_up_until_use_up() {
        let kv = store();
        let local = Kv::Local(&kv);
        let t = create(&local, &HostRandomness, &req(1), 1000)
            .sync()
            .unwrap();
        let before = kv.total_value_bytes();
        // Opened (and refused by the caller) any number of times: nothing written.
        for _ in 0..3 {
            let form = open_unused(&local, &HostRandomness, &t, 1001)
                .sync()
                .unwrap();
            assert_eq!(form.map(|f| f.request().clone()), Some(req(1)));
        }
        assert_eq!(kv.total_value_bytes(), before);
        let form = open_unused(&local, &HostRandomness, &t, 1001)
            .sync()
            .unwrap()
            .unwrap();
        assert_eq!(use_up(&local, form, 1001).sync().unwrap(), Some(req(1)));
        // Still opens (seal and expiry are fine) but is used.
        let form = open_unused(&local, &HostRandomness, &t, 1002)
            .sync()
            .unwrap()
            .unwrap();
        assert_eq!(use_up(&local, form, 1002).sync().unwrap(), None);
        // Expired: does not open.
        let late = 1000 + PENDING_LIFETIME;
        assert!(open_unused(&local, &HostRandomness, &t, late)
            .sync()
            .unwrap()
            .is_none());
    }

    #[test]
    fn showing_a_page_writes_nothing() {
        let kv = store();
        let before = kv.total_value_bytes();
        for n in 0..100 {
            create(&Kv::Local(&kv), &HostRandomness, &req(n), 1000)
                .sync()
                .unwrap();
        }
        assert_eq!(kv.total_value_bytes(), before);
    }

    #[test]
    fn expired_tampered_and_foreign_tokens_are_refused() {
        let kv = store();
        let t = create(&Kv::Local(&kv), &HostRandomness, &req(1), 1000)
            .sync()
            .unwrap();
        assert_eq!(
            take(
                &Kv::Local(&kv),
                &HostRandomness,
                &t,
                1000 + PENDING_LIFETIME
            )
            .sync()
            .unwrap(),
            None
        );
        let t = create(&Kv::Local(&kv), &HostRandomness, &req(1), 1000)
            .sync()
            .unwrap();
        // Any changed byte breaks the seal, wherever it is.
        let raw = URL_SAFE_NO_PAD.decode(&t).unwrap();
        for i in 0..raw.len() {
            let mut bad = raw.clone();
            bad[i] ^= 0x20;
            assert_eq!(
                take(
                    &Kv::Local(&kv),
                    &HostRandomness,
                    &URL_SAFE_NO_PAD.encode(&bad),
                    1001
                )
                .sync()
                .unwrap(),
                None,
                "byte {i}"
            );
        }
        // Sealed under another store's key.
        let other = store();
        let foreign = create(&Kv::Local(&other), &HostRandomness, &req(1), 1000)
            .sync()
            .unwrap();
        assert_eq!(
            take(&Kv::Local(&kv), &HostRandomness, &foreign, 1001)
                .sync()
                .unwrap(),
            None
        );
        for junk in ["", "garbage", &"A".repeat(MAX_FORM_TOKEN_CHARS + 4)] {
            assert_eq!(
                take(&Kv::Local(&kv), &HostRandomness, junk, 1001)
                    .sync()
                    .unwrap(),
                None
            );
        }
        assert_eq!(
            take(&Kv::Local(&kv), &HostRandomness, &t, 1001)
                .sync()
                .unwrap(),
            Some(req(1))
        );
    }

    #[test]
    fn markers_stay_bounded_and_drop_the_first_to_expire() {
        let kv = store();
        let n = PENDING_SLOTS as usize * USED_PER_SLOT * 2;
        let mut last = String::new();
        for i in 0..n {
            last = create(
                &Kv::Local(&kv),
                &HostRandomness,
                &req(2),
                1000 + (i as u64 / 1000),
            )
            .sync()
            .unwrap();
            assert!(take(
                &Kv::Local(&kv),
                &HostRandomness,
                &last,
                1000 + (i as u64 / 1000)
            )
            .sync()
            .unwrap()
            .is_some());
        }
        assert_eq!(kv.key_count(), PENDING_SLOTS as usize + 1);
        for slot in 0..PENDING_SLOTS {
            let v = kv.get(&slot_key(slot)).value.unwrap_or_default();
            assert!(decode_markers(&v).unwrap().len() <= USED_PER_SLOT);
        }
        // The newest marker survived the churn.
        assert_eq!(
            take(
                &Kv::Local(&kv),
                &HostRandomness,
                &last,
                1000 + (n as u64 / 1000)
            )
            .sync()
            .unwrap(),
            None
        );
    }

    #[test]
    fn decoding_never_panics_and_refuses_garbage() {
        let markers: Vec<Marker> = (0..4)
            .map(|n| Marker {
                nonce: [n; NONCE_BYTES],
                expires_at: 5,
            })
            .collect();
        let bytes = encode_markers(&markers);
        assert_eq!(decode_markers(&bytes), Some(markers));
        for cut in 1..bytes.len() {
            assert_eq!(decode_markers(&bytes[..cut]), None);
        }
        let mut body = Vec::new();
        encode_request(&mut body, &req(2));
        for cut in 0..body.len() {
            let mut r = Reader {
                bytes: &body[..cut],
                pos: 0,
            };
            assert_eq!(decode_request(&mut r), None);
        }
        // Garbage in a marker slot reads as empty; a take does not fail on it.
        let kv = store();
        let t = create(&Kv::Local(&kv), &HostRandomness, &req(3), 1)
            .sync()
            .unwrap();
        for slot in 0..PENDING_SLOTS {
            kv.set(&slot_key(slot), b"\x02\x09junk", None).unwrap();
        }
        assert_eq!(
            take(&Kv::Local(&kv), &HostRandomness, &t, 2)
                .sync()
                .unwrap(),
            Some(req(3))
        );
    }
}
