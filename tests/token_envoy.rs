//! The token endpoint inside a real Envoy (concurrency 2): the reference page's
//! curl flow on the demo configuration, request-shape errors, configuration
//! refusal, stats, and no lost or doubled grants under concurrent requests.

mod common;

use common::*;
use envoy_oauth2::config::secret_hash::hash_secret;
use std::sync::{Arc, Barrier};

const C1: &str = "IZsIi6HDbB5e8VKdZAnUi_fZ3f8a";
const S1: &str = "Gm0bJ6oWV8fC5OQLLlC6jslACW8a";
const C2: &str = "hSN3y4iQGUCUfvovakUq5Sq1CTQa";
const S2: &str = "X2doTVRxXD7Q_OlK9ksBPvRBBlUa";
/// The reference page's Basic header, stray trailing comma included.
const REFERENCE_BASIC: &str =
    "Basic SVpzSWk2SERiQjVlOFZLZFpBblVpX2ZaM2Y4YTpHbTBiSjZvV1Y4ZkM1T1FMTGxDNmpzbEFDVzhh,";
const REFERENCE_REVOKE_BASIC: &str =
    "Basic aFNOM3k0aVFHVUNVZnZvdmFrVXE1U3ExQ1RRYTpYMmRvVFZSeFhEN1FfT2xLOWtzQlB2UkJCbFVh";

/// The issuer of [`token_config`].
const ISSUER: &str = "https://auth.example.test";

fn token_config(extra: &str) -> String {
    let h = |s: &str| hash_secret(s.as_bytes(), b"fedcba9876543210", 10_000);
    format!(
        r#"{{"issuer":"{ISSUER}","realm":"test","store":{{"buckets":64,"grants_per_bucket":512}},
            "clients":[
              {{"client_id":"{C1}","secret_hash":"{}","grant_types":["client_credentials","password","refresh_token"],"scopes":["default","PRODUCTION","SANDBOX"]}},
              {{"client_id":"{C2}","secret_hash":"{}","grant_types":["client_credentials"],"scopes":["default"]}}],
            "users":[{{"username":"admin","password_hash":"{}","scopes":["default","PRODUCTION","SANDBOX"]}}]{extra}}}"#,
        h(S1),
        h(S2),
        h("admin")
    )
}

fn token_only(extra: &str) -> Envoy {
    Envoy::start_template(
        "token_only.yaml",
        &[("TOKEN_CONFIG", &token_config(extra))],
        2,
    )
}

