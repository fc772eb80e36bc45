//! `POST /introspect` (RFC 7662). A client sees its own tokens; a client with
//! `resource_server: true` sees every client's. Anything else, including
//! another client's token, is exactly `{"active":false}`.

use serde::Serialize;

use crate::authn::client::{authenticate, repeated};
use crate::authn::env::ServiceEnv;
use crate::config::TokenConfig;
use crate::endpoint::common::{failed, read_form, EndpointRequest, EndpointResult, Outcome};
use crate::grant::store_error;
use crate::oauth::error::{invalid_request, OAuthError};
use crate::oauth::response::Response;
use crate::store::GrantStore;
use crate::token::{self, TokenKind};

#[derive(Serialize)]
struct Active<'a> {
    active: bool,
    scope: &'a str,
    client_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    username: Option<&'a str>,
    token_type: &'static str,
    exp: u64,
    iat: u64,
    sub: &'a str,
}

const INACTIVE: &str = r#"{"active":false}"#;

pub async fn handle_introspect(
    cfg: &TokenConfig,
    env: &mut ServiceEnv<'_>,
    req: &EndpointRequest<'_>,
) -> EndpointResult {
    let mut store = GrantStore::over(env.kv.clone(), env.rng, cfg.store);
    match introspect(cfg, env, &mut store, req).await {
        Ok((body, outcome)) => EndpointResult {
            response: Response::json(200, body).no_store(),
            outcome,
            store: store.report,
        },
        Err(e) => failed(e, store.report),
    }
}

async fn introspect(
    cfg: &TokenConfig,
    env: &mut ServiceEnv<'_>,
    store: &mut GrantStore<'_>,
    req: &EndpointRequest<'_>,
) -> Result<(String, Outcome), OAuthError> {
    let form = read_form(cfg, req)?;
    let caller = authenticate(cfg, &form, req.authorization, env).await?;
    // RFC 7662 §2.1 wants the caller authorized: an id alone is not enough.
    if caller.public {
        return Err(crate::oauth::error::OAuthError::new(
            crate::oauth::error::ErrorCode::InvalidClient,
            "a public client may not introspect tokens",
        ));
    }
    let Some(presented) = form.one("token").map_err(repeated)? else {
        return Err(invalid_request("token is required"));
    };
    // As at /revoke, the hint never changes the answer.
    let _ = form.one("token_type_hint").map_err(repeated)?;
    let inactive = || Ok((INACTIVE.to_string(), Outcome::IntrospectedInactive));
    let Some(parsed) = token::parse_any(presented) else {
        return inactive();
    };
    let Some(grant) = store
        .lookup(&parsed, env.clock.now_secs())
        .await
        .map_err(store_error)?
    else {
        return inactive();
    };
    if grant.client_id != caller.client_id && !caller.resource_server {
        return inactive();
    }
    let (token_type, exp) = match parsed.kind {
        TokenKind::Access => ("Bearer", grant.access_expires_at),
        TokenKind::Refresh => (
            "refresh_token",
            grant.refresh.as_ref().map_or(0, |r| r.expires_at),
        ),
    };
    let body = Active {
        active: true,
        scope: &grant.scope,
        client_id: &grant.client_id,
        username: grant.user.as_deref(),
        token_type,
        exp,
        iat: grant.issued_at,
        sub: grant.user.as_deref().unwrap_or(&grant.client_id),
    };
    Ok((
        serde_json::to_string(&body).unwrap_or_else(|_| INACTIVE.to_string()),
        Outcome::IntrospectedActive,
    ))
}
