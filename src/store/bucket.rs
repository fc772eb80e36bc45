//! A bucket: the grants that live under one shared-data key, in a compact
//! binary encoding. Envoy shared data has no delete, so the store keeps a fixed
//! number of buckets (keys) and reclaims dead grants inside them on every write.
//!
//! Encoding: `version u8 = 1 | count u16 | grant*`, each grant
//! `id[11] | flags u8 | issued_at u64 | access_exp u64 | access_hash[16]
//!  | (refresh_hash[16] refresh_exp u64)? | (previous_refresh[16])?
//!  | client u8-len | (user u8-len)? | scope u16-len | code?`, integers big-endian,
//! where `code` (flag 16, grants from an authorization code) is
//! `code_hash[16] | code_flags u8 | redirect_uri u16-len | (challenge u8-len)?`.
//! The code block came later under the same version: records without it are
//! unchanged, and a decoder refuses flags it does not know (the bucket then
//! reads as corrupt, never as something else).
//!
//! Transactions work on a *lazy* bucket ([`Bucket::decode_lazy`]): the records
//! stay encoded bytes, checked but not built; only the grant a transaction
//! looks up ([`Bucket::find_mut`]) or adds ([`Bucket::push`]) is a [`Grant`].
//! Reclaiming reads each record's flags and expiry in place, and encoding
//! copies the untouched records as they are. So an issuance costs the same
//! whether its bucket holds 1 or 60 grants (bar a memcpy), where decoding and
//! re-encoding every grant grew with the bucket's fill.

use crate::oauth::pkce;
use crate::store::grant::{CodeState, Grant, RefreshState};
use crate::token::{GrantId, TokenHash, GRANT_ID_BYTES};

