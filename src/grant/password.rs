//! password (RFC 6749 §4.3): the resource owner's credentials, throttled per
//! username; a refresh token only for clients that may use one.

use crate::authn::client::repeated;
use crate::authn::env::ServiceEnv;
use crate::authn::throttle::Subject;
use crate::authn::user::authenticate_user;
use crate::config::{Client, GrantType, TokenConfig};
use crate::grant::{resolve_scope, store_error};
use crate::oauth::error::{invalid_request, throttled, ErrorCode, OAuthError};
use crate::oauth::form::Form;
use crate::store::{GrantRequest, GrantStore, IssuedTokens, Lifetimes};

pub async fn issue<'a>(
    cfg: &TokenConfig,
    env: &mut ServiceEnv<'_>,
    client: &'a Client,
    form: &Form,
    requested: &[&str],
    store: &mut GrantStore<'a>,
    now: u64,
) -> Result<IssuedTokens, OAuthError> {
    let username = form.one("username").map_err(repeated)?;
    let password = form.one("password").map_err(repeated)?;
    let (Some(username), Some(password)) = (username, password) else {
        return Err(invalid_request("username and password are required"));
    };
    let subject_name = cfg.qualified_username(username);
    let subject = Subject::User(&subject_name);
    if let Some(wait) = cfg.throttle.retry_after(&env.kv, subject, now).await {
        return Err(throttled(wait));
    }
    let Some(user) = authenticate_user(cfg, env.credentials, username, password) else {
        cfg.throttle.record_failure(&env.kv, subject, now).await;
        return Err(OAuthError::new(
            ErrorCode::InvalidGrant,
            "invalid resource owner credentials",
        ));
    };
    let scope = resolve_scope(client, requested, Some(&user.scopes))?;
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
    store
        .with_format(client.access_format())
        .issue(&req, now)
        .await
        .map_err(store_error)
}
