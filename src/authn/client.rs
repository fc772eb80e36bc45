//! Client authentication at the token endpoints (RFC 6749 §2.3.1): HTTP Basic
//! or `client_id` + `client_secret` in the form, never both.

use crate::authn::env::ServiceEnv;
use crate::authn::throttle::Subject;
use crate::authn::user::costliest;
use crate::config::{Client, TokenConfig};
use crate::oauth::basic_auth::{self, BasicError};
use crate::oauth::error::{invalid_request, throttled, ErrorCode, OAuthError};
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
    // Checked before the slow hash: a throttled name costs no PBKDF2.
    let now = env.clock.now_secs();
    if let Some(wait) = cfg
        .throttle
        .retry_after(&env.kv, Subject::Client(&id), now)
        .await
    {
        return Err(throttled(wait));
    }
    let result = match cfg.client(&id) {
        Some(client)
            if client
                .secret
                .as_ref()
                .is_some_and(|h| env.credentials.verify(h, secret.as_bytes())) =>
        {
            Ok(client)
        }
        Some(_) => Err(fail()),
        None => {
            // Spend the same time as a wrong secret, so timing does not reveal
            // which client ids exist.
            if let Some(costliest) = costliest(cfg.clients.iter().filter_map(|c| c.secret.as_ref()))
            {
                let _ = costliest.verify(b"\x00not-a-secret");
            }
            Err(fail())
        }
    };
    if result.is_err() {
        cfg.throttle
            .record_failure(&env.kv, Subject::Client(&id), now)
            .await;
    }
    result
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
