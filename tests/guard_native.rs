//! The bearer guard's decisions, natively: rules, RFC 6750 answers, the
//! validation cache and both revocation modes against the in-memory store.

use envoy_oauth2::config::guard::GuardConfig;
use envoy_oauth2::guard::bearer::{CacheUse, Decision, Guard, GuardRequest, Reason, Verdict};
use envoy_oauth2::host::memory::MemoryKv;
use envoy_oauth2::host::HostRandomness;
use envoy_oauth2::store::kv::RunNow;
use envoy_oauth2::store::{GrantRequest, GrantStore, IssuedTokens, Lifetimes, StoreLayout};
use envoy_oauth2::token;

const LAYOUT: StoreLayout = StoreLayout {
    buckets: 16,
    grants_per_bucket: 64,
};
const NOW: u64 = 1_700_000_000;

fn issue(kv: &MemoryKv, scope: &str, user: Option<&str>, access: u64) -> IssuedTokens {
    let mut store = GrantStore::new(kv, &HostRandomness, LAYOUT);
    store.ensure_created().unwrap();
    let req = GrantRequest {
        client_id: "client-1".into(),
        user: user.map(String::from),
        scope: scope.into(),
        lifetimes: Lifetimes {
            access,
            refresh: user.map(|_| 86400),
        },
    };
    store.issue(&req, NOW).run_now().unwrap().unwrap()
}

fn guard(extra: &str) -> Guard {
    let json = format!(
        r#"{{ "realm": "api", "rules": [
              {{ "prefix": "/api/admin/", "scopes": ["ADMIN"] }},
              {{ "path": "/api/orders", "methods": ["POST"], "scopes": ["PRODUCTION", "default"] }},
              {{ "prefix": "/api/" }} ],
            "public": [ {{ "prefix": "/api/public/" }}, {{ "path": "/health" }} ]
            {extra} }}"#
    );
    Guard::new(GuardConfig::parse(json.as_bytes()).unwrap())
}

fn check(
    g: &mut Guard,
    kv: &MemoryKv,
    now: u64,
    method: &str,
    path: &str,
    auth: Option<&str>,
) -> Decision {
    g.check(
        kv,
        now,
        &GuardRequest {
            method,
            path: path.as_bytes(),
            authorization: auth.map(str::as_bytes),
        },
    )
}

fn bearer(t: &IssuedTokens) -> String {
    format!("Bearer {}", t.access_token)
}

fn denied(d: &Decision) -> (Reason, u16, String) {
    match &d.verdict {
        Verdict::Deny(reason, r) => (
            *reason,
            r.status,
            r.header_value("www-authenticate").unwrap_or("").to_string(),
        ),
        Verdict::Allow(_) => panic!("allowed: {d:?}"),
    }
}

fn allowed(d: &Decision) -> bool {
    matches!(d.verdict, Verdict::Allow(_))
}

#[test]
fn missing_token_gets_a_bare_challenge() {
    let kv = MemoryKv::default();
    let mut g = guard("");
    let d = check(&mut g, &kv, NOW, "GET", "/api/x", None);
    assert_eq!(
        denied(&d),
        (
            Reason::MissingToken,
            401,
            "Bearer realm=\"api\"".to_string()
        )
    );
    // Basic is not a bearer credential.
    let d = check(&mut g, &kv, NOW, "GET", "/api/x", Some("Basic YTpi"));
    assert_eq!(denied(&d).0, Reason::MissingToken);
}

#[test]
fn valid_token_passes_with_identity_and_the_scheme_is_case_insensitive() {
    let kv = MemoryKv::default();
    let t = issue(&kv, "default PRODUCTION", Some("admin@carbon.super"), 3600);
    let mut g = guard("");
    let d = check(
        &mut g,
        &kv,
        NOW,
        "GET",
        "/api/x?y=1",
        Some(&format!("bEaReR {}", t.access_token)),
    );
    let Verdict::Allow(Some(id)) = &d.verdict else {
        panic!("{d:?}")
    };
    assert_eq!(id.client_id, "client-1");
    assert_eq!(id.user.as_deref(), Some("admin@carbon.super"));
    assert_eq!(id.scope, "default PRODUCTION");
    assert_eq!(id.expires_header, (NOW + 3600).to_string());
    assert_eq!(d.cache, CacheUse::Miss);
    let d = check(&mut g, &kv, NOW + 1, "GET", "/api/x", Some(&bearer(&t)));
    assert_eq!(d.cache, CacheUse::Hit);
    assert!(allowed(&d));
}

