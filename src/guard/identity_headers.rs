//! What a request already carries under the guard's identity header names, so the
//! glue can replace it. Upstreams that turn headers into variables (CGI's
//! `HTTP_X_AUTH_USER`, WSGI, PHP) read `-` and `_` alike and ignore case, so
//! `x_auth_user` or `X-Auth_User` would reach them as `x-auth-user`: every such
//! spelling counts as the header and is removed before the guard sets its own.

/// The client's own values under the identity names (in `IdentityHeaders::all()` order).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SentIdentityHeaders {
    /// How many times each name came spelled exactly as configured (saturating).
    pub exact: [u8; 4],
    /// Header names that are another spelling of an identity name, each once.
    pub other_spellings: Vec<String>,
}

impl SentIdentityHeaders {
    /// Looks at every header name of a request once; allocates only when a
    /// client sent another spelling.
    pub fn scan<'a>(names: [&str; 4], keys: impl IntoIterator<Item = &'a [u8]>) -> Self {
        let mut sent = SentIdentityHeaders::default();
        for key in keys {
            for (count, name) in sent.exact.iter_mut().zip(names) {
                if key == name.as_bytes() {
                    *count = count.saturating_add(1);
                } else if same_header(key, name.as_bytes()) {
                    // Only ASCII matches an (ASCII) name, so this is always text.
                    if let Ok(k) = std::str::from_utf8(key) {
                        if !sent.other_spellings.iter().any(|o| o == k) {
                            sent.other_spellings.push(k.to_string());
                        }
                    }
                }
            }
        }
        sent
    }

    /// When the headers could not be read: every name counts as sent more than
    /// once, so each is removed before the guard's value is added.
    pub fn unknown() -> Self {
        SentIdentityHeaders {
            exact: [2; 4],
            other_spellings: Vec::new(),
        }
    }
}

/// The same header to an upstream that folds `_` into `-` and ignores case.
fn same_header(a: &[u8], b: &[u8]) -> bool {
    fn fold(b: u8) -> u8 {
        if b == b'_' {
            b'-'
        } else {
            b.to_ascii_lowercase()
        }
    }
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| fold(*x) == fold(*y))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAMES: [&str; 4] = [
        "x-auth-client-id",
        "x-auth-user",
        "x-auth-scope",
        "x-auth-expires",
    ];

    fn scan(keys: &[&str]) -> SentIdentityHeaders {
        SentIdentityHeaders::scan(NAMES, keys.iter().map(|k| k.as_bytes()))
    }

    #[test]
    fn an_ordinary_request_sends_none_and_allocates_nothing() {
        let sent = scan(&[
            ":method",
            ":path",
            "authorization",
            "x-auth",
            "x-auth-users",
        ]);
        assert_eq!(sent, SentIdentityHeaders::default());
        assert_eq!(sent.other_spellings.capacity(), 0);
    }

    #[test]
    fn exact_names_are_counted_with_their_duplicates() {
        let sent = scan(&["x-auth-user", "x-auth-user", "x-auth-scope"]);
        assert_eq!(sent.exact, [0, 2, 1, 0]);
        assert!(sent.other_spellings.is_empty());
    }

    #[test]
    fn underscores_mixed_separators_and_case_are_other_spellings() {
        let sent = scan(&[
            "x_auth_user",
            "x-auth_user",
            "X-Auth-User",
            "x_auth_client_id",
            "x_auth_user",
            "x_auth_expires",
        ]);
        assert_eq!(sent.exact, [0; 4]);
        assert_eq!(
            sent.other_spellings,
            [
                "x_auth_user",
                "x-auth_user",
                "X-Auth-User",
                "x_auth_client_id",
                "x_auth_expires"
            ]
        );
    }

    #[test]
    fn a_configured_underscore_name_has_the_dash_spelling_as_another() {
        let names = ["client", "x_user", "scope", "exp"];
        let keys: [&[u8]; 3] = [b"x-user", b"x_user", b"x_usr"];
        let sent = SentIdentityHeaders::scan(names, keys);
        assert_eq!(sent.exact, [0, 1, 0, 0]);
        assert_eq!(sent.other_spellings, ["x-user"]);
    }

    #[test]
    fn non_ascii_names_never_match() {
        let keys: [&[u8]; 1] = [b"x-auth-us\xc3\xa9"];
        assert_eq!(
            SentIdentityHeaders::scan(NAMES, keys),
            SentIdentityHeaders::default()
        );
    }
}
