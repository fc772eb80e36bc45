//! Property tests (issue 5, "bad input never hurts"): the parsers of untrusted
//! input and of stored records never panic, round-trip what a correct encoder
//! produces, and the store keeps its invariants under random operation sequences.
//!
//! Run with `cargo test --release --test properties` (part of `make test`).
//! A failing case is shrunk and printed by proptest; it is also recorded in
//! `tests/properties.proptest-regressions` and replayed first on the next run.

use std::cell::Cell;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use proptest::prelude::*;
use serde_json::{json, Map, Value};

use envoy_oauth2::config::guard::GuardConfig;
use envoy_oauth2::config::TokenConfig;
use envoy_oauth2::endpoint::authorize::pending;
use envoy_oauth2::host::memory::{ManualClock, MemoryKv};
use envoy_oauth2::host::{Clock, KvStore, RandomUnavailable, Randomness};
use envoy_oauth2::oauth::basic_auth::{self, BasicCredentials, BasicError};
use envoy_oauth2::oauth::form::{decode_component, Form};
use envoy_oauth2::store::bucket::Bucket;
use envoy_oauth2::store::grant::{Grant, RefreshState};
use envoy_oauth2::store::kv::{Kv, RunNow};
use envoy_oauth2::store::{
    bucket_key, run_txn, BucketTxn, GrantRequest, GrantStore, Lifetimes, RefreshError, Step,
    StoreError, StoreLayout, TxnReport, REVOCATION_SHARDS,
};
use envoy_oauth2::token::{self, ParsedToken, TokenHash, TokenKind, GRANT_ID_BYTES};

// ---------------------------------------------------------------------------------------
// Encoders (independent of the code under test)
// ---------------------------------------------------------------------------------------

/// A small deterministic PRNG (splitmix64), for encoder choices and the store's randomness.
struct SplitMix(Cell<u64>);

