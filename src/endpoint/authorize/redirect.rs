//! How `/authorize` answers go back to the client: a redirect carrying the
//! result or the error (with `state` and RFC 9207 `iss`), or an error page
//! when the redirect URI cannot be trusted.

use super::login_page::error_page;
use super::AuthorizeOutcome;
use crate::oauth::response::Response;

pub(super) fn done(response: Response, outcome: AuthorizeOutcome) -> (Response, AuthorizeOutcome) {
    (response, outcome)
}

pub(super) fn refused_page(status: u16, message: &str) -> (Response, AuthorizeOutcome) {
    done(error_page(status, message), AuthorizeOutcome::ErrorPage)
}

/// Where and how errors and results go back to the client.
pub(super) struct Back<'a> {
    pub(super) redirect_uri: &'a str,
    pub(super) fragment: bool,
    pub(super) state: Option<&'a str>,
    /// RFC 9207 `iss`: the configured issuer, so a client talking to several
    /// servers can tell whose answer this is (mix-up defence, RFC 9700 §4.4).
    pub(super) issuer: &'a str,
    /// 302 for the GET, 303 for the form POST.
    pub(super) status: u16,
}

impl Back<'_> {
    pub(super) fn to(&self, params: &[(&str, &str)]) -> Response {
        let mut url = self.redirect_uri.to_string();
        url.push(if self.fragment {
            '#'
        } else if url.contains('?') {
            '&'
        } else {
            '?'
        });
        let mut first = true;
        let state = self.state.map(|s| ("state", s));
        let iss = Some(("iss", self.issuer));
        for (k, v) in params.iter().copied().chain(state).chain(iss) {
            if !first {
                url.push('&');
            }
            first = false;
            url.push_str(k);
            url.push('=');
            url.push_str(&url_encode(v));
        }
        Response::new(self.status)
            .header("location", url)
            .header("referrer-policy", "no-referrer")
            .no_store()
    }

    pub(super) fn error(&self, code: &str, description: &str) -> (Response, AuthorizeOutcome) {
        done(
            self.to(&[("error", code), ("error_description", description)]),
            AuthorizeOutcome::ErrorRedirect,
        )
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
