//! Retry-safe rotation in fleet mode (issue 18, D1), on a real 3-member etcd
//! cluster and two real Envoys. A refresh whose compare-and-swap etcd applied
//! may still be answered 503 (the member that applied it is killed before it
//! answers and no quorum is left to read the outcome back). A client that
//! retries as `Retry-After` says must get working tokens, never
//! `invalid_grant` with its family revoked; a used refresh token that comes
//! back after the retry window or after its successor was used must still
//! revoke the family, and another client presenting it gets nothing.

mod common;

use common::etcd::EtcdCluster;
use common::fleet::*;
use common::*;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CHAINS: usize = 12;
const QUORUM_LOSSES: usize = 3;

// The texts are read through Debug, in the failure message.
#[allow(dead_code)]
#[derive(Debug)]
enum ChainEnd {
    /// Refreshed this many times, and its last access token passes the guard.
    Whole(u32),
    /// A refresh answered 4xx (invalid_grant: the family was revoked).
    Broken(String),
    /// Still 503 after the retry budget.
    Stuck(String),
}

/// One client's refresh chain, alternating Envoys, until `stop`.
fn chain(nodes: &[Envoy; 2], stop: &AtomicBool, retries: &AtomicU32) -> ChainEnd {
    let budget = Duration::from_secs(60);
    let (first, n) = retrying(budget, || try_password_grant(&nodes[0], (C1, S1)));
    retries.fetch_add(n, Ordering::Relaxed);
    let (mut at, mut rt) = match first {
        Ok(p) => p,
        Err(r) => return ChainEnd::Stuck(format!("first grant: {} {}", r.status, r.body)),
    };
    let mut done = 0u32;
    while !stop.load(Ordering::Relaxed) {
        let e = &nodes[done as usize % 2];
        let (r, n) = retrying(budget, || try_refresh(e, (C1, S1), &rt));
        retries.fetch_add(n, Ordering::Relaxed);
        match r {
            Ok((a, r)) => {
                at = a;
                rt = r;
                done += 1;
            }
            Err(r) if r.status == 0 || r.status >= 500 => {
                return ChainEnd::Stuck(format!("{} {}", r.status, r.body))
            }
            Err(r) => return ChainEnd::Broken(format!("{} {}", r.status, r.body)),
        }
    }
    // The chain's last access token works (a guard that cannot check it answers 503).
    let (r, _) = retrying(budget, || {
        let r = api(&nodes[1], &at);
        if r.status == 200 {
            Ok(())
        } else {
            Err(r)
        }
    });
    match r {
        Ok(()) => ChainEnd::Whole(done),
        Err(r) => ChainEnd::Broken(format!("last access token: {} {}", r.status, r.body)),
    }
}

