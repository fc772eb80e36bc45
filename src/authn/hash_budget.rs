//! A per-worker ration of slow (PBKDF2) hash work, counted in PBKDF2
//! iterations so that the ration is CPU time whatever each hash's cost: at most
//! `per_second` iterations a second on average, `burst` at once. Wrong passwords and unknown usernames each cost a
//! slow hash (so that timing does not tell them apart); without a ration, a
//! flood of them would take every worker's CPU from the requests that need
//! none. Beyond the ration the request is answered 429 before hashing; checks
//! that need no slow hash (a credential this worker already verified, a fast
//! keyed client secret, an unknown client id) never touch it.

use std::cell::Cell;

pub use crate::config::abuse::HashBudgetPolicy;

/// A token bucket of iterations (in thousandths), refilled from the clock on
/// each use.
pub struct HashBudget {
    policy: HashBudgetPolicy,
    milli_tokens: Cell<u64>,
    last_ms: Cell<u64>,
    /// Since the last `drain_counts`: slow hashes let through, and refused.
    spent: Cell<u64>,
    refused: Cell<u64>,
}

impl HashBudget {
    pub fn new(policy: HashBudgetPolicy) -> Self {
        HashBudget {
            policy,
            milli_tokens: Cell::new(policy.burst.saturating_mul(1000)),
            last_ms: Cell::new(0),
            spent: Cell::new(0),
            refused: Cell::new(0),
        }
    }

    /// (slow hashes let through, refused) since the last call, for stats.
    pub fn drain_counts(&self) -> (u64, u64) {
        (self.spent.replace(0), self.refused.replace(0))
    }

    /// Takes a hash of `iterations` from the ration, or says how many seconds
    /// until there is room for it.
    pub fn take(&self, iterations: u64, now_ms: u64) -> Result<(), u64> {
        let taken = self.ration(iterations, now_ms);
        let counter = if taken.is_ok() {
            &self.spent
        } else {
            &self.refused
        };
        counter.set(counter.get().saturating_add(1));
        taken
    }

    fn ration(&self, iterations: u64, now_ms: u64) -> Result<(), u64> {
        let p = self.policy;
        if p.per_second == 0 {
            return Ok(());
        }
        // A hash dearer than the burst could never run: it may when the bucket is full.
        let cost = iterations.min(p.burst).saturating_mul(1000);
        let cap = p.burst.max(1).saturating_mul(1000);
        let elapsed = now_ms.saturating_sub(self.last_ms.get());
        self.last_ms.set(now_ms.max(self.last_ms.get()));
        // per_second tokens per 1000 ms = per_second milli-tokens per ms.
        let refilled = self
            .milli_tokens
            .get()
            .saturating_add(elapsed.saturating_mul(p.per_second))
            .min(cap);
        if refilled >= cost {
            self.milli_tokens.set(refilled - cost);
            Ok(())
        } else {
            self.milli_tokens.set(refilled);
            let missing_ms = (cost - refilled).div_ceil(p.per_second);
            Err(missing_ms.div_ceil(1000).max(1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let b = HashBudget::new(HashBudgetPolicy {
            per_second: 400,
            burst: 300,
        });
        let t = 1_000_000;
        for _ in 0..3 {
            assert_eq!(b.take(100, t), Ok(()));
        }
        assert_eq!(b.take(100, t), Err(1));
        assert_eq!(b.drain_counts(), (3, 1));
        assert_eq!(b.drain_counts(), (0, 0));
        // 250 ms brings one back at 4/s.
        assert_eq!(b.take(100, t + 249), Err(1));
        assert_eq!(b.take(100, t + 250), Ok(()));
        assert_eq!(b.take(100, t + 250), Err(1));
        // Over 10 s at most 40 more pass, however many ask.
        let passed = (0..10_000)
            .filter(|i| b.take(100, t + 250 + i).is_ok())
            .count()
            + (0..1000)
                .filter(|i| b.take(100, t + 10_250 + i).is_ok())
                .count();
        assert!(passed <= 45, "{passed}");
        // A quiet spell refills no more than the burst.
        let later = t + 100_000;
        let ok = (0..10).filter(|_| b.take(100, later).is_ok()).count();
        assert_eq!(ok, 3);
    }

    #[test]
    fn zero_means_unlimited_and_a_clock_going_back_is_harmless() {
        let off = HashBudget::new(HashBudgetPolicy {
            per_second: 0,
            burst: 0,
        });
        assert!((0..1000).all(|_| off.take(100_000, 5).is_ok()));
        let b = HashBudget::new(HashBudgetPolicy {
            per_second: 1000,
            burst: 1000,
        });
        assert!(b.take(1000, 10_000).is_ok());
        assert!(b.take(1000, 9_000).is_err());
        assert!(b.take(1000, 11_000).is_ok());
    }

    #[test]
    fn dear_hashes_use_more_of_the_ration() {
        let b = HashBudget::new(HashBudgetPolicy {
            per_second: 100_000,
            burst: 200_000,
        });
        assert!(b.take(100_000, 0).is_ok());
        assert!(b.take(100_000, 0).is_ok());
        assert_eq!(b.take(100_000, 0), Err(1));
        // Cheap ones fit where a dear one does not.
        assert!(b.take(10_000, 100).is_ok());
        // A hash dearer than the burst runs when the bucket is full.
        assert!(b.take(1_000_000, 10_000).is_ok());
        assert!(b.take(1, 10_000).is_err());
    }
}
