//! Every stat the filters define, in one place (they appear in Envoy's admin
//! `/stats` and `/stats/prometheus`). Names ending in `.` take a suffix.

pub const GUARD_ALLOWED: &str = "oauth2.guard.allowed";
pub const GUARD_PASSED_UNGUARDED: &str = "oauth2.guard.passed_unguarded";
pub const GUARD_CACHE_HIT: &str = "oauth2.guard.cache.hit";
pub const GUARD_CACHE_MISS: &str = "oauth2.guard.cache.miss";
pub const GUARD_CACHE_REVALIDATED: &str = "oauth2.guard.cache.revalidated";
/// JWT signature checks (cache misses on JWTs; a hit does none).
pub const GUARD_JWT_VERIFIED: &str = "oauth2.guard.jwt_verified";
/// + the reason (`missing_token`, `invalid_token`, `insufficient_scope`, …).
pub const GUARD_DENIED: &str = "oauth2.guard.denied.";
/// Fleet mode: revocations made elsewhere that this worker heard of.
pub const GUARD_REVOCATIONS_HEARD: &str = "oauth2.guard.revocations_heard";
/// Fleet mode: polls of the revocation log that got no usable answer.
pub const GUARD_REVOCATION_POLL_FAILED: &str = "oauth2.guard.revocation_poll_failed";

/// + the grant type.
pub const TOKEN_ISSUED: &str = "oauth2.token.issued.";
/// + the RFC 6749 error code.
pub const TOKEN_ERROR: &str = "oauth2.token.error.";
pub const TOKEN_REFRESH_REUSE_REVOKED: &str = "oauth2.token.refresh_reuse_revoked";
pub const TOKEN_CODE_REPLAY_REVOKED: &str = "oauth2.token.code_replay_revoked";
pub const THROTTLED: &str = "oauth2.throttled";
/// Slow (PBKDF2) hash checks run: passwords, human-chosen client secrets and
/// the decoys for unknown usernames.
pub const AUTHN_SLOW_HASHES: &str = "oauth2.authn.slow_hashes";
/// Requests refused (429) because this worker's slow-hash ration was spent.
pub const AUTHN_SLOW_HASH_RATIONED: &str = "oauth2.authn.slow_hash_rationed";
pub const REVOKE_REVOKED: &str = "oauth2.revoke.revoked";
pub const REVOKE_UNKNOWN: &str = "oauth2.revoke.unknown";
pub const INTROSPECT_ACTIVE: &str = "oauth2.introspect.active";
pub const INTROSPECT_INACTIVE: &str = "oauth2.introspect.inactive";
/// + the outcome of an `/authorize` request.
pub const AUTHORIZE: &str = "oauth2.authorize.";

pub const STORE_CAS_RETRIES: &str = "oauth2.store.cas_retries";
pub const STORE_CORRUPT_VALUES: &str = "oauth2.store.corrupt_values";
pub const STORE_RECLAIMED: &str = "oauth2.store.reclaimed";
pub const STORE_FULL: &str = "oauth2.store.full";
