//! Binds a login form to the browser that opened it (login CSRF, RFC 6749
//! §10.12). The first `GET /authorize` gives the browser a random id with a MAC
//! under the server key, so the server can tell an id it issued from one planted
//! by someone else; over HTTPS the cookie is `__Host-` (Secure, `Path=/`, no
//! `Domain`), so no other host, not even a sibling subdomain, can set or replace
//! it. The sealed form carries a hash of the id and the form's POST must come
//! with the same cookie. The POST must also not say it comes from another site
//! (`Origin`, `Sec-Fetch-Site`), and nothing refused here uses up the form.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::host::{RandomUnavailable, Randomness};
use crate::store::server_key::{self, ServerKey};

/// Over plain HTTP (development): scoped to the authorization path.
pub const COOKIE_NAME: &str = "oauth2_browser";
/// Over HTTPS: browsers accept it only with `Secure`, `Path=/` and no `Domain`.
pub const SECURE_COOKIE_NAME: &str = "__Host-oauth2_browser";
const ID_BYTES: usize = 16;
const MAC_BYTES: usize = 16;
/// base64url (no padding) of the id and its MAC.
const COOKIE_CHARS: usize = 43;
const MAC_LABEL: &[u8] = b"oauth2 browser id";

/// What a sealed form carries: a hash of the browser id, never the id itself.
pub type Binding = [u8; 16];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrowserId([u8; ID_BYTES]);

/// The binding cookie a request came with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrowserCookie {
    Missing,
    /// Present, but not a value this server issued (malformed, or its MAC fails).
    NotIssued,
    Issued(BrowserId),
}

impl BrowserId {
    pub fn new(rng: &dyn Randomness) -> Result<Self, RandomUnavailable> {
        let mut id = [0u8; ID_BYTES];
        rng.fill(&mut id)?;
        Ok(BrowserId(id))
    }

    pub fn cookie_name(https: bool) -> &'static str {
        if https {
            SECURE_COOKIE_NAME
        } else {
            COOKIE_NAME
        }
    }

    /// The binding cookie in a `Cookie` header: only under this scheme's name, and
    /// only a value this server issued (the first such, if there are several).
    pub fn from_cookie_header(header: Option<&str>, https: bool, key: &ServerKey) -> BrowserCookie {
        let name = Self::cookie_name(https);
        let mut found = BrowserCookie::Missing;
        for (_, value) in header
            .unwrap_or("")
            .split(';')
            .filter_map(|pair| pair.trim().split_once('='))
            .filter(|(n, _)| *n == name)
        {
            match Self::verify(value, key) {
                Some(id) => return BrowserCookie::Issued(id),
                None => found = BrowserCookie::NotIssued,
            }
        }
        found
    }

    fn verify(value: &str, key: &ServerKey) -> Option<BrowserId> {
        if value.len() != COOKIE_CHARS {
            return None;
        }
        let mut raw = [0u8; ID_BYTES + MAC_BYTES];
        if URL_SAFE_NO_PAD.decode_slice(value, &mut raw).ok()? != raw.len() {
            return None;
        }
        let (id, mac) = raw.split_at(ID_BYTES);
        let expected: [u8; MAC_BYTES] = server_key::tag(key, MAC_LABEL, id)?;
        if !bool::from(expected.ct_eq(mac)) {
            return None;
        }
        Some(BrowserId(id.try_into().ok()?))
    }

    pub fn binding(&self) -> Binding {
        let digest = Sha256::digest(self.0);
        let mut b = [0u8; 16];
        b.copy_from_slice(&digest[..16]);
        b
    }

    /// The `Set-Cookie` value: never readable by scripts, not sent with cross-site
    /// POSTs; over HTTPS a `__Host-` cookie, over HTTP only for the authorization path.
    /// `None` only if the MAC cannot be made (never with a 32-byte key).
    pub fn set_cookie(&self, key: &ServerKey, authorize_path: &str, https: bool) -> Option<String> {
        let mac: [u8; MAC_BYTES] = server_key::tag(key, MAC_LABEL, &self.0)?;
        let mut raw = [0u8; ID_BYTES + MAC_BYTES];
        raw[..ID_BYTES].copy_from_slice(&self.0);
        raw[ID_BYTES..].copy_from_slice(&mac);
        let value = URL_SAFE_NO_PAD.encode(raw);
        Some(if https {
            format!("{SECURE_COOKIE_NAME}={value}; Path=/; Secure; HttpOnly; SameSite=Lax")
        } else {
            format!("{COOKIE_NAME}={value}; Path={authorize_path}; HttpOnly; SameSite=Lax")
        })
    }
}

