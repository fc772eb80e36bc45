//! authorization_code (RFC 6749 §4.1.3, RFC 7636): redeems a code issued at
//! `/authorize` once; a replayed code revokes what it produced (§4.1.2).

use crate::config::{Client, GrantType};
use crate::grant::store_error;
use crate::oauth::error::{invalid_request, ErrorCode, OAuthError};
use crate::oauth::form::Form;
use crate::store::{
    CodeRedemption, GrantStore, IssuedTokens, Lifetimes, RedeemError, CODE_INVALID,
};
use crate::token::{self, HandleKind};

/// `grant_type=authorization_code` at /token (RFC 6749 §4.1.3, RFC 7636 §4.5):
/// `client` is already authenticated (a public client by its id alone).
pub async fn exchange<'a>(
    client: &'a Client,
    form: &Form,
    store: &mut GrantStore<'a>,
    now: u64,
) -> Result<IssuedTokens, OAuthError> {
    let param = |name| {
        form.one(name)
            .map_err(|_| invalid_request(format!("parameter `{name}` is repeated")))
    };
    let Some(code) = param("code")? else {
        return Err(invalid_request("code is required"));
    };
    let redirect_uri = param("redirect_uri")?;
    let verifier = param("code_verifier")?;
    let invalid = |d: &str| OAuthError::new(ErrorCode::InvalidGrant, d);
    let Some(parsed) = token::parse_handle(code, HandleKind::Code) else {
        return Err(invalid(CODE_INVALID));
    };
    let r = CodeRedemption {
        client_id: &client.client_id,
        redirect_uri,
        verifier,
        lifetimes: Lifetimes {
            access: client.lifetimes.user_access_token,
            refresh: client
                .allows(GrantType::RefreshToken)
                .then_some(client.lifetimes.refresh_token),
        },
    };
    store
        .with_format(client.access_format())
        .redeem_code(&parsed, &r, now)
        .await
        .map_err(|e| match e {
            RedeemError::Invalid(d) => invalid(d),
            RedeemError::Replayed => invalid(
                "the authorization code was already used: the tokens issued for it are revoked",
            ),
            RedeemError::Store(s) => store_error(s),
        })
}
