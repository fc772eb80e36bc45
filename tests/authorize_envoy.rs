//! /authorize on a real Envoy (concurrency 2, so the page and its POST may reach
//! different workers): the code + PKCE flow and the implicit flow end to end
//! over HTTP, and every error branch of the issue.

mod common;

use common::authorize::{form_token, pct_decode, redirect_params, Flow, CB, VERIFIER};
use common::*;
use envoy_oauth2::config::secret_hash::hash_secret;
use envoy_oauth2::oauth::pkce::s256_challenge;
const GUARD: &str = r#"{"realm":"t","rules":[{"prefix":"/api/"}],"public":[{"path":"/callback"}],"default_action":"allow"}"#;

fn token_config(redirect: &str, extra: &str) -> String {
    let h = |s: &str| hash_secret(s.as_bytes(), b"fedcba9876543210", 10_000);
    format!(
        r#"{{"issuer":"http://127.0.0.1","realm":"t","store":{{"buckets":64,"grants_per_bucket":64}}{extra},
"clients":[
 {{"client_id":"spa","public":true,"grant_types":["authorization_code","implicit"],"redirect_uris":["{redirect}"],"scopes":["default","PRODUCTION"]}},
 {{"client_id":"web","secret_hash":"{}","grant_types":["authorization_code","refresh_token"],"redirect_uris":["{redirect}"],"scopes":["default","PRODUCTION"],"resource_server":true}}],
"users":[{{"username":"admin","password_hash":"{}","scopes":["default","PRODUCTION"]}}]}}"#,
        h("websecret"),
        h("admin")
    )
}

pub fn start(port: u16, redirect: &str, extra: &str) -> Envoy {
    Envoy::start_template(
        "authorize.yaml",
        &[
            ("TOKEN_CONFIG", &token_config(redirect, extra)),
            ("GUARD_CONFIG", GUARD),
            ("LISTEN_PORT", &port.to_string()),
        ],
        2,
    )
}

