//! OAuth2 token service and bearer guard for Envoy, as proxy-wasm filters.
//!
//! Everything but `wasm` is plain Rust over the traits in [`host`], so the
//! protocol and the store run and are tested natively; `wasm` is the thin glue
//! to the proxy-wasm ABI.

pub mod authorize;
pub mod basic_auth;
pub mod bearer_guard;
pub mod browser_binding;
pub mod bucket;
pub mod client_auth;
pub mod client_revocation;
pub mod config;
pub mod credential_cache;
pub mod form;
pub mod grant;
pub mod grant_store;
pub mod guard_config;
pub mod host;
pub mod introspection;
pub mod login_page;
pub mod metadata;
pub mod oauth_error;
pub mod pending_authorization;
pub mod pkce;
pub mod refresh_grace;
pub mod response;
pub mod scope;
pub mod secret_hash;
pub mod server_key;
pub mod throttle;
pub mod token;
pub mod token_endpoint;
pub mod user_auth;
pub mod validation_cache;

#[cfg(target_arch = "wasm32")]
mod wasm;
