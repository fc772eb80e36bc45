//! The `store` section both filters share: where tokens live. `shared_data`
//! (default): this Envoy's shared data, no external server. `etcd`: an etcd
//! cluster reached through an Envoy cluster, so many Envoys share tokens.

use serde::Deserialize;

use super::error::{check_header_text, err, ConfigError};
use crate::store::{StoreLayout, MAX_BUCKETS, MAX_GRANTS_PER_BUCKET};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    #[default]
    SharedData,
    Etcd,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreFile {
    #[serde(default)]
    backend: Backend,
    buckets: Option<u32>,
    grants_per_bucket: Option<u16>,
    cluster: Option<String>,
    prefix: Option<String>,
    timeout_ms: Option<u64>,
    user: Option<String>,
    password: Option<String>,
    revocation_poll_ms: Option<u64>,
    staleness_ms: Option<u64>,
}

/// How to reach etcd.
#[derive(Clone, PartialEq, Eq)]
pub struct RemoteStore {
    /// The Envoy cluster whose endpoints are the etcd members' client URLs.
    pub cluster: String,
    /// Prepended to every key, so several deployments can share a cluster.
    pub prefix: String,
    /// Per callout; a store that answers later counts as unavailable.
    pub timeout_ms: u64,
    pub credentials: Option<(String, String)>,
    /// How often each worker polls the revocation log (guard).
    pub revocation_poll_ms: u64,
    /// A worker that has not heard the log for this long stops trusting its cache.
    pub staleness_ms: u64,
}

impl std::fmt::Debug for RemoteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password.
        f.debug_struct("RemoteStore")
            .field("cluster", &self.cluster)
            .field("prefix", &self.prefix)
            .field("timeout_ms", &self.timeout_ms)
            .field("user", &self.credentials.as_ref().map(|c| &c.0))
            .finish()
    }
}

/// Shared data: buckets are pre-created keys, so their number is what memory
/// allows. etcd: keys are made on first write and lapse with their tokens, so
/// the full token-addressable range spreads grants one per key.
const SHARED_DATA_BUCKETS: u32 = 16384;
const SHARED_DATA_GRANTS_PER_BUCKET: u16 = 64;
const ETCD_GRANTS_PER_BUCKET: u16 = 16;

pub fn parse_store(f: &StoreFile) -> Result<(StoreLayout, Option<RemoteStore>), ConfigError> {
    let (default_buckets, default_per_bucket) = match f.backend {
        Backend::SharedData => (SHARED_DATA_BUCKETS, SHARED_DATA_GRANTS_PER_BUCKET),
        Backend::Etcd => (MAX_BUCKETS, ETCD_GRANTS_PER_BUCKET),
    };
    let layout = StoreLayout {
        buckets: f.buckets.unwrap_or(default_buckets),
        grants_per_bucket: f.grants_per_bucket.unwrap_or(default_per_bucket),
    };
    if !(1..=MAX_BUCKETS).contains(&layout.buckets) {
        return Err(err(
            "store.buckets",
            format!("must be between 1 and {MAX_BUCKETS}"),
        ));
    }
    if !(1..=MAX_GRANTS_PER_BUCKET).contains(&layout.grants_per_bucket) {
        return Err(err(
            "store.grants_per_bucket",
            format!("must be between 1 and {MAX_GRANTS_PER_BUCKET}"),
        ));
    }
    let remote_only = [
        ("store.cluster", f.cluster.is_some()),
        ("store.prefix", f.prefix.is_some()),
        ("store.timeout_ms", f.timeout_ms.is_some()),
        ("store.user", f.user.is_some()),
        ("store.password", f.password.is_some()),
        ("store.revocation_poll_ms", f.revocation_poll_ms.is_some()),
        ("store.staleness_ms", f.staleness_ms.is_some()),
    ];
    if f.backend == Backend::SharedData {
        if let Some((field, _)) = remote_only.iter().find(|(_, set)| *set) {
            return Err(err(*field, "applies only to `\"backend\": \"etcd\"`"));
        }
        return Ok((layout, None));
    }
    let Some(cluster) = f.cluster.clone() else {
        return Err(err(
            "store.cluster",
            "required with the etcd backend: the Envoy cluster of the etcd members",
        ));
    };
    check_header_text("store.cluster", &cluster)?;
    let prefix = f.prefix.clone().unwrap_or_else(|| "/envoy-oauth2/".into());
    if prefix.is_empty() || prefix.len() > 128 || !prefix.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(err(
            "store.prefix",
            "must be 1 to 128 visible ASCII characters",
        ));
    }
    let timeout_ms = f.timeout_ms.unwrap_or(1000);
    if !(10..=60_000).contains(&timeout_ms) {
        return Err(err("store.timeout_ms", "must be between 10 and 60000"));
    }
    let credentials = match (&f.user, &f.password) {
        (Some(u), Some(p)) => {
            check_header_text("store.user", u)?;
            if p.is_empty() {
                return Err(err("store.password", "must not be empty"));
            }
            Some((u.clone(), p.clone()))
        }
        (None, None) => None,
        (Some(_), None) => return Err(err("store.password", "required with `store.user`")),
        (None, Some(_)) => return Err(err("store.user", "required with `store.password`")),
    };
    let revocation_poll_ms = f.revocation_poll_ms.unwrap_or(50);
    // Polls run on the filters' 50 ms tick.
    if !(50..=10_000).contains(&revocation_poll_ms) {
        return Err(err(
            "store.revocation_poll_ms",
            "must be between 50 and 10000",
        ));
    }
    let staleness_ms = f.staleness_ms.unwrap_or(1000);
    if staleness_ms < 2 * revocation_poll_ms || staleness_ms > 300_000 {
        return Err(err(
            "store.staleness_ms",
            "must be at least twice revocation_poll_ms and at most 300000",
        ));
    }
    Ok((
        layout,
        Some(RemoteStore {
            cluster,
            prefix,
            timeout_ms,
            credentials,
            revocation_poll_ms,
            staleness_ms,
        }),
    ))
}