#[test]
fn code_flow_with_pkce_replay_revokes_and_metadata() {
    let e = start(0, CB, "");
    let base = e.base_url("http");
    let f = Flow::new(&base);
    let page = f.code_page("st");
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let csp = page.header("content-security-policy").unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"));
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    assert_eq!(page.header("cache-control"), Some("no-store"));
    assert!(page.body.contains("<html lang=\"en\">"));
    // The page, its POST and the token request: each may reach either worker.
    let r = f.approve(&page);
    assert_eq!(r.status, 303);
    let code = redirect_params(&r, false)["code"].clone();
    let r = f.redeem(&code, Some(VERIFIER));
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["scope"], "PRODUCTION");
    let at = v["access_token"].as_str().unwrap().to_string();
    assert_eq!(f.api(&at), 200);
    assert!(f.introspect(&at));
    // The code a second time: invalid_grant, and its tokens are revoked everywhere.
    let r = f.redeem(&code, Some(VERIFIER));
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    assert_eq!(f.api(&at), 401);
    assert!(!f.introspect(&at));
    // Confidential client: code without PKCE, refresh token, refresh works.
    let page = f.page(&[("response_type", "code"), ("client_id", "web")]);
    let code = redirect_params(&f.approve(&page), false)["code"].clone();
    let auth = basic_auth("web", "websecret");
    let r = post_form(
        &format!("{base}/token"),
        &[("grant_type", "authorization_code"), ("code", &code)],
        &[("authorization", &auth)],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let rt = r.json()["refresh_token"].as_str().unwrap().to_string();
    let r = post_form(
        &format!("{base}/token"),
        &[("grant_type", "refresh_token"), ("refresh_token", &rt)],
        &[("authorization", &auth)],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    // RFC 8414 metadata names the endpoint (under the configured issuer) and what it supports.
    let m = get(
        &format!("{base}/.well-known/oauth-authorization-server"),
        &[],
    )
    .json();
    assert_eq!(m["authorization_endpoint"], "http://127.0.0.1/authorize");
    assert_eq!(
        m["response_types_supported"],
        serde_json::json!(["code", "token"])
    );
    assert_eq!(
        m["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert!(e.counter("wasmcustom.oauth2.authorize.code_issued") >= 2);
    assert!(e.counter("wasmcustom.oauth2.token.issued.authorization_code") >= 2);
    assert_eq!(e.counter("wasmcustom.oauth2.token.code_replay_revoked"), 1);
}

/// Issue 17 (5): a used code presented again revokes its tokens only when the
/// request proves it is the code's client (a public client: the PKCE verifier;
/// a confidential one: its secret). A bare code, a wrong verifier or another
/// client's credentials get a plain invalid_grant and the token stays valid.
#[test]
fn a_replayed_code_revokes_only_with_the_codes_proof() {
    let e = start(0, CB, "");
    let base = e.base_url("http");
    let f = Flow::new(&base);
    let token_url = format!("{base}/token");
    let refused_plainly = |r: &Resp, what: &str| {
        assert_eq!(
            (r.status, r.json()["error"].as_str()),
            (400, Some("invalid_grant")),
            "{what}: {}",
            r.body
        );
        let d = r.json()["error_description"].as_str().unwrap().to_string();
        assert!(!d.contains("revoked"), "{what}: {d}");
    };
    // The public client: only the verifier proves the request is the app's.
    let code = f.code();
    let r = f.redeem(&code, Some(VERIFIER));
    assert_eq!(r.status, 200, "{}", r.body);
    let at = r.json()["access_token"].as_str().unwrap().to_string();
    refused_plainly(&f.redeem(&code, None), "no verifier");
    refused_plainly(
        &f.redeem(&code, Some(&VERIFIER.replace('d', "x"))),
        "a wrong verifier",
    );
    let other_client = post_form(
        &token_url,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("code_verifier", VERIFIER),
            ("redirect_uri", CB),
        ],
        &[("authorization", &basic_auth("web", "websecret"))],
    );
    refused_plainly(&other_client, "another client's credentials");
    let other_redirect = post_form(
        &token_url,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", "spa"),
            ("code", &code),
            ("code_verifier", VERIFIER),
            ("redirect_uri", "http://127.0.0.1:9/other"),
        ],
        &[],
    );
    refused_plainly(&other_redirect, "another redirect_uri");
    assert_eq!(f.api(&at), 200, "a replay without proof revoked the token");
    assert!(f.introspect(&at));
    let replays_revoked = || {
        e.stat("wasmcustom.oauth2.token.code_replay_revoked")
            .unwrap_or(0)
    };
    assert_eq!(replays_revoked(), 0);
    // With the verifier: the app itself replays, so the code leaked: revoke.
    let r = f.redeem(&code, Some(VERIFIER));
    assert_eq!(r.status, 400);
    assert!(r.body.contains("revoked"), "{}", r.body);
    assert_eq!(f.api(&at), 401);
    assert_eq!(replays_revoked(), 1);

    // The confidential client (no PKCE): its secret is the proof.
    let page = f.page(&[("response_type", "code"), ("client_id", "web")]);
    let code = redirect_params(&f.approve(&page), false)["code"].clone();
    let redeem_web = |auth: &[(&str, &str)], body_client: Option<&str>| {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
        ];
        form.extend(body_client.map(|c| ("client_id", c)));
        post_form(&token_url, &form, auth)
    };
    let secret = basic_auth("web", "websecret");
    let r = redeem_web(&[("authorization", &secret)], None);
    assert_eq!(r.status, 200, "{}", r.body);
    let at = r.json()["access_token"].as_str().unwrap().to_string();
    // Its id alone, a wrong secret: not authenticated, nothing revoked.
    assert_eq!(redeem_web(&[], Some("web")).status, 401);
    let wrong = basic_auth("web", "not-the-secret");
    assert_eq!(redeem_web(&[("authorization", &wrong)], None).status, 401);
    // The public client presenting it: authenticated, but not the code's client.
    refused_plainly(&redeem_web(&[], Some("spa")), "a public client");
    assert_eq!(
        f.api(&at),
        200,
        "a replay without the secret revoked the token"
    );
    let r = redeem_web(&[("authorization", &secret)], None);
    assert_eq!(r.status, 400);
    assert_eq!(f.api(&at), 401);
    assert_eq!(replays_revoked(), 2);
}

