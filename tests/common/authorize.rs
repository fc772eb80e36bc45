//! A browser, as far as `/authorize` needs one, over HTTP: it opens the page,
//! keeps the cookie it is given, signs in as `admin` and approves, and reads
//! the redirect. Clients: the public `spa` (redirect URI [`CB`], PKCE with
//! [`VERIFIER`]) and, for [`Flow::introspect`], the resource server `web`
//! (secret `websecret`).
#![allow(dead_code, unused_imports)]

use std::collections::HashMap;

use envoy_oauth2::oauth::pkce::s256_challenge;

use super::*;

pub const CB: &str = "http://127.0.0.1:9/cb";
pub const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

pub fn form_token(r: &Resp) -> String {
    let marker = "name=\"form_token\" value=\"";
    let at = r
        .body
        .find(marker)
        .unwrap_or_else(|| panic!("no form token: {} {}", r.status, r.body));
    let rest = &r.body[at + marker.len()..];
    rest[..rest.find('"').unwrap()].to_string()
}

pub fn pct_decode(s: &str) -> String {
    envoy_oauth2::oauth::form::decode_component(s.as_bytes()).unwrap()
}

/// The parameters a redirect carries (query, or fragment when `fragment`).
pub fn redirect_params(r: &Resp, fragment: bool) -> HashMap<String, String> {
    assert!(
        r.status == 302 || r.status == 303,
        "{} {}",
        r.status,
        r.body
    );
    let loc = r.header("location").unwrap();
    assert!(loc.starts_with(CB), "{loc}");
    let part = if fragment {
        loc.split_once('#').unwrap().1
    } else {
        assert!(!loc.contains('#'));
        loc.split_once('?').unwrap().1
    };
    part.split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_string(), pct_decode(v)))
        .collect()
}

/// A browser, as far as /authorize needs one: it keeps the cookie it is given.
pub struct Flow<'a> {
    base: &'a str,
    cookie: std::cell::RefCell<Option<String>>,
}

impl<'a> Flow<'a> {
    pub fn new(base: &'a str) -> Self {
        Flow {
            base,
            cookie: Default::default(),
        }
    }
    pub fn cookie_header(&self) -> Vec<(&'static str, String)> {
        self.cookie
            .borrow()
            .iter()
            .map(|c| ("cookie", c.clone()))
            .collect()
    }
    pub fn page(&self, params: &[(&str, &str)]) -> Resp {
        let cookie = self.cookie_header();
        let headers: Vec<(&str, &str)> = cookie.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let r = get(
            &format!("{}/authorize?{}", self.base, form_encode(params)),
            &headers,
        );
        if let Some(set) = r.header("set-cookie") {
            *self.cookie.borrow_mut() = set.split(';').next().map(str::to_string);
        }
        r
    }
    pub fn submit(&self, form: &[(&str, &str)]) -> Resp {
        let cookie = self.cookie_header();
        let headers: Vec<(&str, &str)> = cookie.iter().map(|(n, v)| (*n, v.as_str())).collect();
        post_form(&format!("{}/authorize", self.base), form, &headers)
    }
    pub fn approve(&self, page: &Resp) -> Resp {
        let t = form_token(page);
        self.submit(&[
            ("form_token", &t),
            ("username", "admin"),
            ("password", "admin"),
            ("action", "approve"),
        ])
    }
    pub fn code_page(&self, state: &str) -> Resp {
        let ch = s256_challenge(VERIFIER);
        let r = self.page(&[
            ("response_type", "code"),
            ("client_id", "spa"),
            ("redirect_uri", CB),
            ("scope", "PRODUCTION"),
            ("state", state),
            ("code_challenge", &ch),
            ("code_challenge_method", "S256"),
        ]);
        assert_eq!(r.status, 200, "{}", r.body);
        r
    }
    pub fn code(&self) -> String {
        let r = self.approve(&self.code_page("st"));
        let p = redirect_params(&r, false);
        assert_eq!(p["state"], "st");
        p["code"].clone()
    }
    pub fn redeem(&self, code: &str, verifier: Option<&str>) -> Resp {
        let mut f = vec![
            ("grant_type", "authorization_code"),
            ("client_id", "spa"),
            ("code", code),
            ("redirect_uri", CB),
        ];
        if let Some(v) = verifier {
            f.push(("code_verifier", v));
        }
        post_form(&format!("{}/token", self.base), &f, &[])
    }
    pub fn api(&self, token: &str) -> u16 {
        get(
            &format!("{}/api/x", self.base),
            &[("authorization", &format!("Bearer {token}"))],
        )
        .status
    }
    pub fn introspect(&self, token: &str) -> bool {
        let r = post_form(
            &format!("{}/introspect", self.base),
            &[("token", token)],
            &[("authorization", &basic_auth("web", "websecret"))],
        );
        r.json()["active"].as_bool().unwrap()
    }
}
