//! `POST /revoke` (RFC 7009, with the reference product's response headers:
//! `RevokedAccessToken`, `RevokedRefreshToken`, `AuthorizedUser`).

use crate::authn::client::{authenticate, repeated};
use crate::authn::env::ServiceEnv;
use crate::config::TokenConfig;
use crate::endpoint::common::{failed, read_form, EndpointRequest, EndpointResult, Outcome};
use crate::grant::store_error;
use crate::oauth::error::{invalid_request, OAuthError};
use crate::oauth::response::Response;
use crate::store::GrantStore;
use crate::token;

pub async fn handle_revoke(
    cfg: &TokenConfig,
    env: &mut ServiceEnv<'_>,
    req: &EndpointRequest<'_>,
) -> EndpointResult {
    let mut store = GrantStore::over(env.kv.clone(), env.rng, cfg.store);
    match revoke_inner(cfg, env, &mut store, req).await {
        Ok((response, outcome)) => EndpointResult {
            response,
            outcome,
            store: store.report,
        },
        Err(e) => failed(e, store.report),
    }
}

async fn revoke_inner(
    cfg: &TokenConfig,
    env: &mut ServiceEnv<'_>,
    store: &mut GrantStore<'_>,
    req: &EndpointRequest<'_>,
) -> Result<(Response, Outcome), OAuthError> {
    let form = read_form(cfg, req)?;
    let client = authenticate(cfg, &form, req.authorization, env).await?;
    let Some(presented) = form.one("token").map_err(repeated)? else {
        return Err(invalid_request("token is required"));
    };
    // The hint only speeds up a lookup elsewhere; our tokens say their kind, so
    // a wrong or unknown hint never stops the search (RFC 7009 §2.1).
    let _ = form.one("token_type_hint").map_err(repeated)?;
    let done = Response::new(200).no_store();
    let Some(parsed) = token::parse_any(presented) else {
        return Ok((done, Outcome::RevokeUnknown));
    };
    match store
        .revoke(&parsed, &client.client_id, env.clock.now_secs())
        .await
        .map_err(store_error)?
    {
        None => Ok((done, Outcome::RevokeUnknown)),
        Some(r) => {
            let user = r.user.clone().unwrap_or_else(|| client.owner.clone());
            let mut resp = done.header("revokedaccesstoken", r.access_fingerprint);
            if let Some(fp) = r.refresh_fingerprint {
                resp = resp.header("revokedrefreshtoken", fp);
            }
            Ok((resp.header("authorizeduser", user), Outcome::Revoked))
        }
    }
}
