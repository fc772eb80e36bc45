//! /authorize and the authorization code exchange, natively (no Envoy): every
//! branch of the login page, the code + PKCE and implicit flows, public
//! clients, and the configuration they need.

use std::collections::HashMap;

/// Native tests run the slow hashes without a per-worker ration.
const UNRATIONED: envoy_oauth2::authn::hash_budget::HashBudgetPolicy =
    envoy_oauth2::authn::hash_budget::HashBudgetPolicy {
        per_second: 0,
        burst: 0,
    };

use envoy_oauth2::authn::credential_cache::CredentialCache;
use envoy_oauth2::authn::env::ServiceEnv;
use envoy_oauth2::config::secret_hash::hash_secret;
use envoy_oauth2::config::TokenConfig;
use envoy_oauth2::endpoint::authorize::browser_binding::RequestSite;
use envoy_oauth2::endpoint::authorize::{handle_authorize, AuthorizeOutcome, AuthorizeRequest};
use envoy_oauth2::endpoint::common::{create_shared_keys, EndpointRequest};
use envoy_oauth2::endpoint::introspect::handle_introspect;
use envoy_oauth2::endpoint::revoke::handle_revoke;
use envoy_oauth2::endpoint::token::handle_token;
use envoy_oauth2::host::memory::{ManualClock, MemoryKv};
use envoy_oauth2::host::HostRandomness;
use envoy_oauth2::oauth::form::decode_component;
use envoy_oauth2::oauth::pkce::s256_challenge;
use envoy_oauth2::oauth::response::Response;
use envoy_oauth2::store::kv::{Kv, RunNow};
use envoy_oauth2::store::GrantStore;
use envoy_oauth2::token;
use serde_json::Value;

const FORM: Option<&str> = Some("application/x-www-form-urlencoded");
const SPA_CB: &str = "http://127.0.0.1:9/cb";
const WEB_CB: &str = "https://web.example/cb?x=1";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

fn h(s: &str) -> String {
    hash_secret(s.as_bytes(), b"0123456789abcdef", 10_000)
}

fn config(throttle_max: u32, extra: &str) -> String {
    // A test that names its own issuer in `extra` replaces this one.
    let issuer = if extra.contains(r#""issuer""#) {
        ""
    } else {
        r#""issuer": "https://default.example","#
    };
    format!(
        r#"{{ {issuer} "throttle": {{ "max_failures": {throttle_max}, "window_seconds": 60 }},
          "code_lifetime_seconds": 60 {extra},
          "clients": [
            {{ "client_id": "spa", "public": true, "grant_types": ["authorization_code", "implicit"],
               "redirect_uris": ["{SPA_CB}", "http://127.0.0.1:9/other"],
               "scopes": ["default", "PRODUCTION", "SANDBOX"] }},
            {{ "client_id": "web", "secret_hash": "{}", "grant_types": ["authorization_code", "refresh_token"],
               "redirect_uris": ["{WEB_CB}"], "scopes": ["default", "PRODUCTION"] }},
            {{ "client_id": "plain", "secret_hash": "{}", "grant_types": ["authorization_code"],
               "redirect_uris": ["https://plain.example/cb"], "require_pkce": true, "allow_plain_pkce": true,
               "scopes": ["default"] }},
            {{ "client_id": "cc", "secret_hash": "{}", "grant_types": ["client_credentials"], "scopes": ["default"] }}
          ],
          "users": [ {{ "username": "admin", "password_hash": "{}", "scopes": ["default", "PRODUCTION"] }},
                     {{ "username": "sandboxer", "password_hash": "{}", "scopes": ["SANDBOX"] }} ] }}"#,
        h("websecret"),
        h("plainsecret"),
        h("ccsecret"),
        h("admin"),
        h("sandbox"),
    )
}

struct World {
    cfg: TokenConfig,
    kv: MemoryKv,
    clock: ManualClock,
    creds: CredentialCache,
    /// The browser's cookie jar: what `Set-Cookie` gave it (`name=value`).
    cookie: Option<String>,
    /// The Host the browser sends (`issuer_from_host` picks the issuer by it).
    host: Option<String>,
    /// `Origin` and `Sec-Fetch-Site` the browser sends with a POST (the server is
    /// `http://auth.test`).
    origin: Option<String>,
    fetch_site: Option<String>,
}

fn basic(id: &str, secret: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
    )
}

fn enc(s: &str) -> String {
    envoy_oauth2::endpoint::authorize::url_encode(s)
}

fn qs(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn html(r: &Response) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

/// The form token embedded in a login page.
fn form_token(r: &Response) -> String {
    let page = html(r);
    let at = page
        .find("name=\"form_token\" value=\"")
        .unwrap_or_else(|| panic!("no form token in {page}"));
    let rest = &page[at + "name=\"form_token\" value=\"".len()..];
    rest[..rest.find('"').unwrap()].to_string()
}

/// Parameters of a redirect: (base, query-or-fragment params, was_fragment).
fn redirect(r: &Response) -> (String, HashMap<String, String>, bool) {
    assert!(
        r.status == 302 || r.status == 303,
        "not a redirect: {} {}",
        r.status,
        html(r)
    );
    let loc = r.header_value("location").unwrap();
    let (base, params, frag) = match loc.split_once('#') {
        Some((b, f)) => (b.to_string(), f.to_string(), true),
        None => {
            // The last `?`-part added by us follows the registered URI's own query.
            let (b, q) = loc.split_once('?').unwrap();
            (b.to_string(), q.to_string(), false)
        }
    };
    let map = params
        .split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_string(), decode_component(v.as_bytes()).unwrap()))
        .collect();
    (base, map, frag)
}

fn json(r: &Response) -> Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|_| panic!("not JSON: {}", html(r)))
}

