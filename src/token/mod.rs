//! Token formats, no storage: what a token's text says (bucket, grant, kind)
//! and what the store keeps of it (its hash). Today's format is `opaque`; the
//! access token's format sits behind [`AccessTokenFormat`], so another one
//! (a signed JWT) can be added without touching the store. May import `host`
//! only: the store's key reaches it as a value (`keyed_tag::ServerKey`).

pub mod keyed_tag;
pub mod opaque;

pub use opaque::*;

use crate::host::{RandomUnavailable, Randomness};

/// What an access token is minted for: the grant's place in the store and
/// what a self-contained format would state about it.
#[derive(Debug, Clone, Copy)]
pub struct AccessTokenFacts<'a> {
    pub bucket: u32,
    pub grant_id: &'a GrantId,
    pub client_id: &'a str,
    pub user: Option<&'a str>,
    pub scope: &'a str,
    pub issued_at: u64,
    pub expires_at: u64,
}

/// How access tokens look (fosite's `strategy.go`): the store calls this to
/// mint one and keeps only the hash of its text.
pub trait AccessTokenFormat {
    fn mint(
        &self,
        facts: &AccessTokenFacts,
        rng: &dyn Randomness,
    ) -> Result<MintedToken, RandomUnavailable>;
}

/// Today's opaque access tokens (see `opaque`).
pub struct Opaque;

impl AccessTokenFormat for Opaque {
    fn mint(
        &self,
        facts: &AccessTokenFacts,
        rng: &dyn Randomness,
    ) -> Result<MintedToken, RandomUnavailable> {
        mint_access(facts.bucket, facts.grant_id, rng)
    }
}
