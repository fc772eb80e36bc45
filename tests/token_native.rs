//! The token endpoints' protocol behaviour, natively (no Envoy): every branch of
//! /token and /revoke against the in-memory store with Envoy's CAS semantics.

use base64::Engine;
use envoy_oauth2::authn::credential_cache::CredentialCache;
use envoy_oauth2::authn::env::ServiceEnv;
use envoy_oauth2::config::secret_hash::hash_secret;
use envoy_oauth2::config::Issuer;
use envoy_oauth2::config::TokenConfig;
use envoy_oauth2::endpoint::common::{create_shared_keys, EndpointRequest};
use envoy_oauth2::endpoint::revoke::handle_revoke;
use envoy_oauth2::endpoint::token::handle_token;
use envoy_oauth2::host::memory::{ManualClock, MemoryKv};
use envoy_oauth2::host::HostRandomness;
use envoy_oauth2::oauth::response::Response;
use envoy_oauth2::store::kv::{Kv, RunNow};
use serde_json::Value;

/// Native tests run the slow hashes without a per-worker ration.
const UNRATIONED: envoy_oauth2::authn::hash_budget::HashBudgetPolicy =
    envoy_oauth2::authn::hash_budget::HashBudgetPolicy {
        per_second: 0,
        burst: 0,
    };

const C1: &str = "IZsIi6HDbB5e8VKdZAnUi_fZ3f8a";
const S1: &str = "Gm0bJ6oWV8fC5OQLLlC6jslACW8a";
const C2: &str = "hSN3y4iQGUCUfvovakUq5Sq1CTQa";
const S2: &str = "X2doTVRxXD7Q_OlK9ksBPvRBBlUa";
const FORM: Option<&str> = Some("application/x-www-form-urlencoded");

struct World {
    cfg: TokenConfig,
    kv: MemoryKv,
    clock: ManualClock,
    creds: CredentialCache,
}

fn config() -> String {
    let h = |s: &str| hash_secret(s.as_bytes(), b"0123456789abcdef", 10_000);
    format!(
        r#"{{ "realm": "test-realm",
          "clients": [
            {{ "client_id": "{C1}", "secret_hash": "{}", "grant_types": ["client_credentials","password","refresh_token"],
               "scopes": ["default","PRODUCTION","SANDBOX"], "owner": "owner1@carbon.super" }},
            {{ "client_id": "{C2}", "secret_hash": "{}", "grant_types": ["client_credentials"],
               "scopes": ["default"], "lifetimes": {{ "application_access_token": 60 }} }}
          ],
          "issuer": "https://auth.example",
          "users": [ {{ "username": "admin", "password_hash": "{}", "scopes": ["default","PRODUCTION"] }} ] }}"#,
        h(S1),
        h(S2),
        h("admin")
    )
}

impl World {
    fn new() -> World {
        let cfg = TokenConfig::parse(config().as_bytes()).unwrap();
        World {
            kv: {
                let kv = MemoryKv::default();
                create_shared_keys(&kv, &HostRandomness, &cfg).unwrap();
                kv
            },
            cfg,
            clock: ManualClock::at(1_700_000_000),
            creds: CredentialCache::new([1; 32], 64),
        }
    }

    fn call(
        &mut self,
        path: &str,
        method: &str,
        ct: Option<&str>,
        auth: Option<&str>,
        body: &str,
    ) -> Response {
        let mut env = ServiceEnv {
            kv: Kv::Local(&self.kv),
            clock: &self.clock,
            rng: &HostRandomness,
            credentials: &mut self.creds,
            hash_budget: &envoy_oauth2::authn::hash_budget::HashBudget::new(UNRATIONED),
            client_address: &|| "192.0.2.10".to_string(),
        };
        let req = EndpointRequest {
            method,
            content_type: ct,
            authorization: auth,
            body: body.as_bytes(),
        };
        let r = match path {
            "/token" => handle_token(&self.cfg, &mut env, &req).run_now().unwrap(),
            "/introspect" => {
                envoy_oauth2::endpoint::introspect::handle_introspect(&self.cfg, &mut env, &req)
                    .run_now()
                    .unwrap()
            }
            _ => handle_revoke(&self.cfg, &mut env, &req).run_now().unwrap(),
        };
        r.response
    }

