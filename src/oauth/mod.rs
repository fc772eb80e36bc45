//! OAuth 2.0 protocol vocabulary with no I/O: error answers (RFC 6749 §5.2),
//! form bodies, scopes, PKCE (RFC 7636), HTTP Basic client credentials and the
//! response type every endpoint returns. Imports nothing else of the crate.

pub mod basic_auth;
pub mod error;
pub mod form;
pub mod pkce;
pub mod response;
pub mod scope;