const VERSION: u8 = 1;
const F_REVOKED: u8 = 1;
const F_REFRESH: u8 = 2;
const F_PREVIOUS: u8 = 4;
const F_USER: u8 = 8;
const F_CODE: u8 = 16;
const F_GRACE_USED: u8 = 32;
const KNOWN_FLAGS: u8 = F_REVOKED | F_REFRESH | F_PREVIOUS | F_USER | F_CODE | F_GRACE_USED;
// Code flags.
const C_REDEEMED: u8 = 1;
const C_REDIRECT_GIVEN: u8 = 2;
const C_CHALLENGE: u8 = 4;
const C_PLAIN: u8 = 8;
const C_KNOWN: u8 = C_REDEEMED | C_REDIRECT_GIVEN | C_CHALLENGE | C_PLAIN;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Bucket {
    /// Decoded grants: every grant after [`Bucket::decode`]; after
    /// [`Bucket::decode_lazy`], those a transaction found or added.
    pub grants: Vec<Grant>,
    /// Lazy buckets: the other records, still encoded (`raw_count` of them).
    raw: Vec<u8>,
    raw_count: usize,
    /// The encoded records were already reclaimed at this time (they do not change
    /// within a transaction: the second reclaim of `run_txn` skips them).
    raw_reclaimed_at: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Corrupt;

impl Bucket {
    /// A bucket of these (decoded) grants.
    pub fn with_grants(grants: Vec<Grant>) -> Self {
        Bucket {
            grants,
            ..Bucket::default()
        }
    }

    /// Among the decoded grants (all of them, unless the bucket is lazy: then use
    /// [`Bucket::find_mut`]).
    pub fn find(&self, id: &GrantId) -> Option<&Grant> {
        self.grants.iter().find(|g| &g.id == id)
    }

    /// The grant with `id`, decoding it from the encoded records if needed.
    pub fn find_mut(&mut self, id: &GrantId) -> Option<&mut Grant> {
        if let Some(i) = self.grants.iter().position(|g| &g.id == id) {
            return self.grants.get_mut(i);
        }
        let (start, end) = self
            .raw_records()
            .find(|(s, _)| self.raw[*s..*s + GRANT_ID_BYTES] == id[..])?;
        let g = decode_grant(&mut Reader {
            buf: &self.raw[..end],
            pos: start,
        })
        .ok()?;
        self.raw.drain(start..end);
        self.raw_count -= 1;
        self.grants.push(g);
        self.grants.last_mut()
    }

    /// Live and dead grants, decoded or not.
    pub fn len(&self) -> usize {
        self.grants.len() + self.raw_count
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn push(&mut self, g: Grant) {
        self.grants.push(g);
    }

    /// Every grant, decoded (for transactions that look at all of them).
    pub fn grants_mut(&mut self) -> &mut Vec<Grant> {
        if self.raw_count > 0 {
            let raw = std::mem::take(&mut self.raw);
            self.raw_count = 0;
            let mut r = Reader { buf: &raw, pos: 0 };
            while r.pos < raw.len() {
                match decode_grant(&mut r) {
                    Ok(g) => self.grants.push(g),
                    // Cannot happen: `decode_lazy` checked every record.
                    Err(_) => break,
                }
            }
        }
        &mut self.grants
    }

    /// (start, end) of each encoded record.
    fn raw_records(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        let mut r = Reader {
            buf: &self.raw,
            pos: 0,
        };
        std::iter::from_fn(move || {
            if r.pos >= r.buf.len() {
                return None;
            }
            let start = r.pos;
            r.take(GRANT_ID_BYTES).ok()?;
            scan_grant_after_id(&mut r).ok()?;
            Some((start, r.pos))
        })
    }

    /// Drops grants none of whose tokens can be used any more. Returns how many.
    pub fn reclaim(&mut self, now: u64) -> usize {
        let before = self.len();
        self.grants.retain(|g| !g.is_dead(now));
        if self.raw_count > 0 && self.raw_reclaimed_at != Some(now) {
            self.raw_reclaimed_at = Some(now);
            // Compact in place: keep the records that are still alive.
            let mut r = Reader {
                buf: &self.raw,
                pos: 0,
            };
            let mut keep: Vec<(usize, usize)> = Vec::new();
            let mut dead = 0;
            while r.pos < r.buf.len() {
                let start = r.pos;
                let alive = r.take(GRANT_ID_BYTES).is_ok()
                    && scan_grant_after_id(&mut r).is_ok_and(|rec| !rec.is_dead(now));
                if alive {
                    keep.push((start, r.pos));
                } else {
                    dead += 1;
                    if r.pos == start {
                        break;
                    }
                }
            }
            if dead > 0 {
                let mut at = 0;
                for (s, e) in keep.iter().copied() {
                    self.raw.copy_within(s..e, at);
                    at += e - s;
                }
                self.raw.truncate(at);
                self.raw_count = keep.len();
            }
        }
        before - self.len()
    }

    /// When the last token of any grant here expires (`None`: no grant).
    pub fn expires_at(&self) -> Option<u64> {
        self.grants
            .iter()
            .map(|g| {
                g.refresh.as_ref().map_or(g.access_expires_at, |r| {
                    r.expires_at.max(g.access_expires_at)
                })
            })
            .max()
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(3 + self.raw.len() + self.grants.len() * 160);
        out.push(VERSION);
        out.extend_from_slice(&(self.len() as u16).to_be_bytes());
        out.extend_from_slice(&self.raw);
        for g in &self.grants {
            encode_grant(g, &mut out);
        }
        out
    }

    /// A bucket whose records stay encoded until a transaction needs one. Every
    /// record's structure is checked (a value `decode` refuses for its structure
    /// is corrupt here too); text is not checked for UTF-8, so a record whose
    /// text is broken fails alone, when a transaction or lookup decodes it.
    pub fn decode_lazy(bytes: &[u8]) -> Result<Bucket, Corrupt> {
        if bytes.is_empty() {
            return Ok(Bucket::default());
        }
        let (mut r, count) = Reader::header(bytes)?;
        let start = r.pos;
        for _ in 0..count {
            r.take(GRANT_ID_BYTES)?;
            scan_grant_after_id(&mut r)?;
        }
        if r.pos != bytes.len() {
            return Err(Corrupt);
        }
        Ok(Bucket {
            grants: Vec::new(),
            raw: bytes[start..].to_vec(),
            raw_count: count,
            raw_reclaimed_at: None,
        })
    }

    /// An empty or never-written value is an empty bucket.
    pub fn decode(bytes: &[u8]) -> Result<Bucket, Corrupt> {
        if bytes.is_empty() {
            return Ok(Bucket::default());
        }
        let (mut r, count) = Reader::header(bytes)?;
        let mut grants = Vec::with_capacity(count.min(4096));
        for _ in 0..count {
            grants.push(decode_grant(&mut r)?);
        }
        if r.pos != bytes.len() {
            return Err(Corrupt);
        }
        Ok(Bucket {
            grants,
            ..Bucket::default()
        })
    }

    /// Decodes only the grant with `id`: the read path of every lookup, so it
    /// skips the other grants without building them.
    pub fn decode_one(bytes: &[u8], id: &GrantId) -> Result<Option<Grant>, Corrupt> {
        if bytes.is_empty() {
            return Ok(None);
        }
        let (mut r, count) = Reader::header(bytes)?;
        for _ in 0..count {
            let start = r.pos;
            let this_id = r.take(GRANT_ID_BYTES)?;
            if this_id == id {
                r.pos = start;
                return decode_grant(&mut r).map(Some);
            }
            skip_grant_after_id(&mut r)?;
        }
        Ok(None)
    }
}

fn encode_grant(g: &Grant, out: &mut Vec<u8>) {
    let mut flags = 0u8;
    if g.revoked {
        flags |= F_REVOKED;
    }
    if g.refresh.is_some() {
        flags |= F_REFRESH;
    }
    if g.previous_refresh.is_some() {
        flags |= F_PREVIOUS;
    }
    if g.user.is_some() {
        flags |= F_USER;
    }
    if g.code.is_some() {
        flags |= F_CODE;
    }
    if g.grace_used {
        flags |= F_GRACE_USED;
    }
    out.extend_from_slice(&g.id);
    out.push(flags);
    out.extend_from_slice(&g.issued_at.to_be_bytes());
    out.extend_from_slice(&g.access_expires_at.to_be_bytes());
    out.extend_from_slice(&g.access_hash.0);
    if let Some(r) = &g.refresh {
        out.extend_from_slice(&r.hash.0);
        out.extend_from_slice(&r.expires_at.to_be_bytes());
    }
    if let Some(p) = &g.previous_refresh {
        out.extend_from_slice(&p.0);
    }
    // Lengths are bounded by configuration validation; truncation here would be a bug
    // caught by the round-trip tests, never a panic.
    push_str8(out, &g.client_id);
    if let Some(u) = &g.user {
        push_str8(out, u);
    }
    let scope = &g.scope.as_bytes()[..g.scope.len().min(u16::MAX as usize)];
    out.extend_from_slice(&(scope.len() as u16).to_be_bytes());
    out.extend_from_slice(scope);
    if let Some(c) = &g.code {
        let mut cf = 0u8;
        if c.redeemed {
            cf |= C_REDEEMED;
        }
        if c.redirect_given {
            cf |= C_REDIRECT_GIVEN;
        }
        if let Some((method, _)) = &c.challenge {
            cf |= C_CHALLENGE;
            if *method == pkce::Method::Plain {
                cf |= C_PLAIN;
            }
        }
        out.extend_from_slice(&c.hash.0);
        out.push(cf);
        push_str16(out, &c.redirect_uri);
        if let Some((_, challenge)) = &c.challenge {
            push_str8(out, challenge);
        }
    }
}

fn push_str16(out: &mut Vec<u8>, s: &str) {
    let b = &s.as_bytes()[..s.len().min(u16::MAX as usize)];
    out.extend_from_slice(&(b.len() as u16).to_be_bytes());
    out.extend_from_slice(b);
}

fn push_str8(out: &mut Vec<u8>, s: &str) {
    let b = &s.as_bytes()[..s.len().min(255)];
    out.push(b.len() as u8);
    out.extend_from_slice(b);
}

fn decode_grant(r: &mut Reader) -> Result<Grant, Corrupt> {
    let mut id = [0u8; GRANT_ID_BYTES];
    id.copy_from_slice(r.take(GRANT_ID_BYTES)?);
    let flags = r.u8()?;
    if flags & !KNOWN_FLAGS != 0 {
        return Err(Corrupt);
    }
    let issued_at = r.u64()?;
    let access_expires_at = r.u64()?;
    let access_hash = r.hash()?;
    let refresh = if flags & F_REFRESH != 0 {
        let hash = r.hash()?;
        Some(RefreshState {
            hash,
            expires_at: r.u64()?,
        })
    } else {
        None
    };
    let previous_refresh = if flags & F_PREVIOUS != 0 {
        Some(r.hash()?)
    } else {
        None
    };
    let client_id = r.str8()?;
    let user = if flags & F_USER != 0 {
        Some(r.str8()?)
    } else {
        None
    };
    let len = r.u16()? as usize;
    let scope = String::from_utf8(r.take(len)?.to_vec()).map_err(|_| Corrupt)?;
    let code = if flags & F_CODE != 0 {
        let hash = r.hash()?;
        let cf = r.u8()?;
        if cf & !C_KNOWN != 0 {
            return Err(Corrupt);
        }
        let redirect_uri = r.str16()?;
        let challenge = if cf & C_CHALLENGE != 0 {
            let method = if cf & C_PLAIN != 0 {
                pkce::Method::Plain
            } else {
                pkce::Method::S256
            };
            Some((method, r.str8()?))
        } else {
            None
        };
        Some(CodeState {
            hash,
            redirect_uri,
            redirect_given: cf & C_REDIRECT_GIVEN != 0,
            challenge,
            redeemed: cf & C_REDEEMED != 0,
        })
    } else {
        None
    };
    Ok(Grant {
        id,
        client_id,
        user,
        scope,
        issued_at,
        access_hash,
        access_expires_at,
        refresh,
        previous_refresh,
        revoked: flags & F_REVOKED != 0,
        grace_used: flags & F_GRACE_USED != 0,
        code,
    })
}

/// What reclaiming needs of an encoded record.
struct RecordTimes {
    revoked: bool,
    access_expires_at: u64,
    refresh_expires_at: Option<u64>,
}

impl RecordTimes {
    /// [`Grant::is_dead`] on the encoded record.
    fn is_dead(&self, now: u64) -> bool {
        self.revoked
            || (now >= self.access_expires_at && self.refresh_expires_at.is_none_or(|r| now >= r))
    }
}

/// Skips a record after its id, checking its structure (known flags, lengths
/// within the value) without building anything.
fn scan_grant_after_id(r: &mut Reader) -> Result<RecordTimes, Corrupt> {
    let flags = r.u8()?;
    if flags & !KNOWN_FLAGS != 0 {
        return Err(Corrupt);
    }
    r.u64()?;
    let access_expires_at = r.u64()?;
    r.take(16)?;
    let refresh_expires_at = if flags & F_REFRESH != 0 {
        r.take(16)?;
        Some(r.u64()?)
    } else {
        None
    };
    if flags & F_PREVIOUS != 0 {
        r.take(16)?;
    }
    // Text is skipped, not checked for UTF-8: a record is copied as it is, and
    // one that does not decode fails alone, when its own token is looked up
    // (checking every record's text on every write was 8% of an issuance).
    let text = |r: &mut Reader, n: usize| -> Result<(), Corrupt> { r.take(n).map(|_| ()) };
    let n = r.u8()? as usize;
    text(r, n)?;
    if flags & F_USER != 0 {
        let n = r.u8()? as usize;
        text(r, n)?;
    }
    let n = r.u16()? as usize;
    text(r, n)?;
    if flags & F_CODE != 0 {
        r.take(16)?;
        let cf = r.u8()?;
        if cf & !C_KNOWN != 0 {
            return Err(Corrupt);
        }
        let n = r.u16()? as usize;
        text(r, n)?;
        if cf & C_CHALLENGE != 0 {
            let n = r.u8()? as usize;
            text(r, n)?;
        }
    }
    Ok(RecordTimes {
        revoked: flags & F_REVOKED != 0,
        access_expires_at,
        refresh_expires_at,
    })
}

fn skip_grant_after_id(r: &mut Reader) -> Result<(), Corrupt> {
    let flags = r.u8()?;
    let mut fixed = 8 + 8 + 16;
    if flags & F_REFRESH != 0 {
        fixed += 16 + 8;
    }
    if flags & F_PREVIOUS != 0 {
        fixed += 16;
    }
    r.take(fixed)?;
    let n = r.u8()? as usize;
    r.take(n)?;
    if flags & F_USER != 0 {
        let n = r.u8()? as usize;
        r.take(n)?;
    }
    let n = r.u16()? as usize;
    r.take(n)?;
    if flags & F_CODE != 0 {
        r.take(16)?;
        let cf = r.u8()?;
        let n = r.u16()? as usize;
        r.take(n)?;
        if cf & C_CHALLENGE != 0 {
            let n = r.u8()? as usize;
            r.take(n)?;
        }
    }
    Ok(())
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader past a stored bucket's header (version, record count).
    fn header(buf: &'a [u8]) -> Result<(Reader<'a>, usize), Corrupt> {
        let mut r = Reader { buf, pos: 0 };
        if r.u8()? != VERSION {
            return Err(Corrupt);
        }
        let count = r.u16()? as usize;
        Ok((r, count))
    }
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Corrupt> {
        let end = self.pos.checked_add(n).ok_or(Corrupt)?;
        let s = self.buf.get(self.pos..end).ok_or(Corrupt)?;
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, Corrupt> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, Corrupt> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u64(&mut self) -> Result<u64, Corrupt> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(a))
    }
    fn hash(&mut self) -> Result<TokenHash, Corrupt> {
        let mut a = [0u8; 16];
        a.copy_from_slice(self.take(16)?);
        Ok(TokenHash(a))
    }
    fn str8(&mut self) -> Result<String, Corrupt> {
        let n = self.u8()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| Corrupt)
    }
    fn str16(&mut self) -> Result<String, Corrupt> {
        let n = self.u16()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| Corrupt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(n: u8, user: bool, refresh: bool) -> Grant {
        Grant {
            id: [n; GRANT_ID_BYTES],
            client_id: "IZsIi6HDbB5e8VKdZAnUi_fZ3f8a".into(),
            user: user.then(|| "admin@carbon.super".to_string()),
            scope: "default PRODUCTION".into(),
            issued_at: 1000,
            access_hash: TokenHash([n; 16]),
            access_expires_at: 4600,
            refresh: refresh.then(|| RefreshState {
                hash: TokenHash([n ^ 0xff; 16]),
                expires_at: 90000,
            }),
            previous_refresh: (n % 2 == 0).then(|| TokenHash([7; 16])),
            grace_used: n % 4 == 0,
            revoked: n % 3 == 0,
            code: (n >= 5).then(|| CodeState {
                hash: TokenHash([n; 16]),
                redirect_uri: "https://app.example/cb?x=1".into(),
                redirect_given: n % 2 == 0,
                challenge: match n % 3 {
                    0 => None,
                    1 => Some((pkce::Method::S256, "c".repeat(43))),
                    _ => Some((pkce::Method::Plain, "p".repeat(128))),
                },
                redeemed: n % 2 == 1,
            }),
        }
    }

    #[test]
    fn a_record_whose_text_is_not_utf8_fails_alone() {
        let (bad, good) = (grant(1, true, true), grant(2, false, false));
        let mut bytes = Bucket::with_grants(vec![bad.clone(), good.clone()]).encode();
        // Break the first record's client id ("IZsI…") into invalid UTF-8.
        let at = bytes.windows(4).position(|w| w == b"IZsI").unwrap();
        bytes[at] = 0xFF;
        assert_eq!(Bucket::decode_one(&bytes, &bad.id), Err(Corrupt));
        assert_eq!(Bucket::decode_one(&bytes, &good.id), Ok(Some(good.clone())));
        // A write to the bucket copies the broken record as it is, and works.
        let mut b = Bucket::decode_lazy(&bytes).unwrap();
        assert!(b.find_mut(&bad.id).is_none());
        b.find_mut(&good.id).unwrap().revoked = true;
        let again = b.encode();
        assert_eq!(again.len(), bytes.len());
        assert_eq!(Bucket::decode_one(&again, &bad.id), Err(Corrupt));
        assert!(
            Bucket::decode_one(&again, &good.id)
                .unwrap()
                .unwrap()
                .revoked
        );
    }

    #[test]
    fn round_trips_every_shape() {
        let b = Bucket::with_grants(vec![
            grant(1, true, true),
            grant(2, false, false),
            grant(3, true, false),
            grant(4, false, true),
            grant(5, true, false),
            grant(6, true, true),
            grant(7, true, false),
        ]);
        let bytes = b.encode();
        assert_eq!(Bucket::decode(&bytes).unwrap(), b);
        for g in &b.grants {
            assert_eq!(Bucket::decode_one(&bytes, &g.id).unwrap().as_ref(), Some(g));
        }
        assert_eq!(
            Bucket::decode_one(&bytes, &[9; GRANT_ID_BYTES]).unwrap(),
            None
        );
    }

    #[test]
    fn empty_value_is_empty_bucket() {
        assert_eq!(Bucket::decode(&[]).unwrap(), Bucket::default());
        assert_eq!(
            Bucket::decode(&Bucket::default().encode()).unwrap(),
            Bucket::default()
        );
    }

    #[test]
    fn every_truncation_and_bad_version_is_corrupt_not_a_panic() {
        let bytes = Bucket::with_grants(vec![
            grant(1, true, true),
            grant(7, true, false),
            grant(2, false, false),
        ])
        .encode();
        for cut in 1..bytes.len() {
            assert_eq!(Bucket::decode(&bytes[..cut]), Err(Corrupt), "cut at {cut}");
            let _ = Bucket::decode_one(&bytes[..cut], &[2; GRANT_ID_BYTES]);
        }
        // An unknown code flag is corrupt too.
        let one = Bucket::with_grants(vec![grant(7, true, false)]).encode();
        // grant 7: S256 challenge of 43 characters at the very end.
        let cf_at = one.len() - 43 - 1 - "https://app.example/cb?x=1".len() - 2 - 1;
        let mut unknown = one.clone();
        unknown[cf_at] |= 0x80;
        assert_eq!(Bucket::decode(&unknown), Err(Corrupt));
        let mut bad = bytes.clone();
        bad[0] = 9;
        assert_eq!(Bucket::decode(&bad), Err(Corrupt));
        let mut trailing = bytes;
        trailing.push(0);
        assert_eq!(Bucket::decode(&trailing), Err(Corrupt));
    }

    #[test]
    fn reclaim_drops_revoked_and_fully_expired_grants_only() {
        let mut live = grant(1, true, true); // refresh alive until 90000
        live.access_expires_at = 10;
        let mut expired = grant(2, false, false);
        expired.revoked = false;
        expired.access_expires_at = 10;
        let revoked = grant(3, true, true);
        let mut b = Bucket::with_grants(vec![live.clone(), expired, revoked]);
        assert_eq!(b.reclaim(100), 2);
        assert_eq!(b.grants, vec![live]);
    }

    #[test]
    fn a_lazy_bucket_is_the_same_bucket() {
        let grants: Vec<Grant> = (1..=7).map(|n| grant(n, n % 2 == 0, n % 3 != 0)).collect();
        let bytes = Bucket::with_grants(grants.clone()).encode();
        // Untouched: encodes to the same bytes.
        let lazy = Bucket::decode_lazy(&bytes).unwrap();
        assert_eq!(lazy.len(), 7);
        assert_eq!(lazy.encode(), bytes);
        // One grant changed: the others unchanged, that one changed.
        let mut lazy = Bucket::decode_lazy(&bytes).unwrap();
        lazy.find_mut(&[4; GRANT_ID_BYTES]).unwrap().scope = "other".into();
        assert!(lazy.find_mut(&[9; GRANT_ID_BYTES]).is_none());
        let mut want = grants.clone();
        want[3].scope = "other".into();
        let mut got = Bucket::decode(&lazy.encode()).unwrap().grants;
        got.sort_by_key(|g| g.id);
        assert_eq!(got, want);
        // Reclaim in place drops what the eager bucket drops.
        for now in [0, 2000, 5000, 100_000] {
            let mut eager = Bucket::decode(&bytes).unwrap();
            let mut lazy = Bucket::decode_lazy(&bytes).unwrap();
            assert_eq!(lazy.reclaim(now), eager.reclaim(now), "now {now}");
            assert_eq!(Bucket::decode(&lazy.encode()).unwrap(), eager);
            assert_eq!(lazy.grants_mut(), &eager.grants);
        }
        // Every truncation is corrupt for both.
        for cut in 1..bytes.len() {
            assert_eq!(
                Bucket::decode_lazy(&bytes[..cut]).is_err(),
                Bucket::decode(&bytes[..cut]).is_err()
            );
        }
    }

    #[test]
    fn record_size_stays_small() {
        let b = Bucket::with_grants(vec![grant(1, true, true)]);
        // Bounded memory per live token: one user grant with refresh, ~150 bytes.
        assert!(b.encode().len() < 180, "{}", b.encode().len());
    }
}
