//! client_credentials (RFC 6749 §4.4): an application token for the client
//! itself; never a refresh token.

use crate::config::Client;
use crate::grant::{resolve_scope, store_error};
use crate::oauth::error::OAuthError;
use crate::store::{GrantRequest, GrantStore, IssuedTokens, Lifetimes};

pub async fn issue<'a>(
    client: &'a Client,
    requested: &[&str],
    store: &mut GrantStore<'a>,
    now: u64,
) -> Result<IssuedTokens, OAuthError> {
    let scope = resolve_scope(client, requested, None)?;
    let req = GrantRequest {
        client_id: client.client_id.clone(),
        user: None,
        scope,
        lifetimes: Lifetimes {
            access: client.lifetimes.application_access_token,
            refresh: None,
        },
    };
    store
        .with_format(client.access_format())
        .issue(&req, now)
        .await
        .map_err(store_error)
}
