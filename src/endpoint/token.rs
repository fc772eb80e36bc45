//! The token endpoints: `POST /token` (RFC 6749 §4.3, §4.4, §6) and
//! `POST /revoke` (RFC 7009, with the reference product's response headers).
//! Pure functions of a request and the host traits: the glue only moves bytes.

use serde::Serialize;

use crate::authn::client::{authenticate, repeated};
use crate::authn::credential_cache::CredentialCache;
use crate::authn::throttle::{Subject, ThrottlePolicy};
use crate::authn::user::authenticate_user;
use crate::config::{Client, ConfigError, GrantType, TokenConfig};
use crate::host::{Clock, KvStore, Randomness};
use crate::oauth::error::{invalid_request, throttled, ErrorCode, OAuthError};
use crate::oauth::form::Form;
use crate::oauth::response::Response;
use crate::oauth::scope;
use crate::store::{
    GrantRequest, GrantStore, IssuedTokens, Lifetimes, RefreshError, StoreError, TxnReport,
};
use crate::token;

/// What the glue needs from one request.
#[derive(Debug, Clone, Copy)]
pub struct EndpointRequest<'a> {
    pub method: &'a str,
    pub content_type: Option<&'a str>,
    pub authorization: Option<&'a str>,
    pub body: &'a [u8],
}

/// The host, as the endpoints see it.
pub struct ServiceEnv<'a> {
    pub kv: &'a dyn KvStore,
    pub clock: &'a dyn Clock,
    pub rng: &'a dyn Randomness,
    pub credentials: &'a mut CredentialCache,
}

/// What happened, for stats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Issued(GrantType),
    Revoked,
    RevokeUnknown,
    IntrospectedActive,
    IntrospectedInactive,
    Failed(ErrorCode),
}

pub struct EndpointResult {
    pub response: Response,
    pub outcome: Outcome,
    pub store: TxnReport,
}

#[derive(Serialize)]
struct TokenBody<'a> {
    access_token: &'a str,
    token_type: &'static str,
    expires_in: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<&'a str>,
    scope: &'a str,
}

/// Creates every shared-data key the token endpoints use (store, throttle,
/// pending authorizations), once, at configuration: Envoy accepts any write to
/// a missing key without a CAS check, so keys must exist before requests race
/// on them. Returns how many store keys it created.
pub fn create_shared_keys(
    kv: &dyn KvStore,
    rng: &dyn Randomness,
    cfg: &TokenConfig,
) -> Result<u32, ConfigError> {
    let created = GrantStore::new(kv, rng, cfg.store)
        .ensure_created()
        .map_err(|_| ConfigError {
            field: "store".into(),
            message: "could not create the shared-data keys".into(),
        })?;
    ThrottlePolicy::ensure_created(kv).map_err(|_| ConfigError {
        field: "throttle".into(),
        message: "could not create the shared-data keys".into(),
    })?;
    crate::endpoint::authorize::pending::ensure_created(kv).map_err(|_| ConfigError {
        field: "(store)".into(),
        message: "could not create the shared-data keys of pending authorizations".into(),
    })?;
    Ok(created)
}

/// A body too large for `max_body_bytes`.
pub fn payload_too_large(max: usize) -> Response {
    invalid_request(format!("request body larger than {max} bytes"))
        .with_status(413)
        .to_response()
}

pub fn method_not_allowed() -> Response {
    invalid_request("only POST is allowed here")
        .with_status(405)
        .with_header("allow", "POST")
        .to_response()
}

