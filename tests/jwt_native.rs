//! JWT access tokens (RFC 9068), natively: issuance per client, the JWKS and
//! metadata, /introspect and /revoke of a JWT, refresh rotation, and the
//! guard's verification, cache and refusals.

mod common;

use base64::Engine;
use common::jwt::{b64, hs256, parts, resigned, TestKey};
use envoy_oauth2::authn::credential_cache::CredentialCache;
use envoy_oauth2::authn::env::ServiceEnv;
use envoy_oauth2::config::guard::GuardConfig;
use envoy_oauth2::config::secret_hash::hash_secret;
use envoy_oauth2::config::TokenConfig;
use envoy_oauth2::endpoint::common::{create_shared_keys, EndpointRequest};
use envoy_oauth2::endpoint::introspect::handle_introspect;
use envoy_oauth2::endpoint::jwks::jwks;
use envoy_oauth2::endpoint::metadata::metadata;
use envoy_oauth2::endpoint::revoke::handle_revoke;
use envoy_oauth2::endpoint::token::handle_token;
use envoy_oauth2::guard::bearer::{CacheUse, Decision, Guard, GuardRequest, Reason, Verdict};
use envoy_oauth2::host::memory::{ManualClock, MemoryKv};
use envoy_oauth2::host::{Clock, HostRandomness};
use envoy_oauth2::oauth::response::Response;
use envoy_oauth2::store::kv::{Kv, RunNow};
use serde_json::{json, Value};

/// Native tests run the slow hashes without a per-worker ration.
const UNRATIONED: envoy_oauth2::authn::hash_budget::HashBudgetPolicy =
    envoy_oauth2::authn::hash_budget::HashBudgetPolicy {
        per_second: 0,
        burst: 0,
    };

const OPAQUE_CLIENT: &str = "opaque-client";
const JWT_CLIENT: &str = "jwt-client";
const SECRET: &str = "s3cret";
const ISS: &str = "https://auth.example";
const FORM: Option<&str> = Some("application/x-www-form-urlencoded");

fn token_config(key: &TestKey, extra: &str) -> String {
    let h = hash_secret(SECRET.as_bytes(), b"0123456789abcdef", 10_000);
    let admin = hash_secret(b"admin", b"0123456789abcdef", 10_000);
    format!(
        r#"{{ "issuer": "{ISS}", {extra}
          "jwt": {{ "audience": "api", "keys": [ {} ] }},
          "clients": [
            {{ "client_id": "{OPAQUE_CLIENT}", "secret_hash": "{h}",
               "grant_types": ["client_credentials","password","refresh_token"], "scopes": ["default","PRODUCTION"] }},
            {{ "client_id": "{JWT_CLIENT}", "secret_hash": "{h}", "access_token_format": "jwt",
               "grant_types": ["client_credentials","password","refresh_token"], "scopes": ["default","PRODUCTION"] }}
          ],
          "users": [ {{ "username": "admin", "password_hash": "{admin}", "scopes": ["default","PRODUCTION"] }} ] }}"#,
        key.private_entry()
    )
}

fn guard_config(key: &TestKey, extra: &str) -> String {
    format!(
        r#"{{ "realm": "api", "rules": [ {{ "prefix": "/api/" }} ], {extra}
             "jwt": {{ "issuer": "{ISS}", "audiences": ["other", "api"], "keys": [ {} ], "leeway_seconds": 10 }} }}"#,
        key.public_entry()
    )
}

struct World {
    key: TestKey,
    cfg: TokenConfig,
    kv: MemoryKv,
    clock: ManualClock,
    creds: CredentialCache,
    guard: Guard,
}

impl World {
    fn new() -> World {
        World::with("", "")
    }
    fn with(token_extra: &str, guard_extra: &str) -> World {
        let key = TestKey::new("k1");
        let cfg = TokenConfig::parse(token_config(&key, token_extra).as_bytes()).unwrap();
        let kv = MemoryKv::default();
        create_shared_keys(&kv, &HostRandomness, &cfg).unwrap();
        let guard =
            Guard::new(GuardConfig::parse(guard_config(&key, guard_extra).as_bytes()).unwrap());
        World {
            key,
            cfg,
            kv,
            clock: ManualClock::at(1_700_000_000),
            creds: CredentialCache::new([1; 32], 64),
            guard,
        }
    }