    fn token(&mut self, auth: Option<&str>, body: &str) -> Response {
        self.call("/token", "POST", FORM, auth, body)
    }

    fn revoke(&mut self, auth: Option<&str>, body: &str) -> Response {
        self.call("/revoke", "POST", FORM, auth, body)
    }
}

fn basic(id: &str, secret: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
    )
}

fn json(r: &Response) -> Value {
    serde_json::from_slice(&r.body).unwrap_or(Value::Null)
}

fn assert_error(r: &Response, status: u16, code: &str) {
    assert_eq!(r.status, status, "{:?}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        json(r)["error"],
        code,
        "{:?}",
        String::from_utf8_lossy(&r.body)
    );
    assert!(json(r)["error_description"]
        .as_str()
        .map_or(false, |d| !d.is_empty()));
    assert_eq!(r.header_value("cache-control"), Some("no-store"));
    assert_eq!(r.header_value("pragma"), Some("no-cache"));
}

#[test]
fn client_credentials_gives_an_application_token_with_the_default_scope() {
    let mut w = World::new();
    let r = w.token(Some(&basic(C1, S1)), "grant_type=client_credentials");
    assert_eq!(r.status, 200);
    let v = json(&r);
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["scope"], "default");
    assert_eq!(v["expires_in"], 3600);
    assert!(v.get("refresh_token").is_none());
    assert!(v["access_token"].as_str().unwrap().len() >= 43);
    assert_eq!(r.header_value("cache-control"), Some("no-store"));
    assert_eq!(r.header_value("pragma"), Some("no-cache"));
    assert_eq!(r.header_value("content-type"), Some("application/json"));
}

#[test]
fn per_client_lifetime_override_applies() {
    let mut w = World::new();
    let r = w.token(
        None,
        &format!("grant_type=client_credentials&client_id={C2}&client_secret={S2}"),
    );
    assert_eq!(json(&r)["expires_in"], 60);
}

#[test]
fn reference_page_basic_header_with_trailing_comma_works() {
    let mut w = World::new();
    let header =
        "Basic SVpzSWk2SERiQjVlOFZLZFpBblVpX2ZaM2Y4YTpHbTBiSjZvV1Y4ZkM1T1FMTGxDNmpzbEFDVzhh,";
    let r = w.token(
        Some(header),
        "grant_type=password&username=admin&password=admin&scope=PRODUCTION",
    );
    assert_eq!(r.status, 200);
    assert_eq!(json(&r)["scope"], "PRODUCTION");
    assert!(json(&r)["refresh_token"].is_string());
}

#[test]
fn password_grant_checks_user_and_scopes() {
    let mut w = World::new();
    let auth = basic(C1, S1);
    let r = w.token(
        Some(&auth),
        "grant_type=password&username=admin&password=wrong",
    );
    assert_error(&r, 400, "invalid_grant");
    let r = w.token(
        Some(&auth),
        "grant_type=password&username=nobody&password=admin",
    );
    assert_error(&r, 400, "invalid_grant");
    let r = w.token(Some(&auth), "grant_type=password&username=admin");
    assert_error(&r, 400, "invalid_request");
    // SANDBOX: allowed for the client, not for the user.
    let r = w.token(
        Some(&auth),
        "grant_type=password&username=admin&password=admin&scope=SANDBOX",
    );
    assert_error(&r, 400, "invalid_scope");
    let r = w.token(
        Some(&auth),
        "grant_type=password&username=admin%40carbon.super&password=admin&scope=default+PRODUCTION",
    );
    assert_eq!(r.status, 200);
    assert_eq!(json(&r)["scope"], "default PRODUCTION");
}