pub(crate) fn read_form(cfg: &TokenConfig, req: &EndpointRequest) -> Result<Form, OAuthError> {
    if req.method != "POST" {
        return Err(invalid_request("only POST is allowed here")
            .with_status(405)
            .with_header("allow", "POST"));
    }
    if req.body.len() > cfg.max_body_bytes {
        return Err(invalid_request(format!(
            "request body larger than {} bytes",
            cfg.max_body_bytes
        ))
        .with_status(413));
    }
    let media = req
        .content_type
        .map(|c| c.split(';').next().unwrap_or("").trim());
    if !media.map_or(false, |m| {
        m.eq_ignore_ascii_case("application/x-www-form-urlencoded")
    }) {
        return Err(invalid_request(
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    Form::parse(req.body).map_err(repeated)
}

pub(crate) fn store_error(e: StoreError) -> OAuthError {
    match e {
        StoreError::Full => OAuthError::new(
            ErrorCode::TemporarilyUnavailable,
            "the token store is full; retry later",
        )
        .with_header("retry-after", "1"),
        StoreError::Contended => OAuthError::new(
            ErrorCode::TemporarilyUnavailable,
            "the token store is busy; retry",
        )
        .with_header("retry-after", "1"),
        StoreError::Unavailable => {
            OAuthError::new(ErrorCode::ServerError, "the token store is unavailable")
        }
    }
}

pub(crate) fn failed(e: OAuthError, store: TxnReport) -> EndpointResult {
    EndpointResult {
        response: e.to_response(),
        outcome: Outcome::Failed(e.code),
        store,
    }
}

/// `POST /token`.
pub fn handle_token(
    cfg: &TokenConfig,
    env: &mut ServiceEnv,
    req: &EndpointRequest,
) -> EndpointResult {
    let mut store = GrantStore::new(env.kv, env.rng, cfg.store);
    match token_inner(cfg, env, &mut store, req) {
        Ok((grant_type, issued)) => {
            let body = TokenBody {
                access_token: &issued.access_token,
                token_type: "Bearer",
                expires_in: issued.expires_in,
                refresh_token: issued.refresh_token.as_deref(),
                scope: &issued.scope,
            };
            let json = serde_json::to_string(&body).unwrap_or_default();
            EndpointResult {
                response: Response::json(200, json).no_store(),
                outcome: Outcome::Issued(grant_type),
                store: store.report,
            }
        }
        Err(e) => failed(e, store.report),
    }
}

fn token_inner(
    cfg: &TokenConfig,
    env: &mut ServiceEnv,
    store: &mut GrantStore,
    req: &EndpointRequest,
) -> Result<(GrantType, IssuedTokens), OAuthError> {
    let form = read_form(cfg, req)?;
    let grant_param = form.one("grant_type").map_err(repeated)?;
    let Some(grant_param) = grant_param else {
        return Err(invalid_request("grant_type is required"));
    };
    let client = authenticate(cfg, &form, req.authorization, env)?;
    let Some(grant_type) = GrantType::from_param(grant_param) else {
        return Err(OAuthError::new(
            ErrorCode::UnsupportedGrantType,
            format!("grant type `{}` is not supported", truncate(grant_param)),
        ));
    };
    if !client.allows(grant_type) {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            format!("this client may not use the {} grant", grant_type.as_str()),
        ));
    }
    let now = env.clock.now_secs();
    let requested = form.one("scope").map_err(repeated)?.unwrap_or("");
    let requested = scope::parse(requested).map_err(|bad| {
        OAuthError::new(
            ErrorCode::InvalidScope,
            format!("`{bad}` is not a valid scope"),
        )
    })?;
    let issued = match grant_type {
        GrantType::AuthorizationCode => {
            crate::endpoint::authorize::exchange_code(client, &form, store, now)?
        }
        // `from_param` never yields it: implicit is a response_type at /authorize.
        GrantType::Implicit => {
            return Err(OAuthError::new(
                ErrorCode::UnsupportedGrantType,
                "implicit is not a grant type of the token endpoint",
            ))
        }
        GrantType::ClientCredentials => {
            let scope = resolve_scope(client, &requested, None)?;
            let req = GrantRequest {
                client_id: client.client_id.clone(),
                user: None,
                scope,
                lifetimes: Lifetimes {
                    access: client.lifetimes.application_access_token,
                    refresh: None,
                },
            };
            store.issue(&req, now).map_err(store_error)?
        }
        GrantType::Password => {
            let username = form.one("username").map_err(repeated)?;
            let password = form.one("password").map_err(repeated)?;
            let (Some(username), Some(password)) = (username, password) else {
                return Err(invalid_request("username and password are required"));
            };
            let subject_name = cfg.qualified_username(username);
            let subject = Subject::User(&subject_name);
            if let Some(wait) = cfg.throttle.retry_after(env.kv, subject, now) {
                return Err(throttled(wait));
            }
            let Some(user) = authenticate_user(cfg, env.credentials, username, password) else {
                cfg.throttle.record_failure(env.kv, subject, now);
                return Err(OAuthError::new(
                    ErrorCode::InvalidGrant,
                    "invalid resource owner credentials",
                ));
            };
            let scope = resolve_scope(client, &requested, Some(&user.scopes))?;
            let req = GrantRequest {
                client_id: client.client_id.clone(),
                user: Some(user.id.clone()),
                scope,
                lifetimes: Lifetimes {
                    access: client.lifetimes.user_access_token,
                    // A refresh token only for clients that may use one.
                    refresh: client
                        .allows(GrantType::RefreshToken)
                        .then_some(client.lifetimes.refresh_token),
                },
            };
            store.issue(&req, now).map_err(store_error)?
        }
        GrantType::RefreshToken => {
            let Some(presented) = form.one("refresh_token").map_err(repeated)? else {
                return Err(invalid_request("refresh_token is required"));
            };
            let invalid = || {
                OAuthError::new(
                    ErrorCode::InvalidGrant,
                    "the refresh token is invalid, expired or revoked",
                )
            };
            let parsed = token::parse(presented).ok_or_else(invalid)?;
            let lifetimes = Lifetimes {
                access: client.lifetimes.user_access_token,
                refresh: Some(client.lifetimes.refresh_token),
            };
            let narrowed = (!requested.is_empty()).then_some(requested.as_slice());
            store
                .refresh(
                    &parsed,
                    &client.client_id,
                    narrowed,
                    lifetimes,
                    cfg.refresh_token_grace_seconds,
                    now,
                )
                .map_err(|e| match e {
                    RefreshError::InvalidGrant => invalid(),
                    RefreshError::InvalidScope => OAuthError::new(
                        ErrorCode::InvalidScope,
                        "the requested scope exceeds the scope originally granted",
                    ),
                    RefreshError::Store(s) => store_error(s),
                })?
        }
    };
    Ok((grant_type, issued))
}

/// The scope to grant: the request within what the client (and user) may have,
/// or the client's default scope when none was asked for.
fn resolve_scope(
    client: &Client,
    requested: &[&str],
    user_scopes: Option<&[String]>,
) -> Result<String, OAuthError> {
    let allowed_for_user = |s: &str| user_scopes.map_or(true, |u| u.iter().any(|x| x == s));
    if requested.is_empty() {
        let defaults: Vec<&str> = client
            .default_scope
            .split(' ')
            .filter(|s| allowed_for_user(s))
            .collect();
        if defaults.is_empty() {
            return Err(OAuthError::new(
                ErrorCode::InvalidScope,
                "no scope was requested and the default scope is not available to this user",
            ));
        }
        return Ok(scope::join(&defaults));
    }
    if let Some(bad) = scope::first_outside(requested, &client.scopes) {
        return Err(OAuthError::new(
            ErrorCode::InvalidScope,
            format!("scope `{bad}` is not allowed for this client"),
        ));
    }
    if let Some(bad) = requested.iter().find(|s| !allowed_for_user(s)) {
        return Err(OAuthError::new(
            ErrorCode::InvalidScope,
            format!("scope `{bad}` is not allowed for this user"),
        ));
    }
    Ok(scope::join(requested))
}

/// `POST /revoke`.
pub fn handle_revoke(
    cfg: &TokenConfig,
    env: &mut ServiceEnv,
    req: &EndpointRequest,
) -> EndpointResult {
    let mut store = GrantStore::new(env.kv, env.rng, cfg.store);
    match revoke_inner(cfg, env, &mut store, req) {
        Ok((response, outcome)) => EndpointResult {
            response,
            outcome,
            store: store.report,
        },
        Err(e) => failed(e, store.report),
    }
}

fn revoke_inner(
    cfg: &TokenConfig,
    env: &mut ServiceEnv,
    store: &mut GrantStore,
    req: &EndpointRequest,
) -> Result<(Response, Outcome), OAuthError> {
    let form = read_form(cfg, req)?;
    let client = authenticate(cfg, &form, req.authorization, env)?;
    let Some(presented) = form.one("token").map_err(repeated)? else {
        return Err(invalid_request("token is required"));
    };
    // The hint only speeds up a lookup elsewhere; our tokens say their kind, so
    // a wrong or unknown hint never stops the search (RFC 7009 §2.1).
    let _ = form.one("token_type_hint").map_err(repeated)?;
    let done = Response::new(200).no_store();
    let Some(parsed) = token::parse(presented) else {
        return Ok((done, Outcome::RevokeUnknown));
    };
    match store
        .revoke(&parsed, &client.client_id, env.clock.now_secs())
        .map_err(store_error)?
    {
        None => Ok((done, Outcome::RevokeUnknown)),
        Some(r) => {
            let user = r.user.clone().unwrap_or_else(|| client.owner.clone());
            let mut resp = done.header("revokedaccesstoken", r.access_fingerprint);
            if let Some(fp) = r.refresh_fingerprint {
                resp = resp.header("revokedrefreshtoken", fp);
            }
            Ok((resp.header("authorizeduser", user), Outcome::Revoked))
        }
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(64).filter(|c| !c.is_control()).collect()
}
