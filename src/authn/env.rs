//! The host as request handlers see it: the store, the clock, the CSPRNG and
//! this worker's credential cache.

use crate::authn::credential_cache::CredentialCache;
use crate::host::{Clock, Randomness};
use crate::store::kv::Kv;

pub struct ServiceEnv<'a> {
    pub kv: Kv<'a>,
    pub clock: &'a dyn Clock,
    pub rng: &'a dyn Randomness,
    pub credentials: &'a CredentialCache,
}
