//! How a node hears about revocations made on other nodes (fleet mode).
//!
//! Every revocation also writes a short-lived event `revlog/<slice>/<id>` whose
//! value names the bucket that changed, in the same transaction as the
//! revocation (`txn::Step::Announce`). Each worker polls the recent slices for
//! events newer than the last revision it saw (`min_mod_revision`), and bumps
//! the local revocation generation of those buckets' shards, so its validation
//! cache drops them on the next request (the shared-data `immediate` mechanism).
//! A node that has not heard from the store for longer than `staleness_ms`
//! stops trusting its cache.

/// Seconds per revlog slice; a poll reads this slice and the one before, so
/// node clocks must agree to within this many seconds.
pub const REVLOG_SLICE_SECS: u64 = 60;
/// How long an event stays in the store (its lease): well past any poll.
pub const REVLOG_TTL_SECS: u64 = 3 * REVLOG_SLICE_SECS;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedConfig {
    pub poll_interval_ms: u64,
    pub staleness_ms: u64,
}

/// One worker's position in the revocation log.
#[derive(Debug, Clone)]
pub struct RevocationFeed {
    cfg: FeedConfig,
    /// The store revision seen by the last successful poll (0: none yet).
    revision: i64,
    /// When the last successful poll was sent (ms); events up to then are known.
    heard_at_ms: Option<u64>,
    in_flight_since_ms: Option<u64>,
    /// When the last poll was sent: polls are `poll_interval_ms` apart
    /// whatever the tick period.
    last_sent_ms: Option<u64>,
}

/// A poll to send: events of slices from `first_slice` on, newer than `after_revision`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Poll {
    pub first_slice: u64,
    pub after_revision: i64,
}

impl RevocationFeed {
    pub fn new(cfg: FeedConfig) -> Self {
        RevocationFeed {
            cfg,
            revision: 0,
            heard_at_ms: None,
            in_flight_since_ms: None,
            last_sent_ms: None,
        }
    }

    /// The poll to send now, if one is due (at most one in flight; a poll that
    /// got no answer within the staleness limit is given up).
    pub fn due(&mut self, now_ms: u64) -> Option<Poll> {
        if let Some(sent) = self.in_flight_since_ms {
            if now_ms.saturating_sub(sent) < self.cfg.staleness_ms.max(self.cfg.poll_interval_ms) {
                return None;
            }
        }
        if self
            .last_sent_ms
            .is_some_and(|s| now_ms.saturating_sub(s) < self.cfg.poll_interval_ms)
        {
            return None;
        }
        self.in_flight_since_ms = Some(now_ms);
        self.last_sent_ms = Some(now_ms);
        let now_secs = now_ms / 1000;
        Some(Poll {
            first_slice: slice_of(now_secs).saturating_sub(1),
            after_revision: self.revision,
        })
    }

    /// A poll sent at `sent_ms` came back with the store at `revision`: every
    /// revocation up to then is known (the caller applied its events; on the
    /// first poll they may be old ones, which only costs a few cache misses).
    pub fn heard(&mut self, sent_ms: u64, revision: i64) {
        self.in_flight_since_ms = None;
        if revision > self.revision {
            self.revision = revision;
        }
        self.heard_at_ms = Some(self.heard_at_ms.map_or(sent_ms, |h| h.max(sent_ms)));
    }

    /// The poll failed (store unreachable, garbage): try again next tick.
    pub fn failed(&mut self) {
        self.in_flight_since_ms = None;
    }

    /// Whether cached validations may be trusted: the log was read recently enough.
    pub fn trusted(&self, now_ms: u64) -> bool {
        self.heard_at_ms
            .is_some_and(|h| now_ms.saturating_sub(h) <= self.cfg.staleness_ms)
    }

    pub fn revision(&self) -> i64 {
        self.revision
    }
}

pub fn slice_of(secs: u64) -> u64 {
    secs / REVLOG_SLICE_SECS
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: FeedConfig = FeedConfig {
        poll_interval_ms: 50,
        staleness_ms: 1000,
    };

    #[test]
    fn a_node_trusts_its_cache_only_while_it_hears_the_log() {
        let mut f = RevocationFeed::new(CFG);
        assert!(!f.trusted(10_000), "never heard: not trusted");
        let p = f.due(10_000).unwrap();
        assert_eq!(p.after_revision, 0);
        assert!(f.due(10_010).is_none(), "one poll in flight at a time");
        f.heard(10_000, 42);
        assert!(f.trusted(10_500));
        assert!(f.trusted(11_000));
        assert!(
            !f.trusted(11_001),
            "stale after staleness_ms without an answer"
        );
        assert!(f.due(10_040).is_none(), "polls stay poll_interval_ms apart");
        assert_eq!(f.due(10_060).unwrap().after_revision, 42);
        // Failures keep the position and let the next tick try again.
        f.failed();
        assert_eq!(f.due(10_120).unwrap().after_revision, 42);
        assert!(!f.trusted(12_000));
    }

    #[test]
    fn a_lost_poll_is_given_up_after_the_staleness_limit() {
        let mut f = RevocationFeed::new(CFG);
        assert!(f.due(0).is_some());
        assert!(f.due(999).is_none());
        assert!(f.due(1000).is_some());
    }

    #[test]
    fn polls_read_the_previous_slice_too() {
        let mut f = RevocationFeed::new(CFG);
        let p = f.due(REVLOG_SLICE_SECS * 1000 * 7 + 5).unwrap();
        assert_eq!(p.first_slice, 6);
    }
}