impl World {
    fn new() -> World {
        World::with(&config(3, ""))
    }
    fn with(cfg: &str) -> World {
        let cfg = TokenConfig::parse(cfg.as_bytes()).unwrap();
        World {
            kv: {
                let kv = MemoryKv::default();
                create_shared_keys(&kv, &HostRandomness, &cfg).unwrap();
                kv
            },
            cfg,
            clock: ManualClock::at(1_700_000_000),
            creds: CredentialCache::new([1; 32], 64),
            cookie: None,
            host: Some("auth.example".into()),
            origin: None,
            fetch_site: None,
        }
    }

    fn authorize(
        &mut self,
        method: &str,
        query: &str,
        ct: Option<&str>,
        body: &str,
    ) -> (Response, AuthorizeOutcome) {
        let mut env = ServiceEnv {
            kv: Kv::Local(&self.kv),
            clock: &self.clock,
            rng: &HostRandomness,
            credentials: &mut self.creds,
            hash_budget: &envoy_oauth2::authn::hash_budget::HashBudget::new(UNRATIONED),
            client_address: &|| "192.0.2.10".to_string(),
        };
        let r = handle_authorize(
            &self.cfg,
            &mut env,
            &AuthorizeRequest {
                method,
                query,
                content_type: ct,
                body: body.as_bytes(),
                cookie: self.cookie.as_deref(),
                https: false,
                host: self.host.as_deref(),
                site: RequestSite {
                    authority: Some("auth.test"),
                    origin: self.origin.as_deref(),
                    fetch_site: self.fetch_site.as_deref(),
                },
            },
        )
        .run_now()
        .unwrap();
        if let Some(set) = r.response.header_value("set-cookie") {
            self.cookie = set.split(';').next().map(str::to_string);
        }
        (r.response, r.outcome)
    }

    fn get(&mut self, pairs: &[(&str, &str)]) -> Response {
        self.authorize("GET", &qs(pairs), None, "").0
    }

    fn post(&mut self, pairs: &[(&str, &str)]) -> Response {
        self.authorize("POST", "", FORM, &qs(pairs)).0
    }

    fn login(&mut self, page: &Response, user: &str, password: &str) -> Response {
        let t = form_token(page);
        self.post(&[
            ("form_token", &t),
            ("username", user),
            ("password", password),
            ("action", "approve"),
        ])
    }

    fn endpoint(&mut self, path: &str, auth: Option<&str>, pairs: &[(&str, &str)]) -> Response {
        let body = qs(pairs);
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
            authorization: auth,
            body: body.as_bytes(),
        };
        match path {
            "/token" => {
                handle_token(&self.cfg, &mut env, &req)
                    .run_now()
                    .unwrap()
                    .response
            }
            "/revoke" => {
                handle_revoke(&self.cfg, &mut env, &req)
                    .run_now()
                    .unwrap()
                    .response
            }
            _ => {
                handle_introspect(&self.cfg, &mut env, &req)
                    .run_now()
                    .unwrap()
                    .response
            }
        }
    }

    /// A code for `spa` with PKCE S256 (state "xyz").
    fn spa_code(&mut self) -> String {
        let challenge = s256_challenge(VERIFIER);
        let page = self.get(&[
            ("response_type", "code"),
            ("client_id", "spa"),
            ("redirect_uri", SPA_CB),
            ("scope", "default PRODUCTION"),
            ("state", "xyz"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ]);
        assert_eq!(page.status, 200, "{}", html(&page));
        let r = self.login(&page, "admin", "admin");
        let (base, p, frag) = redirect(&r);
        assert_eq!((base.as_str(), frag), (SPA_CB, false));
        assert_eq!(p["state"], "xyz");
        p["code"].clone()
    }

    fn redeem_spa(&mut self, code: &str, verifier: Option<&str>) -> Response {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("client_id", "spa"),
            ("code", code),
            ("redirect_uri", SPA_CB),
        ];
        if let Some(v) = verifier {
            form.push(("code_verifier", v));
        }
        self.endpoint("/token", None, &form)
    }

    fn live(&self, access_token: &str) -> bool {
        GrantStore::lookup_in(
            &Kv::Local(&self.kv),
            &token::parse(access_token).unwrap(),
            self.clock.0.load(std::sync::atomic::Ordering::SeqCst),
        )
        .run_now()
        .unwrap()
        .unwrap()
        .is_some()
    }
}