#[test]
fn implicit_flow_and_public_revocation() {
    let e = start(0, CB, "");
    let base = e.base_url("http");
    let f = Flow::new(&base);
    let page = f.page(&[
        ("response_type", "token"),
        ("client_id", "spa"),
        ("state", "imp"),
    ]);
    assert_eq!(page.status, 200, "{}", page.body);
    let p = redirect_params(&f.approve(&page), true);
    assert_eq!(
        (
            p["token_type"].as_str(),
            p["state"].as_str(),
            p["scope"].as_str()
        ),
        ("Bearer", "imp", "default")
    );
    assert!(!p.contains_key("refresh_token"));
    let at = p["access_token"].clone();
    assert_eq!(f.api(&at), 200);
    // The reference page's revocation of an implicit token: client_id alone.
    let r = post_form(
        &format!("{base}/revoke"),
        &[
            ("token", &at),
            ("token_type_hint", "access_token"),
            ("client_id", "spa"),
        ],
        &[],
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("authorizeduser"), Some("admin@carbon.super"));
    assert_eq!(f.api(&at), 401);
}

#[test]
fn every_error_branch() {
    let e = start(0, CB, "");
    let base = e.base_url("http");
    let f = Flow::new(&base);
    // A form posted without the cookie of the browser that opened it (another
    // site's form: SameSite=Lax keeps the cookie home): refused.
    let page = f.code_page("st");
    let set = page.header("set-cookie").unwrap();
    assert!(set.contains("; HttpOnly; SameSite=Lax"), "{set}");
    let r = Flow::new(&base).approve(&page);
    assert_eq!(r.status, 403);
    assert!(r.body.contains("sent no sign-in cookie"), "{}", r.body);
    // Unregistered redirect URI: an error page, never a redirect.
    let r = f.page(&[
        ("response_type", "code"),
        ("client_id", "spa"),
        ("redirect_uri", "http://127.0.0.1:9/cb/../evil"),
        ("code_challenge", &s256_challenge(VERIFIER)),
    ]);
    assert_eq!(r.status, 400);
    assert!(r.header("location").is_none());
    assert!(r.body.contains("not registered"));
    let r = f.page(&[("response_type", "code"), ("client_id", "nobody")]);
    assert_eq!((r.status, r.header("location")), (400, None));
    // Other errors go back to the client with state.
    let r = f.page(&[
        ("response_type", "code"),
        ("client_id", "spa"),
        ("state", "s1"),
    ]);
    let p = redirect_params(&r, false);
    assert_eq!(
        (p["error"].as_str(), p["state"].as_str()),
        ("invalid_request", "s1")
    );
    assert!(p["error_description"].contains("code_challenge"));
    // Missing and wrong verifier (neither uses the code up).
    let code = f.code();
    let r = f.redeem(&code, None);
    assert_eq!(r.json()["error"], "invalid_grant");
    let r = f.redeem(&code, Some(&VERIFIER.replace('d', "x")));
    assert_eq!(r.json()["error"], "invalid_grant");
    // Another client presenting it.
    let r = post_form(
        &format!("{base}/token"),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("code_verifier", VERIFIER),
            ("redirect_uri", CB),
        ],
        &[("authorization", &basic_auth("web", "websecret"))],
    );
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    assert_eq!(f.redeem(&code, Some(VERIFIER)).status, 200);
    // CSRF: no form token, and a used one.
    let page = f.code_page("c");
    let r = f.submit(&[
        ("username", "admin"),
        ("password", "admin"),
        ("action", "approve"),
    ]);
    assert_eq!((r.status, r.header("location")), (400, None));
    let t = form_token(&page);
    let form = [
        ("form_token", t.as_str()),
        ("username", "admin"),
        ("password", "admin"),
        ("action", "approve"),
    ];
    assert_eq!(f.submit(&form).status, 303);
    let r = f.submit(&form);
    assert_eq!((r.status, r.header("location")), (400, None));
    assert!(r.body.contains("expired or was already used"));
    // A wrong password: the page again, with a fresh token and a neutral message.
    let page = f.code_page("w");
    let r = f.submit(&[
        ("form_token", &form_token(&page)),
        ("username", "admin"),
        ("password", "wrong"),
        ("action", "approve"),
    ]);
    assert_eq!(r.status, 200);
    assert!(r.body.contains("The username or password is incorrect."));
    // Deny.
    let r = f.submit(&[("form_token", &form_token(&r)), ("action", "deny")]);
    let p = redirect_params(&r, false);
    assert_eq!(
        (p["error"].as_str(), p["state"].as_str()),
        ("access_denied", "w")
    );
    // Methods.
    let r = request("PUT", &format!("{base}/authorize"), &[], None);
    assert_eq!(r.status, 405);
    assert!(e.counter("wasmcustom.oauth2.authorize.error_page") >= 4);
    assert!(e.counter("wasmcustom.oauth2.authorize.denied") >= 1);
}

