//! The HTML pages of `/authorize`: the login and consent form, and the error
//! page for requests that cannot be redirected back. Small, accessible
//! (language, labels, one heading, an alert role for messages) and locked down:
//! no script, no external resource, no framing, never cached. Everything
//! echoed is HTML-escaped.

use crate::oauth::response::Response;

/// What the login page shows.
pub struct LoginView<'a> {
    /// Where the form posts (the authorize path).
    pub action: &'a str,
    pub client_id: &'a str,
    /// Scopes requested, space-delimited.
    pub scope: &'a str,
    pub form_token: &'a str,
    /// Shown above the form (wrong credentials, throttling).
    pub message: Option<&'a str>,
    /// Prefilled after a failed attempt.
    pub username: &'a str,
    /// Where the answer will redirect to: the form may lead there (CSP `form-action`).
    pub redirect_uri: &'a str,
}

const STYLE: &str = "\
body{margin:0;font:16px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;\
background:#f3f4f6;color:#111827}\
main{max-width:24rem;margin:4rem auto;padding:2rem;background:#fff;border-radius:.75rem;\
box-shadow:0 1px 3px rgba(0,0,0,.12)}\
h1{font-size:1.5rem;margin:0 0 1rem}\
p{margin:.5rem 0}\
ul{margin:.25rem 0 1rem;padding-left:1.25rem}\
code{background:#eef2ff;padding:.1rem .35rem;border-radius:.25rem;font-size:.9em}\
label{display:block;font-weight:600;margin:.75rem 0 .25rem}\
input{box-sizing:border-box;width:100%;padding:.6rem .7rem;font:inherit;border:1px solid #9ca3af;\
border-radius:.375rem}\
input:focus,button:focus{outline:3px solid #93c5fd;outline-offset:1px}\
.actions{display:flex;gap:.75rem;margin-top:1.5rem}\
button{flex:1;padding:.65rem;font:inherit;font-weight:600;border-radius:.375rem;cursor:pointer;\
border:1px solid #1d4ed8;background:#1d4ed8;color:#fff}\
button.secondary{background:#fff;color:#1f2937;border-color:#9ca3af}\
.error{background:#fef2f2;border:1px solid #fca5a5;color:#991b1b;padding:.6rem .75rem;\
border-radius:.375rem}\
.client{word-break:break-all}";

/// Escapes text for HTML element content and double-quoted attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// The origin (or, for a private-use scheme, the scheme) a redirect goes to,
/// as a CSP source expression; `None` when it cannot be expressed safely.
fn csp_source(redirect_uri: &str) -> Option<String> {
    let (scheme, rest) = redirect_uri.split_once(':')?;
    let scheme_ok = !scheme.is_empty()
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    if !scheme_ok {
        return None;
    }
    let source = match rest.strip_prefix("//") {
        Some(after) => {
            let authority = after.split(['/', '?', '#']).next().unwrap_or("");
            let authority = authority.rsplit('@').next().unwrap_or("");
            if authority.is_empty()
                || !authority.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']')
                })
            {
                return None;
            }
            format!("{scheme}://{authority}")
        }
        None => format!("{scheme}:"),
    };
    Some(source)
}

fn page(status: u16, title: &str, body: &str, form_target: Option<&str>) -> Response {
    let html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
<meta name=\"referrer\" content=\"same-origin\">\n<title>{title}</title>\n<style>{STYLE}</style>\n\
</head>\n<body>\n<main>\n{body}</main>\n</body>\n</html>\n"
    );
    // Chromium applies form-action to the redirect that answers the POST too,
    // so the redirect URI's origin is allowed alongside 'self'.
    let form_action = match form_target.and_then(csp_source) {
        Some(src) => format!("'self' {src}"),
        None => "'self'".to_string(),
    };
    Response::new(status)
        .header("content-type", "text/html; charset=utf-8")
        .header(
            "content-security-policy",
            format!(
                "default-src 'none'; style-src 'unsafe-inline'; form-action {form_action}; \
frame-ancestors 'none'; base-uri 'none'"
            ),
        )
        .header("x-frame-options", "DENY")
        .header("x-content-type-options", "nosniff")
        // Not `no-referrer`: under it browsers send `Origin: null` with the form's
        // own POST, which the cross-site check could not tell from another site's.
        // `same-origin` still sends nothing to other sites.
        .header("referrer-policy", "same-origin")
        .no_store()
        .with_body(html.into_bytes())
}

