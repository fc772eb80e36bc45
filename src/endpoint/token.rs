//! `POST /token` (RFC 6749 §3.2): authenticates the client, checks the grant
//! type it asks for, and hands the form to that grant (`crate::grant`).

use serde::Serialize;

use crate::authn::client::{authenticate, repeated};
use crate::authn::env::ServiceEnv;
use crate::config::{GrantType, TokenConfig};
use crate::endpoint::common::{
    failed, read_form, truncate, EndpointRequest, EndpointResult, Outcome,
};
use crate::grant;
use crate::oauth::error::{invalid_request, ErrorCode, OAuthError};
use crate::oauth::response::Response;
use crate::oauth::scope;
use crate::store::{GrantStore, IssuedTokens};

#[derive(Serialize)]
struct TokenBody<'a> {
    access_token: &'a str,
    token_type: &'static str,
    expires_in: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<&'a str>,
    scope: &'a str,
}

pub async fn handle_token(
    cfg: &TokenConfig,
    env: &mut ServiceEnv<'_>,
    req: &EndpointRequest<'_>,
) -> EndpointResult {
    let mut store = GrantStore::over(env.kv.clone(), env.rng, cfg.store);
    match token_inner(cfg, env, &mut store, req).await {
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

async fn token_inner<'a>(
    cfg: &'a TokenConfig,
    env: &mut ServiceEnv<'_>,
    store: &mut GrantStore<'a>,
    req: &EndpointRequest<'_>,
) -> Result<(GrantType, IssuedTokens), OAuthError> {
    let form = read_form(cfg, req)?;
    let grant_param = form.one("grant_type").map_err(repeated)?;
    let Some(grant_param) = grant_param else {
        return Err(invalid_request("grant_type is required"));
    };
    let client = authenticate(cfg, &form, req.authorization, env).await?;
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
            grant::authorization_code::exchange(client, &form, store, now).await?
        }
        // `from_param` never yields it: implicit is a response_type at /authorize.
        GrantType::Implicit => {
            return Err(OAuthError::new(
                ErrorCode::UnsupportedGrantType,
                "implicit is not a grant type of the token endpoint",
            ))
        }
        GrantType::ClientCredentials => {
            grant::client_credentials::issue(client, &requested, store, now).await?
        }
        GrantType::Password => {
            grant::password::issue(cfg, env, client, &form, &requested, store, now).await?
        }
        GrantType::RefreshToken => {
            grant::refresh_token::rotate(cfg, client, &form, &requested, store, now).await?
        }
    };
    Ok((grant_type, issued))
}