#[test]
fn client_authentication_failures() {
    let mut w = World::new();
    let r = w.token(Some(&basic(C1, "wrong")), "grant_type=client_credentials");
    assert_error(&r, 401, "invalid_client");
    assert_eq!(
        r.header_value("www-authenticate"),
        Some("Basic realm=\"test-realm\"")
    );
    let r = w.token(Some(&basic("unknown", S1)), "grant_type=client_credentials");
    assert_error(&r, 401, "invalid_client");
    let r = w.token(
        None,
        &format!("grant_type=client_credentials&client_id={C1}&client_secret=wrong"),
    );
    assert_error(&r, 401, "invalid_client");
    assert_eq!(r.header_value("www-authenticate"), None);
    let r = w.token(None, "grant_type=client_credentials");
    assert_error(&r, 401, "invalid_client");
    let r = w.token(Some("Basic %%%"), "grant_type=client_credentials");
    assert_error(&r, 401, "invalid_client");
    // Both methods at once.
    let r = w.token(
        Some(&basic(C1, S1)),
        &format!("grant_type=client_credentials&client_id={C1}"),
    );
    assert_error(&r, 400, "invalid_request");
    // The secret never appears in an answer.
    assert!(!String::from_utf8_lossy(&r.body).contains(S1));
}

#[test]
fn grant_type_errors() {
    let mut w = World::new();
    let r = w.token(Some(&basic(C1, S1)), "grant_type=magic");
    assert_error(&r, 400, "unsupported_grant_type");
    let r = w.token(
        Some(&basic(C2, S2)),
        "grant_type=password&username=admin&password=admin",
    );
    assert_error(&r, 400, "unauthorized_client");
    let r = w.token(Some(&basic(C1, S1)), "");
    assert_error(&r, 400, "invalid_request");
    let r = w.token(
        Some(&basic(C1, S1)),
        "grant_type=client_credentials&grant_type=password",
    );
    assert_error(&r, 400, "invalid_request");
    let r = w.token(
        Some(&basic(C1, S1)),
        "grant_type=client_credentials&scope=ADMIN",
    );
    assert_error(&r, 400, "invalid_scope");
    let r = w.token(
        Some(&basic(C1, S1)),
        "grant_type=client_credentials&scope=%22quoted%22",
    );
    assert_error(&r, 400, "invalid_scope");
}

#[test]
fn request_shape_errors() {
    let mut w = World::new();
    let r = w.call("/token", "GET", None, None, "");
    assert_error(&r, 405, "invalid_request");
    assert_eq!(r.header_value("allow"), Some("POST"));
    let r = w.call(
        "/token",
        "POST",
        Some("application/json"),
        Some(&basic(C1, S1)),
        "{}",
    );
    assert_error(&r, 400, "invalid_request");
    let r = w.call(
        "/token",
        "POST",
        None,
        Some(&basic(C1, S1)),
        "grant_type=client_credentials",
    );
    assert_error(&r, 400, "invalid_request");
    let r = w.token(
        Some(&basic(C1, S1)),
        "grant_type=client_credentials&scope=%zz",
    );
    assert_error(&r, 400, "invalid_request");
    let big = format!(
        "grant_type=client_credentials&pad={}",
        "a".repeat(17 * 1024)
    );
    let r = w.token(Some(&basic(C1, S1)), &big);
    assert_error(&r, 413, "invalid_request");
    // charset parameter and case are fine.
    let r = w.call(
        "/token",
        "POST",
        Some("Application/X-WWW-Form-Urlencoded; charset=UTF-8"),
        Some(&basic(C1, S1)),
        "grant_type=client_credentials",
    );
    assert_eq!(r.status, 200);
}