impl SplitMix {
    fn new(seed: u64) -> Self {
        SplitMix(Cell::new(seed))
    }
    fn next(&self) -> u64 {
        let s = self.0.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        self.0.set(s);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

impl Randomness for SplitMix {
    fn fill(&self, buf: &mut [u8]) -> Result<(), RandomUnavailable> {
        for chunk in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        Ok(())
    }
}

/// application/x-www-form-urlencoded (WHATWG URL spec): alphanumerics and `*-._`
/// may stay literal, space may be `+`, every byte may be `%XX` in either case.
/// Which of the correct spellings is used is chosen by `rng`.
fn form_encode_component(s: &str, rng: &SplitMix) -> String {
    let mut out = String::new();
    for &b in s.as_bytes() {
        let choice = rng.next() % 4;
        let literal_ok = b.is_ascii_alphanumeric() || b"*-._".contains(&b);
        if literal_ok && choice != 0 {
            out.push(b as char);
        } else if b == b' ' && choice != 0 {
            out.push('+');
        } else if choice == 3 {
            out.push_str(&format!("%{b:02x}"));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Form parser
// ---------------------------------------------------------------------------------------

proptest! {
    #[test]
    fn form_parse_never_panics(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(form) = Form::parse(&body) {
            // Whatever parsed can be queried without panicking.
            let _ = form.one("grant_type");
            let _ = form.has("scope");
        }
    }

    #[test]
    fn form_parse_never_panics_on_form_like_bodies(
        body in "([a-z_%+=&0-9A-F]|%[0-9a-fA-F]{0,2}|\\PC){0,200}"
    ) {
        let _ = Form::parse(body.as_bytes());
    }

    #[test]
    fn decode_component_never_panics(raw in proptest::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(s) = decode_component(&raw) {
            // A decoded value re-encodes to something that decodes to it again.
            let again = decode_component(form_encode_component(&s, &SplitMix::new(1)).as_bytes());
            prop_assert_eq!(again, Ok(s));
        }
    }

    #[test]
    fn decode_component_round_trips(s in any::<String>(), seed in any::<u64>()) {
        let enc = form_encode_component(&s, &SplitMix::new(seed));
        prop_assert_eq!(decode_component(enc.as_bytes()), Ok(s));
    }

    #[test]
    fn form_round_trips_distinct_pairs(
        pairs in proptest::collection::btree_map(".{1,12}", any::<String>(), 0..8),
        seed in any::<u64>(),
        empty_pieces in any::<bool>(),
    ) {
        let rng = SplitMix::new(seed);
        let mut body = String::new();
        for (i, (k, v)) in pairs.iter().enumerate() {
            if i > 0 {
                body.push('&');
            }
            if empty_pieces {
                // `&&` between pairs is an empty piece, which the parser skips.
                body.push('&');
            }
            body.push_str(&form_encode_component(k, &rng));
            body.push('=');
            body.push_str(&form_encode_component(v, &rng));
        }
        let form = Form::parse(body.as_bytes()).map_err(|e| {
            TestCaseError::fail(format!("{body:?} did not parse: {e:?}"))
        })?;
        for (k, v) in &pairs {
            let expect = if v.is_empty() { None } else { Some(v.as_str()) };
            prop_assert_eq!(form.one(k), Ok(expect), "name {:?} in {:?}", k, body);
            prop_assert_eq!(form.has(k), !v.is_empty());
        }
    }
}

// ---------------------------------------------------------------------------------------
// Basic authentication header
// ---------------------------------------------------------------------------------------

proptest! {
    #[test]
    fn basic_parse_never_panics(header in any::<String>()) {
        let _ = basic_auth::parse(&header);
    }

    #[test]
    fn basic_parse_never_panics_on_any_decoded_bytes(
        payload in proptest::collection::vec(any::<u8>(), 0..128),
        scheme in "(Basic|basic|BASIC|bAsIc)",
        tail in "[ ,\t]{0,3}",
    ) {
        let header = format!("{scheme} {}{tail}", STANDARD.encode(&payload));
        let r = basic_auth::parse(&header);
        prop_assert!(r != Err(BasicError::NotBasic), "{:?}", header);
        if !payload.contains(&b':') {
            prop_assert_eq!(r, Err(BasicError::Malformed));
        }
    }

    /// RFC 6749 §2.3.1: id and secret are form-urlencoded, joined by `:`, base64-encoded.
    #[test]
    fn basic_round_trips(
        id in any::<String>(),
        secret in any::<String>(),
        seed in any::<u64>(),
        scheme in "(Basic|basic|BASIC)",
        padded in any::<bool>(),
        trailing_comma in any::<bool>(),
    ) {
        let rng = SplitMix::new(seed);
        let joined = format!(
            "{}:{}",
            form_encode_component(&id, &rng),
            form_encode_component(&secret, &rng)
        );
        let mut b64 = STANDARD.encode(joined.as_bytes());
        if !padded {
            b64 = b64.trim_end_matches('=').to_string();
        }
        let header = format!("{scheme} {b64}{}", if trailing_comma { "," } else { "" });
        let parsed = basic_auth::parse(&header);
        if id.is_empty() {
            prop_assert_eq!(parsed, Err(BasicError::Malformed));
        } else {
            prop_assert_eq!(parsed, Ok(BasicCredentials { id, secret }));
        }
    }
}

// ---------------------------------------------------------------------------------------
// Configuration parsers
// ---------------------------------------------------------------------------------------

const HASH: &str = "$pbkdf2-sha256$i=10000$c2FsdHNhbHRzYWx0$\
                    ru/wN8LMcSmR2Qd8R/QYxCQ9c1nWPfyAt4r8mgDcKZA";

/// A valid token configuration.
fn token_base() -> Value {
    json!({
        "issuer": "https://auth.example.com",
        "realm": "oauth2",
        "default_tenant": "carbon.super",
        "max_body_bytes": 16384,
        "lifetimes": {"application_access_token": 3600, "user_access_token": 3600, "refresh_token": 86400},
        "store": {"buckets": 16, "grants_per_bucket": 8},
        "paths": {"token": "/token", "revoke": "/revoke"},
        "clients": [{
            "client_id": "c1", "secret_hash": HASH, "owner": "admin@carbon.super",
            "grant_types": ["client_credentials", "password", "refresh_token"],
            "scopes": ["default", "PRODUCTION"], "default_scope": "default",
            "lifetimes": {"application_access_token": 60}
        }],
        "users": [{"username": "admin", "tenant": "carbon.super", "password_hash": HASH, "scopes": ["default"]}]
    })
}

/// A valid guard configuration.
fn guard_base() -> Value {
    json!({
        "realm": "oauth2",
        "rules": [{"prefix": "/api/", "methods": ["GET"], "scopes": ["default"]}, {"path": "/x"}],
        "public": [{"prefix": "/public/"}],
        "default_action": "deny",
        "revocation_mode": "immediate",
        "cache": {"ttl_seconds": 900, "max_entries": 10000, "negative_ttl_seconds": 0},
        "headers": {"client_id": "x-auth-client-id", "user": "x-auth-user", "scope": "x-auth-scope", "expires": "x-auth-expires"},
        "hide_credentials": false,
        "allow_query_token": false,
        "token_endpoint_paths": ["/token", "/revoke"]
    })
}

const FIELD_NAMES: &[&str] = &[
    "issuer",
    "issuer_from_host",
    "issuer_hosts",
    "realm",
    "default_tenant",
    "max_body_bytes",
    "lifetimes",
    "store",
    "paths",
    "clients",
    "users",
    "buckets",
    "grants_per_bucket",
    "token",
    "revoke",
    "client_id",
    "secret_hash",
    "owner",
    "grant_types",
    "scopes",
    "default_scope",
    "application_access_token",
    "user_access_token",
    "refresh_token",
    "username",
    "tenant",
    "password_hash",
    "rules",
    "public",
    "path",
    "prefix",
    "methods",
    "default_action",
    "revocation_mode",
    "cache",
    "ttl_seconds",
    "max_entries",
    "negative_ttl_seconds",
    "headers",
    "user",
    "scope",
    "expires",
    "hide_credentials",
    "allow_query_token",
    "token_endpoint_paths",
];

const STRING_WORDS: &[&str] = &[
    "",
    " ",
    "/",
    "/token",
    "/revoke",
    "/api/",
    "api",
    "client_credentials",
    "password",
    "refresh_token",
    "magic",
    "default",
    "PRODUCTION",
    "a b",
    "\"",
    "\\",
    "@",
    "x@y",
    "immediate",
    "window",
    "deny",
    "allow",
    "authenticate",
    "GET",
    "get",
    "authorization",
    "x-auth-user",
    "X-User",
    HASH,
    "$pbkdf2-sha256$i=1$AA$AA",
    "$pbkdf2-sha256$i=99999999999$$",
    "$$$$",
    "\u{0}",
    "\u{7f}",
    "é",
    "🦀",
];

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        prop_oneof![
            Just(0u64),
            Just(1),
            Just(255),
            Just(256),
            Just(1 << 20),
            Just((1 << 20) + 1),
            Just(65535),
            Just(65536),
            Just(366 * 86400),
            Just(366 * 86400 + 1)
        ]
        .prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        proptest::sample::select(STRING_WORDS).prop_map(Value::from),
        any::<String>().prop_map(Value::from),
        "[ -~]{0,300}".prop_map(Value::from),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec(
                (
                    prop_oneof![
                        3 => proptest::sample::select(FIELD_NAMES).prop_map(String::from),
                        1 => any::<String>(),
                    ],
                    inner
                ),
                0..6
            )
            .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Every path (as JSON pointer segments) of objects and arrays inside `v`, and `v` itself.
fn paths_of(v: &Value, here: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    out.push(here.clone());
    match v {
        Value::Object(m) => {
            for (k, c) in m {
                here.push(k.clone());
                paths_of(c, here, out);
                here.pop();
            }
        }
        Value::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                here.push(i.to_string());
                paths_of(c, here, out);
                here.pop();
            }
        }
        _ => {}
    }
}

/// `base` with the value at one of its paths replaced (or, for objects, a key added or
/// removed), chosen by `pick`: configurations one mistake away from a valid one.
fn mutate(base: &Value, pick: usize, action: u8, new: Value) -> Value {
    let mut paths = Vec::new();
    paths_of(base, &mut Vec::new(), &mut paths);
    let path = &paths[pick % paths.len()];
    let mut out = base.clone();
    let mut target = &mut out;
    for seg in path {
        target = match target {
            Value::Object(m) => m.get_mut(seg).unwrap(),
            Value::Array(a) => &mut a[seg.parse::<usize>().unwrap()],
            _ => unreachable!(),
        };
    }
    match (action % 3, &mut *target) {
        (1, Value::Object(m)) => {
            let k = FIELD_NAMES[pick % FIELD_NAMES.len()].to_string();
            m.insert(k, new);
        }
        (2, Value::Object(m)) if !m.is_empty() => {
            let k = m.keys().nth(pick % m.len()).unwrap().clone();
            m.remove(&k);
        }
        (2, Value::Array(a)) => a.push(new),
        _ => *target = new,
    }
    out
}

proptest! {
    #[test]
    fn config_parsers_never_panic_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = TokenConfig::parse(&bytes);
        let _ = GuardConfig::parse(&bytes);
    }

    #[test]
    fn config_parsers_never_panic_on_json_values(v in json_value()) {
        let bytes = serde_json::to_vec(&v).unwrap();
        let _ = TokenConfig::parse(&bytes);
        let _ = GuardConfig::parse(&bytes);
    }

    #[test]
    fn token_config_never_panics_near_a_valid_one(
        pick in any::<usize>(), action in any::<u8>(), new in json_value()
    ) {
        let v = mutate(&token_base(), pick, action, new);
        let bytes = serde_json::to_vec(&v).unwrap();
        if let Ok(c) = TokenConfig::parse(&bytes) {
            // What is accepted is within the documented bounds.
            prop_assert!(c.store.buckets >= 1 && c.store.buckets <= 1 << 20);
            prop_assert!(c.store.grants_per_bucket >= 1);
            prop_assert!(!c.clients.is_empty());
            prop_assert!((256..=1 << 20).contains(&c.max_body_bytes));
        }
    }

    #[test]
    fn guard_config_never_panics_near_a_valid_one(
        pick in any::<usize>(), action in any::<u8>(), new in json_value()
    ) {
        let v = mutate(&guard_base(), pick, action, new);
        let bytes = serde_json::to_vec(&v).unwrap();
        if let Ok(c) = GuardConfig::parse(&bytes) {
            prop_assert!(c.cache.ttl_seconds <= 86400);
            prop_assert!(c.cache.max_entries <= 1_000_000);
        }
    }
}

#[test]
fn the_config_bases_are_valid() {
    TokenConfig::parse(&serde_json::to_vec(&token_base()).unwrap()).unwrap();
    GuardConfig::parse(&serde_json::to_vec(&guard_base()).unwrap()).unwrap();
}

// ---------------------------------------------------------------------------------------
// Stored records
// ---------------------------------------------------------------------------------------

fn hash16() -> impl Strategy<Value = TokenHash> {
    any::<[u8; 16]>().prop_map(TokenHash)
}

fn str_max_bytes(max: usize) -> impl Strategy<Value = String> {
    any::<String>().prop_map(move |mut s| {
        while s.len() > max {
            s.pop();
        }
        s
    })
}

/// A grant read back from a minimal stored record (`version 1`, no optional parts), used
/// as the base of generated grants with `..base`: fields added to `Grant` later keep
/// their "absent" value without this file having to name them.
fn base_grant() -> Grant {
    let mut rec = vec![1u8, 0, 1]; // version, count = 1
    rec.extend_from_slice(&[0u8; GRANT_ID_BYTES]); // id
    rec.push(0); // flags: none
    rec.extend_from_slice(&[0u8; 8 + 8 + 16]); // issued_at, access_exp, access_hash
    rec.push(0); // client: empty
    rec.extend_from_slice(&[0, 0]); // scope: empty
    Bucket::decode(&rec)
        .expect("a minimal version-1 record decodes")
        .grants
        .remove(0)
}

#[allow(clippy::needless_update)] // `..base_grant()` covers fields added to `Grant` later
fn grant_strategy() -> impl Strategy<Value = Grant> {
    (
        any::<[u8; GRANT_ID_BYTES]>(),
        str_max_bytes(255),
        proptest::option::of(str_max_bytes(255)),
        prop_oneof![str_max_bytes(64), "[ -~]{0,2000}"],
        any::<u64>(),
        hash16(),
        any::<u64>(),
        proptest::option::of((hash16(), any::<u64>())),
        proptest::option::of(hash16()),
        any::<bool>(),
    )
        .prop_map(
            |(
                id,
                client_id,
                user,
                scope,
                issued_at,
                access_hash,
                access_expires_at,
                refresh,
                previous_refresh,
                revoked,
            )| Grant {
                id,
                client_id,
                user,
                scope,
                issued_at,
                access_hash,
                access_expires_at,
                refresh: refresh.map(|(hash, expires_at)| RefreshState { hash, expires_at }),
                previous_refresh,
                revoked,
                ..base_grant()
            },
        )
}

fn bucket_strategy() -> impl Strategy<Value = Bucket> {
    proptest::collection::vec(grant_strategy(), 0..12).prop_map(Bucket::with_grants)
}

proptest! {
    #[test]
    fn bucket_decode_never_panics_and_ok_round_trips(
        bytes in proptest::collection::vec(any::<u8>(), 0..1024),
        id in any::<[u8; GRANT_ID_BYTES]>(),
    ) {
        let _ = Bucket::decode_one(&bytes, &id);
        if let Ok(b) = Bucket::decode(&bytes) {
            prop_assert_eq!(Bucket::decode(&b.encode()), Ok(b.clone()));
        }
    }

    /// Arbitrary bytes rarely get past the version byte; start from valid encodings
    /// and damage them instead.
    #[test]
    fn damaged_buckets_never_panic(
        b in bucket_strategy(),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..4), 1..6),
    ) {
        let mut bytes = b.encode();
        for (at, byte, kind) in edits {
            let n = bytes.len();
            match kind {
                0 if n > 0 => bytes[at % n] = byte,
                1 if n > 0 => bytes.truncate(at % n),
                2 => bytes.insert(at % (n + 1), byte),
                _ if n > 0 => { bytes.remove(at % n); }
                _ => {}
            }
        }
        for g in &b.grants {
            let _ = Bucket::decode_one(&bytes, &g.id);
        }
        if let Ok(d) = Bucket::decode(&bytes) {
            prop_assert_eq!(Bucket::decode(&d.encode()), Ok(d.clone()));
            for g in &d.grants {
                prop_assert_eq!(Bucket::decode_one(&bytes, &g.id), Ok(d.find(&g.id).cloned()));
            }
        }
        // The lazy bucket of transactions accepts all `decode` accepts and re-encodes
        // it unchanged; it checks structure only, so it may also accept a value whose
        // records' text is not UTF-8 (those records then fail alone, on their own
        // lookup): it re-encodes that stably too.
        match (Bucket::decode_lazy(&bytes), Bucket::decode(&bytes)) {
            (Ok(lazy), Ok(d)) => prop_assert_eq!(lazy.encode(), d.encode()),
            (Ok(lazy), Err(_)) => {
                let again = lazy.encode();
                prop_assert_eq!(Bucket::decode_lazy(&again).map(|b| b.encode()), Ok(again));
            }
            (Err(_), d) => prop_assert!(d.is_err()),
        }
    }

