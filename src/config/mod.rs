//! Plugin configuration: the token endpoint's (`token`) and the bearer guard's
//! (`guard`), parsed and checked once; a bad field is a [`ConfigError`] naming
//! it, and Envoy then refuses the configuration. Secrets are configured as
//! hashes (`secret_hash`). May import `oauth` and `store`'s limits.

pub mod abuse;
pub mod client;
pub mod error;
pub mod guard;
pub mod issuer;
pub mod jwt;
pub mod lifetimes;
pub mod secret_hash;
pub mod store;
pub mod token;

pub use client::{Client, GrantType, User};
pub use error::{check_header_text, parse_json, ConfigError};
pub use issuer::Issuer;
pub use lifetimes::{LifetimeOverrides, LifetimesConfig};
pub use token::*;