#[test]
fn refresh_rotates_and_works_once() {
    let mut w = World::new();
    let auth = basic(C1, S1);
    let first = json(&w.token(
        Some(&auth),
        "grant_type=password&username=admin&password=admin&scope=default+PRODUCTION",
    ));
    let r1 = first["refresh_token"].as_str().unwrap().to_string();
    let r = w.token(
        Some(&auth),
        &format!("grant_type=refresh_token&refresh_token={r1}&scope=PRODUCTION"),
    );
    assert_eq!(r.status, 200);
    let second = json(&r);
    assert_eq!(second["scope"], "PRODUCTION");
    assert_ne!(second["refresh_token"], first["refresh_token"]);
    // The used refresh token is dead (and its replay kills the grant).
    let r = w.token(
        Some(&auth),
        &format!("grant_type=refresh_token&refresh_token={r1}"),
    );
    assert_error(&r, 400, "invalid_grant");
    let r2 = second["refresh_token"].as_str().unwrap();
    let r = w.token(
        Some(&auth),
        &format!("grant_type=refresh_token&refresh_token={r2}"),
    );
    assert_error(&r, 400, "invalid_grant");
}

#[test]
fn refresh_errors() {
    let mut w = World::new();
    let auth = basic(C1, S1);
    let t = json(&w.token(
        Some(&auth),
        "grant_type=password&username=admin&password=admin&scope=PRODUCTION",
    ));
    let rt = t["refresh_token"].as_str().unwrap().to_string();
    let r = w.token(
        Some(&auth),
        &format!("grant_type=refresh_token&refresh_token={rt}&scope=default"),
    );
    assert_error(&r, 400, "invalid_scope");
    let r = w.token(Some(&auth), "grant_type=refresh_token");
    assert_error(&r, 400, "invalid_request");
    let r = w.token(
        Some(&auth),
        "grant_type=refresh_token&refresh_token=not-a-token",
    );
    assert_error(&r, 400, "invalid_grant");
    // An access token is not a refresh token.
    let at = t["access_token"].as_str().unwrap();
    let r = w.token(
        Some(&auth),
        &format!("grant_type=refresh_token&refresh_token={at}"),
    );
    assert_error(&r, 400, "invalid_grant");
    // Expired.
    w.clock.advance(86400);
    let r = w.token(
        Some(&auth),
        &format!("grant_type=refresh_token&refresh_token={rt}"),
    );
    assert_error(&r, 400, "invalid_grant");
}

#[test]
fn revoke_either_token_revokes_the_pair_with_reference_headers() {
    let mut w = World::new();
    let auth = basic(C1, S1);
    let t = json(&w.token(
        Some(&auth),
        "grant_type=password&username=admin&password=admin",
    ));
    let at = t["access_token"].as_str().unwrap().to_string();
    let rt = t["refresh_token"].as_str().unwrap().to_string();
    // A wrong hint does not stop the lookup.
    let r = w.revoke(
        Some(&auth),
        &format!("token={at}&token_type_hint=refresh_token"),
    );
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    assert_eq!(r.header_value("authorizeduser"), Some("admin@carbon.super"));
    let ra = r.header_value("revokedaccesstoken").unwrap();
    let rr = r.header_value("revokedrefreshtoken").unwrap();
    assert_eq!((ra.len(), rr.len()), (32, 32));
    // Fingerprints, never the tokens themselves.
    assert!(!at.contains(ra) && !rt.contains(rr));
    assert_eq!(r.header_value("cache-control"), Some("no-store"));
    // The refresh token died with it.
    let r = w.token(
        Some(&auth),
        &format!("grant_type=refresh_token&refresh_token={rt}"),
    );
    assert_error(&r, 400, "invalid_grant");
    // Revoking again: 200 without the headers.
    let r = w.revoke(Some(&auth), &format!("token={rt}"));
    assert_eq!(r.status, 200);
    assert_eq!(r.header_value("revokedaccesstoken"), None);
    assert_eq!(r.header_value("authorizeduser"), None);
}

#[test]
fn application_token_revocation_names_the_client_owner() {
    let mut w = World::new();
    let auth = basic(C1, S1);
    let t = json(&w.token(Some(&auth), "grant_type=client_credentials"));
    let r = w.revoke(
        Some(&auth),
        &format!("token={}", t["access_token"].as_str().unwrap()),
    );
    assert_eq!(
        r.header_value("authorizeduser"),
        Some("owner1@carbon.super")
    );
    assert!(r.header_value("revokedaccesstoken").is_some());
    assert_eq!(r.header_value("revokedrefreshtoken"), None);
}