#[test]
fn code_flow_with_pkce_for_a_public_client() {
    let mut w = World::new();
    let challenge = s256_challenge(VERIFIER);
    let (page, outcome) = w.authorize(
        "GET",
        &qs(&[
            ("response_type", "code"),
            ("client_id", "spa"),
            ("redirect_uri", SPA_CB),
            ("scope", "PRODUCTION"),
            ("state", "s<1>"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ]),
        None,
        "",
    );
    assert_eq!((page.status, outcome), (200, AuthorizeOutcome::LoginPage));
    let csp = page.header_value("content-security-policy").unwrap();
    assert!(
        csp.contains("frame-ancestors 'none'")
            && csp.contains("form-action 'self' http://127.0.0.1:9")
    );
    assert_eq!(page.header_value("cache-control"), Some("no-store"));
    assert_eq!(page.header_value("x-frame-options"), Some("DENY"));
    assert!(html(&page).contains("<li><code>PRODUCTION</code></li>"));
    let t = form_token(&page);
    let (r, outcome) = w.authorize(
        "POST",
        "",
        FORM,
        &qs(&[
            ("form_token", &t),
            ("username", "admin"),
            ("password", "admin"),
            ("action", "approve"),
        ]),
    );
    assert_eq!((r.status, outcome), (303, AuthorizeOutcome::CodeIssued));
    assert_eq!(r.header_value("cache-control"), Some("no-store"));
    let (_, p, _) = redirect(&r);
    assert_eq!(p["state"], "s<1>");
    let code = p["code"].clone();
    // The code is not a bearer token.
    assert!(token::parse(&code).is_none());
    let r = w.redeem_spa(&code, Some(VERIFIER));
    assert_eq!(r.status, 200, "{}", html(&r));
    let v = json(&r);
    assert_eq!(v["scope"], "PRODUCTION");
    assert_eq!(v["token_type"], "Bearer");
    // A public client without the refresh_token grant gets no refresh token.
    assert!(v.get("refresh_token").is_none());
    let at = v["access_token"].as_str().unwrap().to_string();
    assert!(w.live(&at));
    let g = GrantStore::lookup_in(
        &Kv::Local(&w.kv),
        &token::parse(&at).unwrap(),
        1_700_000_001,
    )
    .run_now()
    .unwrap()
    .unwrap()
    .unwrap();
    assert_eq!(g.user.as_deref(), Some("admin@carbon.super"));
    // Replay: invalid_grant, and the token it produced is revoked.
    let r = w.redeem_spa(&code, Some(VERIFIER));
    assert_eq!(
        (r.status, json(&r)["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    assert!(!w.live(&at));
}

#[test]
fn confidential_client_without_pkce_gets_a_refresh_token() {
    let mut w = World::new();
    // One registered redirect URI: it may be omitted, here and at /token.
    let page = w.get(&[("response_type", "code"), ("client_id", "web")]);
    assert_eq!(page.status, 200, "{}", html(&page));
    let r = w.login(&page, "admin", "admin");
    let (base, p, _) = redirect(&r);
    assert_eq!(base, "https://web.example/cb");
    assert!(r
        .header_value("location")
        .unwrap()
        .starts_with("https://web.example/cb?x=1&code="));
    assert!(!p.contains_key("state"));
    let auth = basic("web", "websecret");
    let code = p["code"].clone();
    // The public way does not work for a confidential client.
    let r = w.endpoint(
        "/token",
        None,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", "web"),
            ("code", &code),
        ],
    );
    assert_eq!(
        (r.status, json(&r)["error"].as_str()),
        (401, Some("invalid_client"))
    );
    let r = w.endpoint(
        "/token",
        Some(&auth),
        &[("grant_type", "authorization_code"), ("code", &code)],
    );
    assert_eq!(r.status, 200, "{}", html(&r));
    let v = json(&r);
    assert_eq!(v["scope"], "default");
    let rt = v["refresh_token"].as_str().unwrap().to_string();
    let r = w.endpoint(
        "/token",
        Some(&auth),
        &[("grant_type", "refresh_token"), ("refresh_token", &rt)],
    );
    assert_eq!(r.status, 200, "{}", html(&r));
}

#[test]
fn implicit_flow_puts_the_token_in_the_fragment() {
    let mut w = World::new();
    let page = w.get(&[
        ("response_type", "token"),
        ("client_id", "spa"),
        ("redirect_uri", SPA_CB),
        ("scope", "default"),
        ("state", "st"),
    ]);
    assert_eq!(page.status, 200);
    let t = form_token(&page);
    let (r, outcome) = w.authorize(
        "POST",
        "",
        FORM,
        &qs(&[
            ("form_token", &t),
            ("username", "admin"),
            ("password", "admin"),
            ("action", "approve"),
        ]),
    );
    assert_eq!(outcome, AuthorizeOutcome::TokenIssued);
    let (base, p, frag) = redirect(&r);
    assert_eq!((base.as_str(), frag), (SPA_CB, true));
    assert_eq!(
        (
            p["token_type"].as_str(),
            p["expires_in"].as_str(),
            p["scope"].as_str(),
            p["state"].as_str()
        ),
        ("Bearer", "3600", "default", "st")
    );
    assert!(!p.contains_key("refresh_token"));
    let at = p["access_token"].clone();
    assert!(w.live(&at));
    // A public client revokes its own token with its id alone (the reference page's
    // implicit-token revocation), but never another client's.
    let other = {
        let mut page = w.get(&[
            ("response_type", "token"),
            ("client_id", "spa"),
            ("redirect_uri", SPA_CB),
        ]);
        page = w.login(&page, "admin", "admin");
        redirect(&page).1["access_token"].clone()
    };
    let r = w.endpoint(
        "/revoke",
        None,
        &[
            ("token", &at),
            ("token_type_hint", "access_token"),
            ("client_id", "web"),
        ],
    );
    assert_eq!(r.status, 401);
    let r = w.endpoint(
        "/revoke",
        None,
        &[
            ("token", &at),
            ("token_type_hint", "access_token"),
            ("client_id", "spa"),
        ],
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header_value("authorizeduser"), Some("admin@carbon.super"));
    assert!(!w.live(&at));
    assert!(w.live(&other));
    // A web client's token is not the public client's to revoke.
    let web_at = {
        let page = w.get(&[("response_type", "code"), ("client_id", "web")]);
        let code = redirect(&w.login(&page, "admin", "admin")).1["code"].clone();
        let r = w.endpoint(
            "/token",
            Some(&basic("web", "websecret")),
            &[("grant_type", "authorization_code"), ("code", &code)],
        );
        json(&r)["access_token"].as_str().unwrap().to_string()
    };
    let r = w.endpoint("/revoke", None, &[("token", &web_at), ("client_id", "spa")]);
    assert_eq!(
        (r.status, r.header_value("revokedaccesstoken")),
        (200, None)
    );
    assert!(w.live(&web_at));
    // Public clients cannot introspect; nor use /token for anything but codes.
    let r = w.endpoint(
        "/introspect",
        None,
        &[("token", &other), ("client_id", "spa")],
    );
    assert_eq!(json(&r)["error"], "invalid_client");
    let r = w.endpoint(
        "/token",
        None,
        &[
            ("grant_type", "password"),
            ("client_id", "spa"),
            ("username", "admin"),
            ("password", "admin"),
        ],
    );
    assert_eq!(json(&r)["error"], "unauthorized_client");
    let r = w.endpoint(
        "/token",
        None,
        &[("grant_type", "implicit"), ("client_id", "spa")],
    );
    assert_eq!(json(&r)["error"], "unsupported_grant_type");
    // A public client that sends a secret does not authenticate.
    let r = w.endpoint(
        "/revoke",
        None,
        &[
            ("token", &other),
            ("client_id", "spa"),
            ("client_secret", "x"),
        ],
    );
    assert_eq!(r.status, 401);
}

#[test]
fn requests_that_cannot_be_redirected_get_an_error_page() {
    let mut w = World::new();
    let cases: Vec<Vec<(&str, &str)>> = vec![
        vec![("response_type", "code")],
        vec![("response_type", "code"), ("client_id", "nobody")],
        vec![
            ("response_type", "code"),
            ("client_id", "spa"),
            ("redirect_uri", "http://evil.example/cb"),
        ],
        // A prefix of a registered URI is not a match.
        vec![
            ("response_type", "code"),
            ("client_id", "spa"),
            ("redirect_uri", "http://127.0.0.1:9/c"),
        ],
        vec![
            ("response_type", "code"),
            ("client_id", "spa"),
            ("redirect_uri", "http://127.0.0.1:9/cb/x"),
        ],
        // Two registered: it must be named.
        vec![("response_type", "code"), ("client_id", "spa")],
        vec![("response_type", "code"), ("client_id", "cc")],
        vec![
            ("response_type", "code"),
            ("client_id", "spa"),
            ("client_id", "web"),
        ],
    ];
    for q in cases {
        let (r, outcome) = w.authorize("GET", &qs(&q), None, "");
        assert_eq!(
            (r.status, outcome),
            (400, AuthorizeOutcome::ErrorPage),
            "{q:?}"
        );
        assert!(r.header_value("location").is_none());
        assert!(html(&r).contains("<h1>"));
        assert_eq!(r.header_value("x-frame-options"), Some("DENY"));
    }
    let (r, _) = w.authorize("GET", "client_id=%zz", None, "");
    assert_eq!(r.status, 400);
    let (r, _) = w.authorize("PUT", "", None, "");
    assert_eq!(
        (r.status, r.header_value("allow")),
        (405, Some("GET, POST"))
    );
}

#[test]
fn every_other_error_redirects_back_with_state() {
    let mut w = World::new();
    let ch = s256_challenge(VERIFIER);
    let long_state = "s".repeat(513);
    let plain_ch = "p".repeat(43);
    let cases: Vec<(Vec<(&str, &str)>, &str, bool)> = vec![
        (
            vec![("client_id", "spa"), ("redirect_uri", SPA_CB)],
            "invalid_request",
            false,
        ),
        (
            vec![
                ("response_type", "id_token"),
                ("client_id", "spa"),
                ("redirect_uri", SPA_CB),
            ],
            "unsupported_response_type",
            false,
        ),
        (
            vec![("response_type", "token"), ("client_id", "web")],
            "unauthorized_client",
            true,
        ),
        (
            vec![
                ("response_type", "code"),
                ("client_id", "spa"),
                ("redirect_uri", SPA_CB),
                ("code_challenge", &ch),
                ("scope", "ADMIN"),
            ],
            "invalid_scope",
            false,
        ),
        (
            vec![
                ("response_type", "code"),
                ("client_id", "spa"),
                ("redirect_uri", SPA_CB),
                ("code_challenge", &ch),
                ("scope", "bad\"scope"),
            ],
            "invalid_scope",
            false,
        ),
        (
            vec![
                ("response_type", "token"),
                ("client_id", "spa"),
                ("redirect_uri", SPA_CB),
                ("scope", "ADMIN"),
            ],
            "invalid_scope",
            true,
        ),
        // PKCE: required for public clients, S256 only unless allowed, well-formed.
        (
            vec![
                ("response_type", "code"),
                ("client_id", "spa"),
                ("redirect_uri", SPA_CB),
            ],
            "invalid_request",
            false,
        ),
        (
            vec![
                ("response_type", "code"),
                ("client_id", "spa"),
                ("redirect_uri", SPA_CB),
                ("code_challenge", &plain_ch),
            ],
            "invalid_request",
            false,
        ),
        (
            vec![
                ("response_type", "code"),
                ("client_id", "spa"),
                ("redirect_uri", SPA_CB),
                ("code_challenge", &plain_ch),
                ("code_challenge_method", "plain"),
            ],
            "invalid_request",
            false,
        ),
        (
            vec![
                ("response_type", "code"),
                ("client_id", "spa"),
                ("redirect_uri", SPA_CB),
                ("code_challenge", "short"),
                ("code_challenge_method", "S256"),
            ],
            "invalid_request",
            false,
        ),
        (
            vec![
                ("response_type", "code"),
                ("client_id", "spa"),
                ("redirect_uri", SPA_CB),
                ("code_challenge", &ch),
                ("code_challenge_method", "S512"),
            ],
            "invalid_request",
            false,
        ),
        (
            vec![
                ("response_type", "code"),
                ("client_id", "web"),
                ("code_challenge_method", "S256"),
            ],
            "invalid_request",
            false,
        ),
        (
            vec![("response_type", "code"), ("client_id", "plain")],
            "invalid_request",
            false,
        ),
        (
            vec![
                ("response_type", "code"),
                ("client_id", "spa"),
                ("redirect_uri", SPA_CB),
                ("code_challenge", &ch),
                ("prompt", "none"),
            ],
            "login_required",
            false,
        ),
        (
            vec![
                ("response_type", "code"),
                ("client_id", "web"),
                ("scope", "default"),
                ("scope", "PRODUCTION"),
            ],
            "invalid_request",
            false,
        ),
    ];
    for (mut q, error, fragment) in cases {
        q.push(("state", "the state"));
        let (r, outcome) = w.authorize("GET", &qs(&q), None, "");
        assert_eq!(
            (r.status, outcome),
            (302, AuthorizeOutcome::ErrorRedirect),
            "{q:?}: {}",
            html(&r)
        );
        let (_, p, frag) = redirect(&r);
        assert_eq!((p["error"].as_str(), frag), (error, fragment), "{q:?}");
        assert_eq!(p["state"], "the state");
        assert!(!p["error_description"].is_empty());
    }
    let (r, _) = w.authorize(
        "GET",
        &qs(&[
            ("response_type", "code"),
            ("client_id", "web"),
            ("state", &long_state),
        ]),
        None,
        "",
    );
    assert_eq!(redirect(&r).1["error"], "invalid_request");
    // plain is fine for the client that allows it.
    let r = w.get(&[
        ("response_type", "code"),
        ("client_id", "plain"),
        ("code_challenge", &plain_ch),
        ("code_challenge_method", "plain"),
    ]);
    assert_eq!(r.status, 200);
    let code = redirect(&w.login(&r, "admin", "admin")).1["code"].clone();
    let r = w.endpoint(
        "/token",
        Some(&basic("plain", "plainsecret")),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("code_verifier", &plain_ch),
        ],
    );
    assert_eq!(r.status, 200, "{}", html(&r));
}

#[test]
fn the_form_token_is_required_bound_and_single_use() {
    let mut w = World::new();
    let page = w.get(&[
        ("response_type", "code"),
        ("client_id", "web"),
        ("state", "s"),
    ]);
    let t = form_token(&page);
    let creds = [
        ("username", "admin"),
        ("password", "admin"),
        ("action", "approve"),
    ];
    // Missing.
    let (r, outcome) = w.authorize("POST", "", FORM, &qs(&creds));
    assert_eq!((r.status, outcome), (400, AuthorizeOutcome::ErrorPage));
    assert!(html(&r).contains("form token is missing"));
    // Tampered with (the seal breaks), or something else entirely.
    let mut forged = t.clone().into_bytes();
    let mid = forged.len() / 2;
    forged[mid] = if forged[mid] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    let mut with = |tok: &str| {
        let mut f = vec![("form_token", tok)];
        f.extend_from_slice(&creds);
        w.post(&f)
    };
    assert_eq!(with(&forged).status, 400);
    assert_eq!(with("garbage").status, 400);
    // Wrong content type.
    let (r, _) = w.authorize("POST", "", Some("text/plain"), &qs(&[("form_token", &t)]));
    assert_eq!(r.status, 400);
    // Used once: then gone.
    let mut f = vec![("form_token", t.as_str())];
    f.extend_from_slice(&creds);
    assert_eq!(w.post(&f).status, 303);
    let r = w.post(&f);
    assert_eq!(r.status, 400);
    assert!(html(&r).contains("expired or was already used"));
    // Expired after 10 minutes.
    let page = w.get(&[("response_type", "code"), ("client_id", "web")]);
    w.clock.advance(600);
    let r = w.login(&page, "admin", "admin");
    assert_eq!(r.status, 400);
}

#[test]
fn deny_and_wrong_passwords_and_throttling() {
    let mut w = World::new();
    let page = w.get(&[
        ("response_type", "code"),
        ("client_id", "web"),
        ("state", "s"),
    ]);
    let t = form_token(&page);
    let (r, outcome) = w.authorize(
        "POST",
        "",
        FORM,
        &qs(&[("form_token", &t), ("action", "deny")]),
    );
    assert_eq!(outcome, AuthorizeOutcome::Denied);
    let (_, p, _) = redirect(&r);
    assert_eq!(
        (p["error"].as_str(), p["state"].as_str()),
        ("access_denied", "s")
    );
    // Wrong password: the page again, not saying which field, with a new form token.
    let page = w.get(&[("response_type", "code"), ("client_id", "web")]);
    let (r, outcome) = w.authorize(
        "POST",
        "",
        FORM,
        &qs(&[
            ("form_token", &form_token(&page)),
            ("username", "admin"),
            ("password", "nope"),
            ("action", "approve"),
        ]),
    );
    assert_eq!((r.status, outcome), (200, AuthorizeOutcome::LoginFailed));
    assert!(html(&r).contains("The username or password is incorrect."));
    assert!(html(&r).contains("value=\"admin\""));
    assert_ne!(form_token(&r), form_token(&page));
    // Unknown user: the same message.
    let r2 = w.login(&r, "ghost", "admin");
    assert!(html(&r2).contains("The username or password is incorrect."));
    // Empty fields: asked again, not counted.
    let r3 = w.post(&[("form_token", &form_token(&r2)), ("action", "approve")]);
    assert!(html(&r3).contains("Enter your username and password."));
    // Third failure for admin (limit 3): then throttled, even with the right password.
    let r4 = w.login(&r3, "admin", "bad");
    assert_eq!(r4.status, 200);
    let r5 = w.login(&r4, "admin", "bad");
    let r6 = w.login(&r5, "admin", "admin");
    assert_eq!(r6.status, 429, "{}", html(&r6));
    assert!(html(&r6).contains("Too many failed sign-in attempts"));
    w.clock.advance(61);
    let r7 = w.login(&r6, "admin", "admin");
    assert_eq!(r7.status, 303);
    assert!(redirect(&r7).1.contains_key("code"));
}

#[test]
fn one_request_allows_five_failures_then_is_refused() {
    let mut w = World::with(&config(0, ""));
    let mut page = w.get(&[
        ("response_type", "code"),
        ("client_id", "web"),
        ("state", "s"),
    ]);
    for _ in 0..4 {
        page = w.login(&page, "admin", "bad");
        assert_eq!(page.status, 200);
    }
    let r = w.login(&page, "admin", "bad");
    let (_, p, _) = redirect(&r);
    assert_eq!(
        (p["error"].as_str(), p["state"].as_str()),
        ("access_denied", "s")
    );
}

#[test]
fn the_user_grants_only_scopes_they_have() {
    let mut w = World::new();
    let ch = s256_challenge(VERIFIER);
    let q = [
        ("response_type", "code"),
        ("client_id", "spa"),
        ("redirect_uri", SPA_CB),
        ("code_challenge", &ch),
        ("code_challenge_method", "S256"),
        ("scope", "default SANDBOX"),
    ];
    let page = w.get(&q);
    let code = redirect(&w.login(&page, "admin", "admin")).1["code"].clone();
    let r = w.redeem_spa(&code, Some(VERIFIER));
    assert_eq!(json(&r)["scope"], "default");
    // Nothing in common: invalid_scope back at the client.
    let page = w.get(&[
        ("response_type", "code"),
        ("client_id", "spa"),
        ("redirect_uri", SPA_CB),
        ("code_challenge", &ch),
        ("code_challenge_method", "S256"),
        ("scope", "PRODUCTION"),
    ]);
    let r = w.login(&page, "sandboxer", "sandbox");
    assert_eq!(redirect(&r).1["error"], "invalid_scope");
}

#[test]
fn code_exchange_checks_every_binding() {
    let mut w = World::new();
    let code = w.spa_code();
    let err = |r: &Response| {
        (
            r.status,
            json(r)["error"].as_str().unwrap_or("").to_string(),
        )
    };
    let ig = (400, "invalid_grant".to_string());
    assert_eq!(err(&w.redeem_spa(&code, None)), ig);
    assert_eq!(
        err(&w.redeem_spa(&code, Some(&VERIFIER.replace('d', "e")))),
        ig
    );
    assert_eq!(err(&w.redeem_spa("not-a-code", Some(VERIFIER))), ig);
    let r = w.endpoint(
        "/token",
        None,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", "spa"),
            ("code", &code),
            ("code_verifier", VERIFIER),
            ("redirect_uri", "http://127.0.0.1:9/other"),
        ],
    );
    assert_eq!(err(&r), ig);
    let r = w.endpoint(
        "/token",
        None,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", "spa"),
            ("code", &code),
            ("code_verifier", VERIFIER),
        ],
    );
    assert_eq!(err(&r), ig, "redirect_uri was given, so it is required");
    // Another client.
    let r = w.endpoint(
        "/token",
        Some(&basic("web", "websecret")),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("code_verifier", VERIFIER),
            ("redirect_uri", SPA_CB),
        ],
    );
    assert_eq!(err(&r), ig);
    let r = w.endpoint(
        "/token",
        None,
        &[("grant_type", "authorization_code"), ("client_id", "spa")],
    );
    assert_eq!(err(&r), (400, "invalid_request".to_string()));
    // None of those used it up.
    assert_eq!(w.redeem_spa(&code, Some(VERIFIER)).status, 200);
    // Expired.
    let code = w.spa_code();
    w.clock.advance(60);
    assert_eq!(err(&w.redeem_spa(&code, Some(VERIFIER))), ig);
}

