//! The bearer guard's plugin configuration (root_id `oauth2_guard`).

use super::store::{parse_store, RemoteStore, StoreFile};
use serde::Deserialize;

use crate::config::jwt::{parse_guard_jwt, GuardJwt, GuardJwtFile};
use crate::config::{check_header_text, parse_json, ConfigError};
use crate::oauth::scope;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevocationMode {
    /// Every worker honours a revocation from its next request on.
    Immediate,
    /// A cached token passes until its cache entry expires (the reference product).
    Window,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DefaultAction {
    /// Unmatched paths are refused (403).
    Deny,
    /// Unmatched paths need a valid token, any scope.
    Authenticate,
    /// Unmatched paths pass without a token.
    Allow,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
struct PathMatchFile {
    path: Option<String>,
    prefix: Option<String>,
    #[serde(default)]
    methods: Vec<String>,
    #[serde(default)]
    scopes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    Exact(String),
    Prefix(String),
}

impl PathMatch {
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Exact(p) => path == p,
            PathMatch::Prefix(p) => path.starts_with(p.as_str()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub path: PathMatch,
    /// Empty: every method.
    pub methods: Vec<String>,
    /// All of them are required.
    pub scopes: Vec<String>,
}

impl Rule {
    pub fn matches(&self, method: &str, path: &str) -> bool {
        self.path.matches(path)
            && (self.methods.is_empty() || self.methods.iter().any(|m| m == method))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    #[serde(default = "default_ttl")]
    pub ttl_seconds: u64,
    #[serde(default = "default_entries")]
    pub max_entries: usize,
    #[serde(default)]
    pub negative_ttl_seconds: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            ttl_seconds: default_ttl(),
            max_entries: default_entries(),
            negative_ttl_seconds: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityHeaders {
    #[serde(default = "h_client")]
    pub client_id: String,
    #[serde(default = "h_user")]
    pub user: String,
    #[serde(default = "h_scope")]
    pub scope: String,
    #[serde(default = "h_expires")]
    pub expires: String,
}

impl Default for IdentityHeaders {
    fn default() -> Self {
        IdentityHeaders {
            client_id: h_client(),
            user: h_user(),
            scope: h_scope(),
            expires: h_expires(),
        }
    }
}

impl IdentityHeaders {
    pub fn all(&self) -> [&str; 4] {
        [&self.client_id, &self.user, &self.scope, &self.expires]
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct GuardConfigFile {
    #[serde(default)]
    store: StoreFile,
    #[serde(default = "default_realm")]
    realm: String,
    #[serde(default)]
    rules: Vec<PathMatchFile>,
    #[serde(default)]
    public: Vec<PathMatchFile>,
    #[serde(default = "default_action")]
    default_action: DefaultAction,
    #[serde(default = "default_mode")]
    revocation_mode: RevocationMode,
    #[serde(default)]
    cache: CacheConfig,
    #[serde(default)]
    headers: IdentityHeaders,
    #[serde(default)]
    hide_credentials: bool,
    #[serde(default)]
    allow_query_token: bool,
    #[serde(default = "default_token_paths")]
    token_endpoint_paths: Vec<String>,
    jwt: Option<GuardJwtFile>,
}

fn default_realm() -> String {
    "oauth2".into()
}
fn default_action() -> DefaultAction {
    DefaultAction::Deny
}
fn default_mode() -> RevocationMode {
    RevocationMode::Immediate
}
fn default_ttl() -> u64 {
    900
}
fn default_entries() -> usize {
    10_000
}
fn default_token_paths() -> Vec<String> {
    [
        "/token",
        "/revoke",
        "/introspect",
        "/authorize",
        "/.well-known/oauth-authorization-server",
        "/.well-known/jwks.json",
    ]
    .map(String::from)
    .to_vec()
}
fn h_client() -> String {
    "x-auth-client-id".into()
}
fn h_user() -> String {
    "x-auth-user".into()
}
fn h_scope() -> String {
    "x-auth-scope".into()
}
fn h_expires() -> String {
    "x-auth-expires".into()
}

#[derive(Debug, Clone)]
pub struct GuardConfig {
    /// `None`: shared data; `Some`: etcd (fleet mode).
    pub remote: Option<RemoteStore>,
    pub realm: String,
    pub rules: Vec<Rule>,
    pub public: Vec<PathMatch>,
    pub default_action: DefaultAction,
    pub revocation_mode: RevocationMode,
    pub cache: CacheConfig,
    pub headers: IdentityHeaders,
    pub hide_credentials: bool,
    pub allow_query_token: bool,
    pub token_endpoint_paths: Vec<String>,
    /// Accept JWT access tokens verified with these keys (`None`: refuse them).
    pub jwt: Option<GuardJwt>,
}

fn err(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.into(),
        message: message.into(),
    }
}

fn path_match(field: &str, m: &PathMatchFile) -> Result<PathMatch, ConfigError> {
    let pm = match (&m.path, &m.prefix) {
        (Some(p), None) => PathMatch::Exact(p.clone()),
        (None, Some(p)) => PathMatch::Prefix(p.clone()),
        _ => return Err(err(field, "give exactly one of `path` and `prefix`")),
    };
    let (PathMatch::Exact(p) | PathMatch::Prefix(p)) = &pm;
    if !p.starts_with('/') {
        return Err(err(
            format!(
                "{field}.{}",
                if m.path.is_some() { "path" } else { "prefix" }
            ),
            "must start with `/`",
        ));
    }
    Ok(pm)
}

impl GuardConfig {
    pub fn parse(bytes: &[u8]) -> Result<GuardConfig, ConfigError> {
        let f: GuardConfigFile = parse_json(bytes)?;
        check_header_text("realm", &f.realm)?;
        let mut rules = Vec::new();
        for (i, r) in f.rules.iter().enumerate() {
            let at = format!("rules[{i}]");
            let path = path_match(&at, r)?;
            for (j, m) in r.methods.iter().enumerate() {
                if m.is_empty() || !m.bytes().all(|b| b.is_ascii_uppercase()) {
                    return Err(err(
                        format!("{at}.methods[{j}]"),
                        "must be an upper-case HTTP method such as `GET`",
                    ));
                }
            }
            for (j, s) in r.scopes.iter().enumerate() {
                if !scope::is_valid_token(s) {
                    return Err(err(
                        format!("{at}.scopes[{j}]"),
                        format!("`{s}` is not a valid scope token"),
                    ));
                }
            }
            rules.push(Rule {
                path,
                methods: r.methods.clone(),
                scopes: r.scopes.clone(),
            });
        }
        let mut public = Vec::new();
        for (i, p) in f.public.iter().enumerate() {
            let at = format!("public[{i}]");
            if !p.methods.is_empty() || !p.scopes.is_empty() {
                return Err(err(at, "public paths take only `path` or `prefix`"));
            }
            public.push(path_match(&at, p)?);
        }
        if f.cache.ttl_seconds > 86400 {
            return Err(err("cache.ttl_seconds", "must be at most 86400"));
        }
        if f.cache.negative_ttl_seconds > 300 {
            return Err(err("cache.negative_ttl_seconds", "must be at most 300"));
        }
        if f.cache.max_entries > 1_000_000 {
            return Err(err("cache.max_entries", "must be at most 1000000"));
        }
        let names = [
            ("headers.client_id", &f.headers.client_id),
            ("headers.user", &f.headers.user),
            ("headers.scope", &f.headers.scope),
            ("headers.expires", &f.headers.expires),
        ];
        for (field, name) in names {
            let ok = !name.is_empty()
                && name.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
                });
            if !ok {
                return Err(err(
                    field,
                    "must be a lower-case header name (a-z, 0-9, `-`, `_`)",
                ));
            }
            if matches!(
                name.as_str(),
                "authorization" | "host" | "cookie" | "content-length"
            ) {
                return Err(err(field, format!("`{name}` cannot carry identity")));
            }
        }
        for (i, p) in f.token_endpoint_paths.iter().enumerate() {
            if !p.starts_with('/') {
                return Err(err(
                    format!("token_endpoint_paths[{i}]"),
                    "must start with `/`",
                ));
            }
        }
        let jwt = match &f.jwt {
            Some(j) => Some(parse_guard_jwt(j)?),
            None => None,
        };
        let (_, remote) = parse_store(&f.store)?;
        Ok(GuardConfig {
            jwt,
            remote,
            realm: f.realm,
            rules,
            public,
            default_action: f.default_action,
            revocation_mode: f.revocation_mode,
            cache: f.cache,
            headers: f.headers,
            hide_credentials: f.hide_credentials,
            allow_query_token: f.allow_query_token,
            token_endpoint_paths: f.token_endpoint_paths,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let c = GuardConfig::parse(b"{}").unwrap();
        assert_eq!(c.default_action, DefaultAction::Deny);
        assert_eq!(c.revocation_mode, RevocationMode::Immediate);
        assert_eq!(
            c.cache,
            CacheConfig {
                ttl_seconds: 900,
                max_entries: 10_000,
                negative_ttl_seconds: 0
            }
        );
        assert_eq!(
            c.headers.all(),
            [
                "x-auth-client-id",
                "x-auth-user",
                "x-auth-scope",
                "x-auth-expires"
            ]
        );
        assert!(!c.hide_credentials && !c.allow_query_token);
    }

    #[test]
    fn problems_name_their_field() {
        let field = |j: &str| GuardConfig::parse(j.as_bytes()).unwrap_err().field;
        assert_eq!(
            field(r#"{"rules":[{"path":"/a","prefix":"/b"}]}"#),
            "rules[0]"
        );
        assert_eq!(field(r#"{"rules":[{"prefix":"api"}]}"#), "rules[0].prefix");
        assert_eq!(
            field(r#"{"rules":[{"prefix":"/a","methods":["get"]}]}"#),
            "rules[0].methods[0]"
        );
        assert_eq!(
            field(r#"{"rules":[{"prefix":"/a","scopes":["a b"]}]}"#),
            "rules[0].scopes[0]"
        );
        assert_eq!(
            field(r#"{"revocation_mode":"sometimes"}"#),
            "revocation_mode"
        );
        assert_eq!(
            field(r#"{"cache":{"ttl_seconds":-1}}"#),
            "cache.ttl_seconds"
        );
        assert_eq!(field(r#"{"cache":{"ttl":5}}"#), "cache.ttl");
        assert_eq!(field(r#"{"headers":{"user":"X-User"}}"#), "headers.user");
        assert_eq!(
            field(r#"{"public":[{"prefix":"/p","scopes":["a"]}]}"#),
            "public[0]"
        );
    }
}
