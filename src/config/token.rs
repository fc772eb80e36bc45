//! The token endpoint's plugin configuration: JSON, checked completely when
//! Envoy loads it. Any problem is reported as one [`ConfigError`] naming the
//! field, and the filter refuses the configuration.

use serde::Deserialize;

use super::abuse::{parse_hash_budget, parse_throttle, HashBudgetFile, ThrottleFile};
pub use super::abuse::{HashBudgetPolicy, ThrottlePolicy};
use super::client::{parse_clients, parse_users, Client, ClientFile, User, UserFile};
use super::error::{check_header_text, check_name, err, parse_json, ConfigError};
use super::issuer::{parse_issuer, Issuer};
use super::jwt::{check_audience, parse_token_jwt, FormatName, TokenJwt, TokenJwtFile};
use super::lifetimes::{check_lifetimes, LifetimesConfig};
use super::store::{parse_store, RemoteStore, StoreFile};
use crate::store::StoreLayout;
use crate::token::jwt::JwtFormat;

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
    #[serde(default = "default_jwks_path")]
    pub jwks: String,
}

impl Default for PathsConfig {
    fn default() -> Self {
        PathsConfig {
            token: default_token_path(),
            revoke: default_revoke_path(),
            introspect: default_introspect_path(),
            authorize: default_authorize_path(),
            jwks: default_jwks_path(),
        }
    }
}

