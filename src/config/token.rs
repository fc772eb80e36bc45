//! The token endpoint's plugin configuration: JSON, checked completely when
//! Envoy loads it. Any problem is reported as one [`ConfigError`] naming the
//! field, and the filter refuses the configuration.

use serde::Deserialize;
use std::collections::HashSet;

use crate::authn::secret_hash::SecretHash;
use crate::authn::throttle::ThrottlePolicy;
use crate::oauth::scope;
use crate::store::{StoreLayout, MAX_BUCKETS, MAX_GRANTS_PER_BUCKET};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "invalid plugin configuration: field `{}`: {}",
            self.field, self.message
        )
    }
}

fn err(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.into(),
        message: message.into(),
    }
}

/// Parses JSON with serde, reporting the path of the field that failed.
pub fn parse_json<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, ConfigError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        // serde_json appends " at line L column C"; keep it, it helps in YAML blocks.
        err(
            if path == "." {
                "(root)".to_string()
            } else {
                path
            },
            inner.to_string(),
        )
    })
}

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LifetimesConfig {
    #[serde(default = "default_hour")]
    pub application_access_token: u64,
    #[serde(default = "default_hour")]
    pub user_access_token: u64,
    #[serde(default = "default_day")]
    pub refresh_token: u64,
}

impl Default for LifetimesConfig {
    fn default() -> Self {
        LifetimesConfig {
            application_access_token: 3600,
            user_access_token: 3600,
            refresh_token: 86400,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LifetimeOverrides {
    pub application_access_token: Option<u64>,
    pub user_access_token: Option<u64>,
    pub refresh_token: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    #[serde(default = "default_buckets")]
    pub buckets: u32,
    #[serde(default = "default_grants_per_bucket")]
    pub grants_per_bucket: u16,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            buckets: default_buckets(),
            grants_per_bucket: default_grants_per_bucket(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathsConfig {
    #[serde(default = "default_token_path")]
    pub token: String,
    #[serde(default = "default_revoke_path")]
    pub revoke: String,
    #[serde(default = "default_introspect_path")]
    pub introspect: String,
    #[serde(default = "default_authorize_path")]
    pub authorize: String,
}

impl Default for PathsConfig {
    fn default() -> Self {
        PathsConfig {
            token: default_token_path(),
            revoke: default_revoke_path(),
            introspect: default_introspect_path(),
            authorize: default_authorize_path(),
        }
    }
}

/// RFC 8414 §3: fixed by the standard.
pub const METADATA_PATH: &str = "/.well-known/oauth-authorization-server";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThrottleConfig {
    #[serde(default = "default_max_failures")]
    pub max_failures: u32,
    #[serde(default = "default_throttle_window")]
    pub window_seconds: u64,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            max_failures: default_max_failures(),
            window_seconds: default_throttle_window(),
        }
    }
}

fn default_max_failures() -> u32 {
    10
}
fn default_throttle_window() -> u64 {
    60
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientFile {
    client_id: String,
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
struct UserFile {
    username: String,
    tenant: Option<String>,
    password_hash: String,
    scopes: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenConfigFile {
    issuer: Option<String>,
    #[serde(default)]
    throttle: ThrottleConfig,
    #[serde(default)]
    refresh_token_grace_seconds: u64,
    #[serde(default = "default_realm")]
    realm: String,
    #[serde(default = "default_tenant")]
    default_tenant: String,
    #[serde(default = "default_max_body")]
    max_body_bytes: usize,
    #[serde(default)]
    lifetimes: LifetimesConfig,
    #[serde(default)]
    store: StoreConfig,
    #[serde(default)]
    paths: PathsConfig,
    #[serde(default = "default_code_lifetime")]
    code_lifetime_seconds: u64,
    clients: Vec<ClientFile>,
    #[serde(default)]
    users: Vec<UserFile>,
    #[serde(default)]
    revoked_clients: Vec<String>,
}

fn default_hour() -> u64 {
    3600
}
fn default_day() -> u64 {
    86400
}
fn default_buckets() -> u32 {
    16384
}
fn default_grants_per_bucket() -> u16 {
    64
}
fn default_token_path() -> String {
    "/token".into()
}
fn default_revoke_path() -> String {
    "/revoke".into()
}
fn default_authorize_path() -> String {
    "/authorize".into()
}
fn default_code_lifetime() -> u64 {
    60
}
fn default_introspect_path() -> String {
    "/introspect".into()
}
fn default_scope() -> String {
    "default".into()
}
fn default_realm() -> String {
    "oauth2".into()
}
fn default_tenant() -> String {
    "carbon.super".into()
}
fn default_max_body() -> usize {
    16 * 1024
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

#[derive(Debug, Clone)]
pub struct TokenConfig {
    /// RFC 8414 issuer; `None`: derived from each metadata request's scheme and host.
    pub issuer: Option<String>,
    pub throttle: ThrottlePolicy,
    /// Seconds after a rotation in which the previous refresh token may be
    /// retried once for the same pair (0: never).
    pub refresh_token_grace_seconds: u64,
    pub realm: String,
    pub default_tenant: String,
    pub max_body_bytes: usize,
    pub store: StoreLayout,
    pub paths: PathsConfig,
    /// Seconds an authorization code stays redeemable.
    pub code_lifetime: u64,
    pub clients: Vec<Client>,
    pub users: Vec<User>,
    /// Clients whose every grant is revoked when this configuration loads.
    pub revoked_clients: Vec<String>,
}

/// A year: no token should outlive that.
const MAX_LIFETIME: u64 = 366 * 86400;
/// RFC 6749 §4.1.2 recommends at most 10 minutes.
const MAX_CODE_LIFETIME: u64 = 600;
const MAX_REDIRECT_URI: usize = 1024;

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
        let scheme_ok = u.split_once(':').map_or(false, |(scheme, rest)| {
            !rest.is_empty()
                && scheme
                    .bytes()
                    .next()
                    .map_or(false, |b| b.is_ascii_alphabetic())
                && scheme
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        });
        let web = u.starts_with("http://") || u.starts_with("https://");
        let host_ok = !web
            || u.split("//")
                .nth(1)
                .map_or(false, |a| !a.is_empty() && !a.starts_with('/'));
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

impl TokenConfig {
    pub fn parse(bytes: &[u8]) -> Result<TokenConfig, ConfigError> {
        let file: TokenConfigFile = parse_json(bytes)?;
        check_header_text("realm", &file.realm)?;
        check_name("default_tenant", &file.default_tenant)?;
        if !(256..=1024 * 1024).contains(&file.max_body_bytes) {
            return Err(err("max_body_bytes", "must be between 256 and 1048576"));
        }
        check_lifetimes("lifetimes", &file.lifetimes)?;
        if !(1..=MAX_BUCKETS).contains(&file.store.buckets) {
            return Err(err(
                "store.buckets",
                format!("must be between 1 and {MAX_BUCKETS}"),
            ));
        }
        if !(1..=MAX_GRANTS_PER_BUCKET).contains(&file.store.grants_per_bucket) {
            return Err(err(
                "store.grants_per_bucket",
                format!("must be between 1 and {MAX_GRANTS_PER_BUCKET}"),
            ));
        }
        let paths = [
            ("paths.token", &file.paths.token),
            ("paths.revoke", &file.paths.revoke),
            ("paths.introspect", &file.paths.introspect),
            ("paths.authorize", &file.paths.authorize),
        ];
        for (i, (name, p)) in paths.iter().enumerate() {
            if !p.starts_with('/')
                || p.contains('?')
                || p.contains('#')
                || p.as_str() == METADATA_PATH
            {
                return Err(err(
                    *name,
                    "must be a path starting with `/`, without query or fragment",
                ));
            }
            if paths[..i].iter().any(|(_, q)| q == p) {
                return Err(err(*name, "must differ from the other endpoint paths"));
            }
        }
        if let Some(issuer) = &file.issuer {
            let ok = (issuer.starts_with("https://") || issuer.starts_with("http://"))
                && !issuer.contains('?')
                && !issuer.contains('#')
                && !issuer.ends_with('/');
            if !ok {
                return Err(err(
                    "issuer",
                    "must be an http(s) URL without query, fragment or trailing `/`",
                ));
            }
            check_header_text("issuer", issuer)?;
        }
        if !(1..=MAX_CODE_LIFETIME).contains(&file.code_lifetime_seconds) {
            return Err(err(
                "code_lifetime_seconds",
                format!("must be between 1 and {MAX_CODE_LIFETIME} seconds"),
            ));
        }
        if file.clients.is_empty() {
            return Err(err("clients", "at least one client is required"));
        }
        let mut seen = HashSet::new();
        let mut clients = Vec::new();
        for (i, c) in file.clients.iter().enumerate() {
            let at = |f: &str| format!("clients[{i}].{f}");
            check_name(&at("client_id"), &c.client_id)?;
            if !seen.insert(c.client_id.clone()) {
                return Err(err(
                    at("client_id"),
                    format!("`{}` appears twice", c.client_id),
                ));
            }
            let secret = match (&c.secret_hash, c.public) {
                (Some(h), false) => {
                    Some(SecretHash::parse(h).map_err(|m| err(at("secret_hash"), m))?)
                }
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
                .unwrap_or_else(|| format!("admin@{}", file.default_tenant));
            check_header_text(&at("owner"), &owner)?;
            let o = &c.lifetimes;
            let lifetimes = LifetimesConfig {
                application_access_token: o
                    .application_access_token
                    .unwrap_or(file.lifetimes.application_access_token),
                user_access_token: o
                    .user_access_token
                    .unwrap_or(file.lifetimes.user_access_token),
                refresh_token: o.refresh_token.unwrap_or(file.lifetimes.refresh_token),
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
        let mut users = Vec::new();
        let mut seen = HashSet::new();
        for (i, u) in file.users.iter().enumerate() {
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
                .unwrap_or_else(|| file.default_tenant.clone());
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
        if file.throttle.max_failures > 0 && !(1..=86400).contains(&file.throttle.window_seconds) {
            return Err(err(
                "throttle.window_seconds",
                "must be between 1 and 86400",
            ));
        }
        for (i, id) in file.revoked_clients.iter().enumerate() {
            let field = format!("revoked_clients[{i}]");
            check_name(&field, id)?;
            if file.clients.iter().any(|c| &c.client_id == id) {
                return Err(err(
                    field,
                    format!("`{id}` is also in `clients`: remove it there to revoke it"),
                ));
            }
        }
        if file.refresh_token_grace_seconds > 60 {
            return Err(err(
                "refresh_token_grace_seconds",
                "must be between 0 and 60",
            ));
        }
        Ok(TokenConfig {
            refresh_token_grace_seconds: file.refresh_token_grace_seconds,
            issuer: file.issuer,
            throttle: ThrottlePolicy {
                max_failures: file.throttle.max_failures,
                window_seconds: file.throttle.window_seconds,
            },
            realm: file.realm,
            default_tenant: file.default_tenant,
            max_body_bytes: file.max_body_bytes,
            store: StoreLayout {
                buckets: file.store.buckets,
                grants_per_bucket: file.store.grants_per_bucket,
            },
            paths: file.paths,
            code_lifetime: file.code_lifetime_seconds,
            clients,
            users,
            revoked_clients: file.revoked_clients,
        })
    }

    pub fn client(&self, id: &str) -> Option<&Client> {
        self.clients.iter().find(|c| c.client_id == id)
    }

    /// A user by `name` (in the default tenant) or `name@tenant`.
    pub fn user(&self, username: &str) -> Option<&User> {
        let id = self.qualified_username(username);
        self.users.iter().find(|u| u.id == id)
    }

    /// `name@tenant`, with the default tenant when none is given.
    pub fn qualified_username(&self, username: &str) -> String {
        if username.contains('@') {
            username.to_string()
        } else {
            format!("{username}@{}", self.default_tenant)
        }
    }
}

fn check_lifetimes(field: &str, l: &LifetimesConfig) -> Result<(), ConfigError> {
    for (name, v) in [
        ("application_access_token", l.application_access_token),
        ("user_access_token", l.user_access_token),
        ("refresh_token", l.refresh_token),
    ] {
        if !(1..=MAX_LIFETIME).contains(&v) {
            return Err(err(
                format!("{field}.{name}"),
                format!("must be between 1 and {MAX_LIFETIME} seconds"),
            ));
        }
    }
    Ok(())
}

fn check_scopes(field: &str, scopes: &[String]) -> Result<(), ConfigError> {
    for (j, s) in scopes.iter().enumerate() {
        if !scope::is_valid_token(s) {
            return Err(err(
                format!("{field}[{j}]"),
                format!("`{s}` is not a valid scope token"),
            ));
        }
    }
    Ok(())
}

/// Identifiers: non-empty, at most 255 bytes, visible ASCII without `"` or `\`
/// (they end up in headers and quoted strings).
fn check_name(field: &str, v: &str) -> Result<(), ConfigError> {
    if v.is_empty() || v.len() > 255 {
        return Err(err(field, "must be 1 to 255 characters"));
    }
    if !v
        .bytes()
        .all(|b| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\')
    {
        return Err(err(
            field,
            "must be visible ASCII without spaces, `\"` or `\\`",
        ));
    }
    Ok(())
}

/// Text that goes into a header or a quoted-string: printable ASCII, no `"` or `\`.
pub fn check_header_text(field: &str, v: &str) -> Result<(), ConfigError> {
    if v.is_empty()
        || v.len() > 255
        || !v
            .bytes()
            .all(|b| (0x20..=0x7e).contains(&b) && b != b'"' && b != b'\\')
    {
        return Err(err(
            field,
            "must be 1 to 255 printable ASCII characters without `\"` or `\\`",
        ));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authn::secret_hash::hash_secret;

    pub fn sample(extra_client: &str) -> String {
        let h = hash_secret(b"secret", b"saltsaltsalt", 10_000);
        format!(
            r#"{{"clients":[{{"client_id":"c1","secret_hash":"{h}","grant_types":["client_credentials","password","refresh_token"],
            "scopes":["default","PRODUCTION"]{extra_client}}}],
            "users":[{{"username":"admin","password_hash":"{h}","scopes":["default"]}}]}}"#
        )
    }

    #[test]
    fn defaults_apply() {
        let c = TokenConfig::parse(sample("").as_bytes()).unwrap();
        assert_eq!(c.realm, "oauth2");
        assert_eq!(c.max_body_bytes, 16384);
        assert_eq!(c.paths.token, "/token");
        let client = c.client("c1").unwrap();
        assert_eq!(client.default_scope, "default");
        assert_eq!(client.owner, "admin@carbon.super");
        assert_eq!(client.lifetimes, LifetimesConfig::default());
        assert_eq!(c.user("admin").unwrap().id, "admin@carbon.super");
        assert_eq!(
            c.user("admin@carbon.super").unwrap().id,
            "admin@carbon.super"
        );
        assert!(c.user("admin@other").is_none());
    }

    #[test]
    fn per_client_lifetime_overrides() {
        let c = TokenConfig::parse(sample(r#","lifetimes":{"user_access_token":60}"#).as_bytes())
            .unwrap();
        let l = c.client("c1").unwrap().lifetimes;
        assert_eq!(
            (
                l.application_access_token,
                l.user_access_token,
                l.refresh_token
            ),
            (3600, 60, 86400)
        );
    }

    fn field_of(json: &str) -> String {
        TokenConfig::parse(json.as_bytes()).unwrap_err().field
    }

    #[test]
    fn revoked_clients_are_checked_and_kept() {
        let with = |list: &str| {
            sample("").replacen(
                r#""users":"#,
                &format!(r#""revoked_clients":{list},"users":"#),
                1,
            )
        };
        let c = TokenConfig::parse(with(r#"["old-app"]"#).as_bytes()).unwrap();
        assert_eq!(c.revoked_clients, vec!["old-app".to_string()]);
        assert!(TokenConfig::parse(sample("").as_bytes())
            .unwrap()
            .revoked_clients
            .is_empty());
        assert_eq!(field_of(&with(r#"["ok","c1"]"#)), "revoked_clients[1]");
        assert_eq!(field_of(&with(r#"[""]"#)), "revoked_clients[0]");
        assert_eq!(field_of(&with(r#"["a b"]"#)), "revoked_clients[0]");
    }

    #[test]
    fn every_problem_names_its_field() {
        assert_eq!(field_of(&sample(r#","colour":"red""#)), "clients[0].colour");
        assert!(TokenConfig::parse(sample(r#","colour":"red""#).as_bytes())
            .unwrap_err()
            .message
            .contains("colour"));
        assert_eq!(
            field_of(&sample(r#","default_scope":"SANDBOX""#)),
            "clients[0].default_scope"
        );
        assert_eq!(
            field_of(&sample(r#","lifetimes":{"refresh_token":0}"#)),
            "clients[0].lifetimes.refresh_token"
        );
        assert_eq!(field_of(&sample(r#","owner":7"#)), "clients[0].owner");
        assert_eq!(field_of(r#"{"users":[]}"#), "(root)");
        assert!(TokenConfig::parse(br#"{"users":[]}"#)
            .unwrap_err()
            .message
            .contains("clients"));
        assert_eq!(field_of(r#"{"clients":[]}"#), "clients");
        assert_eq!(
            field_of(r#"{"clients":[],"store":{"buckets":0}}"#),
            "store.buckets"
        );
        assert_eq!(
            field_of(r#"{"clients":[],"max_body_bytes":-1}"#),
            "max_body_bytes"
        );
        let bad_grant = sample("").replace("\"password\",", "\"magic\",");
        assert_eq!(field_of(&bad_grant), "clients[0].grant_types[1]");
        let bad_hash = sample("").replacen("$pbkdf2-sha256$i=10000$", "$md5$", 1);
        assert_eq!(field_of(&bad_hash), "clients[0].secret_hash");
        assert_eq!(field_of("not json"), "(root)");
    }
}