#[test]
fn reference_page_flow_on_the_demo_configuration() {
    let e = Envoy::from_demo_config();
    let http = e.base_url("http");
    let auth = [("authorization", REFERENCE_BASIC)];
    // Password grant (user token with a refresh token).
    let r = post_form(
        &format!("{http}/token"),
        &[
            ("grant_type", "password"),
            ("username", "admin"),
            ("password", "admin"),
            ("scope", "PRODUCTION"),
        ],
        &auth,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.header("pragma"), Some("no-cache"));
    let v = r.json();
    assert_eq!(
        (
            v["token_type"].as_str(),
            v["expires_in"].as_u64(),
            v["scope"].as_str()
        ),
        (Some("Bearer"), Some(3600), Some("PRODUCTION"))
    );
    let refresh = v["refresh_token"].as_str().unwrap().to_string();
    // Renewal exactly as the page's curl command does it: HTTPS on the 8243 listener.
    let https = e.base_url("https");
    let body = format!("grant_type=refresh_token&refresh_token={refresh}&scope=PRODUCTION");
    let r = curl(
        "POST",
        &format!("{https}/token"),
        &[
            ("Authorization", REFERENCE_BASIC),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        Some(body.as_bytes()),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let renewed = r.json();
    assert_ne!(renewed["refresh_token"], v["refresh_token"]);
    // One more rotation: the first refresh token is now two rotations old.
    let r = post_form(
        &format!("{http}/token"),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", renewed["refresh_token"].as_str().unwrap()),
        ],
        &auth,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let renewed = r.json();
    // A refresh token can be used only once.
    let r = curl(
        "POST",
        &format!("{https}/token"),
        &[
            ("Authorization", REFERENCE_BASIC),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        Some(body.as_bytes()),
    );
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    // Replaying any used refresh token of the chain revoked the whole grant
    // (RFC 9700 reuse detection): the current access token is dead.
    let r = post_form(
        &format!("{http}/revoke"),
        &[("token", renewed["access_token"].as_str().unwrap())],
        &auth,
    );
    assert_eq!((r.status, r.header("revokedaccesstoken")), (200, None));
    let r = post_form(
        &format!("{http}/token"),
        &[
            ("grant_type", "password"),
            ("username", "admin"),
            ("password", "admin"),
        ],
        &auth,
    );
    let renewed = r.json();
    // Revoke: with the second client it is someone else's token: 200, no headers.
    let at = renewed["access_token"].as_str().unwrap();
    let r = post_form(
        &format!("{http}/revoke"),
        &[("token", at)],
        &[("authorization", REFERENCE_REVOKE_BASIC)],
    );
    assert_eq!((r.status, r.header("revokedaccesstoken")), (200, None));
    // With its own client: the pair goes, with the reference page's headers.
    let r = post_form(&format!("{http}/revoke"), &[("token", at)], &auth);
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    assert_eq!(r.header("authorizeduser"), Some("admin@carbon.super"));
    assert_eq!(r.header("revokedaccesstoken").map(str::len), Some(32));
    assert_eq!(r.header("revokedrefreshtoken").map(str::len), Some(32));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    // The refresh token of the pair died too.
    let r = post_form(
        &format!("{http}/token"),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", renewed["refresh_token"].as_str().unwrap()),
        ],
        &auth,
    );
    assert_eq!(r.json()["error"], "invalid_grant");
    // Client credentials with the other client.
    let r = post_form(
        &format!("{http}/token"),
        &[("grant_type", "client_credentials")],
        &[("authorization", REFERENCE_REVOKE_BASIC)],
    );
    assert_eq!(
        (r.status, r.json()["scope"].as_str()),
        (200, Some("default"))
    );
    assert!(r.json().get("refresh_token").is_none());
    // Nothing secret reached the log.
    let log = e.log();
    for secret in [S1, S2, at, refresh.as_str()] {
        assert!(!log.contains(secret), "log leaks a secret");
    }
}

#[test]
fn request_shape_errors_through_envoy() {
    let e = token_only("");
    let url = format!("{}/token", e.base_url("http"));
    let auth = basic_auth(C1, S1);
    let r = get(&url, &[]);
    assert_eq!((r.status, r.header("allow")), (405, Some("POST")));
    assert_eq!(r.json()["error"], "invalid_request");
    let r = request(
        "POST",
        &url,
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        Some(b"{}"),
    );
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (400, Some("invalid_request"))
    );
    let r = post_body(
        &url,
        "grant_type=client_credentials&x=%G1",
        &[("authorization", &auth)],
    );
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (400, Some("invalid_request"))
    );
    // Over the 16 KiB default, declared up front and streamed without a length.
    let big = format!("grant_type=client_credentials&pad={}", "a".repeat(20_000));
    let r = post_body(&url, &big, &[("authorization", &auth)]);
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (413, Some("invalid_request"))
    );
    let r = curl(
        "POST",
        &url,
        &[
            ("authorization", &auth),
            ("content-type", "application/x-www-form-urlencoded"),
            ("transfer-encoding", "chunked"),
        ],
        Some(big.as_bytes()),
    );
    assert_eq!(r.status, 413, "{}", r.body);
    // Empty POST body: a missing grant_type.
    let r = request(
        "POST",
        &url,
        &[
            ("authorization", &auth),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        None,
    );
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (400, Some("invalid_request"))
    );
    let r = post_form(
        &url,
        &[("grant_type", "client_credentials")],
        &[("authorization", &basic_auth(C1, "nope"))],
    );
    assert_eq!(
        (r.status, r.header("www-authenticate")),
        (401, Some("Basic realm=\"test\""))
    );
    let r = post_form(
        &url,
        &[("grant_type", "urn:magic")],
        &[("authorization", &auth)],
    );
    assert_eq!(r.json()["error"], "unsupported_grant_type");
    let r = post_form(
        &url,
        &[
            ("grant_type", "password"),
            ("username", "admin"),
            ("password", "admin"),
        ],
        &[("authorization", &basic_auth(C2, S2))],
    );
    assert_eq!(r.json()["error"], "unauthorized_client");
    // Other paths are not the filter's business.
    let r = get(&format!("{}/api/x", e.base_url("http")), &[]);
    assert_eq!((r.status, r.body.as_str()), (200, "upstream-ok"));
    // Errors are counted by code.
    assert!(e.counter("wasmcustom.oauth2.token.error.invalid_request") >= 5);
    assert_eq!(e.counter("wasmcustom.oauth2.token.error.invalid_client"), 1);
    assert_eq!(
        e.counter("wasmcustom.oauth2.token.error.unsupported_grant_type"),
        1
    );
    assert_eq!(
        e.counter("wasmcustom.oauth2.token.error.unauthorized_client"),
        1
    );
}