#[test]
fn refresh_chains_through_quorum_losses_retrying_as_told_never_break() {
    let mut etcd = EtcdCluster::start(3);
    let prefix = "/retry-chains/";
    let nodes = Arc::new([
        node(&etcd, &token_config(prefix, ""), &guard_config(prefix)),
        node(&etcd, &token_config(prefix, ""), &guard_config(prefix)),
    ]);
    let stop = Arc::new(AtomicBool::new(false));
    let retries = Arc::new(AtomicU32::new(0));
    let chains: Vec<_> = (0..CHAINS)
        .map(|_| {
            let (nodes, stop, retries) = (nodes.clone(), stop.clone(), retries.clone());
            std::thread::spawn(move || chain(&nodes, &stop, &retries))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    for round in 0..QUORUM_LOSSES {
        // The leader and a follower go at once (SIGKILL): writes in flight on
        // them lose their answers, and the member left cannot read them back.
        let leader = etcd.leader().expect("a leader");
        let other = (leader + 1) % 3;
        etcd.kill(leader);
        etcd.kill(other);
        let lost_at = Instant::now();
        std::thread::sleep(Duration::from_millis(1500));
        etcd.restart(leader);
        etcd.restart(other);
        eprintln!(
            "quorum loss {round}: {:.1} s without quorum",
            lost_at.elapsed().as_secs_f64()
        );
        std::thread::sleep(Duration::from_millis(2500));
    }
    stop.store(true, Ordering::Relaxed);
    let ends: Vec<ChainEnd> = chains
        .into_iter()
        .map(|h| h.join().expect("chain thread"))
        .collect();
    let broken: Vec<&ChainEnd> = ends
        .iter()
        .filter(|e| !matches!(e, ChainEnd::Whole(_)))
        .collect();
    let refreshes: u32 = ends
        .iter()
        .map(|e| if let ChainEnd::Whole(n) = e { *n } else { 0 })
        .sum();
    eprintln!(
        "D1: {} of {CHAINS} chains broken over {QUORUM_LOSSES} quorum losses \
         ({refreshes} refreshes in whole chains, {} retries after 503)",
        broken.len(),
        retries.load(Ordering::Relaxed)
    );
    assert!(
        retries.load(Ordering::Relaxed) > 0,
        "no request met the quorum loss: the test proved nothing"
    );
    assert!(broken.is_empty(), "broken chains: {broken:?}");
}

/// A refresh, then its retries within the window: the same pair every time.
fn rotate_and_retry(e: &Envoy, rt0: &str) -> (String, String) {
    let first = try_refresh(e, (C1, S1), rt0).expect("first refresh");
    for _ in 0..3 {
        let again = try_refresh(e, (C1, S1), rt0).expect("a retry within the window");
        assert_eq!(
            again, first,
            "a retry must receive the pair the first try got"
        );
    }
    first
}

fn assert_family_revoked(e: &Envoy, at: &str, rt: &str) {
    let r = try_refresh(e, (C1, S1), rt).expect_err("the family must be revoked");
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["error"], "invalid_grant");
    assert!(
        until(Duration::from_secs(2), || api(e, at).status == 401).is_some(),
        "the family's access token still passes"
    );
}

#[test]
fn a_used_refresh_token_back_after_the_window_or_after_its_successor_revokes_the_family() {
    let etcd = EtcdCluster::start(3);
    let prefix = "/retry-reuse/";
    let grace = r#""refresh_token_grace_seconds":2,"#;
    let a = node(&etcd, &token_config(prefix, grace), &guard_config(prefix));

    // 1. After the window: the retried token is a reused one.
    let (_, rt0) = try_password_grant(&a, (C1, S1)).expect("grant");
    let (at1, rt1) = rotate_and_retry(&a, &rt0);
    assert_eq!(api(&a, &at1).status, 200);
    std::thread::sleep(Duration::from_millis(3200));
    let r = try_refresh(&a, (C1, S1), &rt0).expect_err("reuse after the window");
    assert_eq!(r.status, 400, "{}", r.body);
    assert_family_revoked(&a, &at1, &rt1);

    // 2. Within the window, after the successor was used: reuse.
    let (_, rt0) = try_password_grant(&a, (C1, S1)).expect("grant");
    let (_, rt1) = rotate_and_retry(&a, &rt0);
    let (at2, rt2) = try_refresh(&a, (C1, S1), &rt1).expect("successor used");
    let r = try_refresh(&a, (C1, S1), &rt0).expect_err("reuse of the first token");
    assert_eq!(r.status, 400, "{}", r.body);
    assert_family_revoked(&a, &at2, &rt2);

    // 3. Within the window, from another client: no retry, nothing handed out
    //    (and no lever to revoke a grant that client is not party to).
    let (_, rt0) = try_password_grant(&a, (C1, S1)).expect("grant");
    let (at1, rt1) = rotate_and_retry(&a, &rt0);
    let r = try_refresh(&a, (C2, S2), &rt0).expect_err("another client");
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["error"], "invalid_grant");
    let r = try_refresh(&a, (C2, S2), &rt1).expect_err("another client");
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(api(&a, &at1).status, 200);
    // The owner's chain goes on; the pair retried above, now used, is the
    // one whose reuse revokes.
    let (at2, rt2) = try_refresh(&a, (C1, S1), &rt1).expect("the owner refreshes");
    let r = try_refresh(&a, (C1, S1), &rt0).expect_err("two rotations old");
    assert_eq!(r.status, 400, "{}", r.body);
    assert_family_revoked(&a, &at2, &rt2);
}
