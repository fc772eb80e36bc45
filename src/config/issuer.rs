//! Who the token endpoint says it is: the RFC 8414 `issuer`, which the
//! metadata, the JWTs' `iss` and RFC 9207 `iss` on `/authorize` redirects all
//! name. It is configuration, never the request's `Host` unchecked: a Host an
//! attacker chose must not name the endpoints clients send secrets to.

use super::error::{check_header_text, err, ConfigError};

/// The issuer, fixed or per listed host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Issuer {
    /// `issuer`: one URL, whatever the request's Host.
    Fixed(String),
    /// `issuer_from_host: true`: `https://<host>` for a Host in `issuer_hosts`
    /// (lowercase); on a loopback host the request's own scheme.
    FromHost { hosts: Vec<String> },
}

impl Issuer {
    /// The issuer a request to `authority` (its Host) over `https` answers as;
    /// `None`: a Host this server does not answer as (nothing may be built from it).
    pub fn for_request(&self, https: bool, authority: Option<&str>) -> Option<String> {
        match self {
            Issuer::Fixed(url) => Some(url.clone()),
            Issuer::FromHost { hosts } => {
                let authority = authority?.to_ascii_lowercase();
                if !hosts.contains(&authority) {
                    return None;
                }
                let scheme = if https || !is_loopback_authority(&authority) {
                    "https"
                } else {
                    "http"
                };
                Some(format!("{scheme}://{authority}"))
            }
        }
    }

    /// The one issuer every request shares, if it is fixed (what a JWT's `iss` needs).
    pub fn fixed(&self) -> Option<&str> {
        match self {
            Issuer::Fixed(url) => Some(url),
            Issuer::FromHost { .. } => None,
        }
    }
}

/// `issuer`, `issuer_from_host` and `issuer_hosts`: exactly one way to name the
/// issuer, checked.
pub(super) fn parse_issuer(
    issuer: Option<&str>,
    from_host: bool,
    hosts: &[String],
) -> Result<Issuer, ConfigError> {
    if !from_host && !hosts.is_empty() {
        return Err(err(
            "issuer_hosts",
            "applies only with `issuer_from_host: true`",
        ));
    }
    match (issuer, from_host) {
        (Some(url), false) => {
            check_issuer_url(url)?;
            Ok(Issuer::Fixed(url.to_string()))
        }
        (Some(_), true) => Err(err(
            "issuer_from_host",
            "cannot be combined with `issuer`: name the issuer one way",
        )),
        (None, false) => Err(err(
            "issuer",
            "required: the https URL clients know this server by (RFC 8414), e.g. \
             \"https://auth.example.com\"; or `issuer_from_host: true` with `issuer_hosts`",
        )),
        (None, true) => {
            if hosts.is_empty() {
                return Err(err(
                    "issuer_hosts",
                    "required with `issuer_from_host`: the hosts (host or host:port, as \
                     clients send them in Host) this server answers as",
                ));
            }
            let mut listed: Vec<String> = Vec::with_capacity(hosts.len());
            for (i, h) in hosts.iter().enumerate() {
                let field = format!("issuer_hosts[{i}]");
                if !is_valid_authority(h) {
                    return Err(err(
                        field,
                        "must be a host or host:port (letters, digits, `.`, `-`, `:`, `[`, `]`)",
                    ));
                }
                let h = h.to_ascii_lowercase();
                if listed.contains(&h) {
                    return Err(err(field, "appears twice"));
                }
                listed.push(h);
            }
            Ok(Issuer::FromHost { hosts: listed })
        }
    }
}

/// RFC 8414 §2: an https URL without query or fragment (and, here, no trailing
/// `/`, as endpoint paths are appended); plain http only on loopback (the demo).
fn check_issuer_url(url: &str) -> Result<(), ConfigError> {
    check_header_text("issuer", url)?;
    let shape = "must be an https URL without query, fragment or trailing `/` \
                 (http only on 127.0.0.1, [::1] or localhost)";
    let (https, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (false, rest)
    } else {
        return Err(err("issuer", shape));
    };
    let authority = rest.split('/').next().unwrap_or_default();
    if url.contains(['?', '#', ' ']) || url.ends_with('/') || !is_valid_authority(authority) {
        return Err(err("issuer", shape));
    }
    if !https && !is_loopback_authority(authority) {
        return Err(err(
            "issuer",
            "plain http is allowed only on the loopback interface (127.0.0.1, [::1], localhost): use https",
        ));
    }
    Ok(())
}