#[test]
fn configured_paths_and_body_limit_apply() {
    let e = token_only(
        r#","paths":{"token":"/oauth2/token","revoke":"/oauth2/revoke"},"max_body_bytes":1024"#,
    );
    let base = e.base_url("http");
    let auth = basic_auth(C1, S1);
    let r = post_form(
        &format!("{base}/oauth2/token?x=1"),
        &[("grant_type", "client_credentials")],
        &[("authorization", &auth)],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = post_form(
        &format!("{base}/oauth2/token"),
        &[
            ("grant_type", "client_credentials"),
            ("pad", &"b".repeat(1100)),
        ],
        &[("authorization", &auth)],
    );
    assert_eq!(r.status, 413);
    // The default path is now an ordinary route.
    let r = post_form(
        &format!("{base}/token"),
        &[("grant_type", "client_credentials")],
        &[("authorization", &auth)],
    );
    assert_eq!(r.status, 404);
}

fn refused(config: &str) -> String {
    match Envoy::try_start_template("token_only.yaml", &[("TOKEN_CONFIG", config)], 1) {
        Ok(_) => panic!("Envoy accepted a bad configuration: {config}"),
        Err(log) => log,
    }
}

#[test]
fn bad_configurations_are_refused_with_a_line_naming_the_field() {
    let good = token_config("");
    let cases = [
        (
            good.replacen("\"realm\"", "\"colour\":\"red\",\"realm\"", 1),
            "field `colour`",
        ),
        (
            good.replacen("\"buckets\":64", "\"buckets\":\"many\"", 1),
            "field `store.buckets`",
        ),
        (
            good.replacen("\"buckets\":64", "\"buckets\":0", 1),
            "field `store.buckets`",
        ),
        (
            good.replacen(
                "\"scopes\":[\"default\"]}]",
                "\"scopes\":[\"default\"],\"default_scope\":\"SANDBOX\"}]",
                1,
            ),
            "field `clients[1].default_scope`",
        ),
        (
            good.replacen("$pbkdf2-sha256$", "$plain$", 1),
            "field `clients[0].secret_hash`",
        ),
        (r#"{"users":[]}"#.to_string(), "missing field `clients`"),
    ];
    for (config, needle) in cases {
        let log = refused(&config);
        let line = log
            .lines()
            .find(|l| l.contains("invalid plugin configuration"))
            .unwrap_or_else(|| panic!("no config error line for {needle}:\n{log}"));
        assert!(line.contains(needle), "{needle} not in {line}");
    }
}

/// Issue 17 (6): the issuer is configuration. A token filter without one (and
/// without `issuer_from_host`) is refused by Envoy with a line naming `issuer`;
/// so are an http issuer off loopback and a `jwt.issuer`-style second source.
#[test]
fn a_token_filter_without_an_issuer_is_refused_naming_the_field() {
    let good = token_config("");
    let issuer_field = format!(r#""issuer":"{ISSUER}","#);
    let cases = [
        (
            good.replacen(&issuer_field, "", 1),
            "field `issuer`: required",
        ),
        (
            good.replacen(ISSUER, "http://auth.example.test", 1),
            "field `issuer`: plain http",
        ),
        (
            good.replacen(&issuer_field, r#""issuer_from_host":true,"#, 1),
            "field `issuer_hosts`",
        ),
        (
            good.replacen(
                &issuer_field,
                &format!(r#"{issuer_field}"issuer_from_host":true,"issuer_hosts":["a.test"],"#),
                1,
            ),
            "field `issuer_from_host`",
        ),
    ];
    for (config, needle) in cases {
        let log = refused(&config);
        let line = log
            .lines()
            .find(|l| l.contains("invalid plugin configuration"))
            .unwrap_or_else(|| panic!("no config error line for {needle}:\n{log}"));
        assert!(line.contains(needle), "{needle} not in {line}");
    }
}

/// Issue 17 (6): with `issuer_from_host`, a listed Host names the issuer; any
/// other Host gets an uncacheable 400 that never repeats it, so no cache can
/// hand out a document pointing clients' secrets at an attacker's host.
#[test]
fn issuer_from_host_builds_metadata_for_listed_hosts_only() {
    let config = token_config("").replacen(
        &format!(r#""issuer":"{ISSUER}","#),
        r#""issuer_from_host":true,"issuer_hosts":["auth.example.test","127.0.0.1"],"#,
        1,
    );
    let e = Envoy::start_template("token_only.yaml", &[("TOKEN_CONFIG", &config)], 2);
    let url = format!(
        "{}/.well-known/oauth-authorization-server",
        e.base_url("http")
    );
    let r = get(&url, &[("host", "AUTH.example.test")]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["issuer"], "https://auth.example.test");
    assert_eq!(
        r.json()["token_endpoint"],
        "https://auth.example.test/token"
    );
    // Plain http only on a loopback host.
    let r = get(&url, &[("host", "127.0.0.1")]);
    assert_eq!(r.json()["issuer"], "http://127.0.0.1");
    for host in [
        "evil.example",
        "auth.example.test.evil.example",
        "auth.example.test:8443",
    ] {
        let r = get(&url, &[("host", host)]);
        assert_eq!(r.status, 400, "{host}: {}", r.body);
        assert_eq!(r.header("cache-control"), Some("no-store"), "{host}");
        assert!(!r.body.contains(host), "{host}: {}", r.body);
        assert!(!r.body.contains("evil"), "{host}: {}", r.body);
    }
    // /authorize: no page, and so no redirect naming an issuer, for such a Host.
    let authorize = format!(
        "{}/authorize?response_type=code&client_id={C1}",
        e.base_url("http")
    );
    let r = get(&authorize, &[("host", "evil.example")]);
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.header("location").is_none());
    assert!(
        r.body.contains("does not answer for that host"),
        "{}",
        r.body
    );
    assert!(!r.body.contains("evil"), "{}", r.body);
}

#[test]
fn stats_count_issuance_by_grant_type_refreshes_and_revocations() {
    let e = token_only("");
    let url = format!("{}/token", e.base_url("http"));
    let auth = basic_auth(C1, S1);
    let h = [("authorization", auth.as_str())];
    for _ in 0..3 {
        assert_eq!(
            post_form(&url, &[("grant_type", "client_credentials")], &h).status,
            200
        );
    }
    let t = post_form(
        &url,
        &[
            ("grant_type", "password"),
            ("username", "admin"),
            ("password", "admin"),
        ],
        &h,
    )
    .json();
    let n = post_form(
        &url,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", t["refresh_token"].as_str().unwrap()),
        ],
        &h,
    )
    .json();
    let r = post_form(
        &format!("{}/revoke", e.base_url("http")),
        &[("token", n["refresh_token"].as_str().unwrap())],
        &h,
    );
    assert!(r.header("revokedrefreshtoken").is_some());
    post_form(
        &format!("{}/revoke", e.base_url("http")),
        &[("token", "unknown")],
        &h,
    );
    // A second grant whose used refresh token comes back: reuse, counted.
    let t2 = post_form(
        &url,
        &[
            ("grant_type", "password"),
            ("username", "admin"),
            ("password", "admin"),
        ],
        &h,
    )
    .json();
    let used = [
        ("grant_type", "refresh_token"),
        ("refresh_token", t2["refresh_token"].as_str().unwrap()),
    ];
    assert_eq!(post_form(&url, &used, &h).status, 200);
    assert_eq!(post_form(&url, &used, &h).status, 400);
    assert_eq!(
        e.counter("wasmcustom.oauth2.token.issued.client_credentials"),
        3
    );
    assert_eq!(e.counter("wasmcustom.oauth2.token.issued.password"), 2);
    assert_eq!(e.counter("wasmcustom.oauth2.token.issued.refresh_token"), 2);
    assert_eq!(
        e.counter("wasmcustom.oauth2.token.refresh_reuse_revoked"),
        1
    );
    assert_eq!(e.counter("wasmcustom.oauth2.token.error.invalid_grant"), 1);
    assert_eq!(e.counter("wasmcustom.oauth2.revoke.revoked"), 1);
    assert_eq!(e.counter("wasmcustom.oauth2.revoke.unknown"), 1);
}

fn concurrently<T: Send + 'static>(
    n: usize,
    f: impl Fn(usize) -> T + Send + Sync + 'static,
) -> Vec<T> {
    let f = Arc::new(f);
    let barrier = Arc::new(Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let (f, barrier) = (f.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                f(i)
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("worker thread"))
        .collect()
}

#[test]
fn concurrent_refreshes_of_one_token_have_exactly_one_winner() {
    let e = token_only("");
    let url = format!("{}/token", e.base_url("http"));
    let auth = basic_auth(C1, S1);
    let t = post_form(
        &url,
        &[
            ("grant_type", "password"),
            ("username", "admin"),
            ("password", "admin"),
        ],
        &[("authorization", &auth)],
    )
    .json();
    let refresh = t["refresh_token"].as_str().unwrap().to_string();
    let results = concurrently(64, move |_| {
        let r = post_form(
            &url,
            &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
            &[("authorization", &auth)],
        );
        (r.status, r.json()["error"].as_str().map(String::from))
    });
    let wins = results.iter().filter(|(s, _)| *s == 200).count();
    assert_eq!(wins, 1, "{results:?}");
    assert!(
        results
            .iter()
            .filter(|(s, _)| *s != 200)
            .all(|(s, e)| *s == 400 && e.as_deref() == Some("invalid_grant")),
        "{results:?}"
    );
}

#[test]
fn concurrent_issuance_loses_nothing() {
    // 16 buckets of up to 1024 grants: ~625 grants each by the end, so every
    // issuance rewrites a large bucket that the other worker is likely writing too.
    let config = token_config("").replacen(
        r#""buckets":64,"grants_per_bucket":512"#,
        r#""buckets":16,"grants_per_bucket":1024"#,
        1,
    );
    assert!(config.contains(r#""buckets":16"#));
    let e = Envoy::start_template("token_only.yaml", &[("TOKEN_CONFIG", &config)], 2);
    let base = e.base_url("http");
    let auth = basic_auth(C1, S1);
    // 16 threads x 625 requests, each on its own connection, over both workers.
    let url = format!("{base}/token");
    let per_thread = concurrently(16, move |_| {
        (0..625)
            .map(|_| {
                let r = post_form(
                    &url,
                    &[("grant_type", "client_credentials")],
                    &[("authorization", &auth)],
                );
                assert_eq!(r.status, 200, "{}", r.body);
                r.json()["access_token"].as_str().unwrap().to_string()
            })
            .collect::<Vec<_>>()
    });
    let tokens: Vec<String> = per_thread.into_iter().flatten().collect();
    let distinct: std::collections::HashSet<&String> = tokens.iter().collect();
    assert_eq!((tokens.len(), distinct.len()), (10_000, 10_000));
    // Every one is in the store (a write lost to a CAS race would be inactive).
    let tokens = Arc::new(tokens);
    let lost: usize = concurrently(8, move |i| {
        let auth = basic_auth(C1, S1);
        tokens
            .iter()
            .skip(i)
            .step_by(8)
            .filter(|t| {
                post_form(
                    &format!("{base}/introspect"),
                    &[("token", t)],
                    &[("authorization", &auth)],
                )
                .json()["active"]
                    != true
            })
            .count()
    })
    .into_iter()
    .sum();
    assert_eq!(lost, 0);
    let retries = e.counter("wasmcustom.oauth2.store.cas_retries");
    eprintln!("CAS retries during 10,000 concurrent issuances: {retries}");
    assert!(
        retries > 0,
        "no CAS conflict happened: the test proved nothing"
    );
}

#[test]
fn introspection_and_metadata_through_envoy() {
    let e = token_only(r#","paths":{"introspect":"/oauth2/introspect"}"#);
    let base = e.base_url("http");
    let auth = basic_auth(C1, S1);
    let t = post_form(
        &format!("{base}/token"),
        &[("grant_type", "client_credentials"), ("scope", "SANDBOX")],
        &[("authorization", &auth)],
    )
    .json();
    let at = t["access_token"].as_str().unwrap();
    let r = post_form(
        &format!("{base}/oauth2/introspect"),
        &[("token", at)],
        &[("authorization", &auth)],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(
        (
            v["active"].as_bool(),
            v["scope"].as_str(),
            v["client_id"].as_str(),
            v["token_type"].as_str()
        ),
        (Some(true), Some("SANDBOX"), Some(C1), Some("Bearer"))
    );
    let r = post_form(
        &format!("{base}/oauth2/introspect"),
        &[("token", at)],
        &[("authorization", &basic_auth(C2, S2))],
    );
    assert_eq!(r.body, r#"{"active":false}"#);
    assert_eq!(e.counter("wasmcustom.oauth2.introspect.active"), 1);
    assert_eq!(e.counter("wasmcustom.oauth2.introspect.inactive"), 1);
    // Metadata follows the live configuration, including the changed path, and
    // names the configured issuer whatever the Host.
    let r = get(
        &format!("{base}/.well-known/oauth-authorization-server"),
        &[("host", "evil.example")],
    );
    assert_eq!(r.status, 200);
    assert!(!r.body.contains("evil"), "{}", r.body);
    let m = r.json();
    assert_eq!(m["issuer"], ISSUER);
    assert_eq!(
        m["introspection_endpoint"],
        format!("{ISSUER}/oauth2/introspect").as_str()
    );
    assert_eq!(m["token_endpoint"], format!("{ISSUER}/token").as_str());
    assert_eq!(
        m["grant_types_supported"],
        serde_json::json!(["client_credentials", "password", "refresh_token"])
    );
    let r = request(
        "POST",
        &format!("{base}/.well-known/oauth-authorization-server"),
        &[],
        Some(b""),
    );
    assert_eq!(r.status, 405);
}

#[test]
fn concurrent_revoke_and_refresh_never_leave_a_live_token_of_a_revoked_grant() {
    let e = token_only("");
    let base = e.base_url("http");
    let auth = basic_auth(C1, S1);
    let mut revoked_first = 0;
    let mut refreshed_first = 0;
    for round in 0..40 {
        let t = post_form(
            &format!("{base}/token"),
            &[
                ("grant_type", "password"),
                ("username", "admin"),
                ("password", "admin"),
            ],
            &[("authorization", &auth)],
        )
        .json();
        let (at, rt) = (
            t["access_token"].as_str().unwrap().to_string(),
            t["refresh_token"].as_str().unwrap().to_string(),
        );
        // Revoke with the access token half the time, the refresh token otherwise.
        let revoke_with = if round % 2 == 0 {
            at.clone()
        } else {
            rt.clone()
        };
        let (b, a) = (base.clone(), auth.clone());
        let mut results = concurrently(2, move |i| {
            if i == 0 {
                let r = post_form(
                    &format!("{b}/token"),
                    &[("grant_type", "refresh_token"), ("refresh_token", &rt)],
                    &[("authorization", &a)],
                );
                (
                    r.status,
                    r.header("revokedaccesstoken").is_some(),
                    if r.status == 200 {
                        Some(r.json())
                    } else {
                        None
                    },
                )
            } else {
                let r = post_form(
                    &format!("{b}/revoke"),
                    &[("token", &revoke_with)],
                    &[("authorization", &a)],
                );
                (r.status, r.header("revokedaccesstoken").is_some(), None)
            }
        });
        let (revoke, refresh) = (results.pop().unwrap(), results.pop().unwrap());
        let introspect = |tok: &str| {
            post_form(
                &format!("{base}/introspect"),
                &[("token", tok)],
                &[("authorization", &auth)],
            )
            .json()["active"]
                == true
        };
        assert!(!introspect(&at), "the old access token survived");
        if revoke.1 {
            // The grant was revoked: nothing of it may live, whatever the refresh answered.
            if let Some(n) = &refresh.2 {
                assert!(
                    !introspect(n["access_token"].as_str().unwrap()),
                    "new access token of a revoked grant"
                );
                assert!(
                    !introspect(n["refresh_token"].as_str().unwrap()),
                    "new refresh token of a revoked grant"
                );
            }
            revoked_first += 1;
        } else {
            // The revocation found nothing: the refresh won and rotated the presented token away.
            assert_eq!(refresh.0, 200);
            refreshed_first += 1;
        }
    }
    assert_eq!(revoked_first + refreshed_first, 40);
}

#[test]
fn brute_force_is_throttled_through_envoy() {
    let e = token_only(r#","throttle":{"max_failures":3,"window_seconds":60}"#);
    let url = format!("{}/token", e.base_url("http"));
    for _ in 0..3 {
        assert_eq!(
            post_form(
                &url,
                &[("grant_type", "client_credentials")],
                &[("authorization", &basic_auth(C1, "guess"))]
            )
            .status,
            401
        );
    }
    // Shared by both workers: the right secret now waits too, on any connection.
    for _ in 0..4 {
        let r = post_form(
            &url,
            &[("grant_type", "client_credentials")],
            &[("authorization", &basic_auth(C1, S1))],
        );
        assert_eq!(
            (r.status, r.json()["error"].as_str()),
            (429, Some("temporarily_unavailable"))
        );
        assert!(r
            .header("retry-after")
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(false, |s| s > 0 && s <= 60));
    }
    assert_eq!(
        post_form(
            &url,
            &[("grant_type", "client_credentials")],
            &[("authorization", &basic_auth(C2, S2))]
        )
        .status,
        200
    );
    assert_eq!(e.counter("wasmcustom.oauth2.throttled"), 4);
}
