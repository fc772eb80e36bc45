//! Issue 13: the store's cost per issuance must not grow with the number of
//! live tokens. Native, on the in-memory store (which, like Envoy's shared data,
//! copies a value out on every read and in on every write), default layout
//! (16384 buckets x 64). Prints nanoseconds per issuance at 1,000 and at
//! 500,000 live tokens; asserts only that the second is within 2x of the first.
//!
//!     cargo test --release --test store_fill -- --ignored --nocapture

use std::time::Instant;

use envoy_oauth2::host::memory::MemoryKv;
use envoy_oauth2::host::HostRandomness;
use envoy_oauth2::store::kv::RunNow;
use envoy_oauth2::store::{GrantRequest, GrantStore, Lifetimes, StoreLayout};

const LAYOUT: StoreLayout = StoreLayout {
    buckets: 16384,
    grants_per_bucket: 64,
};

fn request() -> GrantRequest {
    GrantRequest {
        client_id: "bench-client".into(),
        user: None,
        scope: "default".into(),
        lifetimes: Lifetimes {
            access: 3600,
            refresh: None,
        },
    }
}

/// ns per issuance with `live` tokens already in the store.
fn cost_at(live: usize) -> f64 {
    let kv = MemoryKv::default();
    let mut store = GrantStore::new(&kv, &HostRandomness, LAYOUT);
    store.ensure_created().unwrap();
    let req = request();
    for _ in 0..live {
        store.issue(&req, 1000).run_now().unwrap().unwrap();
    }
    const N: usize = 20_000;
    let t = Instant::now();
    for _ in 0..N {
        store.issue(&req, 1000).run_now().unwrap().unwrap();
    }
    t.elapsed().as_nanos() as f64 / N as f64
}

#[test]
#[ignore = "a measurement: run with --ignored --nocapture"]
fn issuance_cost_does_not_grow_with_live_tokens() {
    let small = cost_at(1_000);
    let large = cost_at(500_000);
    eprintln!(
        "store.issue: {small:.0} ns at 1,000 live tokens, {large:.0} ns at 500,000 ({:.2}x)",
        large / small
    );
    assert!(large < 2.0 * small, "{large:.0} ns vs {small:.0} ns");
}
