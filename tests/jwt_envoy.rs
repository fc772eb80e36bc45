//! JWT access tokens on real Envoy: the demo (one client gets JWTs) with the
//! project's guard, Envoy's own jwt_authn with `envoy/jwt-authn.yaml`, and
//! configurations with a bad key refused with a line naming the field.

mod common;

use common::authorize::{form_token, pct_decode, VERIFIER};
use common::jwt::{b64, hs256, parts, resigned, TestKey};
use common::*;
use envoy_oauth2::oauth::pkce::s256_challenge;
use serde_json::json;

const OPAQUE_ID: &str = "IZsIi6HDbB5e8VKdZAnUi_fZ3f8a";
const OPAQUE_SECRET: &str = "Gm0bJ6oWV8fC5OQLLlC6jslACW8a";
const JWT_ID: &str = "hSN3y4iQGUCUfvovakUq5Sq1CTQa";
const JWT_SECRET: &str = "X2doTVRxXD7Q_OlK9ksBPvRBBlUa";

fn token(base: &str, id: &str, secret: &str) -> String {
    let auth = basic_auth(id, secret);
    let r = post_form(
        &format!("{base}/token"),
        &[("grant_type", "client_credentials")],
        &[("authorization", auth.as_str())],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["access_token"].as_str().unwrap().to_string()
}

fn call(url: &str, token: &str) -> Resp {
    let auth = format!("Bearer {token}");
    get(url, &[("authorization", auth.as_str())])
}

fn assert_invalid_token(r: &Resp, what: &str) {
    assert_eq!(r.status, 401, "{what}: {}", r.body);
    let c = r.header("www-authenticate").unwrap_or("");
    assert!(c.contains(r#"error="invalid_token""#), "{what}: {c}");
}

#[test]
fn the_demo_issues_jwts_to_its_second_client_and_the_guard_checks_them() {
    let e = Envoy::from_demo_config();
    let base = e.base_url("http");
    let api = format!("{base}/api/hello");
    let opaque = token(&base, OPAQUE_ID, OPAQUE_SECRET);
    assert!(!opaque.contains('.'));
    let jwt = token(&base, JWT_ID, JWT_SECRET);
    let (h, c) = parts(&jwt);
    assert_eq!(h["typ"], "at+jwt");
    assert_eq!(h["kid"], "demo-es256");
    assert_eq!(c["sub"], JWT_ID);
    assert_eq!(c["aud"], "demo-api");

    // JWKS and metadata.
    let k = get(&format!("{base}/.well-known/jwks.json"), &[]);
    assert_eq!(k.status, 200);
    assert_eq!(k.header("cache-control"), Some("max-age=300"));
    assert_eq!(k.json()["keys"][0]["kid"], "demo-es256");
    assert!(k.json()["keys"][0].get("d").is_none());
    let m = get(
        &format!("{base}/.well-known/oauth-authorization-server"),
        &[],
    )
    .json();
    assert!(m["jwks_uri"]
        .as_str()
        .unwrap()
        .ends_with("/.well-known/jwks.json"));

    // Both formats pass; the upstream sees the identity.
    for t in [&opaque, &jwt] {
        let r = call(&api, t);
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let seen = call(&api, &jwt).json();
    assert_eq!(seen["x-auth-client-id"], JWT_ID);

    // Bad tokens, each 401 invalid_token, and Envoy stays up.
    let (_, claims) = parts(&jwt);
    let payload = claims.to_string();
    let jwk = k.json()["keys"][0].to_string();
    let stranger = TestKey::new("demo-es256");
    let mut tampered = jwt.clone().into_bytes();
    let n = tampered.len() - 3;
    tampered[n] = if tampered[n] == b'A' { b'B' } else { b'A' };
    let bad = [
        ("tampered", String::from_utf8(tampered).unwrap()),
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(r#"{"alg":"none","typ":"at+jwt","kid":"demo-es256"}"#),
                b64(&payload)
            ),
        ),
        (
            "HS256 with the public key",
            hs256(
                r#"{"alg":"HS256","typ":"at+jwt","kid":"demo-es256"}"#,
                &payload,
                jwk.as_bytes(),
            ),
        ),
        (
            "another key",
            stranger.sign_raw(&stranger.header(), &payload),
        ),
        ("unknown kid", {
            let k = TestKey::new("nope");
            k.sign_raw(&k.header(), &payload)
        }),
        (
            "malformed base64",
            format!("{}.{}!.x", b64(stranger.header()), b64(&payload)),
        ),
        (
            "malformed JSON",
            stranger.sign_raw(&stranger.header(), "{\"iss\""),
        ),
        (
            "duplicate keys",
            stranger.sign_raw(
                &stranger.header(),
                &payload.replacen('{', "{\"sub\":\"x\",", 1),
            ),
        ),
        (
            "over 8 KiB",
            resigned(&stranger, &jwt, |c| c["pad"] = json!("x".repeat(9000))),
        ),
    ];
    for (what, t) in &bad {
        assert_invalid_token(&call(&api, t), what);
    }
    assert_eq!(call(&api, &jwt).status, 200);

    // /introspect and /revoke take the JWT; after revocation the guard refuses it.
    let auth = basic_auth(JWT_ID, JWT_SECRET);
    let h = [("authorization", auth.as_str())];
    let i = post_form(&format!("{base}/introspect"), &[("token", &jwt)], &h).json();
    assert_eq!(i["active"], true);
    let r = post_form(&format!("{base}/revoke"), &[("token", &jwt)], &h);
    assert_eq!(r.status, 200);
    assert!(r.header("revokedaccesstoken").is_some());
    assert_invalid_token(&call(&api, &jwt), "revoked");
    assert_eq!(call(&api, &opaque).status, 200);
    assert!(e.counter("wasmcustom.oauth2.guard.jwt_verified") >= 1);
}

/// `envoy/jwt-authn.yaml`, test-safe: admin on port 0, the listener on a unix
/// socket (which the JWKS cluster dials) plus TCP port 0.
/// Issue 17 (6): the demo names one issuer, from its configuration, everywhere:
/// the metadata (whatever Host the request carries), the JWTs' `iss`, and RFC
/// 9207 `iss` on /authorize redirects.
#[test]
fn the_demo_names_its_configured_issuer_everywhere() {
    const ISSUER: &str = "http://127.0.0.1:8280";
    let e = Envoy::from_demo_config();
    let base = e.base_url("http");
    let url = format!("{base}/.well-known/oauth-authorization-server");
    for host in [None, Some("evil.example")] {
        let headers: Vec<(&str, &str)> = host.iter().map(|h| ("host", *h)).collect();
        let r = get(&url, &headers);
        assert_eq!(r.status, 200, "{host:?}: {}", r.body);
        assert!(!r.body.contains("evil"), "{host:?}: {}", r.body);
        let m = r.json();
        assert_eq!(m["issuer"], ISSUER, "{host:?}");
        assert_eq!(m["token_endpoint"], format!("{ISSUER}/token"));
        assert_eq!(m["authorization_response_iss_parameter_supported"], true);
    }
    let (_, claims) = parts(&token(&base, JWT_ID, JWT_SECRET));
    assert_eq!(claims["iss"], ISSUER);
    // A browser signs in with the demo's public client: the redirect names it too.
    let page = get(
        &format!(
            "{base}/authorize?{}",
            form_encode(&[
                ("response_type", "code"),
                ("client_id", "demo-spa"),
                ("redirect_uri", "http://127.0.0.1:8280/callback"),
                ("code_challenge", &s256_challenge(VERIFIER)),
                ("code_challenge_method", "S256"),
            ])
        ),
        &[("host", "evil.example")],
    );
    assert_eq!(page.status, 200, "{}", page.body);
    let cookie = page
        .header("set-cookie")
        .and_then(|c| c.split(';').next())
        .unwrap_or_default()
        .to_string();
    let r = post_form(
        &format!("{base}/authorize"),
        &[
            ("form_token", &form_token(&page)),
            ("username", "admin"),
            ("password", "admin"),
            ("action", "approve"),
        ],
        &[("cookie", &cookie), ("host", "evil.example")],
    );
    assert_eq!(r.status, 303, "{}", r.body);
    let location = r.header("location").unwrap_or_default();
    let iss = location
        .split(['?', '&'])
        .find_map(|p| p.strip_prefix("iss="))
        .map(pct_decode);
    assert_eq!(iss.as_deref(), Some(ISSUER), "{location}");
}

fn jwt_authn_template() -> String {
    let src = std::fs::read_to_string(repo_root().join("envoy/jwt-authn.yaml")).unwrap();
    let addr = "address: { socket_address: { address: 127.0.0.1, port_value: 8380 } }";
    assert_eq!(
        src.matches(addr).count(),
        2,
        "envoy/jwt-authn.yaml changed: update tests/jwt_envoy.rs"
    );
    let pipe = r#"address: { pipe: { path: "{{RUN_DIR}}/token.sock" } }"#;
    let listener = format!(
        "{pipe}\n    additional_addresses: [ {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }} }} ]"
    );
    let y = src.replacen(addr, &listener, 1).replacen(addr, pipe, 1);
    let y = y.replace("port_value: 9902 }", "port_value: 0 }");
    y.replace(
        "filename: target/wasm32-wasip1/release/envoy_oauth2.wasm",
        "filename: {{WASM}}",
    )
}

#[test]
fn envoy_jwt_authn_validates_these_jwts_from_the_jwks_endpoint() {
    let e = Envoy::start(&jwt_authn_template(), 2);
    let base = e.base_url("http");
    let api = format!("{base}/api/hello");
    let jwt = token(&base, "jwt-client", "jwt-client-secret");
    let no_token = get(&api, &[]);
    assert_eq!(no_token.status, 401, "{}", no_token.body);
    // The first request makes jwt_authn fetch the JWKS through the cluster.
    let r = call(&api, &jwt);
    assert_eq!(r.status, 200, "{}", r.body);
    let mut tampered = jwt.clone().into_bytes();
    let n = tampered.len() - 3;
    tampered[n] = if tampered[n] == b'A' { b'B' } else { b'A' };
    assert_eq!(
        call(&api, &String::from_utf8(tampered).unwrap()).status,
        401
    );
    let stranger = TestKey::new("demo-es256");
    let (_, claims) = parts(&jwt);
    let forged = stranger.sign_raw(&stranger.header(), &claims.to_string());
    assert_eq!(call(&api, &forged).status, 401);
    assert_eq!(call(&api, &jwt).status, 200);
    // The trade-off, shown: jwt_authn alone does not see a revocation.
    let auth = basic_auth("jwt-client", "jwt-client-secret");
    let r = post_form(
        &format!("{base}/revoke"),
        &[("token", &jwt)],
        &[("authorization", auth.as_str())],
    );
    assert!(r.header("revokedaccesstoken").is_some());
    assert_eq!(
        call(&api, &jwt).status,
        200,
        "jwt_authn cannot know about revocations"
    );
}

#[test]
fn a_missing_or_malformed_key_is_refused_with_a_line_naming_the_field() {
    let demo = demo_config_template();
    let pem_line = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgeBToywPbeBtZPusu";
    assert!(demo.contains(pem_line));
    let cases = [
        (
            demo.replacen(
                pem_line,
                "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgeBToywPbeBtZPusX",
                1,
            ),
            "field `jwt.keys[0]",
        ),
        (
            demo.replacen(
                r#""keys": [ { "kid": "demo-es256","#,
                r#""keys": [ { "kid": "demo-es256", "jwk": {"kty":"EC"},"#,
                1,
            ),
            "field `jwt.keys[0]",
        ),
        (
            demo.replacen(
                r#""access_token_format": "jwt","#,
                r#""access_token_format": "jwt", "audience": [],"#,
                1,
            ),
            "field `clients[1].audience`",
        ),
        (
            demo.replacen(
                r#""audiences": ["demo-api"],"#,
                r#""audiences": ["demo-api"], "keys": [], "x": 1,"#,
                1,
            ),
            "field `jwt.",
        ),
        (
            demo.replacen(
                r#""keys": [ { "jwk": {"kty":"EC","crv":"P-256","x":"-_2g"#,
                r#""keys": [ { "jwk": {"kty":"EC","crv":"P-256","x":"-_3g"#,
                1,
            ),
            "field `jwt.keys[0]",
        ),
    ];
    for (config, needle) in &cases {
        assert_ne!(config, &demo, "{needle}: the edit did not apply");
        let log = match Envoy::try_start(config, 1) {
            Ok(_) => panic!("Envoy accepted a bad configuration ({needle})"),
            Err(log) => log,
        };
        let line = log
            .lines()
            .find(|l| l.contains("invalid plugin configuration"))
            .unwrap_or_else(|| panic!("no config error line for {needle}:\n{log}"));
        assert!(line.contains(needle), "{needle} not in {line}");
        assert!(
            !line.contains(&pem_line[20..]),
            "key material in the log: {line}"
        );
    }
}