#[test]
fn another_clients_token_is_answered_like_an_unknown_one_and_survives() {
    let mut w = World::new();
    let t = json(&w.token(Some(&basic(C1, S1)), "grant_type=client_credentials"));
    let at = t["access_token"].as_str().unwrap().to_string();
    let theirs = w.revoke(Some(&basic(C2, S2)), &format!("token={at}"));
    let unknown = w.revoke(Some(&basic(C2, S2)), &format!("token={}", "x".repeat(64)));
    assert_eq!(theirs, unknown);
    // Still valid: C1 can revoke it.
    let r = w.revoke(Some(&basic(C1, S1)), &format!("token={at}"));
    assert!(r.header_value("revokedaccesstoken").is_some());
}

#[test]
fn revoke_errors() {
    let mut w = World::new();
    let r = w.revoke(Some(&basic(C1, S1)), "token_type_hint=access_token");
    assert_error(&r, 400, "invalid_request");
    let r = w.revoke(Some(&basic(C1, "bad")), "token=abc");
    assert_error(&r, 401, "invalid_client");
    let r = w.call("/revoke", "PUT", FORM, Some(&basic(C1, S1)), "token=abc");
    assert_error(&r, 405, "invalid_request");
    let r = w.revoke(Some(&basic(C1, S1)), "token=abc");
    assert_eq!((r.status, r.header_value("authorizeduser")), (200, None));
}

#[test]
fn expired_access_tokens_cannot_be_revoked_and_say_so_by_saying_nothing() {
    let mut w = World::new();
    let t = json(&w.token(Some(&basic(C1, S1)), "grant_type=client_credentials"));
    w.clock.advance(3600);
    let r = w.revoke(
        Some(&basic(C1, S1)),
        &format!("token={}", t["access_token"].as_str().unwrap()),
    );
    assert_eq!(
        (r.status, r.header_value("revokedaccesstoken")),
        (200, None)
    );
}

#[test]
fn secrets_are_verified_slowly_once_per_credential() {
    let mut w = World::new();
    let auth = basic(C1, S1);
    for _ in 0..3 {
        assert_eq!(
            w.token(Some(&auth), "grant_type=client_credentials").status,
            200
        );
    }
    assert_eq!(w.creds.len(), 1);
    w.token(
        Some(&auth),
        "grant_type=password&username=admin&password=admin",
    );
    assert_eq!(w.creds.len(), 2);
}