    fn call(&mut self, path: &str, client: &str, body: &str) -> Response {
        let auth = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{client}:{SECRET}"))
        );
        let mut env = ServiceEnv {
            kv: Kv::Local(&self.kv),
            clock: &self.clock,
            rng: &HostRandomness,
            credentials: &mut self.creds,
            hash_budget: &envoy_oauth2::authn::hash_budget::HashBudget::new(UNRATIONED),
            client_address: &|| "192.0.2.10".to_string(),
        };
        let req = EndpointRequest {
            method: "POST",
            content_type: FORM,
            authorization: Some(&auth),
            body: body.as_bytes(),
        };
        match path {
            "/token" => handle_token(&self.cfg, &mut env, &req).run_now().unwrap(),
            "/introspect" => handle_introspect(&self.cfg, &mut env, &req)
                .run_now()
                .unwrap(),
            _ => handle_revoke(&self.cfg, &mut env, &req).run_now().unwrap(),
        }
        .response
    }

    fn token(&mut self, client: &str, body: &str) -> Value {
        let r = self.call("/token", client, body);
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        serde_json::from_slice(&r.body).unwrap()
    }

    fn check(&mut self, token: &str) -> Decision {
        let auth = format!("Bearer {token}");
        self.guard.check(
            &self.kv,
            self.clock.now_secs(),
            &GuardRequest {
                method: "GET",
                path: b"/api/x",
                authorization: Some(auth.as_bytes()),
            },
        )
    }

    fn introspect(&mut self, client: &str, token: &str) -> Value {
        let r = self.call("/introspect", client, &format!("token={token}"));
        assert_eq!(r.status, 200);
        serde_json::from_slice(&r.body).unwrap()
    }
}

fn at(v: &Value) -> String {
    v["access_token"].as_str().unwrap().to_string()
}

fn allowed(d: &Decision) -> bool {
    matches!(d.verdict, Verdict::Allow(Some(_)))
}