#[test]
fn unknown_malformed_and_refresh_tokens_are_invalid_alike() {
    let kv = MemoryKv::default();
    let t = issue(&kv, "default", Some("u@t"), 3600);
    let mut g = guard("");
    let forged = {
        let p = token::parse(&t.access_token).unwrap();
        token::mint_access(p.bucket, &p.grant_id, &HostRandomness)
            .unwrap()
            .text
    };
    let mut answers = Vec::new();
    for bad in [
        "Bearer",
        "Bearer abc",
        "Bearer a b c",
        &format!("Bearer {forged}"),
        &format!("Bearer {}", t.refresh_token.as_ref().unwrap()),
    ] {
        let d = check(&mut g, &kv, NOW, "GET", "/api/x", Some(bad));
        let (reason, status, challenge) = denied(&d);
        assert_eq!((reason, status), (Reason::InvalidToken, 401), "{bad}");
        assert!(challenge.contains("error=\"invalid_token\""));
        let Verdict::Deny(_, r) = d.verdict else {
            unreachable!()
        };
        answers.push(r);
    }
    // Nothing tells an unknown token from a forged or refresh one.
    assert!(answers.windows(2).all(|w| w[0] == w[1]));
}

#[test]
fn scopes_are_all_required_and_methods_select_rules() {
    let kv = MemoryKv::default();
    let t = issue(&kv, "default", None, 3600);
    let mut g = guard("");
    let d = check(
        &mut g,
        &kv,
        NOW,
        "GET",
        "/api/admin/users",
        Some(&bearer(&t)),
    );
    let (reason, status, challenge) = denied(&d);
    assert_eq!((reason, status), (Reason::InsufficientScope, 403));
    assert!(
        challenge.contains("error=\"insufficient_scope\"") && challenge.contains("scope=\"ADMIN\"")
    );
    let d = check(&mut g, &kv, NOW, "POST", "/api/orders", Some(&bearer(&t)));
    assert!(denied(&d).2.contains("scope=\"PRODUCTION default\""));
    // GET /api/orders falls through to the /api/ prefix rule without scopes.
    assert!(allowed(&check(
        &mut g,
        &kv,
        NOW,
        "GET",
        "/api/orders",
        Some(&bearer(&t))
    )));
}