/// `host` or `host:port` as a Host header carries it (no user info, no path).
fn is_valid_authority(a: &str) -> bool {
    !a.is_empty()
        && a.len() <= 255
        && !a.starts_with(':')
        && a.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
}

fn is_loopback_authority(authority: &str) -> bool {
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    host.eq_ignore_ascii_case("localhost")
        || host == "::1"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(r: Result<Issuer, ConfigError>) -> String {
        r.unwrap_err().field
    }

    #[test]
    fn a_fixed_issuer_ignores_the_host() {
        let i = parse_issuer(Some("https://auth.example.com"), false, &[]).unwrap();
        assert_eq!(
            i.for_request(false, Some("evil.example")).as_deref(),
            Some("https://auth.example.com")
        );
        assert_eq!(i.fixed(), Some("https://auth.example.com"));
        // A path is allowed (RFC 8414 §3.1); the loopback demo may use http.
        for ok in [
            "https://example.com/tenant-a",
            "http://127.0.0.1:8280",
            "http://localhost",
            "http://[::1]:8080",
        ] {
            assert!(parse_issuer(Some(ok), false, &[]).is_ok(), "{ok}");
        }
    }

    #[test]
    fn a_bad_or_missing_issuer_is_refused_naming_its_field() {
        for bad in [
            "auth.example.com",
            "http://auth.example.com",
            "http://127.0.0.1.evil.example",
            "https://auth.example.com/",
            "https://auth.example.com?x=1",
            "https://auth.example.com#f",
            "https://user@auth.example.com",
            "https://",
            "ftp://auth.example.com",
        ] {
            assert_eq!(
                field(parse_issuer(Some(bad), false, &[])),
                "issuer",
                "{bad}"
            );
        }
        assert_eq!(field(parse_issuer(None, false, &[])), "issuer");
        let hosts = vec!["auth.example.com".to_string()];
        assert_eq!(
            field(parse_issuer(Some("https://a.example"), true, &hosts)),
            "issuer_from_host"
        );
        assert_eq!(field(parse_issuer(None, false, &hosts)), "issuer_hosts");
        assert_eq!(field(parse_issuer(None, true, &[])), "issuer_hosts");
        let bad = vec!["auth.example.com".to_string(), "https://x".to_string()];
        assert_eq!(field(parse_issuer(None, true, &bad)), "issuer_hosts[1]");
        let twice = vec!["A.example".to_string(), "a.example".to_string()];
        assert_eq!(field(parse_issuer(None, true, &twice)), "issuer_hosts[1]");
    }

    #[test]
    fn from_host_answers_only_listed_hosts() {
        let hosts = vec!["Auth.Example.com".to_string(), "127.0.0.1:8280".to_string()];
        let i = parse_issuer(None, true, &hosts).unwrap();
        assert_eq!(i.fixed(), None);
        // Listed hosts, any case; https off loopback even over plain http.
        assert_eq!(
            i.for_request(false, Some("auth.EXAMPLE.com")).as_deref(),
            Some("https://auth.example.com")
        );
        assert_eq!(
            i.for_request(false, Some("127.0.0.1:8280")).as_deref(),
            Some("http://127.0.0.1:8280")
        );
        assert_eq!(
            i.for_request(true, Some("127.0.0.1:8280")).as_deref(),
            Some("https://127.0.0.1:8280")
        );
        // Anything else builds nothing.
        for h in [
            Some("evil.example"),
            Some("auth.example.com:8443"),
            Some("auth.example.com.evil.example"),
            Some(""),
            None,
        ] {
            assert_eq!(i.for_request(true, h), None, "{h:?}");
        }
    }
}
