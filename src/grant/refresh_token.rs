//! refresh_token (RFC 6749 §6): rotation with reuse detection (RFC 9700
//! §4.14.2); the scope may only narrow.

use crate::authn::client::repeated;
use crate::config::{Client, TokenConfig};
use crate::grant::store_error;
use crate::oauth::error::{invalid_request, ErrorCode, OAuthError};
use crate::oauth::form::Form;
use crate::store::{GrantStore, IssuedTokens, Lifetimes, RefreshError};
use crate::token;

pub async fn rotate<'a>(
    cfg: &TokenConfig,
    client: &'a Client,
    form: &Form,
    requested: &[&str],
    store: &mut GrantStore<'a>,
    now: u64,
) -> Result<IssuedTokens, OAuthError> {
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
    let narrowed = (!requested.is_empty()).then_some(requested);
    store
        .with_format(client.access_format())
        .refresh(
            &parsed,
            &client.client_id,
            narrowed,
            lifetimes,
            cfg.refresh_token_grace_seconds,
            now,
        )
        .await
        .map_err(|e| match e {
            RefreshError::InvalidGrant => invalid(),
            RefreshError::InvalidScope => OAuthError::new(
                ErrorCode::InvalidScope,
                "the requested scope exceeds the scope originally granted",
            ),
            RefreshError::Store(s) => store_error(s),
        })
}
