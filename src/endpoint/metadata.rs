//! `GET /.well-known/oauth-authorization-server` (RFC 8414), derived from the
//! live configuration: what a client may discover is what this filter serves.

use serde_json::json;

use crate::config::{GrantType, TokenConfig};
use crate::oauth::error::{ErrorCode, OAuthError};
use crate::oauth::response::Response;

/// The metadata of the configured issuer. With `issuer_from_host`, `authority`
/// (the request's Host) must be a listed host; any other gets an uncacheable
/// error, so no cache can keep a document naming a Host an attacker chose.
pub fn metadata(cfg: &TokenConfig, https: bool, authority: Option<&str>) -> Response {
    let Some(issuer) = cfg.issuer.for_request(https, authority) else {
        return OAuthError::new(
            ErrorCode::InvalidRequest,
            "this server does not answer for that host",
        )
        .to_response();
    };
    let mut grants: Vec<&str> = Vec::new();
    let mut scopes: Vec<&str> = Vec::new();
    for c in &cfg.clients {
        for g in &c.grant_types {
            if !grants.contains(&g.as_str()) {
                grants.push(g.as_str());
            }
        }
        for s in &c.scopes {
            if !scopes.contains(&s.as_str()) {
                scopes.push(s);
            }
        }
    }
    let order = |g: &&str| {
        [
            GrantType::AuthorizationCode,
            GrantType::Implicit,
            GrantType::ClientCredentials,
            GrantType::Password,
            GrantType::RefreshToken,
        ]
        .iter()
        .position(|x| x.as_str() == *g)
    };
    grants.sort_by_key(order);
    let secret_methods = ["client_secret_basic", "client_secret_post"];
    // Public clients authenticate with their id alone ("none") at /token and /revoke.
    let mut public_methods = secret_methods.to_vec();
    if cfg.clients.iter().any(|c| c.public) {
        public_methods.push("none");
    }
    let any = |g: GrantType| cfg.clients.iter().any(|c| c.allows(g));
    let mut response_types: Vec<&str> = Vec::new();
    if any(GrantType::AuthorizationCode) {
        response_types.push("code");
    }
    if any(GrantType::Implicit) {
        response_types.push("token");
    }
    let mut body = json!({
        "issuer": issuer,
        "token_endpoint": format!("{issuer}{}", cfg.paths.token),
        "revocation_endpoint": format!("{issuer}{}", cfg.paths.revoke),
        "introspection_endpoint": format!("{issuer}{}", cfg.paths.introspect),
        "grant_types_supported": grants,
        // Empty when no client uses /authorize.
        "response_types_supported": response_types,
        "scopes_supported": scopes,
        "token_endpoint_auth_methods_supported": public_methods,
        "revocation_endpoint_auth_methods_supported": public_methods,
        "introspection_endpoint_auth_methods_supported": secret_methods,
    });
    if cfg.jwt.is_some() {
        body["jwks_uri"] = json!(format!("{issuer}{}", cfg.paths.jwks));
    }
    if !response_types.is_empty() {
        body["authorization_endpoint"] = json!(format!("{issuer}{}", cfg.paths.authorize));
        // RFC 9207: every authorization response carries `iss`.
        body["authorization_response_iss_parameter_supported"] = json!(true);
        body["response_modes_supported"] = json!(if any(GrantType::Implicit) {
            vec!["query", "fragment"]
        } else {
            vec!["query"]
        });
    }
    if any(GrantType::AuthorizationCode) {
        let mut methods = vec!["S256"];
        if cfg
            .clients
            .iter()
            .any(|c| c.allow_plain_pkce && c.allows(GrantType::AuthorizationCode))
        {
            methods.push("plain");
        }
        body["code_challenge_methods_supported"] = json!(methods);
    }
    Response::json(200, body.to_string()).header("cache-control", "max-age=60")
}