/// 401 invalid_token with the RFC 6750 challenge.
fn assert_invalid_token(d: &Decision, what: &str) {
    match &d.verdict {
        Verdict::Deny(Reason::InvalidToken, r) => {
            assert_eq!(r.status, 401, "{what}");
            let c = r.header_value("www-authenticate").unwrap_or("");
            assert!(c.contains(r#"error="invalid_token""#), "{what}: {c}");
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(body["error"], "invalid_token", "{what}");
        }
        other => panic!("{what}: expected invalid_token, got {other:?}"),
    }
}

#[test]
fn each_client_gets_its_configured_format_and_jwts_state_rfc_9068_claims() {
    let mut w = World::new();
    let opaque = at(&w.token(OPAQUE_CLIENT, "grant_type=client_credentials"));
    assert!(!opaque.contains('.') && opaque.len() == 64);
    let app = at(&w.token(JWT_CLIENT, "grant_type=client_credentials"));
    let (h, c) = parts(&app);
    assert_eq!(h, json!({"alg":"ES256","typ":"at+jwt","kid":"k1"}));
    assert_eq!(c["iss"], ISS);
    assert_eq!(c["aud"], "api");
    assert_eq!(c["sub"], JWT_CLIENT);
    assert_eq!(c["client_id"], JWT_CLIENT);
    assert_eq!(c["scope"], "default");
    let now = w.clock.now_secs();
    assert_eq!(
        (c["iat"].as_u64(), c["exp"].as_u64()),
        (Some(now), Some(now + 3600))
    );
    assert_eq!(c["jti"].as_str().map(str::len), Some(32));
    let user = at(&w.token(
        JWT_CLIENT,
        "grant_type=password&username=admin&password=admin&scope=PRODUCTION",
    ));
    let (_, c) = parts(&user);
    assert_eq!(c["sub"], "admin@carbon.super");
    assert_eq!(c["scope"], "PRODUCTION");
    // Both formats pass the guard, with the identity from the store.
    for t in [&opaque, &app, &user] {
        assert!(allowed(&w.check(t)), "{t}");
    }
    match w.check(&user).verdict {
        Verdict::Allow(Some(id)) => {
            assert_eq!(id.user.as_deref(), Some("admin@carbon.super"));
            assert_eq!(id.client_id, JWT_CLIENT);
        }
        v => panic!("{v:?}"),
    }
}

#[test]
fn the_jwks_lists_public_keys_with_max_age_and_the_metadata_names_it() {
    let w = World::new();
    let r = jwks(&w.cfg, "GET").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header_value("cache-control"), Some("max-age=300"));
    let body: Value = serde_json::from_slice(&r.body).unwrap();
    let jwk: Value = serde_json::from_str(&w.key.jwk).unwrap();
    assert_eq!(body, json!({ "keys": [jwk] }));
    assert!(body["keys"][0].get("d").is_none());
    assert!(!String::from_utf8_lossy(&r.body).contains("PRIVATE"));
    assert_eq!(jwks(&w.cfg, "POST").unwrap().status, 405);
    let m: Value = serde_json::from_slice(&metadata(&w.cfg, false, Some("h")).body).unwrap();
    assert_eq!(m["jwks_uri"], format!("{ISS}/.well-known/jwks.json"));
    // Without a jwt section: no JWKS, no jwks_uri.
    let plain = TokenConfig::parse(
        token_config(&w.key, "")
            .replace(r#""access_token_format": "jwt","#, "")
            .replace(
                &format!(
                    r#""jwt": {{ "audience": "api", "keys": [ {} ] }},"#,
                    w.key.private_entry()
                ),
                "",
            )
            .as_bytes(),
    )
    .unwrap();
    assert!(jwks(&plain, "GET").is_none());
    let m: Value = serde_json::from_slice(&metadata(&plain, false, Some("h")).body).unwrap();
    assert!(m.get("jwks_uri").is_none());
}

#[test]
fn a_cache_hit_skips_verification_and_a_tiny_cache_verifies_every_time() {
    let mut w = World::new();
    let t = at(&w.token(JWT_CLIENT, "grant_type=client_credentials"));
    let d = w.check(&t);
    assert!(allowed(&d) && d.cache == CacheUse::Miss);
    assert_eq!(w.guard.jwt_verifications(), 1);
    for _ in 0..5 {
        let d = w.check(&t);
        assert!(allowed(&d) && d.cache == CacheUse::Hit);
    }
    assert_eq!(w.guard.jwt_verifications(), 1);

    let mut w = World::with("", r#""cache": { "max_entries": 0 },"#);
    let t = at(&w.token(JWT_CLIENT, "grant_type=client_credentials"));
    for n in 1..=3 {
        assert!(allowed(&w.check(&t)));
        assert_eq!(w.guard.jwt_verifications(), n);
    }
}

#[test]
fn introspect_revoke_and_refresh_treat_a_jwt_like_an_opaque_token() {
    let mut w = World::new();
    let v = w.token(
        JWT_CLIENT,
        "grant_type=password&username=admin&password=admin",
    );
    let (first, rt) = (at(&v), v["refresh_token"].as_str().unwrap().to_string());
    assert!(!rt.contains('.'), "refresh tokens stay opaque");
    assert!(allowed(&w.check(&first)));
    let i = w.introspect(JWT_CLIENT, &first);
    assert_eq!(i["active"], true);
    assert_eq!(i["username"], "admin@carbon.super");
    assert_eq!(i["token_type"], "Bearer");
    // Another client sees nothing.
    assert_eq!(
        w.introspect(OPAQUE_CLIENT, &first),
        json!({"active": false})
    );

    // Refresh: a new JWT; the old one dies at the guard (cached, then revalidated).
    let v = w.token(
        JWT_CLIENT,
        &format!("grant_type=refresh_token&refresh_token={rt}"),
    );
    let second = at(&v);
    assert!(second.contains('.') && second != first);
    let d = w.check(&first);
    assert_eq!(d.cache, CacheUse::Revalidated);
    assert_invalid_token(&d, "rotated away");
    assert_eq!(w.introspect(JWT_CLIENT, &first), json!({"active": false}));
    assert!(allowed(&w.check(&second)));

    // Another client cannot revoke it; its own client can.
    let r = w.call("/revoke", OPAQUE_CLIENT, &format!("token={second}"));
    assert!(r.status == 200 && r.header_value("revokedaccesstoken").is_none());
    assert!(allowed(&w.check(&second)));
    let r = w.call(
        "/revoke",
        JWT_CLIENT,
        &format!("token={second}&token_type_hint=access_token"),
    );
    assert_eq!(r.status, 200);
    let fp = r.header_value("revokedaccesstoken").unwrap();
    assert_eq!(fp.len(), 32);
    assert!(!second.contains(fp));
    assert_eq!(r.header_value("authorizeduser"), Some("admin@carbon.super"));
    assert_invalid_token(&w.check(&second), "revoked");
    assert_eq!(w.introspect(JWT_CLIENT, &second), json!({"active": false}));
    // A tampered copy of a live token is unknown at /introspect and /revoke.
    let live = at(&w.token(JWT_CLIENT, "grant_type=client_credentials"));
    let tampered = resigned(&w.key, &live, |c| c["scope"] = json!("default PRODUCTION"));
    assert_eq!(
        w.introspect(JWT_CLIENT, &tampered),
        json!({"active": false})
    );
    let r = w.call("/revoke", JWT_CLIENT, &format!("token={tampered}"));
    assert!(r.header_value("revokedaccesstoken").is_none());
    assert!(allowed(&w.check(&live)));
}

#[test]
fn a_refresh_retried_within_the_grace_period_restates_the_same_jwt() {
    let mut w = World::with(r#""refresh_token_grace_seconds": 30,"#, "");
    let v = w.token(
        JWT_CLIENT,
        "grant_type=password&username=admin&password=admin",
    );
    let rt = v["refresh_token"].as_str().unwrap().to_string();
    let body = format!("grant_type=refresh_token&refresh_token={rt}");
    let a = w.token(JWT_CLIENT, &body);
    w.clock.advance(5);
    let b = w.token(JWT_CLIENT, &body);
    assert_eq!(a["access_token"], b["access_token"]);
    assert_eq!(a["refresh_token"], b["refresh_token"]);
    assert!(allowed(&w.check(&at(&b))));
}

#[test]
fn every_kind_of_bad_jwt_is_invalid_token_without_a_panic() {
    let mut w = World::new();
    let good = at(&w.token(JWT_CLIENT, "grant_type=client_credentials"));
    let (_, claims) = parts(&good);
    let payload = claims.to_string();
    let other_key = TestKey::new("k1"); // same kid, another key
    let unknown_kid = TestKey::new("nope");
    let now = w.clock.now_secs() as i64;
    let mut bad: Vec<(&str, String)> = vec![
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(r#"{"alg":"none","typ":"at+jwt","kid":"k1"}"#),
                b64(&payload)
            ),
        ),
        (
            "HS256 with the public key as secret",
            hs256(
                r#"{"alg":"HS256","typ":"at+jwt","kid":"k1"}"#,
                &payload,
                w.key.jwk.as_bytes(),
            ),
        ),
        (
            "unknown kid",
            unknown_kid.sign_raw(&unknown_kid.header(), &payload),
        ),
        (
            "signed by another key",
            other_key.sign_raw(&other_key.header(), &payload),
        ),
        (
            "wrong typ",
            w.key
                .sign_raw(r#"{"alg":"ES256","typ":"JWT","kid":"k1"}"#, &payload),
        ),
        (
            "wrong iss",
            resigned(&w.key, &good, |c| c["iss"] = json!("https://evil.example")),
        ),
        (
            "wrong aud",
            resigned(&w.key, &good, |c| c["aud"] = json!("elsewhere")),
        ),
        (
            "expired",
            resigned(&w.key, &good, |c| c["exp"] = json!(now - 11)),
        ),
        (
            "not yet valid",
            resigned(&w.key, &good, |c| c["nbf"] = json!(now + 60)),
        ),
        (
            "issued in the future",
            resigned(&w.key, &good, |c| c["iat"] = json!(now + 60)),
        ),
        (
            "malformed base64",
            format!("{}.{}!.sig", b64(w.key.header()), b64(&payload)),
        ),
        (
            "malformed JSON",
            w.key.sign_raw(&w.key.header(), "{\"iss\":"),
        ),
        (
            "claims not an object",
            w.key.sign_raw(&w.key.header(), "[1]"),
        ),
        (
            "duplicate JSON keys",
            w.key.sign_raw(
                &w.key.header(),
                &payload.replacen('{', &format!("{{\"sub\":\"root\","), 1),
            ),
        ),
        (
            "over 8 KiB",
            resigned(&w.key, &good, |c| c["pad"] = json!("x".repeat(8 * 1024))),
        ),
        (
            "two segments",
            good.rsplitn(2, '.').nth(1).unwrap().to_string(),
        ),
        ("four segments", format!("{good}.x")),
        ("tampered signature", {
            let mut t = good.clone().into_bytes();
            let n = t.len() - 5;
            t[n] = if t[n] == b'A' { b'B' } else { b'A' };
            String::from_utf8(t).unwrap()
        }),
        // Valid signature and claims, but a grant this store never issued.
        (
            "unknown grant",
            resigned(&w.key, &good, |c| c["jti"] = json!(b64([0xa1u8; 24]))),
        ),
        (
            "jti naming no access token",
            resigned(&w.key, &good, |c| c["jti"] = json!("x")),
        ),
    ];
    // Valid signature and claims with an extra claim: not the text this server issued.
    bad.push((
        "re-signed with an extra claim",
        resigned(&w.key, &good, |c| c["x"] = json!(1)),
    ));
    for (what, token) in &bad {
        assert_invalid_token(&w.check(token), what);
    }
    // The real token still works, and expiry applies with the configured leeway.
    assert!(allowed(&w.check(&good)));
    w.clock.advance(3600);
    assert_invalid_token(&w.check(&good), "expired at the store");

    // A guard without a `jwt` section refuses JWTs but still takes opaque tokens.
    let plain = GuardConfig::parse(br#"{ "rules": [ { "prefix": "/api/" } ] }"#).unwrap();
    let mut w = World::new();
    w.guard = Guard::new(plain);
    let jwt = at(&w.token(JWT_CLIENT, "grant_type=client_credentials"));
    let opaque = at(&w.token(OPAQUE_CLIENT, "grant_type=client_credentials"));
    assert_invalid_token(&w.check(&jwt), "no jwt section");
    assert!(allowed(&w.check(&opaque)));
}

#[test]
fn configuration_problems_name_their_field_and_never_quote_a_key() {
    let key = TestKey::new("k1");
    let field = |json: &str| TokenConfig::parse(json.as_bytes()).unwrap_err();
    let base = token_config(&key, "");
    // A jwt client without the jwt section.
    let no_section = base.replace(
        &format!(
            r#""jwt": {{ "audience": "api", "keys": [ {} ] }},"#,
            key.private_entry()
        ),
        "",
    );
    assert_eq!(field(&no_section).field, "clients[1].access_token_format");
    // The default format says jwt.
    let default_jwt =
        no_section.replace(r#""issuer""#, r#""access_token_format": "jwt", "issuer""#);
    assert_eq!(field(&default_jwt).field, "access_token_format");
    // A malformed key: the field is named, the key is not quoted.
    let mangled = key.pem.replace("\n", "\n!");
    let bad_key = base.replace(
        &serde_json::to_string(&key.pem).unwrap(),
        &serde_json::to_string(&mangled).unwrap(),
    );
    let e = field(&bad_key);
    assert!(e.field.starts_with("jwt.keys[0]"), "{e:?}");
    let secret_line = key.pem.lines().nth(1).unwrap();
    assert!(!e.to_string().contains(&secret_line[..20]), "{e}");
    // No keys at all; a public key where a signing key is needed.
    let no_keys = base.replace(&key.private_entry(), "");
    assert_eq!(field(&no_keys).field, "jwt.keys");
    let public_only = base.replace(&key.private_entry(), &key.public_entry());
    assert!(field(&public_only).field.starts_with("jwt.keys[0]"));
    // No issuer: refused before the JWT section; a `jwt.issuer` other than the
    // issuer (two sources of truth); `issuer_from_host` names no fixed `iss`.
    let no_iss = base.replace(&format!(r#""issuer": "{ISS}","#), "");
    assert_eq!(field(&no_iss).field, "issuer");
    let same = base.replace(r#""jwt": {"#, &format!(r#""jwt": {{ "issuer": "{ISS}","#));
    assert!(TokenConfig::parse(same.as_bytes()).is_ok());
    let conflicting = base.replace(
        r#""jwt": {"#,
        r#""jwt": { "issuer": "https://other.example","#,
    );
    assert_eq!(field(&conflicting).field, "jwt.issuer");
    let from_host = base.replace(
        &format!(r#""issuer": "{ISS}","#),
        r#""issuer_from_host": true, "issuer_hosts": ["auth.example"],"#,
    );
    assert_eq!(field(&from_host).field, "clients[1].access_token_format");
    // No audience anywhere.
    let no_aud = base.replace(r#""audience": "api", "#, "");
    assert_eq!(field(&no_aud).field, "clients[1].audience");
    // Audience on an opaque client; an unknown format.
    let aud_opaque = base.replace(
        r#""client_id": "opaque-client","#,
        r#""client_id": "opaque-client", "audience": "x","#,
    );
    assert_eq!(field(&aud_opaque).field, "clients[0].audience");
    let unknown = base.replace(
        r#""access_token_format": "jwt""#,
        r#""access_token_format": "paseto""#,
    );
    assert_eq!(field(&unknown).field, "clients[1].access_token_format");
    // A per-client audience wins over the default.
    let own = base.replace(
        r#""access_token_format": "jwt","#,
        r#""access_token_format": "jwt", "audience": ["a", "b"],"#,
    );
    let cfg = TokenConfig::parse(own.as_bytes()).unwrap();
    assert_eq!(
        cfg.client(JWT_CLIENT)
            .unwrap()
            .jwt
            .as_ref()
            .unwrap()
            .audience,
        ["a", "b"]
    );

    // The guard: public keys only, audiences required, leeway bounded.
    let gfield = |json: &str| GuardConfig::parse(json.as_bytes()).unwrap_err().field;
    let g = guard_config(&key, "");
    assert_eq!(
        gfield(&g.replace(&key.public_entry(), &key.private_entry())),
        "jwt.keys[0]"
    );
    assert_eq!(gfield(&g.replace(r#""other", "api""#, "")), "jwt.audiences");
    assert_eq!(
        gfield(&g.replace(r#""leeway_seconds": 10"#, r#""leeway_seconds": 3600"#)),
        "jwt.leeway_seconds"
    );
    assert_eq!(
        gfield(&g.replace(&key.public_entry(), r#"{"jwk":{"kty":"EC"}}"#))
            .split('.')
            .take(2)
            .collect::<Vec<_>>()
            .join("."),
        "jwt.keys[0]"
    );
}

#[test]
fn the_guard_checks_iss_aud_and_time_of_genuine_tokens() {
    // Re-signed tokens above already fail at the store (their text hash is not
    // the issued one); here the token is the real one and only the guard's
    // expectations differ.
    let mut w = World::new();
    let good = at(&w.token(JWT_CLIENT, "grant_type=client_credentials"));
    assert!(allowed(&w.check(&good)));
    let reconfigure = |w: &mut World, from: &str, to: &str| {
        let json = guard_config(&w.key, "").replace(from, to);
        w.guard = Guard::new(GuardConfig::parse(json.as_bytes()).unwrap());
    };
    reconfigure(
        &mut w,
        &format!(r#""issuer": "{ISS}""#),
        r#""issuer": "https://other.example""#,
    );
    assert_invalid_token(&w.check(&good), "another issuer expected");
    reconfigure(&mut w, r#"["other", "api"]"#, r#"["other"]"#);
    assert_invalid_token(&w.check(&good), "another audience expected");
    assert_eq!(w.guard.jwt_verifications(), 1);
    reconfigure(&mut w, "", "");
    // iat is 11 s ahead of the guard's clock: beyond the 10 s leeway.
    w.clock.0.fetch_sub(11, std::sync::atomic::Ordering::SeqCst);
    assert_invalid_token(&w.check(&good), "issued in the future");
    w.clock.advance(2);
    assert!(allowed(&w.check(&good)), "within the leeway");
}
