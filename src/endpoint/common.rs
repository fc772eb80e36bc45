//! What every endpoint shares: the request as the glue hands it over, the
//! result with its outcome for stats, the form body check, and the keys the
//! endpoints need created at configuration.

use crate::authn::client::repeated;
use crate::authn::throttle::ThrottlePolicy;
use crate::config::{ConfigError, GrantType, TokenConfig};
use crate::host::{KvStore, Randomness};
use crate::oauth::error::{invalid_request, ErrorCode, OAuthError};
use crate::oauth::form::Form;
use crate::oauth::response::Response;
use crate::store::{GrantStore, TxnReport};

/// What the glue needs from one request.
#[derive(Debug, Clone, Copy)]
pub struct EndpointRequest<'a> {
    pub method: &'a str,
    pub content_type: Option<&'a str>,
    pub authorization: Option<&'a str>,
    pub body: &'a [u8],
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
    if !media.is_some_and(|m| m.eq_ignore_ascii_case("application/x-www-form-urlencoded")) {
        return Err(invalid_request(
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    Form::parse(req.body).map_err(repeated)
}

pub fn failed(e: OAuthError, store: TxnReport) -> EndpointResult {
    EndpointResult {
        response: e.to_response(),
        outcome: Outcome::Failed(e.code),
        store,
    }
}

pub(crate) fn truncate(s: &str) -> String {
    s.chars().take(64).filter(|c| !c.is_control()).collect()
}
