//! `GET /.well-known/jwks.json` (`paths.jwks`): the public keys of JWT access
//! tokens as a JWK Set (RFC 7517 §5), what RFC 8414 metadata names `jwks_uri`
//! and what Envoy's `jwt_authn` fetches (`remote_jwks`). Never a private key:
//! the set is rendered from the public halves at configuration.

use crate::config::TokenConfig;
use crate::oauth::response::Response;

/// The answer at `paths.jwks`, or `None` when no `jwt` section is configured
/// (the request then passes on like any other).
pub fn jwks(cfg: &TokenConfig, method: &str) -> Option<Response> {
    let jwt = cfg.jwt.as_ref()?;
    Some(match method {
        "GET" | "HEAD" => Response::json(200, jwt.jwks_json.clone())
            .header("cache-control", format!("max-age={}", jwt.jwks_max_age)),
        _ => Response::new(405).header("allow", "GET, HEAD"),
    })
}
