//! password (RFC 6749 §4.3): the resource owner's credentials, throttled per
//! username and client address; a refresh token only for clients that may use one.

use crate::authn::client::repeated;
use crate::authn::env::ServiceEnv;
use crate::authn::slow_check::Refused;
use crate::authn::user::authenticate_user;
use crate::config::{Client, GrantType, TokenConfig};
use crate::grant::{resolve_scope, store_error};
use crate::oauth::error::{busy, invalid_request, throttled, ErrorCode, OAuthError};
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
    let user = match authenticate_user(cfg, env, username, password).await {
        Ok(user) => user,
        Err(Refused::Wrong) => {
            return Err(OAuthError::new(
                ErrorCode::InvalidGrant,
                "invalid resource owner credentials",
            ))
        }
        Err(Refused::Throttled(wait)) => return Err(throttled(wait)),
        Err(Refused::Busy(wait)) => return Err(busy(wait)),
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