#[test]
fn configuration_of_browser_clients_is_checked() {
    let field = |extra_client: &str| {
        let cfg = format!(
            r#"{{"issuer":"https://a.example","clients":[{{"client_id":"x","scopes":["default"]{extra_client}}}]}}"#
        );
        TokenConfig::parse(cfg.as_bytes()).unwrap_err().field
    };
    let hash = h("s");
    let cases = [
        (r#","public":true,"grant_types":["client_credentials"]"#.to_string(), "clients[0].grant_types[0]"),
        (r#","public":true,"grant_types":["authorization_code","password"],"redirect_uris":["https://a/cb"]"#.to_string(), "clients[0].grant_types[1]"),
        (format!(r#","public":true,"secret_hash":"{hash}","grant_types":["implicit"],"redirect_uris":["https://a/cb"]"#), "clients[0].secret_hash"),
        (r#","grant_types":["authorization_code"],"redirect_uris":["https://a/cb"]"#.to_string(), "clients[0].secret_hash"),
        (r#","public":true,"grant_types":["authorization_code"]"#.to_string(), "clients[0].redirect_uris"),
        (r#","public":true,"grant_types":["authorization_code"],"redirect_uris":["https://a/cb#frag"]"#.to_string(), "clients[0].redirect_uris[0]"),
        (r#","public":true,"grant_types":["authorization_code"],"redirect_uris":["/relative"]"#.to_string(), "clients[0].redirect_uris[0]"),
        (r#","public":true,"grant_types":["authorization_code"],"redirect_uris":["https:///nohost"]"#.to_string(), "clients[0].redirect_uris[0]"),
        (r#","public":true,"grant_types":["authorization_code"],"redirect_uris":["https://a/ b"]"#.to_string(), "clients[0].redirect_uris[0]"),
        (r#","public":true,"grant_types":["authorization_code"],"redirect_uris":["https://a/cb","https://a/cb"]"#.to_string(), "clients[0].redirect_uris[1]"),
        (r#","public":true,"grant_types":["implicit"],"redirect_uris":["https://a/cb"],"resource_server":true"#.to_string(), "clients[0].resource_server"),
        (r#","public":true,"grant_types":["implicit"],"redirect_uris":["https://a/cb"],"allow_plain_pkce":true"#.to_string(), "clients[0].allow_plain_pkce"),
        (format!(r#","secret_hash":"{hash}","grant_types":["client_credentials"],"redirect_uris":["https://a/cb"]"#), "clients[0].redirect_uris"),
    ];
    for (extra, want) in cases {
        assert_eq!(field(&extra), want, "{extra}");
    }
    // Never a script, data or file URI; plain http only on the loopback interface.
    let redirect = |uri: &str| {
        let cfg = format!(
            r#"{{"issuer":"https://a.example","clients":[{{"client_id":"x","scopes":["default"],"public":true,"grant_types":["authorization_code"],"redirect_uris":[{}]}}]}}"#,
            serde_json::to_string(uri).unwrap()
        );
        TokenConfig::parse(cfg.as_bytes()).err().map(|e| e.field)
    };
    for bad in [
        "javascript:alert(1)",
        "JavaScript://x/%0aalert(1)",
        "data:text/html,x",
        "vbscript:x",
        "file:///etc/passwd",
        "http://app.example/cb",
        "http://127.0.0.1.evil.example/cb",
        "http://localhost@evil.example/cb",
        "http://[::2]/cb",
        "http://evil.example\\@127.0.0.1/cb",
        "https://evil.example\\@localhost/cb",
    ] {
        assert_eq!(
            redirect(bad).as_deref(),
            Some("clients[0].redirect_uris[0]"),
            "{bad}"
        );
    }
    for good in [
        "https://app.example/cb",
        "http://127.0.0.1:8080/cb",
        "http://127.9.9.9/cb",
        "http://localhost/cb?x=1",
        "http://user@localhost:1/cb",
        "http://[::1]:8080/cb",
        "com.example.app:/oauth2redirect",
    ] {
        assert_eq!(redirect(good), None, "{good}");
    }
    let base = config(3, "");
    for (extra, want) in [
        (r#","code_lifetime_seconds": 601"#, "code_lifetime_seconds"),
        (r#","paths": {"authorize": "/token"}"#, "paths.authorize"),
        (r#","paths": {"authorize": "auth"}"#, "paths.authorize"),
    ] {
        let cfg = base.replacen(r#""code_lifetime_seconds": 60 "#, &extra[1..], 1);
        assert_eq!(
            TokenConfig::parse(cfg.as_bytes()).unwrap_err().field,
            want,
            "{extra}"
        );
    }
    // A private-use scheme (native apps) is a valid redirect URI.
    let ok = r#"{"issuer":"https://a.example","clients":[{"client_id":"x","public":true,"grant_types":["authorization_code"],"redirect_uris":["com.example.app:/cb"],"scopes":["default"]}]}"#;
    let c = TokenConfig::parse(ok.as_bytes()).unwrap();
    assert!(c.client("x").unwrap().require_pkce);
    assert_eq!(c.code_lifetime, 60);
    assert_eq!(c.paths.authorize, "/authorize");
}

#[test]
fn metadata_lists_the_authorization_endpoint() {
    let w = World::with(&config(
        3,
        r#","issuer": "https://auth.example", "paths": {"authorize": "/oauth2/authorize"}"#,
    ));
    let r = envoy_oauth2::endpoint::metadata::metadata(&w.cfg, false, Some("x"));
    let v = json(&r);
    assert_eq!(
        v["authorization_endpoint"],
        "https://auth.example/oauth2/authorize"
    );
    assert_eq!(
        v["response_types_supported"],
        serde_json::json!(["code", "token"])
    );
    assert_eq!(
        v["code_challenge_methods_supported"],
        serde_json::json!(["S256", "plain"])
    );
    assert_eq!(
        v["grant_types_supported"],
        serde_json::json!([
            "authorization_code",
            "implicit",
            "client_credentials",
            "refresh_token"
        ])
    );
    assert!(v["token_endpoint_auth_methods_supported"]
        .as_array()
        .unwrap()
        .contains(&"none".into()));
    // And the path is the one answered.
    let mut w = w;
    let (r, _) = w.authorize(
        "GET",
        &qs(&[("response_type", "code"), ("client_id", "web")]),
        None,
        "",
    );
    assert!(html(&r).contains("action=\"/oauth2/authorize\""));
}

#[test]
fn authorization_responses_name_the_configured_issuer() {
    let issuer = "https://auth.example";
    let mut w = World::with(&config(3, &format!(r#","issuer": "{issuer}""#)));
    let v = json(&envoy_oauth2::endpoint::metadata::metadata(
        &w.cfg,
        false,
        Some("x"),
    ));
    assert_eq!(v["authorization_response_iss_parameter_supported"], true);
    // RFC 9207 §2: `iss` in success and error responses, query and fragment alike.
    let page = w.get(&[
        ("response_type", "token"),
        ("client_id", "spa"),
        ("redirect_uri", SPA_CB),
        ("state", "s"),
    ]);
    let (_, p, frag) = redirect(&w.login(&page, "admin", "admin"));
    assert!(frag && p.contains_key("access_token"));
    assert_eq!((p["iss"].as_str(), p["state"].as_str()), (issuer, "s"));
    let (_, p, frag) = redirect(&w.get(&[
        ("response_type", "code"),
        ("client_id", "spa"),
        ("redirect_uri", SPA_CB),
    ]));
    assert!(!frag);
    assert_eq!(
        (p["error"].as_str(), p["iss"].as_str()),
        ("invalid_request", issuer)
    );
    // `issuer_from_host`: a listed Host names `iss`; another gets no page at all.
    let mut w = World::with(&config(3, "").replacen(
        r#""issuer": "https://default.example","#,
        r#""issuer_from_host": true, "issuer_hosts": ["auth.example"],"#,
        1,
    ));
    let (_, p, _) = redirect(&w.get(&[
        ("response_type", "code"),
        ("client_id", "spa"),
        ("redirect_uri", SPA_CB),
    ]));
    assert_eq!(p["iss"], "https://auth.example");
    w.host = Some("evil.example".into());
    let query = qs(&[
        ("response_type", "code"),
        ("client_id", "spa"),
        ("redirect_uri", SPA_CB),
    ]);
    let (r, outcome) = w.authorize("GET", &query, None, "");
    assert_eq!((r.status, outcome), (400, AuthorizeOutcome::ErrorPage));
    assert!(r.header_value("location").is_none());
    assert!(!html(&r).contains("evil"));
}

#[test]
fn a_configuration_change_applies_to_login_forms_already_open() {
    let mut w = World::new();
    let implicit = w.get(&[
        ("response_type", "token"),
        ("client_id", "spa"),
        ("redirect_uri", SPA_CB),
        ("state", "s1"),
    ]);
    let without_pkce = w.get(&[
        ("response_type", "code"),
        ("client_id", "web"),
        ("redirect_uri", WEB_CB),
        ("state", "s2"),
    ]);
    let challenge = s256_challenge(VERIFIER);
    let sandbox = w.get(&[
        ("response_type", "code"),
        ("client_id", "spa"),
        ("redirect_uri", SPA_CB),
        ("scope", "SANDBOX"),
        ("state", "s3"),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
    ]);
    for page in [&implicit, &without_pkce, &sandbox] {
        assert_eq!(page.status, 200, "{}", html(page));
    }
    // The operator withdraws implicit and SANDBOX from spa and requires PKCE of web.
    let changed = config(3, "")
        .replacen(
            r#""grant_types": ["authorization_code", "implicit"]"#,
            r#""grant_types": ["authorization_code"]"#,
            1,
        )
        .replacen(
            r#""scopes": ["default", "PRODUCTION", "SANDBOX"]"#,
            r#""scopes": ["default", "PRODUCTION"]"#,
            1,
        )
        .replacen(
            r#""redirect_uris": ["https://web.example/cb?x=1"],"#,
            r#""redirect_uris": ["https://web.example/cb?x=1"], "require_pkce": true,"#,
            1,
        );
    assert_ne!(changed, config(3, ""));
    w.cfg = TokenConfig::parse(changed.as_bytes()).unwrap();
    let cases = [
        (
            &implicit,
            "admin",
            "admin",
            "unauthorized_client",
            "s1",
            true,
        ),
        (
            &without_pkce,
            "admin",
            "admin",
            "invalid_request",
            "s2",
            false,
        ),
        (
            &sandbox,
            "sandboxer",
            "sandbox",
            "invalid_scope",
            "s3",
            false,
        ),
    ];
    for (page, user, password, error, state, fragment) in cases {
        let r = w.login(page, user, password);
        let (_, p, frag) = redirect(&r);
        assert_eq!(
            (p["error"].as_str(), p["state"].as_str(), frag),
            (error, state, fragment),
            "{p:?}"
        );
        assert!(!p.contains_key("code") && !p.contains_key("access_token"));
    }
}

#[test]
fn an_oversized_state_is_refused_without_echoing_it() {
    let mut w = World::new();
    let state = "s".repeat(513);
    let r = w.get(&[
        ("response_type", "code"),
        ("client_id", "spa"),
        ("redirect_uri", SPA_CB),
        ("state", &state),
    ]);
    let (_, p, _) = redirect(&r);
    assert_eq!(p["error"], "invalid_request");
    assert!(!p.contains_key("state"));
    assert!(r.header_value("location").unwrap().len() < 300);
    // 512 bytes are fine and come back.
    let state = "s".repeat(512);
    let r = w.get(&[
        ("response_type", "token"),
        ("client_id", "spa"),
        ("redirect_uri", SPA_CB),
        ("state", &state),
    ]);
    let r = w.login(&r, "admin", "admin");
    assert_eq!(redirect(&r).1["state"], state);
}

#[test]
fn a_flood_of_authorization_requests_does_not_expire_open_forms() {
    let mut w = World::new();
    let page = w.get(&[
        ("response_type", "token"),
        ("client_id", "spa"),
        ("redirect_uri", SPA_CB),
        ("state", "mine"),
    ]);
    // Over twice the 16,384 pending entries the store once held (where the
    // oldest was dropped): nothing is stored for a page any more.
    for _ in 0..40_000 {
        let r = w.get(&[
            ("response_type", "code"),
            ("client_id", "web"),
            ("state", "flood"),
        ]);
        assert_eq!(r.status, 200);
    }
    let (_, p, _) = redirect(&w.login(&page, "admin", "admin"));
    assert_eq!(p["state"], "mine");
    assert!(p.contains_key("access_token"));
}

#[test]
fn a_form_is_bound_to_the_browser_that_opened_it() {
    let mut w = World::new();
    let open = |w: &mut World| {
        w.get(&[
            ("response_type", "token"),
            ("client_id", "spa"),
            ("redirect_uri", SPA_CB),
        ])
    };
    let page = open(&mut w);
    let set = page.header_value("set-cookie").unwrap().to_string();
    assert!(set.starts_with("oauth2_browser="), "{set}");
    assert!(
        set.ends_with("; Path=/authorize; HttpOnly; SameSite=Lax"),
        "{set}"
    );
    let mine = w.cookie.clone();
    // The same browser keeps its id: no new cookie, and both forms work.
    let second = open(&mut w);
    assert!(second.header_value("set-cookie").is_none());
    let r = w.login(&second, "admin", "admin");
    assert!(redirect(&r).1.contains_key("access_token"));
    // Posted without the cookie (another site's form, SameSite=Lax) or from
    // another browser (the attacker's own form in the victim's): refused.
    w.cookie = None;
    let r = w.login(&page, "admin", "admin");
    assert_eq!(r.status, 403);
    assert!(html(&r).contains("sent no sign-in cookie"), "{}", html(&r));
    // The attacker opens a form in their own browser (a new cookie)...
    let attackers = open(&mut w);
    assert!(attackers.header_value("set-cookie").is_some());
    // ...and makes the victim's browser post it.
    w.cookie = mine.clone();
    let r = w.login(&attackers, "admin", "admin");
    assert_eq!(r.status, 403);
    assert!(html(&r).contains("another browser session"));
    // A cookie value the server never issued: refused, and replaced on the next page.
    w.cookie = Some("oauth2_browser=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into());
    let r = w.login(&page, "admin", "admin");
    assert_eq!(r.status, 403);
    assert!(
        html(&r).contains("not issued by this server"),
        "{}",
        html(&r)
    );
    assert!(open(&mut w).header_value("set-cookie").is_some());
    // Posted from another site with the right cookie: refused by Origin or Fetch Metadata.
    w.cookie = mine;
    for (origin, fetch_site) in [
        (Some("https://evil.example"), None),
        (Some("null"), None),
        (None, Some("cross-site")),
    ] {
        w.origin = origin.map(str::to_string);
        w.fetch_site = fetch_site.map(str::to_string);
        let r = w.login(&page, "admin", "admin");
        assert_eq!(r.status, 403, "{origin:?} {fetch_site:?}");
        assert!(html(&r).contains("from another site"), "{}", html(&r));
    }
    // None of those refusals used the form up: its own browser, on this site, signs in.
    w.origin = Some("http://auth.test".into());
    w.fetch_site = Some("same-origin".into());
    let r = w.login(&page, "admin", "admin");
    assert!(redirect(&r).1.contains_key("access_token"));
    // A fresh form of this browser still works.
    let page = open(&mut w);
    assert!(redirect(&w.login(&page, "admin", "admin"))
        .1
        .contains_key("access_token"));
}
