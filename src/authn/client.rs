//! Client authentication at the token endpoints (RFC 6749 §2.3.1): HTTP Basic
//! or `client_id` + `client_secret` in the form, never both. The secret check
//! itself is `slow_check`'s.

use crate::authn::env::ServiceEnv;
use crate::authn::slow_check::{check_secret, Refused};
use crate::authn::throttle::Subject;
use crate::config::{Client, TokenConfig};
use crate::oauth::basic_auth::{self, BasicError};
use crate::oauth::error::{busy, invalid_request, throttled, ErrorCode, OAuthError};
use crate::oauth::form::Form;

const FAILED: &str = "client authentication failed";

pub async fn authenticate<'c>(
    cfg: &'c TokenConfig,
    form: &Form,
    authorization: Option<&str>,
    env: &mut ServiceEnv<'_>,
) -> Result<&'c Client, OAuthError> {
    let challenge = |description: &str| {
        let mut e = OAuthError::new(ErrorCode::InvalidClient, description);
        e.basic_realm = Some(cfg.realm.clone());
        e
    };
    let body_id = form.one("client_id").map_err(repeated)?;
    let body_secret = form.one("client_secret").map_err(repeated)?;
    let (id, secret, used_basic) = match authorization {
        Some(header) => {
            if body_id.is_some() || body_secret.is_some() {
                return Err(invalid_request(
                    "client credentials were sent both in the Authorization header and in the body: use one",
                ));
            }
            match basic_auth::parse(header) {
                Ok(c) => (c.id, c.secret, true),
                Err(BasicError::NotBasic) => {
                    return Err(challenge(
                        "client authentication must use the Basic scheme or the request body",
                    ))
                }
                Err(BasicError::Malformed) => return Err(challenge("malformed Basic credentials")),
            }
        }
        None => match (body_id, body_secret) {
            (Some(id), Some(secret)) => (id.to_string(), secret.to_string(), false),
            (Some(id), None) => {
                // A public client (RFC 6749 §2.1) has no secret: its id alone
                // identifies it.
                if let Some(public) = cfg.client(id).filter(|c| c.public) {
                    return Ok(public);
                }
                return Err(OAuthError::new(
                    ErrorCode::InvalidClient,
                    "client_secret is required for this client",
                ));
            }
            _ => return Err(challenge("client authentication is required")),
        },
    };
    let fail = || {
        if used_basic {
            challenge(FAILED)
        } else {
            OAuthError::new(ErrorCode::InvalidClient, FAILED)
        }
    };
    // Client ids are public identifiers: an unknown one fails at the cost of a
    // table lookup (no decoy hash, no store write).
    let Some(client) = cfg.client(&id) else {
        return Err(fail());
    };
    let Some(stored) = client.secret.as_ref() else {
        return Err(fail());
    };
    match check_secret(
        &cfg.throttle,
        env,
        Subject::Client(&id),
        Some(stored),
        None,
        secret.as_bytes(),
    )
    .await
    {
        Ok(()) => Ok(client),
        Err(Refused::Wrong) => Err(fail()),
        Err(Refused::Throttled(wait)) => Err(throttled(wait)),
        Err(Refused::Busy(wait)) => Err(busy(wait)),
    }
}

pub fn repeated(e: crate::oauth::form::FormError) -> OAuthError {
    match e {
        crate::oauth::form::FormError::Repeated(name) => {
            invalid_request(format!("parameter `{name}` is repeated"))
        }
        crate::oauth::form::FormError::Malformed(what) => {
            invalid_request(format!("malformed form body: {what}"))
        }
    }
}
