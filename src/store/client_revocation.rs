//! `revoked_clients`: an operator's way to end every token of a client at once
//! (a leaked secret, a retired application). Tokens survive configuration
//! changes, so merely removing a client would leave its tokens valid until they
//! expire; listing it here revokes all its grants when the configuration loads,
//! and every guard refuses them from its next request on (the revocation
//! counters move).
//!
//! The sweep reads every bucket (over etcd: a paged scan of the bucket keys
//! that exist), so it runs once per change of the list, not on every worker's
//! configuration, nor on every Envoy of a fleet: `oauth2/revoked_clients` remembers the list the
//! last sweep applied. The client cannot get new tokens afterwards: it is not
//! in `clients` (configuration validation).

use std::collections::BTreeSet;

use crate::host::{Randomness, WriteError};
use crate::store::kv::Kv;
use crate::store::{GrantStore, StoreError, StoreLayout, CAS_RETRIES};

pub const SWEPT_KEY: &str = "oauth2/revoked_clients";

/// Revokes the grants of listed clients not swept yet. `Ok(None)`: nothing to
/// do; `Ok(Some(n))`: a sweep ran and revoked `n` grants. Over shared data it
/// finishes at once (`run_now`); over etcd the token filter drives it from its
/// root context after the configuration loads, until it succeeds.
pub async fn apply(
    kv: Kv<'_>,
    rng: &dyn Randomness,
    layout: StoreLayout,
    listed: &[String],
    now: u64,
) -> Result<Option<u32>, StoreError> {
    let listed: BTreeSet<&str> = listed.iter().map(String::as_str).collect();
    let current = kv
        .get(SWEPT_KEY)
        .await
        .map_err(|_| StoreError::Unavailable)?;
    let swept = decode(current.value.as_deref().unwrap_or(&[]));
    if swept.iter().map(String::as_str).eq(listed.iter().copied()) {
        return Ok(None);
    }
    let new: Vec<String> = listed
        .iter()
        .filter(|c| !swept.iter().any(|s| s == *c))
        .map(|c| c.to_string())
        .collect();
    let revoked = if new.is_empty() {
        None
    } else {
        let mut store = GrantStore::over(kv.clone(), rng, layout);
        Some(store.revoke_clients(&new, now).await?)
    };
    // Remember the list as applied. Losing this write only means one more sweep
    // later: never a token kept alive.
    let value = listed.iter().copied().collect::<Vec<_>>().join("\n");
    let mut version = current.version;
    for _ in 0..CAS_RETRIES {
        match kv
            .put(SWEPT_KEY, value.as_bytes().to_vec(), version, u64::MAX)
            .await
        {
            Err(WriteError::CasMismatch) => match kv.get(SWEPT_KEY).await {
                Ok(now_stored) => version = now_stored.version,
                Err(_) => break,
            },
            _ => break,
        }
    }
    Ok(revoked)
}

/// Client ids are visible ASCII without spaces (validation), so one per line.
fn decode(bytes: &[u8]) -> Vec<String> {
    std::str::from_utf8(bytes)
        .map(|s| {
            s.split('\n')
                .filter(|c| !c.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::memory::MemoryKv;
    use crate::host::HostRandomness;
    #[allow(unused_imports)]
    use crate::store::kv::{Kv, Sync_};
    use crate::store::{GrantRequest, Lifetimes};
    use crate::token;

    const LAYOUT: StoreLayout = StoreLayout {
        buckets: 8,
        grants_per_bucket: 16,
    };

    fn issue(kv: &MemoryKv, client: &str) -> String {
        let mut store = GrantStore::new(kv, &HostRandomness, LAYOUT);
        let req = GrantRequest {
            client_id: client.into(),
            user: Some("u@t".into()),
            scope: "default".into(),
            lifetimes: Lifetimes {
                access: 3600,
                refresh: Some(86400),
            },
        };
        store.issue(&req, 1000).sync().unwrap().access_token
    }

    fn live(kv: &MemoryKv, access: &str) -> bool {
        let t = token::parse(access).unwrap();
        GrantStore::lookup_in(&Kv::Local(kv), &t, 1001)
            .sync()
            .unwrap()
            .is_some()
    }

    fn list(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn listed_clients_lose_every_grant_once_and_others_keep_theirs() {
        let kv = MemoryKv::default();
        GrantStore::new(&kv, &HostRandomness, LAYOUT)
            .ensure_created()
            .unwrap();
        let gone: Vec<String> = (0..40).map(|_| issue(&kv, "leaked")).collect();
        let kept: Vec<String> = (0..40).map(|_| issue(&kv, "fine")).collect();
        let generations = |kv: &MemoryKv| -> u64 {
            (0..LAYOUT.buckets)
                .map(|b| GrantStore::revocation_generation(kv, b))
                .sum()
        };
        let before = generations(&kv);
        assert_eq!(
            apply(Kv::Local(&kv), &HostRandomness, LAYOUT, &[], 1001)
                .sync()
                .unwrap(),
            None
        );
        let listed = list(&["leaked"]);
        assert_eq!(
            apply(Kv::Local(&kv), &HostRandomness, LAYOUT, &listed, 1001)
                .sync()
                .unwrap(),
            Some(40)
        );
        assert!(gone.iter().all(|t| !live(&kv, t)));
        assert!(kept.iter().all(|t| live(&kv, t)));
        // Guards in `immediate` mode see the change.
        assert!(generations(&kv) > before);
        // Every worker loads the same list: no second sweep.
        assert_eq!(
            apply(Kv::Local(&kv), &HostRandomness, LAYOUT, &listed, 1001)
                .sync()
                .unwrap(),
            None
        );
        // A bucket beyond a smaller later layout is swept too.
        let smaller = StoreLayout {
            buckets: 1,
            grants_per_bucket: 16,
        };
        let both = list(&["fine", "leaked"]);
        assert_eq!(
            apply(Kv::Local(&kv), &HostRandomness, smaller, &both, 1001)
                .sync()
                .unwrap(),
            Some(40)
        );
        assert!(kept.iter().all(|t| !live(&kv, t)));
        // Taken off the list and put back later: swept again.
        assert_eq!(
            apply(Kv::Local(&kv), &HostRandomness, LAYOUT, &[], 1001)
                .sync()
                .unwrap(),
            None
        );
        let again = issue(&kv, "leaked");
        assert_eq!(
            apply(Kv::Local(&kv), &HostRandomness, LAYOUT, &listed, 1001)
                .sync()
                .unwrap(),
            Some(1)
        );
        assert!(!live(&kv, &again));
    }
}