/// Where a request says it comes from: the headers browsers set and pages cannot.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestSite<'a> {
    /// The request's own `:authority` (host and port).
    pub authority: Option<&'a str>,
    /// `Origin` (RFC 6454), sent by browsers with every POST.
    pub origin: Option<&'a str>,
    /// `Sec-Fetch-Site` (Fetch Metadata): `same-origin`, `same-site`, `cross-site` or `none`.
    pub fetch_site: Option<&'a str>,
}

impl RequestSite<'_> {
    /// Why a login form POST is refused as coming from another site, if it is.
    /// Headers that are absent (older browsers, non-browser clients) prove
    /// nothing either way; the cookie binding still holds. `issuer`: the
    /// configured public URL, whose origin is also this server's (behind a
    /// proxy that terminates TLS, the request's own scheme may differ).
    pub fn refusal(&self, https: bool, issuer: Option<&str>) -> Option<&'static str> {
        // The form is on this server's own page: anything but same-origin is someone
        // else's page posting it (`none`: typed or bookmarked, not a page either).
        if let Some(site) = self.fetch_site {
            if site.eq_ignore_ascii_case("cross-site") || site.eq_ignore_ascii_case("same-site") {
                return Some("The sign-in form was sent from another site.");
            }
        }
        let origin = self.origin?;
        // `null`: a sandboxed or privacy-restricted page; only Fetch Metadata can
        // still say it is this server's own.
        if origin == "null" {
            return (!self
                .fetch_site
                .is_some_and(|s| s.eq_ignore_ascii_case("same-origin")))
            .then_some("The sign-in form was sent from another site.");
        }
        let scheme = if https { "https" } else { "http" };
        let own = self
            .authority
            .map(|a| same_origin(origin, scheme, a))
            .unwrap_or(false);
        let issuers = issuer
            .and_then(|i| i.split_once("://"))
            .is_some_and(|(scheme, rest)| {
                same_origin(
                    origin,
                    scheme,
                    rest.split(['/', '?', '#']).next().unwrap_or(""),
                )
            });
        (!own && !issuers).then_some("The sign-in form was sent from another site.")
    }
}

