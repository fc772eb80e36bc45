//! Client authentication at the token endpoints (RFC 6749 §2.3.1): HTTP Basic
//! or `client_id` + `client_secret` in the form, never both.

use crate::basic_auth::{self, BasicError};
use crate::config::{Client, TokenConfig};
use crate::credential_cache::CredentialCache;
use crate::form::Form;
use crate::oauth_error::{invalid_request, ErrorCode, OAuthError};

const FAILED: &str = "client authentication failed";

pub fn authenticate<'c>(
    cfg: &'c TokenConfig,
    form: &Form,
    authorization: Option<&str>,
    credentials: &mut CredentialCache,
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
            (Some(_), None) => {
                return Err(OAuthError::new(
                    ErrorCode::InvalidClient,
                    "client_secret is required for this client",
                ))
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
    match cfg.client(&id) {
        Some(client) if credentials.verify(&client.secret, secret.as_bytes()) => Ok(client),
        Some(_) => Err(fail()),
        None => {
            // Spend the same time as a wrong secret, so timing does not reveal
            // which client ids exist.
            if let Some(first) = cfg.clients.first() {
                let _ = first.secret.verify(b"\x00not-a-secret");
            }
            Err(fail())
        }
    }
}

pub fn repeated(e: crate::form::FormError) -> OAuthError {
    match e {
        crate::form::FormError::Repeated(name) => {
            invalid_request(format!("parameter `{name}` is repeated"))
        }
        crate::form::FormError::Malformed(what) => {
            invalid_request(format!("malformed form body: {what}"))
        }
    }
}
