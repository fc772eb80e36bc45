//! One file per grant type of `POST /token` (RFC 6749 §4, §6), as fosite's
//! `flow_*.go`: each takes the authenticated client and the form, and returns
//! the tokens issued. May import `oauth`, `config`, `authn`, `store`, `token`.

pub mod authorization_code;
pub mod client_credentials;
pub mod password;
pub mod refresh_token;

use crate::config::Client;
use crate::oauth::error::{ErrorCode, OAuthError};
use crate::oauth::scope;
use crate::store::StoreError;

pub fn store_error(e: StoreError) -> OAuthError {
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
        // Fleet mode: etcd out of reach or without quorum. Nothing was handed
        // out that is not stored; the client may retry.
        StoreError::Unavailable => OAuthError::new(
            ErrorCode::TemporarilyUnavailable,
            "the token store is unavailable; retry later",
        )
        .with_status(503)
        .with_header("retry-after", "1"),
    }
}

/// The scope to grant: the request within what the client (and user) may have,
/// or the client's default scope when none was asked for.
pub(crate) fn resolve_scope(
    client: &Client,
    requested: &[&str],
    user_scopes: Option<&[String]>,
) -> Result<String, OAuthError> {
    let allowed_for_user = |s: &str| user_scopes.is_none_or(|u| u.iter().any(|x| x == s));
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