/// `origin` (`scheme://host[:port]`, or `null`) is `scheme://authority`, default
/// ports and letter case aside.
fn same_origin(origin: &str, scheme: &str, authority: &str) -> bool {
    let Some((o_scheme, o_host)) = origin.split_once("://") else {
        return false;
    };
    let default_port = |s: &str| {
        if s.eq_ignore_ascii_case("https") {
            ":443"
        } else {
            ":80"
        }
    };
    let strip = |host: &'_ str, s: &str| -> String {
        let lower = host.to_ascii_lowercase();
        lower
            .strip_suffix(default_port(s))
            .map(str::to_string)
            .unwrap_or(lower)
    };
    !authority.is_empty()
        && o_scheme.eq_ignore_ascii_case(scheme)
        && strip(o_host, o_scheme) == strip(authority, scheme)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::HostRandomness;

    const KEY: ServerKey = [7u8; 32];

    fn pair(set_cookie: &str) -> String {
        set_cookie.split(';').next().unwrap().to_string()
    }

    #[test]
    fn an_issued_cookie_round_trips_under_its_schemes_name_only() {
        let id = BrowserId::new(&HostRandomness).unwrap();
        let https = id.set_cookie(&KEY, "/authorize", true).unwrap();
        assert!(https.starts_with("__Host-oauth2_browser="), "{https}");
        assert!(
            https.ends_with("; Path=/; Secure; HttpOnly; SameSite=Lax"),
            "{https}"
        );
        assert!(!https.contains("Domain"));
        let http = id.set_cookie(&KEY, "/authorize", false).unwrap();
        assert!(http.starts_with("oauth2_browser="), "{http}");
        assert!(
            http.ends_with("; Path=/authorize; HttpOnly; SameSite=Lax"),
            "{http}"
        );
        let header = format!("theme=dark; {}; other=1", pair(&https));
        assert_eq!(
            BrowserId::from_cookie_header(Some(&header), true, &KEY),
            BrowserCookie::Issued(id)
        );
        // The plain-HTTP cookie does not count over HTTPS, nor the other way round.
        assert_eq!(
            BrowserId::from_cookie_header(Some(&pair(&http)), true, &KEY),
            BrowserCookie::Missing
        );
        assert_eq!(
            BrowserId::from_cookie_header(Some(&pair(&https)), false, &KEY),
            BrowserCookie::Missing
        );
        assert_eq!(
            BrowserId::from_cookie_header(Some(&pair(&http)), false, &KEY),
            BrowserCookie::Issued(id)
        );
        assert_ne!(
            id.binding(),
            BrowserId::new(&HostRandomness).unwrap().binding()
        );
    }

    #[test]
    fn a_value_the_server_did_not_issue_is_refused() {
        let id = BrowserId::new(&HostRandomness).unwrap();
        let mine = pair(&id.set_cookie(&KEY, "/authorize", false).unwrap());
        let other_key = pair(&id.set_cookie(&[8u8; 32], "/authorize", false).unwrap());
        let value = mine.split_once('=').unwrap().1;
        let mut flipped = value.as_bytes().to_vec();
        flipped[30] = if flipped[30] == b'A' { b'B' } else { b'A' };
        let flipped = format!("oauth2_browser={}", String::from_utf8(flipped).unwrap());
        for bad in [
            other_key.as_str(),
            flipped.as_str(),
            "oauth2_browser=",
            "oauth2_browser=AAAAAAAAAAAAAAAAAAAAAA",
            "oauth2_browser=!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!",
        ] {
            assert_eq!(
                BrowserId::from_cookie_header(Some(bad), false, &KEY),
                BrowserCookie::NotIssued,
                "{bad}"
            );
        }
        for none in [None, Some(""), Some("xoauth2_browser=x; theme=dark")] {
            assert_eq!(
                BrowserId::from_cookie_header(none, false, &KEY),
                BrowserCookie::Missing
            );
        }
        // A planted value next to the issued one does not hide it.
        let both = format!("oauth2_browser=AAAA; {mine}");
        assert_eq!(
            BrowserId::from_cookie_header(Some(&both), false, &KEY),
            BrowserCookie::Issued(id)
        );
    }

    fn site<'a>(origin: Option<&'a str>, fetch_site: Option<&'a str>) -> RequestSite<'a> {
        RequestSite {
            authority: Some("auth.example.com"),
            origin,
            fetch_site,
        }
    }

    #[test]
    fn a_post_from_this_origin_or_with_no_say_passes() {
        for (origin, fetch) in [
            (None, None),
            (Some("https://auth.example.com"), None),
            (Some("https://AUTH.example.com:443"), Some("same-origin")),
            (None, Some("same-origin")),
            (None, Some("none")),
            (Some("null"), Some("same-origin")),
        ] {
            assert_eq!(
                site(origin, fetch).refusal(true, None),
                None,
                "{origin:?} {fetch:?}"
            );
        }
        let on_8443 = RequestSite {
            authority: Some("127.0.0.1:8443"),
            origin: Some("https://127.0.0.1:8443"),
            fetch_site: None,
        };
        assert_eq!(on_8443.refusal(true, None), None);
        // Behind a proxy that terminates TLS: the issuer's origin is ours too.
        let behind = site(Some("https://auth.example.com"), None);
        assert!(behind.refusal(false, None).is_some());
        assert_eq!(
            behind.refusal(false, Some("https://auth.example.com/oauth")),
            None
        );
    }

    #[test]
    fn a_post_from_another_site_is_refused() {
        for (origin, fetch) in [
            (Some("https://evil.example"), None),
            (Some("null"), None),
            (Some("http://auth.example.com"), None),
            (Some("https://auth.example.com:8443"), None),
            (Some("https://auth.example.com.evil.example"), None),
            (None, Some("cross-site")),
            (None, Some("same-site")),
            (Some("https://auth.example.com"), Some("cross-site")),
        ] {
            assert!(
                site(origin, fetch)
                    .refusal(true, Some("https://other.example"))
                    .is_some(),
                "{origin:?} {fetch:?}"
            );
        }
        let no_authority = RequestSite {
            authority: None,
            origin: Some("https://auth.example.com"),
            fetch_site: None,
        };
        assert!(no_authority.refusal(true, None).is_some());
    }
}