#[test]
fn introspection_shows_own_tokens_and_hides_the_rest() {
    let mut w = World::new();
    let t = json(&w.token(
        Some(&basic(C1, S1)),
        "grant_type=password&username=admin&password=admin&scope=PRODUCTION",
    ));
    let at = t["access_token"].as_str().unwrap().to_string();
    let rt = t["refresh_token"].as_str().unwrap().to_string();
    let r = w.call(
        "/introspect",
        "POST",
        FORM,
        Some(&basic(C1, S1)),
        &format!("token={at}&token_type_hint=refresh_token"),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header_value("cache-control"), Some("no-store"));
    let v = json(&r);
    assert_eq!(v["active"], true);
    assert_eq!(v["scope"], "PRODUCTION");
    assert_eq!(v["client_id"], C1);
    assert_eq!(v["username"], "admin@carbon.super");
    assert_eq!(v["sub"], "admin@carbon.super");
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["iat"], 1_700_000_000u64);
    assert_eq!(v["exp"], 1_700_000_000u64 + 3600);
    let v = json(&w.call(
        "/introspect",
        "POST",
        FORM,
        Some(&basic(C1, S1)),
        &format!("token={rt}"),
    ));
    assert_eq!(
        (
            v["active"].as_bool(),
            v["token_type"].as_str(),
            v["exp"].as_u64()
        ),
        (
            Some(true),
            Some("refresh_token"),
            Some(1_700_000_000 + 86400)
        )
    );
    // Another (non resource-server) client sees exactly {"active":false}.
    let r = w.call(
        "/introspect",
        "POST",
        FORM,
        Some(&basic(C2, S2)),
        &format!("token={at}"),
    );
    assert_eq!(String::from_utf8_lossy(&r.body), r#"{"active":false}"#);
    let r = w.call(
        "/introspect",
        "POST",
        FORM,
        Some(&basic(C1, S1)),
        "token=garbage",
    );
    assert_eq!(String::from_utf8_lossy(&r.body), r#"{"active":false}"#);
    // Revoked: inactive.
    w.revoke(Some(&basic(C1, S1)), &format!("token={at}"));
    let r = w.call(
        "/introspect",
        "POST",
        FORM,
        Some(&basic(C1, S1)),
        &format!("token={at}"),
    );
    assert_eq!(String::from_utf8_lossy(&r.body), r#"{"active":false}"#);
    // Errors as at /token.
    assert_error(
        &w.call("/introspect", "POST", FORM, Some(&basic(C1, S1)), ""),
        400,
        "invalid_request",
    );
    assert_error(
        &w.call(
            "/introspect",
            "POST",
            FORM,
            Some(&basic(C1, "x")),
            "token=a",
        ),
        401,
        "invalid_client",
    );
}

#[test]
fn a_resource_server_client_introspects_every_clients_tokens() {
    let h = hash_secret(b"rs-secret", b"0123456789abcdef", 10_000);
    let cfg = config().replacen(
        r#""clients": ["#,
        &format!(r#""clients": [ {{ "client_id": "rs", "secret_hash": "{h}", "grant_types": ["client_credentials"], "scopes": ["default"], "resource_server": true }},"#),
        1,
    );
    let mut w = World::new();
    w.cfg = TokenConfig::parse(cfg.as_bytes()).unwrap();
    let t = json(&w.token(Some(&basic(C2, S2)), "grant_type=client_credentials"));
    let v = json(&w.call(
        "/introspect",
        "POST",
        FORM,
        Some(&basic("rs", "rs-secret")),
        &format!("token={}", t["access_token"].as_str().unwrap()),
    ));
    assert_eq!(
        (
            v["active"].as_bool(),
            v["client_id"].as_str(),
            v["sub"].as_str()
        ),
        (Some(true), Some(C2), Some(C2))
    );
    assert!(v.get("username").is_none());
}

#[test]
fn metadata_is_derived_from_the_configuration() {
    let w = World::new();
    let r = envoy_oauth2::endpoint::metadata::metadata(&w.cfg, false, Some("evil.example"));
    let v = json(&r);
    assert_eq!(v["issuer"], "https://auth.example");
    assert_eq!(v["token_endpoint"], "https://auth.example/token");
    assert_eq!(v["revocation_endpoint"], "https://auth.example/revoke");
    assert_eq!(
        v["introspection_endpoint"],
        "https://auth.example/introspect"
    );
    assert_eq!(
        v["grant_types_supported"],
        serde_json::json!(["client_credentials", "password", "refresh_token"])
    );
    assert_eq!(
        v["scopes_supported"],
        serde_json::json!(["default", "PRODUCTION", "SANDBOX"])
    );
    assert_eq!(
        v["token_endpoint_auth_methods_supported"],
        serde_json::json!(["client_secret_basic", "client_secret_post"])
    );
    // `issuer_from_host`: a listed Host names the issuer (https off loopback);
    // any other Host gets an uncacheable error, never a document naming it.
    let mut cfg = w.cfg.clone();
    cfg.issuer = Issuer::FromHost {
        hosts: vec!["gw.example:8443".into()],
    };
    cfg.paths.token = "/oauth2/token".into();
    let v = json(&envoy_oauth2::endpoint::metadata::metadata(
        &cfg,
        false,
        Some("GW.example:8443"),
    ));
    assert_eq!(v["issuer"], "https://gw.example:8443");
    assert_eq!(v["token_endpoint"], "https://gw.example:8443/oauth2/token");
    for host in [Some("evil.example"), Some("gw.example:8443\"><"), None] {
        let r = envoy_oauth2::endpoint::metadata::metadata(&cfg, true, host);
        assert_eq!(r.status, 400, "{host:?}");
        assert_eq!(r.header_value("cache-control"), Some("no-store"));
        assert!(!String::from_utf8_lossy(&r.body).contains("evil"));
    }
}

#[test]
fn failed_client_authentication_is_throttled_per_client_id() {
    let mut w = World::new();
    w.cfg = TokenConfig::parse(
        config()
            .replacen(
                "{ \"realm\"",
                "{ \"throttle\": { \"max_failures\": 3, \"window_seconds\": 30 }, \"realm\"",
                1,
            )
            .as_bytes(),
    )
    .unwrap();
    for _ in 0..3 {
        assert_error(
            &w.token(Some(&basic(C1, "guess")), "grant_type=client_credentials"),
            401,
            "invalid_client",
        );
    }
    // Now even the right secret waits: 429 with Retry-After, RFC 6749-shaped.
    let r = w.token(Some(&basic(C1, S1)), "grant_type=client_credentials");
    assert_error(&r, 429, "temporarily_unavailable");
    assert_eq!(r.header_value("retry-after"), Some("30"));
    // Other clients are unaffected; the window ends.
    assert_eq!(
        w.token(Some(&basic(C2, S2)), "grant_type=client_credentials")
            .status,
        200
    );
    w.clock.advance(30);
    assert_eq!(
        w.token(Some(&basic(C1, S1)), "grant_type=client_credentials")
            .status,
        200
    );
}

#[test]
fn failed_passwords_are_throttled_per_username() {
    let mut w = World::new();
    w.cfg = TokenConfig::parse(
        config()
            .replacen(
                "{ \"realm\"",
                "{ \"throttle\": { \"max_failures\": 2, \"window_seconds\": 30 }, \"realm\"",
                1,
            )
            .as_bytes(),
    )
    .unwrap();
    let auth = basic(C1, S1);
    for _ in 0..2 {
        assert_error(
            &w.token(
                Some(&auth),
                "grant_type=password&username=admin&password=guess",
            ),
            400,
            "invalid_grant",
        );
    }
    // `admin` and `admin@carbon.super` are one user.
    let r = w.token(
        Some(&auth),
        "grant_type=password&username=admin%40carbon.super&password=admin",
    );
    assert_error(&r, 429, "temporarily_unavailable");
    assert!(r.header_value("retry-after").is_some());
    // The client itself is not throttled by its user's failures.
    assert_eq!(
        w.token(Some(&auth), "grant_type=client_credentials").status,
        200
    );
    w.clock.advance(31);
    assert_eq!(
        w.token(
            Some(&auth),
            "grant_type=password&username=admin&password=admin"
        )
        .status,
        200
    );
}

fn with_grace(seconds: u64) -> World {
    let mut w = World::new();
    w.cfg = TokenConfig::parse(
        config()
            .replacen(
                "{ \"realm\"",
                &format!("{{ \"refresh_token_grace_seconds\": {seconds}, \"realm\""),
                1,
            )
            .as_bytes(),
    )
    .unwrap();
    w
}

#[test]
fn grace_period_returns_the_same_pair_for_a_lost_answer_until_the_new_token_is_used() {
    let mut w = with_grace(5);
    let auth = basic(C1, S1);
    let t = json(&w.token(
        Some(&auth),
        "grant_type=password&username=admin&password=admin",
    ));
    let r1 = t["refresh_token"].as_str().unwrap().to_string();
    let first = json(&w.token(
        Some(&auth),
        &format!("grant_type=refresh_token&refresh_token={r1}"),
    ));
    w.clock.advance(2);
    // The client lost `first` and retries: the very same pair, still valid.
    let again = w.token(
        Some(&auth),
        &format!("grant_type=refresh_token&refresh_token={r1}"),
    );
    assert_eq!(again.status, 200);
    let again = json(&again);
    assert_eq!(again["access_token"], first["access_token"]);
    assert_eq!(again["refresh_token"], first["refresh_token"]);
    let active = |w: &mut World, t: &serde_json::Value| {
        json(&w.call(
            "/introspect",
            "POST",
            FORM,
            Some(&basic(C1, S1)),
            &format!("token={}", t.as_str().unwrap()),
        ))["active"]
            == true
    };
    assert!(active(&mut w, &first["access_token"]));
    // As often as needed within the period (a retry's own answer may be lost
    // too): the same pair each time.
    w.clock.advance(2);
    let again = json(&w.token(
        Some(&auth),
        &format!("grant_type=refresh_token&refresh_token={r1}"),
    ));
    assert_eq!(again["refresh_token"], first["refresh_token"]);
    // Once the new refresh token was used, the old one is reuse: the whole grant goes.
    let next = json(&w.token(
        Some(&auth),
        &format!(
            "grant_type=refresh_token&refresh_token={}",
            first["refresh_token"].as_str().unwrap()
        ),
    ));
    let r = w.token(
        Some(&auth),
        &format!("grant_type=refresh_token&refresh_token={r1}"),
    );
    assert_error(&r, 400, "invalid_grant");
    assert!(!active(&mut w, &next["access_token"]));
    assert!(!active(&mut w, &next["refresh_token"]));
}

#[test]
fn grace_period_ends_and_is_off_by_default() {
    for (grace, wait) in [(5u64, 5u64), (0, 0)] {
        let mut w = if grace > 0 {
            with_grace(grace)
        } else {
            World::new()
        };
        let auth = basic(C1, S1);
        let t = json(&w.token(
            Some(&auth),
            "grant_type=password&username=admin&password=admin",
        ));
        let r1 = t["refresh_token"].as_str().unwrap().to_string();
        let first = json(&w.token(
            Some(&auth),
            &format!("grant_type=refresh_token&refresh_token={r1}"),
        ));
        w.clock.advance(wait);
        let r = w.token(
            Some(&auth),
            &format!("grant_type=refresh_token&refresh_token={r1}"),
        );
        assert_error(&r, 400, "invalid_grant");
        // Reuse outside the grace period revokes the grant.
        let v = json(&w.call(
            "/introspect",
            "POST",
            FORM,
            Some(&auth),
            &format!("token={}", first["access_token"].as_str().unwrap()),
        ));
        assert_eq!(v["active"], false, "grace {grace}");
    }
}

#[test]
fn grace_period_never_resurrects_after_the_new_token_was_used() {
    let mut w = with_grace(30);
    let auth = basic(C1, S1);
    let t = json(&w.token(
        Some(&auth),
        "grant_type=password&username=admin&password=admin",
    ));
    let r1 = t["refresh_token"].as_str().unwrap().to_string();
    let first = json(&w.token(
        Some(&auth),
        &format!("grant_type=refresh_token&refresh_token={r1}"),
    ));
    let r2 = first["refresh_token"].as_str().unwrap().to_string();
    let second = json(&w.token(
        Some(&auth),
        &format!("grant_type=refresh_token&refresh_token={r2}"),
    ));
    assert!(second["access_token"].is_string());
    // r2 is the previous one and its pair is still current: a retry gets that pair.
    let r = json(&w.token(
        Some(&auth),
        &format!("grant_type=refresh_token&refresh_token={r2}"),
    ));
    assert_eq!(r["access_token"], second["access_token"]);
    // r1 is two rotations old: its derived pair is long gone, so it gets nothing
    // back, and as a used token of the chain it revokes the grant.
    let r = w.token(
        Some(&auth),
        &format!("grant_type=refresh_token&refresh_token={r1}"),
    );
    assert_error(&r, 400, "invalid_grant");
    let v = json(&w.call(
        "/introspect",
        "POST",
        FORM,
        Some(&auth),
        &format!("token={}", second["access_token"].as_str().unwrap()),
    ));
    assert_eq!(v, serde_json::json!({"active": false}));
}