/// RFC 8414 §3: fixed by the standard.
pub const METADATA_PATH: &str = "/.well-known/oauth-authorization-server";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenConfigFile {
    issuer: Option<String>,
    #[serde(default)]
    issuer_from_host: bool,
    #[serde(default)]
    issuer_hosts: Vec<String>,
    #[serde(default)]
    throttle: ThrottleFile,
    /// Absent: [`FLEET_RETRY_WINDOW_SECS`] over etcd, 0 over shared data.
    refresh_token_grace_seconds: Option<u64>,
    #[serde(default = "default_realm")]
    realm: String,
    #[serde(default = "default_tenant")]
    default_tenant: String,
    #[serde(default = "default_max_body")]
    max_body_bytes: usize,
    #[serde(default)]
    lifetimes: LifetimesConfig,
    #[serde(default)]
    store: StoreFile,
    #[serde(default)]
    paths: PathsConfig,
    #[serde(default = "default_code_lifetime")]
    code_lifetime_seconds: u64,
    clients: Vec<ClientFile>,
    #[serde(default)]
    users: Vec<UserFile>,
    #[serde(default)]
    revoked_clients: Vec<String>,
    #[serde(default)]
    access_token_format: FormatName,
    jwt: Option<TokenJwtFile>,
    #[serde(default)]
    slow_hash_budget: HashBudgetFile,
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
fn default_jwks_path() -> String {
    "/.well-known/jwks.json".into()
}
fn default_code_lifetime() -> u64 {
    60
}
fn default_introspect_path() -> String {
    "/introspect".into()
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
pub struct TokenConfig {
    /// RFC 8414 issuer: the metadata, JWT `iss` and RFC 9207 `iss` name it.
    pub issuer: Issuer,
    pub throttle: ThrottlePolicy,
    /// Seconds after a rotation (or a code redemption) in which the previous
    /// refresh token (or the code) may be presented again by the same client
    /// for the same pair (0: never): the retry window.
    pub refresh_token_grace_seconds: u64,
    pub realm: String,
    pub default_tenant: String,
    pub max_body_bytes: usize,
    pub store: StoreLayout,
    /// `None`: shared data; `Some`: etcd (fleet mode).
    pub remote: Option<RemoteStore>,
    pub paths: PathsConfig,
    /// Seconds an authorization code stays redeemable.
    pub code_lifetime: u64,
    pub clients: Vec<Client>,
    pub users: Vec<User>,
    /// Clients whose every grant is revoked when this configuration loads.
    pub revoked_clients: Vec<String>,
    /// The `jwt` section: signing keys and the JWKS (`None`: no JWKS served).
    pub jwt: Option<TokenJwt>,
    /// Per worker: how much slow (PBKDF2) hash work a second.
    pub slow_hash_budget: HashBudgetPolicy,
}

/// The retry window in fleet mode unless configured (see docs/fleet.md).
pub const FLEET_RETRY_WINDOW_SECS: u64 = 60;
const MAX_RETRY_WINDOW_SECS: u64 = 60;

/// RFC 6749 §4.1.2 recommends at most 10 minutes.
const MAX_CODE_LIFETIME: u64 = 600;

impl TokenConfig {
    pub fn parse(bytes: &[u8]) -> Result<TokenConfig, ConfigError> {
        let file: TokenConfigFile = parse_json(bytes)?;
        check_header_text("realm", &file.realm)?;
        check_name("default_tenant", &file.default_tenant)?;
        if !(256..=1024 * 1024).contains(&file.max_body_bytes) {
            return Err(err("max_body_bytes", "must be between 256 and 1048576"));
        }
        check_lifetimes("lifetimes", &file.lifetimes)?;
        let (store, remote) = parse_store(&file.store)?;
        check_paths(&file.paths)?;
        let issuer = parse_issuer(
            file.issuer.as_deref(),
            file.issuer_from_host,
            &file.issuer_hosts,
        )?;
        if !(1..=MAX_CODE_LIFETIME).contains(&file.code_lifetime_seconds) {
            return Err(err(
                "code_lifetime_seconds",
                format!("must be between 1 and {MAX_CODE_LIFETIME} seconds"),
            ));
        }
        let mut clients = parse_clients(&file.clients, &file.default_tenant, &file.lifetimes)?;
        let jwt = match &file.jwt {
            Some(j) => Some(parse_token_jwt(j, &issuer)?),
            None => None,
        };
        for (i, (client, f)) in clients.iter_mut().zip(&file.clients).enumerate() {
            client.jwt = jwt_format(i, f, file.access_token_format, jwt.as_ref())?;
        }
        let users = parse_users(&file.users, &file.default_tenant)?;
        let throttle = parse_throttle(&file.throttle)?;
        let slow_hash_budget = parse_hash_budget(&file.slow_hash_budget)?;
        check_revoked_clients(&file.revoked_clients, &file.clients)?;
        // Over etcd a rotation can be applied and still answered 503 (the
        // member that applied it died before answering, and no quorum is left
        // to read the outcome back): the client's retry must not look like reuse.
        let grace = file
            .refresh_token_grace_seconds
            .unwrap_or(if remote.is_some() {
                FLEET_RETRY_WINDOW_SECS
            } else {
                0
            });
        if grace > MAX_RETRY_WINDOW_SECS {
            return Err(err(
                "refresh_token_grace_seconds",
                "must be between 0 and 60",
            ));
        }
        Ok(TokenConfig {
            refresh_token_grace_seconds: grace,
            issuer,
            throttle,
            realm: file.realm,
            default_tenant: file.default_tenant,
            max_body_bytes: file.max_body_bytes,
            store,
            remote,
            paths: file.paths,
            code_lifetime: file.code_lifetime_seconds,
            clients,
            users,
            revoked_clients: file.revoked_clients,
            jwt,
            slow_hash_budget,
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

/// A client's JWT format, when it (or the default) says `jwt`: the keys of the
/// `jwt` section, its issuer, and the client's audience (or the default one).
fn jwt_format(
    i: usize,
    f: &ClientFile,
    default: FormatName,
    jwt: Option<&TokenJwt>,
) -> Result<Option<JwtFormat>, ConfigError> {
    let format_field = match f.access_token_format {
        Some(_) => format!("clients[{i}].access_token_format"),
        None => "access_token_format".to_string(),
    };
    if f.access_token_format.unwrap_or(default) == FormatName::Opaque {
        if f.audience.is_some() {
            return Err(err(
                format!("clients[{i}].audience"),
                "applies only to clients with `access_token_format: jwt`",
            ));
        }
        return Ok(None);
    }
    let Some(jwt) = jwt else {
        return Err(err(
            format_field,
            "`jwt` needs the `jwt` section with at least one signing key (`make keygen`)",
        ));
    };
    let Some(issuer) = jwt.issuer.clone() else {
        return Err(err(
            format_field,
            "JWT access tokens need a fixed `issuer` (their `iss`, checked by every guard); \
             `issuer_from_host` names none",
        ));
    };
    let audience = match &f.audience {
        Some(a) => check_audience(&format!("clients[{i}].audience"), a)?,
        None => jwt.audience.clone().ok_or_else(|| {
            err(
                format!("clients[{i}].audience"),
                "required for JWT access tokens (or set the default `jwt.audience`)",
            )
        })?,
    };
    Ok(Some(JwtFormat {
        keys: jwt.keys.clone(),
        issuer,
        audience,
    }))
}

/// `paths`: each an absolute path without query or fragment, all different.
fn check_paths(p: &PathsConfig) -> Result<(), ConfigError> {
    let paths = [
        ("paths.token", &p.token),
        ("paths.revoke", &p.revoke),
        ("paths.introspect", &p.introspect),
        ("paths.authorize", &p.authorize),
        ("paths.jwks", &p.jwks),
    ];
    for (i, (name, p)) in paths.iter().enumerate() {
        if !p.starts_with('/') || p.contains('?') || p.contains('#') || p.as_str() == METADATA_PATH
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
    Ok(())
}

/// `revoked_clients`: names, none of them still a configured client.
fn check_revoked_clients(revoked: &[String], clients: &[ClientFile]) -> Result<(), ConfigError> {
    for (i, id) in revoked.iter().enumerate() {
        let field = format!("revoked_clients[{i}]");
        check_name(&field, id)?;
        if clients.iter().any(|c| &c.client_id == id) {
            return Err(err(
                field,
                format!("`{id}` is also in `clients`: remove it there to revoke it"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::secret_hash::hash_secret;

    pub fn sample(extra_client: &str) -> String {
        let h = hash_secret(b"secret", b"saltsaltsalt", 10_000);
        format!(
            r#"{{"issuer":"https://auth.example.com","clients":[{{"client_id":"c1","secret_hash":"{h}","grant_types":["client_credentials","password","refresh_token"],
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
    fn the_retry_window_is_on_by_default_in_fleet_mode_only() {
        let with = |top: &str| sample("").replacen("{", &format!("{{{top}"), 1);
        let grace = |top: &str| {
            TokenConfig::parse(with(top).as_bytes())
                .map(|c| c.refresh_token_grace_seconds)
                .ok()
        };
        let etcd = r#""store":{"backend":"etcd","cluster":"etcd"},"#;
        assert_eq!(grace(""), Some(0));
        assert_eq!(grace(etcd), Some(FLEET_RETRY_WINDOW_SECS));
        let off = format!(r#""refresh_token_grace_seconds":0,{etcd}"#);
        assert_eq!(grace(&off), Some(0));
        assert_eq!(
            field_of(&with(r#""refresh_token_grace_seconds":61,"#)),
            "refresh_token_grace_seconds"
        );
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
        assert_eq!(
            field_of(r#"{"issuer":"https://a.example","clients":[]}"#),
            "clients"
        );
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

    #[test]
    fn the_issuer_is_required_and_configured_one_way() {
        let without = sample("").replacen(r#""issuer":"https://auth.example.com","#, "", 1);
        assert_eq!(field_of(&without), "issuer");
        assert!(TokenConfig::parse(without.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("field `issuer`: required"));
        let from_host = |extra: &str| {
            sample("").replacen(
                r#""issuer":"https://auth.example.com","#,
                &format!(r#""issuer_from_host":true,{extra}"#),
                1,
            )
        };
        let c = TokenConfig::parse(from_host(r#""issuer_hosts":["auth.example.com"],"#).as_bytes())
            .unwrap();
        assert_eq!(
            c.issuer,
            Issuer::FromHost {
                hosts: vec!["auth.example.com".into()]
            }
        );
        assert_eq!(field_of(&from_host("")), "issuer_hosts");
        let both = sample("").replacen(r#""clients""#, r#""issuer_from_host":true,"clients""#, 1);
        assert_eq!(field_of(&both), "issuer_from_host");
        let http = sample("").replacen("https://auth.example.com", "http://auth.example.com", 1);
        assert_eq!(field_of(&http), "issuer");
    }
}