    #[test]
    fn buckets_round_trip(b in bucket_strategy(), other in any::<[u8; GRANT_ID_BYTES]>()) {
        let bytes = b.encode();
        prop_assert_eq!(Bucket::decode(&bytes), Ok(b.clone()));
        for g in &b.grants {
            // The first grant with that id, like `Bucket::find`.
            prop_assert_eq!(Bucket::decode_one(&bytes, &g.id), Ok(b.find(&g.id).cloned()));
        }
        prop_assert_eq!(Bucket::decode_one(&bytes, &other), Ok(b.find(&other).cloned()));
    }
}

// ---------------------------------------------------------------------------------------
// Presented tokens
// ---------------------------------------------------------------------------------------

proptest! {
    /// A posted login form's token: arbitrary text, or arbitrary bytes past base64,
    /// is refused (the seal does not hold) and never panics or writes.
    #[test]
    fn login_form_tokens_that_were_not_sealed_here_are_refused(s in any::<String>(), raw in proptest::collection::vec(any::<u8>(), 0..600)) {
        let kv = MemoryKv::default();
        envoy_oauth2::endpoint::common::create_shared_keys(&kv, &envoy_oauth2::host::HostRandomness, &TokenConfig::parse(br#"{"issuer":"https://a.example","clients":[{"client_id":"c","public":true,"grant_types":["implicit"],"redirect_uris":["https://a/cb"],"scopes":["default"]}]}"#).unwrap()).unwrap();
        let before = kv.total_value_bytes();
        for text in [s, URL_SAFE_NO_PAD.encode(&raw)] {
            prop_assert_eq!(pending::take(&Kv::Local(&kv), &envoy_oauth2::host::HostRandomness, &text, 1_700_000_000).run_now().unwrap().unwrap(), None);
        }
        prop_assert_eq!(kv.total_value_bytes(), before);
    }

    #[test]
    fn token_parse_never_panics(s in any::<String>()) {
        let _ = token::parse(&s);
    }

    #[test]
    fn token_parse_never_panics_on_64_chars(s in "[A-Za-z0-9_=+/-]{64}") {
        let _ = token::parse(&s);
    }

    #[test]
    fn token_parse_reads_the_layout(raw in any::<[u8; 48]>(), tag in prop_oneof![Just(0xa1u8), Just(0xb1), any::<u8>()]) {
        let mut raw = raw;
        raw[0] = tag;
        let text = URL_SAFE_NO_PAD.encode(raw);
        match (tag, token::parse(&text)) {
            (0xa1 | 0xb1, Some(p)) => {
                prop_assert_eq!(p.kind, if tag == 0xa1 { TokenKind::Access } else { TokenKind::Refresh });
                prop_assert_eq!(p.bucket, u32::from_be_bytes([raw[1], raw[2], raw[3], raw[4]]));
                prop_assert_eq!(&p.grant_id[..], &raw[5..16]);
            }
            (0xa1 | 0xb1, None) => prop_assert!(false, "valid layout refused: {}", text),
            (_, p) => prop_assert!(p.is_none(), "unknown kind tag {:#x} accepted", tag),
        }
    }

    /// 80 characters is the refresh token with its family tag: only the refresh kind
    /// reads, and a tag made up by the presenter never verifies.
    #[test]
    fn token_parse_reads_the_long_refresh_form(raw in any::<[u8; 60]>(), tag in prop_oneof![Just(0xb1u8), any::<u8>()]) {
        let mut raw = raw;
        raw[0] = tag;
        let text = URL_SAFE_NO_PAD.encode(raw);
        match (tag, token::parse(&text)) {
            (0xb1, Some(p)) => {
                prop_assert_eq!(p.kind, TokenKind::Refresh);
                prop_assert_eq!(&p.grant_id[..], &raw[5..16]);
                prop_assert!(!p.family.unwrap().verifies(&[0x42; 32]));
            }
            (0xb1, None) => prop_assert!(false, "valid layout refused: {}", text),
            (_, p) => prop_assert!(p.is_none(), "kind tag {:#x} accepted in the long form", tag),
        }
    }
}

// ---------------------------------------------------------------------------------------
// The store under random operations
// ---------------------------------------------------------------------------------------

const LAYOUT: StoreLayout = StoreLayout {
    buckets: 4,
    grants_per_bucket: 4,
};
const CLIENTS: [&str; 2] = ["c1", "c2"];
const ACCESS_LIFE: u64 = 30;
const REFRESH_LIFE: u64 = 90;
const USER_LIFE: Lifetimes = Lifetimes {
    access: ACCESS_LIFE,
    refresh: Some(REFRESH_LIFE),
};

#[derive(Debug, Clone)]
enum Op {
    Issue {
        user: bool,
        client: usize,
    },
    /// Refresh with the grant's current refresh token (`stale: None`) or the n-th
    /// refresh token it rotated away (`Some(n)`), as its client or the other one.
    Refresh {
        grant: usize,
        stale: Option<usize>,
        right_client: bool,
    },
    /// Revoke with the grant's current access (`false`) or refresh (`true`) token.
    Revoke {
        grant: usize,
        refresh: bool,
        right_client: bool,
    },
    Lookup {
        grant: usize,
    },
    Advance {
        secs: u64,
    },
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (any::<bool>(), 0..CLIENTS.len()).prop_map(|(user, client)| Op::Issue { user, client }),
        3 => (any::<usize>(), proptest::option::weighted(0.3, 0usize..4), proptest::bool::weighted(0.85))
            .prop_map(|(grant, stale, right_client)| Op::Refresh { grant, stale, right_client }),
        1 => (any::<usize>(), any::<bool>(), proptest::bool::weighted(0.7))
            .prop_map(|(grant, refresh, right_client)| Op::Revoke { grant, refresh, right_client }),
        2 => any::<usize>().prop_map(|grant| Op::Lookup { grant }),
        2 => (0u64..25).prop_map(|secs| Op::Advance { secs }),
    ]
}

struct Tok {
    parsed: ParsedToken,
    expires_at: u64,
}

struct ModelGrant {
    client: usize,
    access: Tok,
    refresh: Option<Tok>,
    /// Refresh tokens rotated away, oldest first.
    rotated: Vec<ParsedToken>,
    /// Revoked (by /revoke or by reuse detection).
    revoked: bool,
    /// A refresh token older than the previous one was replayed: whether that revokes
    /// the grant is a policy choice, so live-ness is no longer asserted for it.
    uncertain: bool,
}

impl ModelGrant {
    fn live_tokens(&self, now: u64) -> Vec<&ParsedToken> {
        if self.revoked || self.uncertain {
            return Vec::new();
        }
        [Some(&self.access), self.refresh.as_ref()]
            .into_iter()
            .flatten()
            .filter(|t| now < t.expires_at)
            .map(|t| &t.parsed)
            .collect()
    }
}

fn parse(text: &str) -> ParsedToken {
    token::parse(text).expect("the store minted an unparsable token")
}

/// A write that changes nothing: run_txn reclaims dead grants on every write.
struct Touch;

impl BucketTxn for Touch {
    type Output = ();
    fn apply(&mut self, _bucket: &mut Bucket, _now: u64) -> Step<()> {
        Step::Write(())
    }
}

fn run_store_ops(seed: u64, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let kv = MemoryKv::default();
    let rng = SplitMix::new(seed);
    let clock = ManualClock::at(1_700_000_000);
    let mut store = GrantStore::new(&kv, &rng, LAYOUT);
    store.ensure_created().unwrap();
    // Buckets, revocation shards and the store's key.
    let key_bound = LAYOUT.buckets as usize + REVOCATION_SHARDS as usize + 1;
    prop_assert_eq!(kv.key_count(), key_bound);
    let empty_bytes = kv.total_value_bytes();

    let mut grants: Vec<ModelGrant> = Vec::new();
    // Tokens that must never be found again: rotated away, revoked, replaced.
    let mut dead: Vec<ParsedToken> = Vec::new();

    for op in ops {
        let now = clock.now_secs();
        match op {
            Op::Issue { user, client } => {
                let req = GrantRequest {
                    client_id: CLIENTS[client].into(),
                    user: user.then(|| "alice@carbon.super".to_string()),
                    scope: "default PRODUCTION".into(),
                    lifetimes: if user {
                        USER_LIFE
                    } else {
                        Lifetimes {
                            access: ACCESS_LIFE,
                            refresh: None,
                        }
                    },
                };
                match store.issue(&req, now).run_now().unwrap() {
                    Ok(t) => {
                        prop_assert_eq!(t.refresh_token.is_some(), user);
                        grants.push(ModelGrant {
                            client,
                            access: Tok {
                                parsed: parse(&t.access_token),
                                expires_at: now + ACCESS_LIFE,
                            },
                            refresh: t.refresh_token.map(|r| Tok {
                                parsed: parse(&r),
                                expires_at: now + REFRESH_LIFE,
                            }),
                            rotated: Vec::new(),
                            revoked: false,
                            uncertain: false,
                        });
                    }
                    Err(StoreError::Full) => {}
                    Err(e) => prop_assert!(false, "issue failed: {e:?}"),
                }
            }
            Op::Refresh {
                grant,
                stale,
                right_client,
            } => {
                if grants.is_empty() {
                    continue;
                }
                let gi = grant % grants.len();
                let g = &mut grants[gi];
                let client = if right_client { g.client } else { 1 - g.client };
                let presented = match stale {
                    None => match &g.refresh {
                        Some(r) => r.parsed.clone(),
                        // An application grant: present its access token instead.
                        None => g.access.parsed.clone(),
                    },
                    Some(_) if g.rotated.is_empty() => continue,
                    Some(n) => g.rotated[n % g.rotated.len()].clone(),
                };
                let result = store
                    .refresh(&presented, CLIENTS[client], None, USER_LIFE, 0, now)
                    .run_now()
                    .unwrap();
                let current_ok = stale.is_none()
                    && right_client
                    && !g.revoked
                    && g.refresh.as_ref().is_some_and(|r| now < r.expires_at);
                match result {
                    Ok(t) => {
                        prop_assert!(
                            current_ok || g.uncertain,
                            "refresh accepted: {:?}",
                            presented
                        );
                        let old_refresh = g.refresh.take().unwrap();
                        dead.push(g.access.parsed.clone());
                        dead.push(old_refresh.parsed.clone());
                        g.rotated.push(old_refresh.parsed);
                        g.access = Tok {
                            parsed: parse(&t.access_token),
                            expires_at: now + ACCESS_LIFE,
                        };
                        g.refresh = Some(Tok {
                            parsed: parse(t.refresh_token.as_deref().unwrap()),
                            expires_at: now + REFRESH_LIFE,
                        });
                    }
                    Err(e) => {
                        prop_assert_eq!(e.clone(), RefreshError::InvalidGrant);
                        prop_assert!(
                            !current_ok || g.uncertain,
                            "current refresh token refused: {e:?}"
                        );
                        if stale.is_some() && right_client {
                            let previous = g.rotated.last() == Some(&presented);
                            if previous {
                                // RFC 9700 §4.14.2: the replayed refresh token revokes the grant.
                                g.revoked = true;
                            } else {
                                g.uncertain = true;
                            }
                        }
                    }
                }
            }
            Op::Revoke {
                grant,
                refresh,
                right_client,
            } => {
                if grants.is_empty() {
                    continue;
                }
                let gi = grant % grants.len();
                let g = &mut grants[gi];
                let client = if right_client { g.client } else { 1 - g.client };
                let presented = match (&g.refresh, refresh) {
                    (Some(r), true) => r.parsed.clone(),
                    _ => g.access.parsed.clone(),
                };
                let out = store
                    .revoke(&presented, CLIENTS[client], now)
                    .run_now()
                    .unwrap();
                match out {
                    Ok(Some(r)) => {
                        prop_assert!(right_client, "another client revoked a grant");
                        prop_assert!(!g.revoked, "revoked twice");
                        prop_assert_eq!(r.access_fingerprint, g.access.parsed.hash.fingerprint());
                        g.revoked = true;
                    }
                    Ok(None) => {
                        // Nothing left to revoke: unknown to the store, dead, or another's.
                        if right_client {
                            prop_assert!(
                                g.revoked || g.uncertain || g.live_tokens(now).is_empty(),
                                "the owner could not revoke a live grant"
                            );
                            g.revoked = true;
                        }
                    }
                    Err(e) => prop_assert!(false, "revoke failed: {e:?}"),
                }
                if right_client {
                    dead.push(g.access.parsed.clone());
                    if let Some(r) = &g.refresh {
                        dead.push(r.parsed.clone());
                    }
                }
            }
            Op::Lookup { grant } => {
                if grants.is_empty() {
                    continue;
                }
                let g = &grants[grant % grants.len()];
                let found = store
                    .lookup(&g.access.parsed, now)
                    .run_now()
                    .unwrap()
                    .unwrap();
                if let Some(found) = &found {
                    prop_assert_eq!(&found.client_id, CLIENTS[g.client]);
                    prop_assert!(found.accepts(TokenKind::Access, &g.access.parsed.hash, now));
                }
            }
            Op::Advance { secs } => clock.advance(secs),
        }

        // Invariants after every operation.
        let now = clock.now_secs();
        for t in &dead {
            prop_assert!(
                store.lookup(t, now).run_now().unwrap().unwrap().is_none(),
                "a dead token was found again: {:?}",
                t
            );
        }
        for g in &grants {
            for t in g.live_tokens(now) {
                prop_assert!(
                    store.lookup(t, now).run_now().unwrap().unwrap().is_some(),
                    "a live token was lost: {:?}",
                    t
                );
            }
            if g.revoked {
                prop_assert!(store
                    .lookup(&g.access.parsed, now)
                    .run_now()
                    .unwrap()
                    .unwrap()
                    .is_none());
                if let Some(r) = &g.refresh {
                    prop_assert!(store
                        .lookup(&r.parsed, now)
                        .run_now()
                        .unwrap()
                        .unwrap()
                        .is_none());
                }
            }
        }
        prop_assert_eq!(kv.key_count(), key_bound, "shared-data keys grew");
        prop_assert_eq!(store.report.corrupt_values, 0);
    }

    // After every lifetime has passed and one write per bucket, nothing is found and the
    // store is back to its empty size: every dead record was reclaimed.
    clock.advance(REFRESH_LIFE + ACCESS_LIFE + 1);
    let now = clock.now_secs();
    let mut report = TxnReport::default();
    for b in 0..LAYOUT.buckets {
        run_txn(&Kv::Local(&kv), b, &mut Touch, now, &mut report)
            .run_now()
            .unwrap()
            .unwrap();
        let stored = kv.get(&bucket_key(b)).value.unwrap_or_default();
        prop_assert_eq!(Bucket::decode(&stored), Ok(Bucket::default()));
    }
    for g in &grants {
        prop_assert!(store
            .lookup(&g.access.parsed, now)
            .run_now()
            .unwrap()
            .unwrap()
            .is_none());
    }
    prop_assert_eq!(kv.key_count(), key_bound);
    // An emptied bucket encodes as `version | count 0` (3 bytes); a never-written one is empty.
    prop_assert!(kv.total_value_bytes() <= empty_bytes + 3 * LAYOUT.buckets as usize);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn store_keeps_its_invariants(seed in any::<u64>(), ops in proptest::collection::vec(op_strategy(), 1..80)) {
        run_store_ops(seed, ops)?;
    }
}
