//! Clients and users of the token endpoint: the grant types, secrets, scopes,
//! redirect URIs and lifetimes each may use, checked field by field.

use serde::Deserialize;
use std::collections::HashSet;

use super::error::{check_header_text, check_name, check_scopes, err, ConfigError};
use super::lifetimes::{check_lifetimes, LifetimeOverrides, LifetimesConfig};
use crate::config::secret_hash::SecretHash;
use crate::oauth::scope;

const MAX_REDIRECT_URI: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    ClientCredentials,
    Password,
    RefreshToken,
    AuthorizationCode,
    /// `response_type=token` at /authorize; never a `grant_type` at /token.
    Implicit,
}

impl GrantType {
    /// A `grant_type` of /token (so never `Implicit`).
    pub fn from_param(s: &str) -> Option<GrantType> {
        match s {
            "client_credentials" => Some(GrantType::ClientCredentials),
            "password" => Some(GrantType::Password),
            "refresh_token" => Some(GrantType::RefreshToken),
            "authorization_code" => Some(GrantType::AuthorizationCode),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            GrantType::ClientCredentials => "client_credentials",
            GrantType::Password => "password",
            GrantType::RefreshToken => "refresh_token",
            GrantType::AuthorizationCode => "authorization_code",
            GrantType::Implicit => "implicit",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ClientFile {
    pub(super) client_id: String,
    /// Required unless `public`.
    secret_hash: Option<String>,
    #[serde(default)]
    public: bool,
    #[serde(default)]
    redirect_uris: Vec<String>,
    #[serde(default)]
    require_pkce: bool,
    #[serde(default)]
    allow_plain_pkce: bool,
    owner: Option<String>,
    grant_types: Vec<GrantType>,
    scopes: Vec<String>,
    #[serde(default = "default_scope")]
    default_scope: String,
    #[serde(default)]
    lifetimes: LifetimeOverrides,
    #[serde(default)]
    resource_server: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UserFile {
    username: String,
    tenant: Option<String>,
    password_hash: String,
    scopes: Vec<String>,
}

fn default_scope() -> String {
    "default".into()
}

#[derive(Debug, Clone)]
pub struct Client {
    pub client_id: String,
    /// `None` for a public client (RFC 6749 §2.1): it authenticates with its id alone.
    pub secret: Option<SecretHash>,
    pub public: bool,
    /// Redirect URIs for /authorize, matched exactly.
    pub redirect_uris: Vec<String>,
    /// PKCE is required for the code flow (always true for public clients).
    pub require_pkce: bool,
    /// `code_challenge_method=plain` is accepted (otherwise S256 only).
    pub allow_plain_pkce: bool,
    /// `AuthorizedUser` of the client's application tokens at /revoke.
    pub owner: String,
    pub grant_types: Vec<GrantType>,
    pub scopes: Vec<String>,
    pub default_scope: String,
    pub lifetimes: LifetimesConfig,
    /// May introspect tokens issued to other clients (RFC 7662 §4).
    pub resource_server: bool,
}

impl Client {
    pub fn allows(&self, g: GrantType) -> bool {
        self.grant_types.contains(&g)
    }

    /// The redirect URI of an authorization request: the one named, if it is
    /// registered (exact match), or the only registered one when none is named.
    pub fn redirect_uri<'a>(&'a self, requested: Option<&'a str>) -> Option<&'a str> {
        match requested {
            Some(r) => self
                .redirect_uris
                .iter()
                .find(|u| u.as_str() == r)
                .map(|u| u.as_str()),
            None if self.redirect_uris.len() == 1 => self.redirect_uris.first().map(|u| u.as_str()),
            None => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct User {
    /// `username@tenant`.
    pub id: String,
    pub password: SecretHash,
    pub scopes: Vec<String>,
}

/// `clients`: every client checked, with lifetimes defaulted from the top level.
pub(super) fn parse_clients(
    file: &[ClientFile],
    default_tenant: &str,
    lifetimes_default: &LifetimesConfig,
) -> Result<Vec<Client>, ConfigError> {
    if file.is_empty() {
        return Err(err("clients", "at least one client is required"));
    }
    let mut seen = HashSet::new();
    let mut clients = Vec::new();
    for (i, c) in file.iter().enumerate() {
        let at = |f: &str| format!("clients[{i}].{f}");
        check_name(&at("client_id"), &c.client_id)?;
        if !seen.insert(c.client_id.clone()) {
            return Err(err(
                at("client_id"),
                format!("`{}` appears twice", c.client_id),
            ));
        }
        let secret = match (&c.secret_hash, c.public) {
            (Some(h), false) => Some(SecretHash::parse(h).map_err(|m| err(at("secret_hash"), m))?),
            (None, true) => None,
            (Some(_), true) => {
                return Err(err(
                    at("secret_hash"),
                    "a public client has no secret: remove `secret_hash` or `public`",
                ))
            }
            (None, false) => {
                return Err(err(
                    at("secret_hash"),
                    "required unless the client is `public: true`",
                ))
            }
        };
        if c.grant_types.is_empty() {
            return Err(err(
                at("grant_types"),
                "at least one grant type is required",
            ));
        }
        check_browser_client(i, c)?;
        check_scopes(&at("scopes"), &c.scopes)?;
        let defaults = scope::parse(&c.default_scope)
            .map_err(|bad| err(at("default_scope"), format!("`{bad}` is not a valid scope")))?;
        if defaults.is_empty() {
            return Err(err(at("default_scope"), "must not be empty"));
        }
        if let Some(x) = scope::first_outside(&defaults, &c.scopes) {
            return Err(err(
                at("default_scope"),
                format!("`{x}` is not in this client's scopes"),
            ));
        }
        let owner = c
            .owner
            .clone()
            .unwrap_or_else(|| format!("admin@{}", default_tenant));
        check_header_text(&at("owner"), &owner)?;
        let o = &c.lifetimes;
        let lifetimes = LifetimesConfig {
            application_access_token: o
                .application_access_token
                .unwrap_or(lifetimes_default.application_access_token),
            user_access_token: o
                .user_access_token
                .unwrap_or(lifetimes_default.user_access_token),
            refresh_token: o.refresh_token.unwrap_or(lifetimes_default.refresh_token),
        };
        check_lifetimes(&at("lifetimes"), &lifetimes)?;
        clients.push(Client {
            client_id: c.client_id.clone(),
            secret,
            public: c.public,
            redirect_uris: c.redirect_uris.clone(),
            require_pkce: c.require_pkce || c.public,
            allow_plain_pkce: c.allow_plain_pkce,
            owner,
            grant_types: c.grant_types.clone(),
            scopes: c.scopes.clone(),
            default_scope: scope::join(&defaults),
            lifetimes,
            resource_server: c.resource_server,
        });
    }
    Ok(clients)
}

/// `users`: resource owners for the password grant and the login page.
pub(super) fn parse_users(
    file: &[UserFile],
    default_tenant: &str,
) -> Result<Vec<User>, ConfigError> {
    let mut users = Vec::new();
    let mut seen = HashSet::new();
    for (i, u) in file.iter().enumerate() {
        let at = |f: &str| format!("users[{i}].{f}");
        check_name(&at("username"), &u.username)?;
        if u.username.contains('@') {
            return Err(err(
                at("username"),
                "must not contain `@`: set `tenant` instead",
            ));
        }
        let tenant = u
            .tenant
            .clone()
            .unwrap_or_else(|| default_tenant.to_string());
        check_name(&at("tenant"), &tenant)?;
        let id = format!("{}@{}", u.username, tenant);
        if id.len() > 255 {
            return Err(err(
                at("username"),
                "username@tenant must be at most 255 bytes",
            ));
        }
        if !seen.insert(id.clone()) {
            return Err(err(at("username"), format!("`{id}` appears twice")));
        }
        let password =
            SecretHash::parse(&u.password_hash).map_err(|m| err(at("password_hash"), m))?;
        check_scopes(&at("scopes"), &u.scopes)?;
        users.push(User {
            id,
            password,
            scopes: u.scopes.clone(),
        });
    }
    Ok(users)
}

/// The settings of clients that use /authorize: public clients, redirect URIs.
fn check_browser_client(i: usize, c: &ClientFile) -> Result<(), ConfigError> {
    let at = |f: &str| format!("clients[{i}].{f}");
    if c.public {
        for (j, g) in c.grant_types.iter().enumerate() {
            if !matches!(g, GrantType::AuthorizationCode | GrantType::Implicit) {
                return Err(err(
                    format!("clients[{i}].grant_types[{j}]"),
                    format!(
                        "a public client may use only authorization_code and implicit, not {}",
                        g.as_str()
                    ),
                ));
            }
        }
        if c.resource_server {
            return Err(err(
                at("resource_server"),
                "a public client cannot be a resource server",
            ));
        }
    }
    let browser = c
        .grant_types
        .iter()
        .any(|g| matches!(g, GrantType::AuthorizationCode | GrantType::Implicit));
    if browser && c.redirect_uris.is_empty() {
        return Err(err(
            at("redirect_uris"),
            "at least one redirect URI is required for authorization_code or implicit",
        ));
    }
    if !browser && !c.redirect_uris.is_empty() {
        return Err(err(
            at("redirect_uris"),
            "only clients with authorization_code or implicit use redirect URIs",
        ));
    }
    if (c.require_pkce || c.allow_plain_pkce)
        && !c.grant_types.contains(&GrantType::AuthorizationCode)
    {
        return Err(err(
            at(if c.require_pkce {
                "require_pkce"
            } else {
                "allow_plain_pkce"
            }),
            "applies only to clients with authorization_code",
        ));
    }
    for (j, u) in c.redirect_uris.iter().enumerate() {
        let field = format!("clients[{i}].redirect_uris[{j}]");
        let scheme_ok = u.split_once(':').is_some_and(|(scheme, rest)| {
            !rest.is_empty()
                && scheme
                    .bytes()
                    .next()
                    .is_some_and(|b| b.is_ascii_alphabetic())
                && scheme
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        });
        let web = u.starts_with("http://") || u.starts_with("https://");
        let host_ok = !web
            || u.split("//")
                .nth(1)
                .is_some_and(|a| !a.is_empty() && !a.starts_with('/'));
        if u.len() > MAX_REDIRECT_URI
            || !scheme_ok
            || !host_ok
            || u.contains('#')
            // Browsers read `\` as `/` (WHATWG URL), so `http://evil\@127.0.0.1/`
            // would reach evil; RFC 3986 never allows it unencoded.
            || u.contains('\\')
            || !u.bytes().all(|b| (0x21..=0x7e).contains(&b))
        {
            return Err(err(
                field,
                format!(
                    "must be an absolute URI without fragment, backslash, spaces or non-ASCII, at most {MAX_REDIRECT_URI} characters"
                ),
            ));
        }
        if let Some(why) = unsafe_redirect(u) {
            return Err(err(field, why));
        }
        if c.redirect_uris[..j].contains(u) {
            return Err(err(field, "appears twice"));
        }
    }
    Ok(())
}

/// Redirect URIs an authorization server must not send codes or tokens to
/// (RFC 9700 §2.1, §4.1): script and data URIs, files, and plain http off the
/// loopback interface, where anyone on the path reads the code.
fn unsafe_redirect(uri: &str) -> Option<&'static str> {
    let (scheme, rest) = uri.split_once(':')?;
    let scheme = scheme.to_ascii_lowercase();
    if matches!(scheme.as_str(), "javascript" | "data" | "vbscript" | "file") {
        return Some("a javascript:, data:, vbscript: or file: URI is never a redirect target");
    }
    if scheme != "http" {
        return None;
    }
    let authority = rest.trim_start_matches('/');
    let authority = authority.split(['/', '?']).next().unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    let host = if host.starts_with('[') {
        host.split(']').next().map(|h| &h[1..]).unwrap_or_default()
    } else {
        host.split(':').next().unwrap_or_default()
    };
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host == "::1"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback());
    (!loopback).then_some("plain http is allowed only on the loopback interface (127.0.0.1, [::1], localhost): use https")
}