/// The login and consent page.
pub fn login_page(v: &LoginView, status: u16) -> Response {
    let client = escape(v.client_id);
    let scopes: String = v
        .scope
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(|s| format!("<li><code>{}</code></li>\n", escape(s)))
        .collect();
    let message = v
        .message
        .map(|m| format!("<p class=\"error\" role=\"alert\">{}</p>\n", escape(m)))
        .unwrap_or_default();
    let body = format!(
        "<h1>Sign in</h1>\n\
<p>The application <strong class=\"client\">{client}</strong> asks to act on your behalf with these permissions:</p>\n\
<ul aria-label=\"Requested permissions\">\n{scopes}</ul>\n\
{message}\
<form method=\"post\" action=\"{action}\">\n\
<input type=\"hidden\" name=\"form_token\" value=\"{token}\">\n\
<label for=\"username\">Username</label>\n\
<input id=\"username\" name=\"username\" type=\"text\" autocomplete=\"username\" autocapitalize=\"none\" spellcheck=\"false\" required autofocus value=\"{username}\">\n\
<label for=\"password\">Password</label>\n\
<input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required>\n\
<div class=\"actions\">\n\
<button type=\"submit\" name=\"action\" value=\"approve\">Sign in and allow</button>\n\
<button type=\"submit\" name=\"action\" value=\"deny\" class=\"secondary\" formnovalidate>Deny</button>\n\
</div>\n</form>\n",
        action = escape(v.action),
        token = escape(v.form_token),
        username = escape(v.username),
    );
    page(
        status,
        &format!("Sign in to allow {client}"),
        &body,
        Some(v.redirect_uri),
    )
}

/// A request that cannot be answered with a redirect (RFC 6749 §4.1.2.1: an
/// unknown client or an unregistered redirect URI), or an expired form.
pub fn error_page(status: u16, message: &str) -> Response {
    let body = format!(
        "<h1>This sign-in request cannot continue</h1>\n<p role=\"alert\">{}</p>\n\
<p>Go back to the application and start again.</p>\n",
        escape(message)
    );
    page(status, "Sign-in request refused", &body, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view<'a>(client: &'a str, message: Option<&'a str>) -> LoginView<'a> {
        LoginView {
            action: "/authorize",
            client_id: client,
            scope: "default <b>PRODUCTION</b>",
            form_token: "tok\"en",
            message,
            username: "a\"><script>",
            redirect_uri: "https://app.example:8443/cb?x=1",
        }
    }

    #[test]
    fn everything_echoed_is_escaped() {
        let r = login_page(
            &view("<img src=x onerror=alert(1)>", Some("<i>no</i>")),
            200,
        );
        let html = String::from_utf8(r.body).unwrap();
        assert!(!html.contains("<img"));
        assert!(!html.contains("<script>"));
        assert!(!html.contains("<b>"));
        assert!(!html.contains("<i>"));
        assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"));
        assert!(html.contains("value=\"tok&quot;en\""));
        assert!(html.contains("role=\"alert\""));
    }

    #[test]
    fn accessible_structure_and_security_headers() {
        let r = login_page(&view("app", None), 200);
        let html = String::from_utf8(r.body.clone()).unwrap();
        for needle in [
            "<html lang=\"en\">",
            "<h1>",
            "<label for=\"username\">",
            "<label for=\"password\">",
            "name=\"form_token\"",
            "value=\"approve\"",
            "value=\"deny\"",
            "<li><code>default</code></li>",
        ] {
            assert!(html.contains(needle), "{needle}");
        }
        assert!(!html.contains("role=\"alert\""));
        let csp = r.header_value("content-security-policy").unwrap();
        assert!(csp.contains("default-src 'none'"));
        assert!(csp.contains("frame-ancestors 'none'"));
        assert!(
            csp.contains("form-action 'self' https://app.example:8443;"),
            "{csp}"
        );
        assert_eq!(r.header_value("x-frame-options"), Some("DENY"));
        assert_eq!(r.header_value("cache-control"), Some("no-store"));
        assert_eq!(
            r.header_value("content-type"),
            Some("text/html; charset=utf-8")
        );
    }

    #[test]
    fn csp_sources_of_redirect_uris() {
        assert_eq!(
            csp_source("http://127.0.0.1:8280/api/callback").as_deref(),
            Some("http://127.0.0.1:8280")
        );
        assert_eq!(
            csp_source("com.example.app:/oauth").as_deref(),
            Some("com.example.app:")
        );
        assert_eq!(csp_source("https://a b/").as_deref(), None);
        assert_eq!(csp_source("https://x;script-src *").as_deref(), None);
        assert_eq!(csp_source("nocolon"), None);
    }

    #[test]
    fn error_page_escapes_and_is_locked_down() {
        let r = error_page(400, "bad <client>");
        assert_eq!(r.status, 400);
        let html = String::from_utf8(r.body.clone()).unwrap();
        assert!(html.contains("bad &lt;client&gt;"));
        assert!(r
            .header_value("content-security-policy")
            .unwrap()
            .contains("form-action 'self';"));
    }
}
