//! The audit record of a token-endpoint answer, built from the request and the
//! answer (see `crate::audit`): names the caller presented are kept only when
//! they name a configured client or user.

use crate::audit::{event, AuditRecord};
use crate::config::{GrantType, TokenConfig};
use crate::endpoint::common::{EndpointRequest, Outcome};
use crate::oauth::basic_auth;
use crate::oauth::error::ErrorCode;
use crate::oauth::form::Form;
use crate::oauth::response::Response;
use crate::token;

/// What the request says, as far as the audit may repeat it.
struct Presented {
    client_id: Option<String>,
    username: Option<String>,
    grant_type: Option<GrantType>,
    token_fingerprint: Option<String>,
}

fn presented(cfg: &TokenConfig, req: &EndpointRequest) -> Presented {
    let form = Form::parse(req.body).ok();
    let field = |name: &str| {
        form.as_ref()
            .and_then(|f| f.one(name).ok().flatten())
            .map(str::to_string)
    };
    let id = match req.authorization.map(basic_auth::parse) {
        Some(Ok(c)) => Some(c.id),
        _ => field("client_id"),
    };
    Presented {
        client_id: id.filter(|id| cfg.client(id).is_some()),
        username: field("username").and_then(|u| cfg.user(&u).map(|u| u.id.clone())),
        grant_type: field("grant_type").and_then(|g| GrantType::from_param(&g)),
        token_fingerprint: field("token")
            .as_deref()
            .and_then(token::parse_any)
            .map(|t| t.hash.fingerprint()),
    }
}

/// The record of a `/token`, `/revoke` or `/introspect` answer.
pub fn record(
    cfg: &TokenConfig,
    req: &EndpointRequest,
    outcome: Outcome,
    response: &Response,
) -> AuditRecord {
    let p = presented(cfg, req);
    let mut r = AuditRecord::new(event::TOKEN_REFUSED);
    r.client_id = p.client_id;
    match outcome {
        Outcome::Issued(g) => {
            r.event = if g == GrantType::RefreshToken {
                event::TOKEN_REFRESHED
            } else {
                event::TOKEN_ISSUED
            };
            r.grant_type = Some(g.as_str());
            let body: Option<serde_json::Value> = serde_json::from_slice(&response.body).ok();
            let text = |k: &str| {
                body.as_ref()
                    .and_then(|b| b.get(k))
                    .and_then(|v| v.as_str())
                    .map(str::to_string)
            };
            r.scope = text("scope");
            r.token = text("access_token")
                .as_deref()
                .and_then(token::parse_any)
                .map(|t| t.hash.fingerprint());
            if g == GrantType::Password {
                r.user = p.username;
            }
        }
        Outcome::Revoked => {
            r.event = event::TOKEN_REVOKED;
            r.token = response
                .header_value("revokedaccesstoken")
                .map(str::to_string);
            r.user = response.header_value("authorizeduser").map(str::to_string);
        }
        Outcome::RevokeUnknown => r.event = event::TOKEN_REVOKE_UNKNOWN,
        Outcome::IntrospectedActive | Outcome::IntrospectedInactive => {
            r.event = event::TOKEN_INTROSPECTED;
            r.token = p.token_fingerprint;
        }
        Outcome::Failed(code) => {
            r.error = Some(code.as_str());
            r.event = if response.status == 429 {
                event::AUTH_THROTTLED
            } else if code == ErrorCode::InvalidClient {
                event::CLIENT_AUTH_FAILED
            } else if code == ErrorCode::InvalidGrant && p.grant_type == Some(GrantType::Password) {
                event::LOGIN_FAILED
            } else {
                event::TOKEN_REFUSED
            };
            if p.grant_type == Some(GrantType::Password) {
                r.user = p.username;
            }
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::secret_hash::hash_secret;

    fn cfg() -> TokenConfig {
        let json = format!(
            r#"{{ "issuer": "https://auth.example.com", "clients": [ {{ "client_id": "app", "secret_hash": "{}", "grant_types": ["password"], "scopes": ["default"] }} ], "users": [ {{ "username": "admin", "password_hash": "{}", "scopes": ["default"] }} ] }}"#,
            hash_secret(b"s", b"0123456789abcdef", 10_000),
            hash_secret(b"admin", b"0123456789abcdef", 10_000)
        );
        TokenConfig::parse(json.as_bytes()).unwrap()
    }

    fn req(body: &[u8]) -> EndpointRequest<'_> {
        EndpointRequest {
            method: "POST",
            content_type: Some("application/x-www-form-urlencoded"),
            authorization: None,
            body,
        }
    }

    #[test]
    fn a_failed_login_names_a_known_user_but_never_what_else_was_typed() {
        let cfg = cfg();
        let refused = Response::new(400);
        let failed = Outcome::Failed(ErrorCode::InvalidGrant);
        let body = b"grant_type=password&client_id=app&username=admin&password=hunter2";
        let r = record(&cfg, &req(body), failed, &refused);
        assert_eq!(r.event, event::LOGIN_FAILED);
        assert_eq!(r.user.as_deref(), Some("admin@carbon.super"));
        assert_eq!(r.client_id.as_deref(), Some("app"));
        // A token typed as the username, an unknown client id: neither is kept.
        let body = b"grant_type=password&client_id=oQAAsecret&username=oQAAtoken-text&password=x";
        let r = record(&cfg, &req(body), failed, &refused);
        assert_eq!((r.user.as_deref(), r.client_id.as_deref()), (None, None));
        let text = format!("{:?}", r.fields());
        assert!(
            !text.contains("oQAA") && !text.contains("hunter2"),
            "{text}"
        );
    }

    #[test]
    fn events_follow_the_outcome() {
        let cfg = cfg();
        let r = record(
            &cfg,
            &req(b"grant_type=password"),
            Outcome::Failed(ErrorCode::InvalidClient),
            &Response::new(401),
        );
        assert_eq!(
            (r.event, r.error),
            (event::CLIENT_AUTH_FAILED, Some("invalid_client"))
        );
        let r = record(
            &cfg,
            &req(b"grant_type=password"),
            Outcome::Failed(ErrorCode::TemporarilyUnavailable),
            &Response::new(429),
        );
        assert_eq!(r.event, event::AUTH_THROTTLED);
        let revoked = Response::new(200)
            .header("revokedaccesstoken", "00112233445566778899aabbccddeeff")
            .header("authorizeduser", "admin@carbon.super");
        let r = record(&cfg, &req(b"token=x"), Outcome::Revoked, &revoked);
        assert_eq!(r.event, event::TOKEN_REVOKED);
        assert_eq!(r.token.as_deref(), Some("00112233445566778899aabbccddeeff"));
    }
}
