//! The host as request handlers see it: the store, the clock, the CSPRNG,
//! this worker's credential cache and slow-hash ration, and who is asking.

use crate::authn::credential_cache::CredentialCache;
use crate::authn::hash_budget::HashBudget;
use crate::host::{Clock, Randomness};
use crate::store::kv::Kv;

pub struct ServiceEnv<'a> {
    pub kv: Kv<'a>,
    pub clock: &'a dyn Clock,
    pub rng: &'a dyn Randomness,
    pub credentials: &'a CredentialCache,
    pub hash_budget: &'a HashBudget,
    /// The client's address (see `authn::address`): failures are throttled
    /// per name and address. Asked only when a slow check needs it (a host
    /// call the other requests, a flood of unknown client ids among them,
    /// need not pay).
    pub client_address: &'a dyn Fn() -> String,
}
