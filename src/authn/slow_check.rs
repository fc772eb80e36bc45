//! One check of a presented secret against its configured hash, in the order
//! that keeps an attacker from multiplying its cost or turning it against the
//! owner: a credential this worker already verified passes at the cost of a
//! digest (even while the name is throttled: only its owner can present it);
//! a fast keyed hash is checked at once (a 256-bit secret cannot be guessed,
//! so it is never throttled); a slow hash runs only when the name is not
//! throttled for this address and the worker's ration has room for it, and a
//! failure is counted.

use crate::authn::env::ServiceEnv;
use crate::authn::throttle::Subject;
use crate::config::secret_hash::SecretHash;
use crate::config::ThrottlePolicy;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Wrong secret (or unknown name).
    Wrong,
    /// Throttled for this name (and address), for this many seconds.
    Throttled(u64),
    /// This worker's slow-hash ration is spent for this many seconds.
    Busy(u64),
}

/// `stored`: the name's hash, or `None` for an unknown name, which then costs
/// a slow hash like a wrong secret (`decoy`), so timing does not tell them apart.
pub async fn check_secret(
    throttle: &ThrottlePolicy,
    env: &ServiceEnv<'_>,
    subject: Subject<'_>,
    stored: Option<&SecretHash>,
    decoy: Option<&SecretHash>,
    presented: &[u8],
) -> Result<(), Refused> {
    if let Some(h) = stored {
        if !h.is_slow() {
            return if h.verify(presented) {
                Ok(())
            } else {
                Err(Refused::Wrong)
            };
        }
        if env.credentials.seen(h, presented) {
            return Ok(());
        }
    }
    let now_ms = env.clock.now_millis();
    let now = now_ms / 1000;
    let address = (env.client_address)();
    if let Some(wait) = throttle.retry_after(&env.kv, subject, &address, now).await {
        return Err(Refused::Throttled(wait));
    }
    let Some(hash) = stored.or(decoy) else {
        // Nothing configured to hash against.
        return Err(Refused::Wrong);
    };
    env.hash_budget
        .take(hash.iterations() as u64, now_ms)
        .map_err(Refused::Busy)?;
    let passed = match stored {
        Some(h) => env.credentials.verify(h, presented),
        None => {
            let _ = hash.verify(b"\x00not-a-secret");
            false
        }
    };
    if passed {
        return Ok(());
    }
    throttle
        .record_failure(&env.kv, subject, &address, now)
        .await;
    Err(Refused::Wrong)
}