#[test]
fn public_token_endpoint_and_default_paths() {
    let kv = MemoryKv::default();
    let mut g = guard("");
    assert!(matches!(
        check(&mut g, &kv, NOW, "GET", "/api/public/x", None).verdict,
        Verdict::Allow(None)
    ));
    assert!(matches!(
        check(&mut g, &kv, NOW, "GET", "/health", None).verdict,
        Verdict::Allow(None)
    ));
    assert!(matches!(
        check(&mut g, &kv, NOW, "POST", "/token", None).verdict,
        Verdict::Allow(None)
    ));
    // Unmatched: denied by default.
    let d = check(&mut g, &kv, NOW, "GET", "/elsewhere", None);
    assert_eq!(denied(&d).0, Reason::NoRule);
    assert_eq!(denied(&d).1, 403);
    let mut open = guard(r#", "default_action": "allow""#);
    assert!(allowed(&check(
        &mut open,
        &kv,
        NOW,
        "GET",
        "/elsewhere",
        None
    )));
    let mut auth = guard(r#", "default_action": "authenticate""#);
    assert_eq!(
        denied(&check(&mut auth, &kv, NOW, "GET", "/elsewhere", None)).0,
        Reason::MissingToken
    );
}

#[test]
fn query_token_only_when_enabled_and_never_twice() {
    let kv = MemoryKv::default();
    let t = issue(&kv, "default", None, 3600);
    let mut g = guard("");
    let q = format!("/api/x?access_token={}", t.access_token);
    assert_eq!(
        denied(&check(&mut g, &kv, NOW, "GET", &q, None)).0,
        Reason::MissingToken
    );
    let mut g = guard(r#", "allow_query_token": true"#);
    let d = check(&mut g, &kv, NOW, "GET", &q, None);
    assert!(allowed(&d) && d.token_in_query);
    let d = check(&mut g, &kv, NOW, "GET", &q, Some(&bearer(&t)));
    assert_eq!(denied(&d).0, Reason::InvalidRequest);
    assert_eq!(denied(&d).1, 400);
}

fn revoke(kv: &MemoryKv, t: &IssuedTokens, now: u64) {
    let mut store = GrantStore::new(kv, &HostRandomness, LAYOUT);
    store.ensure_created().unwrap();
    let p = token::parse(&t.access_token).unwrap();
    assert!(store
        .revoke(&p, "client-1", now)
        .run_now()
        .unwrap()
        .unwrap()
        .is_some());
}

#[test]
fn immediate_mode_refuses_a_revoked_token_on_the_next_request_even_when_cached() {
    let kv = MemoryKv::default();
    let t = issue(&kv, "default", Some("u@t"), 3600);
    let other = issue(&kv, "default", Some("u@t"), 3600);
    let mut g = guard("");
    assert!(allowed(&check(
        &mut g,
        &kv,
        NOW,
        "GET",
        "/api/x",
        Some(&bearer(&t))
    )));
    assert!(allowed(&check(
        &mut g,
        &kv,
        NOW,
        "GET",
        "/api/x",
        Some(&bearer(&other))
    )));
    assert_eq!(
        check(&mut g, &kv, NOW, "GET", "/api/x", Some(&bearer(&t))).cache,
        CacheUse::Hit
    );
    revoke(&kv, &t, NOW + 1);
    let d = check(&mut g, &kv, NOW + 1, "GET", "/api/x", Some(&bearer(&t)));
    assert_eq!(denied(&d).0, Reason::InvalidToken);
    // Unrelated cached tokens stay valid (re-checked at most once if they share the shard).
    assert!(allowed(&check(
        &mut g,
        &kv,
        NOW + 1,
        "GET",
        "/api/x",
        Some(&bearer(&other))
    )));
}

#[test]
fn window_mode_honours_revocation_only_after_the_cache_ttl() {
    let kv = MemoryKv::default();
    let t = issue(&kv, "default", Some("u@t"), 3600);
    let mut g = guard(r#", "revocation_mode": "window", "cache": { "ttl_seconds": 30 }"#);
    assert!(allowed(&check(
        &mut g,
        &kv,
        NOW,
        "GET",
        "/api/x",
        Some(&bearer(&t))
    )));
    revoke(&kv, &t, NOW + 1);
    assert!(allowed(&check(
        &mut g,
        &kv,
        NOW + 29,
        "GET",
        "/api/x",
        Some(&bearer(&t))
    )));
    assert_eq!(
        denied(&check(
            &mut g,
            &kv,
            NOW + 30,
            "GET",
            "/api/x",
            Some(&bearer(&t))
        ))
        .0,
        Reason::InvalidToken
    );
    // A worker that never cached it refuses at once.
    let mut fresh = guard(r#", "revocation_mode": "window", "cache": { "ttl_seconds": 30 }"#);
    assert_eq!(
        denied(&check(
            &mut fresh,
            &kv,
            NOW + 2,
            "GET",
            "/api/x",
            Some(&bearer(&t))
        ))
        .0,
        Reason::InvalidToken
    );
}

#[test]
fn expired_tokens_are_refused_even_when_cached() {
    let kv = MemoryKv::default();
    let t = issue(&kv, "default", None, 10);
    for mode in ["immediate", "window"] {
        let mut g = guard(&format!(r#", "revocation_mode": "{mode}""#));
        assert!(allowed(&check(
            &mut g,
            &kv,
            NOW + 9,
            "GET",
            "/api/x",
            Some(&bearer(&t))
        )));
        assert_eq!(
            denied(&check(
                &mut g,
                &kv,
                NOW + 10,
                "GET",
                "/api/x",
                Some(&bearer(&t))
            ))
            .0,
            Reason::InvalidToken
        );
    }
}

#[test]
fn a_refresh_revokes_the_cached_previous_access_token() {
    let kv = MemoryKv::default();
    let t = issue(&kv, "default", Some("u@t"), 3600);
    let mut g = guard("");
    assert!(allowed(&check(
        &mut g,
        &kv,
        NOW,
        "GET",
        "/api/x",
        Some(&bearer(&t))
    )));
    let mut store = GrantStore::new(&kv, &HostRandomness, LAYOUT);
    store.ensure_created().unwrap();
    let r = token::parse(t.refresh_token.as_deref().unwrap()).unwrap();
    let n = store
        .refresh(
            &r,
            "client-1",
            None,
            Lifetimes {
                access: 3600,
                refresh: Some(86400),
            },
            0,
            NOW + 1,
        )
        .run_now()
        .unwrap()
        .unwrap();
    assert_eq!(
        denied(&check(
            &mut g,
            &kv,
            NOW + 1,
            "GET",
            "/api/x",
            Some(&bearer(&t))
        ))
        .0,
        Reason::InvalidToken
    );
    assert!(allowed(&check(
        &mut g,
        &kv,
        NOW + 1,
        "GET",
        "/api/x",
        Some(&bearer(&n))
    )));
}

#[test]
fn negative_cache_is_off_by_default_and_bounded_when_on() {
    let kv = MemoryKv::default();
    let mut g = guard("");
    let junk = format!(
        "Bearer {}",
        token::mint_access(1, &[0; 11], &HostRandomness)
            .unwrap()
            .text
    );
    check(&mut g, &kv, NOW, "GET", "/api/x", Some(&junk));
    assert_eq!(g.cached_entries(), 0);
    let mut g = guard(r#", "cache": { "negative_ttl_seconds": 5 }"#);
    check(&mut g, &kv, NOW, "GET", "/api/x", Some(&junk));
    assert_eq!(g.cached_entries(), 1);
    assert_eq!(
        check(&mut g, &kv, NOW + 1, "GET", "/api/x", Some(&junk)).cache,
        CacheUse::Hit
    );
}
