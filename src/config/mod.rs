//! Plugin configuration: the token endpoint's (`token`) and the bearer guard's
//! (`guard`), parsed and checked once; a bad field is a [`ConfigError`] naming
//! it, and Envoy then refuses the configuration. May import `oauth`, `authn`'s
//! secret hashes and `store`'s limits.

pub mod guard;
pub mod token;

pub use token::*;