#[test]
fn an_expired_code_is_refused() {
    let e = start(0, CB, r#","code_lifetime_seconds":1"#);
    let base = e.base_url("http");
    let f = Flow::new(&base);
    let code = f.code();
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let r = f.redeem(&code, Some(VERIFIER));
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (400, Some("invalid_grant"))
    );
}

#[test]
fn the_demo_has_a_public_client_with_a_working_login() {
    let e = Envoy::from_demo_config();
    let base = e.base_url("http");
    let ch = s256_challenge(VERIFIER);
    let f = Flow::new(&base);
    let r = f.page(&[
        ("response_type", "code"),
        ("client_id", "demo-spa"),
        ("redirect_uri", "http://127.0.0.1:8280/callback"),
        ("code_challenge", &ch),
        ("code_challenge_method", "S256"),
    ]);
    assert_eq!(r.status, 200, "{}", r.body);
    let r = f.approve(&r);
    assert_eq!(r.status, 303);
    let loc = r.header("location").unwrap().to_string();
    let code = pct_decode(
        loc.split_once("code=")
            .unwrap()
            .1
            .split('&')
            .next()
            .unwrap(),
    );
    let r = post_form(
        &format!("{base}/token"),
        &[
            ("grant_type", "authorization_code"),
            ("client_id", "demo-spa"),
            ("code", &code),
            ("code_verifier", VERIFIER),
            ("redirect_uri", "http://127.0.0.1:8280/callback"),
        ],
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    // The demo's callback route answers.
    let r = get(&format!("{base}/callback?code=x"), &[]);
    assert_eq!(r.status, 200);
}

/// docs/security.md §7: the login form's POST must come from its own browser (a
/// cookie value the server issued) and not from another site; a refused POST leaves
/// the user's form usable.
#[test]
fn the_login_form_is_bound_to_a_cookie_the_server_issued_and_refusals_spend_nothing() {
    let e = start(0, CB, "");
    let base = e.base_url("http");
    let f = Flow::new(&base);
    let page = f.code_page("st");
    let mine = f.cookie_header()[0].1.clone();
    let form = |page: &Resp| {
        vec![
            ("form_token".to_string(), form_token(page)),
            ("username".into(), "admin".into()),
            ("password".into(), "admin".into()),
            ("action".into(), "approve".into()),
        ]
    };
    let post = |page: &Resp, headers: &[(&str, &str)]| {
        let fields = form(page);
        let fields: Vec<(&str, &str)> = fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        post_form(&format!("{base}/authorize"), &fields, headers)
    };
    // A value the server never issued, well-formed as the old 16-byte ids were and as
    // the new ones are: the page gives that browser a cookie of its own instead...
    for planted in [
        "oauth2_browser=QUFBQUFBQUFBQUFBQUFBQQ",
        "oauth2_browser=QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE",
    ] {
        let r = get(
            &format!("{base}/authorize?response_type=token&client_id=spa"),
            &[("cookie", planted)],
        );
        assert_eq!(r.status, 200, "{}", r.body);
        let set = r
            .header("set-cookie")
            .unwrap_or_else(|| panic!("{planted} was taken as the server's own"));
        assert!(!set.starts_with(&format!("{planted};")), "{set}");
        // ...and the planted value cannot post a form bound to it or to anyone else.
        let r = post(&r, &[("cookie", planted)]);
        assert_eq!(r.status, 403, "{planted}: {}", r.body);
        assert!(r.body.contains("not issued by this server"), "{}", r.body);
    }
    // Refused, none of them spending the form: no cookie, another browser's cookie, a
    // planted one, another site's page (by Origin, by Fetch Metadata).
    let other = Flow::new(&base);
    other.code_page("other");
    let others = other.cookie_header()[0].1.clone();
    let refusals: [(&[(&str, &str)], &str); 6] = [
        (&[], "sent no sign-in cookie"),
        (&[("cookie", &others)], "another browser session"),
        (
            &[(
                "cookie",
                "oauth2_browser=QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE",
            )],
            "not issued by this server",
        ),
        (
            &[("cookie", &mine), ("origin", "https://evil.example")],
            "from another site",
        ),
        (
            &[("cookie", &mine), ("origin", "null")],
            "from another site",
        ),
        (
            &[("cookie", &mine), ("sec-fetch-site", "cross-site")],
            "from another site",
        ),
    ];
    for (headers, why) in refusals {
        let r = post(&page, headers);
        assert_eq!(
            (r.status, r.header("location")),
            (403, None),
            "{headers:?}: {}",
            r.body
        );
        assert!(r.body.contains(why), "{headers:?}: {}", r.body);
        assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    }
    // The same form, from its own browser on this server's page: signs in.
    let own_origin = base.clone();
    let r = post(
        &page,
        &[
            ("cookie", &mine),
            ("origin", &own_origin),
            ("sec-fetch-site", "same-origin"),
        ],
    );
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(redirect_params(&r, false)["state"], "st");
}

/// Over HTTPS the binding cookie is `__Host-` (Secure, Path=/, no Domain), and the
/// shipped demo signs in with it.
#[test]
fn over_https_the_binding_cookie_is_a_host_cookie() {
    let e = Envoy::from_demo_config();
    let base = format!("https://localhost:{}", e.port("https"));
    let ch = s256_challenge(VERIFIER);
    let query = form_encode(&[
        ("response_type", "code"),
        ("client_id", "demo-spa"),
        ("redirect_uri", "http://127.0.0.1:8280/callback"),
        ("code_challenge", &ch),
        ("code_challenge_method", "S256"),
    ]);
    let page = curl("GET", &format!("{base}/authorize?{query}"), &[], None);
    assert_eq!(page.status, 200, "{}", page.body);
    let set = page.header("set-cookie").unwrap().to_string();
    assert!(set.starts_with("__Host-oauth2_browser="), "{set}");
    let attrs: Vec<&str> = set.split(';').skip(1).map(str::trim).collect();
    for a in ["Path=/", "Secure", "HttpOnly", "SameSite=Lax"] {
        assert!(attrs.contains(&a), "{a} missing: {set}");
    }
    assert!(!set.to_ascii_lowercase().contains("domain="), "{set}");
    let cookie = set.split(';').next().unwrap().to_string();
    let body = form_encode(&[
        ("form_token", &form_token(&page)),
        ("username", "admin"),
        ("password", "admin"),
        ("action", "approve"),
    ]);
    let post = |cookie: &str| {
        curl(
            "POST",
            &format!("{base}/authorize"),
            &[
                ("cookie", cookie),
                ("content-type", "application/x-www-form-urlencoded"),
                ("origin", &base),
                ("sec-fetch-site", "same-origin"),
            ],
            Some(body.as_bytes()),
        )
    };
    // The plain-HTTP cookie name does not count over HTTPS.
    let plain = cookie.replacen("__Host-", "", 1);
    assert_eq!(post(&plain).status, 403);
    let r = post(&cookie);
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(r.header("location").unwrap().contains("code="));
}
