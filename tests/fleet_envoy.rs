//! Fleet mode on real processes: a 3-member etcd cluster and two Envoys
//! (`--concurrency 2`) whose filters keep tokens in it. A token issued on one
//! Envoy passes, introspects, refreshes and revokes on the other; a revocation
//! reaches the other Envoy's guard within the configured bound; an Envoy killed
//! with SIGKILL comes back with every token; etcd losing one member changes
//! nothing, losing its quorum gives 503s (never a pass of an unchecked token),
//! and everything works again once the members return. One authorization
//! code redeemed on both Envoys at once gives tokens once.

mod common;

use common::authorize::{Flow, CB, VERIFIER};
use common::etcd::{envoy_etcd_cluster_yaml, EtcdCluster};
use common::*;
use envoy_oauth2::config::secret_hash::hash_secret;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

const C1: &str = "IZsIi6HDbB5e8VKdZAnUi_fZ3f8a";
const S1: &str = "Gm0bJ6oWV8fC5OQLLlC6jslACW8a";

fn store(prefix: &str, guard: bool) -> String {
    let poll = if guard {
        r#","revocation_poll_ms":50,"staleness_ms":1000"#
    } else {
        ""
    };
    format!(
        r#""store":{{"backend":"etcd","cluster":"etcd","prefix":"{prefix}","timeout_ms":1000{poll}}}"#
    )
}

fn token_config(prefix: &str) -> String {
    token_config_with(prefix, "", "")
}

/// A second client with client_credentials, removed from the list again by
/// an operator who then lists it in `revoked_clients`.
const C2: &str = "leaky-app";
const S2: &str = "leaky-app-secret";

/// `extra_clients`: more client entries, each starting with `,`; `revoked`: the
/// `revoked_clients` list as JSON (empty: none).
fn token_config_with(prefix: &str, extra_clients: &str, revoked: &str) -> String {
    let h = |s: &str| hash_secret(s.as_bytes(), b"fedcba9876543210", 10_000);
    let revoked = if revoked.is_empty() {
        String::new()
    } else {
        format!(r#""revoked_clients":{revoked},"#)
    };
    format!(
        r#"{{"issuer":"http://127.0.0.1","realm":"test",{},"throttle":{{"max_failures":0}},{revoked}
            "clients":[{{"client_id":"{C1}","secret_hash":"{}","grant_types":["client_credentials","password","refresh_token"],"scopes":["default","PRODUCTION"]}},
                       {{"client_id":"spa","public":true,"grant_types":["authorization_code"],"redirect_uris":["{CB}"],"scopes":["default","PRODUCTION"]}}{extra_clients}],
            "users":[{{"username":"admin","password_hash":"{}","scopes":["default","PRODUCTION"]}}]}}"#,
        store(prefix, false),
        h(S1),
        h("admin")
    )
}

fn leaky_client() -> String {
    let h = hash_secret(S2.as_bytes(), b"0123456789abcdef", 10_000);
    format!(
        r#",{{"client_id":"{C2}","secret_hash":"{h}","grant_types":["client_credentials"],"scopes":["default"]}}"#
    )
}

fn guard_config(prefix: &str) -> String {
    format!(
        r#"{{"realm":"test",{},"revocation_mode":"immediate","rules":[{{"prefix":"/api/"}}]}}"#,
        store(prefix, true)
    )
}

/// One Envoy of the fleet.
fn node(etcd: &EtcdCluster, prefix: &str) -> Envoy {
    node_with(etcd, prefix, &token_config(prefix))
}

fn node_with(etcd: &EtcdCluster, prefix: &str, token_config: &str) -> Envoy {
    let e = Envoy::start_template(
        "fleet.yaml",
        &[
            ("TOKEN_CONFIG", token_config),
            ("GUARD_CONFIG", &guard_config(prefix)),
            (
                "ETCD_CLUSTER",
                &envoy_etcd_cluster_yaml("etcd", &etcd.client_ports()),
            ),
        ],
        2,
    );
    wait_healthy(&e, etcd.len() as u64);
    e
}

/// Until Envoy's health checks see exactly `members` healthy etcd members.
fn wait_members(e: &Envoy, members: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while e.stat("cluster.etcd.membership_healthy") != Some(members) {
        assert!(
            Instant::now() < deadline,
            "never {members} healthy etcd members"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Envoy can go LIVE before its health checks found the members.
fn wait_healthy(e: &Envoy, members: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while e.stat("cluster.etcd.membership_healthy").unwrap_or(0) < members {
        assert!(Instant::now() < deadline, "etcd members never healthy");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn basic() -> String {
    basic_auth(C1, S1)
}

fn password_grant(e: &Envoy) -> (String, String) {
    let r = post_form(
        &format!("{}/token", e.base_url("http")),
        &[
            ("grant_type", "password"),
            ("username", "admin"),
            ("password", "admin"),
        ],
        &[("authorization", &basic())],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let j = r.json();
    (
        j["access_token"].as_str().unwrap().to_string(),
        j["refresh_token"].as_str().unwrap().to_string(),
    )
}

fn api(e: &Envoy, token: &str) -> Resp {
    get(
        &format!("{}/api/hello", e.base_url("http")),
        &[("authorization", &format!("Bearer {token}"))],
    )
}

fn refresh(e: &Envoy, rt: &str) -> Resp {
    post_form(
        &format!("{}/token", e.base_url("http")),
        &[("grant_type", "refresh_token"), ("refresh_token", rt)],
        &[("authorization", &basic())],
    )
}

fn revoke(e: &Envoy, token: &str) -> Resp {
    post_form(
        &format!("{}/revoke", e.base_url("http")),
        &[("token", token)],
        &[("authorization", &basic())],
    )
}

/// A client that honours `Retry-After` once: what a write may need while etcd
/// is one member short (see the failure table of docs/fleet-mode.md).
fn honouring_retry_after(what: &str, e: &Envoy, mut op: impl FnMut() -> Resp) -> Resp {
    let r = op();
    if r.status == 503 && r.header("retry-after").is_some() {
        let etcd_stats: Vec<String> = e
            .stats()
            .lines()
            .filter(|l| l.starts_with("cluster.etcd.upstream_rq") && !l.ends_with(": 0"))
            .map(str::to_string)
            .collect();
        eprintln!(
            "{what}: 503 with Retry-After while a member is down: {}\n{}",
            r.body,
            etcd_stats.join("\n")
        );
        std::thread::sleep(Duration::from_secs(1));
        return op();
    }
    r
}

/// Polls `f` until it is true or `within` passed; the time it took.
fn until(within: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < within {
        if f() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    None
}

#[test]
fn a_token_from_one_envoy_works_on_the_other_and_revocation_reaches_it() {
    let etcd = EtcdCluster::start(3);
    let a = node(&etcd, "/fleet-a/");
    let b = node(&etcd, "/fleet-a/");
    let (at, rt) = password_grant(&a);
    // Validated on B (a miss: etcd), then cached.
    let r = api(&b, &at);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(api(&b, &at).status, 200);
    // Introspected on B.
    let r = post_form(
        &format!("{}/introspect", b.base_url("http")),
        &[("token", &at)],
        &[("authorization", &basic())],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["active"], true, "{}", r.body);
    assert_eq!(r.json()["username"], "admin@carbon.super");
    // Refreshed on B: the refresh token's family tag verifies there (one server key).
    let r = refresh(&b, &rt);
    assert_eq!(r.status, 200, "{}", r.body);
    let at2 = r.json()["access_token"].as_str().unwrap().to_string();
    let rt2 = r.json()["refresh_token"].as_str().unwrap().to_string();
    // The old access token dies on both nodes, though B had it cached.
    let reach = until(Duration::from_secs(1), || api(&b, &at).status == 401);
    assert!(reach.is_some(), "B still passes a token rotated away");
    assert_eq!(api(&a, &at).status, 401);
    assert_eq!(api(&a, &at2).status, 200);
    assert_eq!(api(&b, &at2).status, 200);
    // The new refresh token is used (on A): from then on the old one is reuse, not a
    // retry within the retry window (docs/fleet.md).
    let r = refresh(&a, &rt2);
    assert_eq!(r.status, 200, "{}", r.body);
    let at_next = r.json()["access_token"].as_str().unwrap().to_string();
    let rt_next = r.json()["refresh_token"].as_str().unwrap().to_string();
    // The spent refresh token, replayed on A: reuse detection revokes the grant everywhere.
    assert_eq!(refresh(&a, &rt).status, 400);
    assert!(until(Duration::from_secs(1), || api(&b, &at_next).status == 401).is_some());
    assert_eq!(refresh(&b, &rt_next).status, 400, "the grant is revoked");
    // A revocation at /revoke on A reaches B's cache.
    let (at3, _) = password_grant(&b);
    assert_eq!(api(&b, &at3).status, 200);
    let r = revoke(&a, &at3);
    assert_eq!(r.status, 200);
    assert!(r.header("revokedaccesstoken").is_some());
    assert!(until(Duration::from_secs(1), || api(&b, &at3).status == 401).is_some());
    // The guard heard it from the log, not by chance.
    assert!(
        b.counter("wasmcustom.oauth2.guard.revocations_heard") > 0,
        "{}",
        b.stats()
    );
}

#[test]
fn concurrent_refreshes_over_both_envoys_have_exactly_one_winner() {
    let etcd = EtcdCluster::start(3);
    let a = node(&etcd, "/fleet-b/");
    let b = node(&etcd, "/fleet-b/");
    let (_, rt) = password_grant(&a);
    let urls = [a.base_url("http"), b.base_url("http")];
    let barrier = Arc::new(Barrier::new(64));
    let threads: Vec<_> = (0..64)
        .map(|i| {
            let url = urls[i % 2].clone();
            let rt = rt.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                post_form(
                    &format!("{url}/token"),
                    &[("grant_type", "refresh_token"), ("refresh_token", &rt)],
                    &[("authorization", &basic_auth(C1, S1))],
                )
            })
        })
        .collect();
    let answers: Vec<Resp> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let statuses: Vec<u16> = answers.iter().map(|r| r.status).collect();
    // One rotation: the same client presenting the token again within the
    // fleet's retry window (docs/fleet.md) is a retry and receives the very
    // pair the winner got, never a second, different one (a forked chain).
    let pairs: std::collections::HashSet<(String, String)> = answers
        .iter()
        .filter(|r| r.status == 200)
        .map(|r| {
            let j = r.json();
            (
                j["access_token"].as_str().unwrap().to_string(),
                j["refresh_token"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(pairs.len(), 1, "{statuses:?}");
    // The rest: 503 on CAS exhaustion, never a revoked family.
    assert!(
        statuses.iter().all(|s| [200, 503].contains(s)),
        "{statuses:?}"
    );
    let (at, rt2) = pairs.into_iter().next().unwrap();
    assert_eq!(api(&b, &at).status, 200);
    assert_eq!(refresh(&a, &rt2).status, 200);
}

#[test]
fn revocation_delay_across_envoys_is_bounded() {
    let etcd = EtcdCluster::start(3);
    let a = node(&etcd, "/fleet-c/");
    let b = node(&etcd, "/fleet-c/");
    let n: usize = std::env::var("FLEET_REVOCATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let mut delays = Vec::with_capacity(n);
    let http_a = a.base_url("http");
    for _ in 0..n {
        let r = post_form(
            &format!("{http_a}/token"),
            &[("grant_type", "client_credentials")],
            &[("authorization", &basic())],
        );
        assert_eq!(r.status, 200, "{}", r.body);
        let at = r.json()["access_token"].as_str().unwrap().to_string();
        // Cached on B: each request may land on either worker, so warm both.
        for _ in 0..4 {
            assert_eq!(api(&b, &at).status, 200);
        }
        assert_eq!(revoke(&a, &at).status, 200);
        let start = Instant::now();
        // Reached when B refuses it 4 times in a row (whichever workers answer):
        // the delay is when that streak began.
        let (mut streak, mut began) = (0, start);
        while streak < 4 {
            assert!(
                start.elapsed() < Duration::from_secs(2),
                "B still passes a token revoked on A after 2 s"
            );
            if api(&b, &at).status == 401 {
                if streak == 0 {
                    began = Instant::now();
                }
                streak += 1;
            } else {
                streak = 0;
            }
        }
        delays.push(began - start);
    }
    delays.sort();
    let p = |q: f64| delays[((delays.len() as f64 - 1.0) * q) as usize];
    let (p50, p99, max) = (p(0.5), p(0.99), delays[delays.len() - 1]);
    eprintln!(
        "revocation reach over {n} revocations: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3
    );
    // The documented bound: poll interval (50 ms) plus a round trip, well under 1 s.
    assert!(max < Duration::from_secs(1), "max {max:?}");
    assert!(p99 < Duration::from_millis(500), "p99 {p99:?}");
}

#[test]
fn an_envoy_killed_and_started_again_keeps_every_token() {
    let etcd = EtcdCluster::start(3);
    let a = node(&etcd, "/fleet-d/");
    let (at, rt) = password_grant(&a);
    let (at_revoked, _) = password_grant(&a);
    assert_eq!(api(&a, &at).status, 200);
    drop(a); // SIGKILL
    let a = node(&etcd, "/fleet-d/");
    assert_eq!(
        api(&a, &at).status,
        200,
        "a token issued before the restart"
    );
    assert_eq!(revoke(&a, &at_revoked).status, 200);
    assert_eq!(api(&a, &at_revoked).status, 401);
    let r = refresh(&a, &rt);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(api(&a, &at).status, 401);
}

#[test]
fn etcd_losing_one_member_changes_nothing_and_losing_quorum_fails_closed() {
    let mut etcd = EtcdCluster::start(3);
    let a = node(&etcd, "/fleet-e/");
    let b = node(&etcd, "/fleet-e/");
    let (cached, _) = password_grant(&a);
    assert_eq!(api(&b, &cached).status, 200);
    // A follower down: every operation goes on. (A leader going down costs an
    // election, about a second of 503s; see docs/fleet-mode.md.)
    let first = etcd.follower().expect("a follower");
    etcd.kill(first);
    // Writes sent in the ~200 ms before the health check notices may fail
    // (503, Retry-After; a write is never resent blindly); reads are resent.
    wait_members(&a, 2);
    wait_members(&b, 2);
    let (at, rt) = password_grant(&a);
    assert_eq!(api(&b, &at).status, 200);
    let r = honouring_retry_after("refresh on B", &b, || refresh(&b, &rt));
    assert_eq!(r.status, 200, "{}", r.body);
    let at2 = r.json()["access_token"].as_str().unwrap().to_string();
    let r = post_form(
        &format!("{}/introspect", a.base_url("http")),
        &[("token", &at2)],
        &[("authorization", &basic())],
    );
    assert_eq!(r.json()["active"], true, "{}", r.body);
    let r = honouring_retry_after("revoke on A", &a, || revoke(&a, &at2));
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(until(Duration::from_secs(1), || api(&b, &at2).status == 401).is_some());
    let unseen_by_b = password_grant(&a).0;
    // Two down: no quorum. /token answers 503 temporarily_unavailable with Retry-After.
    let second = (0..3).find(|i| *i != first).unwrap();
    etcd.kill(second);
    let r = post_form(
        &format!("{}/token", a.base_url("http")),
        &[("grant_type", "client_credentials")],
        &[("authorization", &basic())],
    );
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.json()["error"], "temporarily_unavailable");
    assert!(r.header("retry-after").is_some());
    // The guard never passes a token it cannot check: 503, not 200, not 401.
    let r = api(&b, &unseen_by_b);
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.json()["error"], "temporarily_unavailable");
    // Once the staleness limit passed, even the cached token is not trusted.
    std::thread::sleep(Duration::from_millis(1500));
    let r = api(&b, &cached);
    assert_eq!(
        r.status, 503,
        "a cached token passed without the revocation log"
    );
    // The members return: everything works again without restarting Envoy.
    etcd.restart(second);
    etcd.restart(first);
    wait_healthy(&a, 3);
    wait_healthy(&b, 3);
    let ok = until(Duration::from_secs(10), || {
        post_form(
            &format!("{}/token", a.base_url("http")),
            &[("grant_type", "client_credentials")],
            &[("authorization", &basic())],
        )
        .status
            == 200
    });
    assert!(ok.is_some(), "issuance did not come back");
    assert!(until(Duration::from_secs(5), || api(&b, &cached).status == 200).is_some());
}

#[test]
fn ten_thousand_concurrent_issuances_over_both_envoys_none_lost_or_doubled() {
    use base64::Engine;
    let etcd = EtcdCluster::start(3);
    let a = node(&etcd, "/fleet-f/");
    let b = node(&etcd, "/fleet-f/");
    // FLEET_ISSUANCES=100000 measures keys and bytes at docs/fleet-mode.md's 100,000 tokens.
    let n: usize = std::env::var("FLEET_ISSUANCES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    const THREADS: usize = 16;
    let n = n / THREADS * THREADS;
    let urls = [a.base_url("http"), b.base_url("http")];
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let url = urls[t % 2].clone();
            std::thread::spawn(move || {
                let mut tokens = Vec::with_capacity(n / THREADS);
                for _ in 0..n / THREADS {
                    let r = post_form(
                        &format!("{url}/token"),
                        &[("grant_type", "client_credentials")],
                        &[("authorization", &basic_auth(C1, S1))],
                    );
                    if r.status != 200 {
                        // Stop this thread; the failure is reported with etcd's stats below.
                        return Err(format!(
                            "{} {} after {} tokens",
                            r.status,
                            r.body,
                            tokens.len()
                        ));
                    }
                    tokens.push(r.json()["access_token"].as_str().unwrap().to_string());
                }
                Ok(tokens)
            })
        })
        .collect();
    let results: Vec<Result<Vec<String>, String>> =
        threads.into_iter().map(|t| t.join().unwrap()).collect();
    let failures: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    if !failures.is_empty() {
        for e in [&a, &b] {
            let stats: Vec<String> = e
                .stats()
                .lines()
                .filter(|l| l.starts_with("cluster.etcd.") && !l.ends_with(": 0"))
                .map(str::to_string)
                .collect();
            eprintln!("{}", stats.join("\n"));
        }
        panic!("/token failed during the run: {failures:#?}");
    }
    let tokens: Vec<String> = results.into_iter().flat_map(Result::unwrap).collect();
    assert_eq!(tokens.len(), n);
    let distinct: std::collections::HashSet<&String> = tokens.iter().collect();
    assert_eq!(distinct.len(), n, "a token was handed out twice");
    // Every grant is in etcd exactly once: read every bucket and count (in pages:
    // one answer for 100,000 keys would pass the gateway's message limit).
    let b64 = base64::engine::general_purpose::STANDARD;
    let (mut grants, mut bytes, mut keys) = (0, 0, 0);
    let mut from = b"/fleet-f/oauth2/g/".to_vec();
    loop {
        let page = etcd
            .gateway(
                0,
                "/v3/kv/range",
                &serde_json::json!({
                    "key": b64.encode(&from),
                    "range_end": b64.encode("/fleet-f/oauth2/g0"),
                    "limit": "5000",
                }),
            )
            .unwrap();
        let kvs = page["kvs"].as_array().cloned().unwrap_or_default();
        for kv in &kvs {
            let key = b64.decode(kv["key"].as_str().unwrap_or("")).unwrap();
            let value = b64.decode(kv["value"].as_str().unwrap_or("")).unwrap();
            bytes += value.len() + key.len();
            grants += envoy_oauth2::store::bucket::Bucket::decode(&value)
                .unwrap()
                .grants
                .len();
            from = key;
            from.push(0);
        }
        keys += kvs.len();
        if page["more"] != true {
            break;
        }
    }
    // What etcd's own file holds (MVCC history included, before compaction).
    let status = etcd
        .gateway(0, "/v3/maintenance/status", &serde_json::json!({}))
        .unwrap();
    eprintln!("etcd status after the run: {status}");
    assert_eq!(grants, n, "grants stored for {n} issued tokens");
    eprintln!(
        "etcd after {n} issuances: {keys} bucket keys ({:.3} per token), {:.0} bytes of key+value per token",
        keys as f64 / n as f64,
        bytes as f64 / n as f64
    );
    // And a sample passes the other node's guard.
    for (i, t) in tokens.iter().enumerate().step_by(n / 100) {
        let other = if (i / (n / THREADS)) % 2 == 0 { &b } else { &a };
        assert_eq!(api(other, t).status, 200);
    }
}

#[test]
fn revoked_clients_listed_on_one_envoy_end_that_clients_tokens_on_every_envoy() {
    let etcd = EtcdCluster::start(3);
    let prefix = "/fleet-rc/";
    let a = node_with(
        &etcd,
        prefix,
        &token_config_with(prefix, &leaky_client(), ""),
    );
    let issue = |e: &Envoy, id: &str, secret: &str| -> String {
        let r = post_form(
            &format!("{}/token", e.base_url("http")),
            &[("grant_type", "client_credentials")],
            &[("authorization", &basic_auth(id, secret))],
        );
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()["access_token"].as_str().unwrap().to_string()
    };
    let leaked: Vec<String> = (0..5).map(|_| issue(&a, C2, S2)).collect();
    let kept = issue(&a, C1, S1);
    // Cached on A's guard (both workers), so only the revocation log can end them.
    for t in leaked.iter().chain([&kept]) {
        for _ in 0..4 {
            assert_eq!(api(&a, t).status, 200);
        }
    }
    // The operator's new configuration, loaded on B only: the client is gone and listed.
    let b = node_with(
        &etcd,
        prefix,
        &token_config_with(prefix, "", &format!(r#"["{C2}"]"#)),
    );
    for t in &leaked {
        let reach = until(Duration::from_secs(10), || {
            api(&a, t).status == 401 && api(&b, t).status == 401
        });
        assert!(
            reach.is_some(),
            "a listed client's token still passes\n{}",
            b.log()
        );
    }
    assert_eq!(
        api(&a, &kept).status,
        200,
        "another client's token must live"
    );
    assert_eq!(api(&b, &kept).status, 200);
    // Revoked in the store, not only in caches: introspection says so.
    let r = post_form(
        &format!("{}/introspect", a.base_url("http")),
        &[("token", &leaked[0])],
        &[("authorization", &basic())],
    );
    assert_eq!(r.json()["active"], false, "{}", r.body);
    assert!(b.log().contains("revoked_clients: revoked"), "{}", b.log());
    // The applied list is recorded: a node loading the same list later sweeps nothing.
    assert_eq!(
        etcd_get_text(&etcd, &format!("{prefix}oauth2/revoked_clients")),
        Some(C2.to_string())
    );
    let c = node_with(
        &etcd,
        prefix,
        &token_config_with(prefix, "", &format!(r#"["{C2}"]"#)),
    );
    assert_eq!(api(&c, &kept).status, 200);
    std::thread::sleep(Duration::from_millis(500));
    assert!(!c.log().contains("revoked_clients: revoked"), "{}", c.log());
}

fn etcd_get_text(etcd: &EtcdCluster, key: &str) -> Option<String> {
    let v = etcd.try_get_on(0, key).unwrap()?;
    Some(String::from_utf8(v).unwrap())
}

#[test]
fn one_code_redeemed_on_both_envoys_at_once_gives_tokens_once_then_revokes_them() {
    let etcd = EtcdCluster::start(3);
    let a = node(&etcd, "/fleet-g/");
    let b = node(&etcd, "/fleet-g/");
    // The login form and the code from A (PKCE, the public client `spa`).
    let code = Flow::new(&a.base_url("http")).code();
    const N: usize = 16;
    let urls = [a.base_url("http"), b.base_url("http")];
    let barrier = Arc::new(Barrier::new(N));
    let threads: Vec<_> = (0..N)
        .map(|i| {
            let url = urls[i % 2].clone();
            let code = code.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                Flow::new(&url).redeem(&code, Some(VERIFIER))
            })
        })
        .collect();
    let answers: Vec<Resp> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let statuses: Vec<u16> = answers.iter().map(|r| r.status).collect();
    let wins: Vec<&Resp> = answers.iter().filter(|r| r.status == 200).collect();
    assert_eq!(wins.len(), 1, "{statuses:?}");
    let mut descriptions = Vec::new();
    for r in answers.iter().filter(|r| r.status != 200) {
        assert_eq!(r.status, 400, "{statuses:?}: {}", r.body);
        assert_eq!(r.json()["error"], "invalid_grant", "{}", r.body);
        descriptions.push(r.json()["error_description"].as_str().unwrap().to_string());
    }
    // RFC 6749 §4.1.2 as src/store/codes.rs implements it: the code was
    // presented again after it was redeemed, so the grant it produced is
    // revoked. Exactly once: the first replay revokes the grant and its record
    // is reclaimed in the same write, so later ones find no code at all.
    let replayed = descriptions
        .iter()
        .filter(|d| d.contains("the tokens issued for it are revoked"))
        .count();
    assert_eq!(replayed, 1, "{descriptions:#?}");
    assert!(
        descriptions.iter().all(|d| d.contains("revoked")
            || d.contains("the authorization code is invalid, expired or already used")),
        "{descriptions:#?}"
    );
    let counted = [&a, &b]
        .iter()
        .map(|e| {
            e.stat("wasmcustom.oauth2.token.code_replay_revoked")
                .unwrap_or(0)
        })
        .sum::<u64>();
    assert_eq!(counted, 1);
    // The winner's token is refused on both Envoys.
    let at = wins[0].json()["access_token"].as_str().unwrap().to_string();
    for e in [&a, &b] {
        assert!(
            until(Duration::from_secs(1), || api(e, &at).status == 401).is_some(),
            "the token of a replayed code still passes"
        );
    }
    assert_eq!(
        Flow::new(&b.base_url("http"))
            .redeem(&code, Some(VERIFIER))
            .status,
        400
    );
}

/// The guard's paused path (a cache miss read from etcd) removes every spelling of its
/// identity headers too, as the header map is not at hand when the answer comes.
#[test]
fn identity_header_spellings_are_removed_when_the_guard_waits_for_etcd() {
    let etcd = EtcdCluster::start(1);
    let e = node(&etcd, "/spellings/");
    let bearer = format!("Bearer {}", password_grant(&e).0);
    let misses = || e.stat("wasmcustom.oauth2.guard.cache.miss").unwrap_or(0);
    let before = misses();
    let r = curl(
        "GET",
        &format!("{}/api/x", e.base_url("http")),
        &[
            ("authorization", bearer.as_str()),
            ("x_auth_user", "mallory"),
            ("X-Auth_User", "mallory2"),
            ("x-auth-user", "mallory3"),
            ("x-auth-user", "mallory4"),
            ("x_auth_client_id", "evil"),
        ],
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(misses(), before + 1, "the request did not wait for etcd");
    let up = r.json();
    let spoofed: Vec<&String> = up
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| k.contains('_') || k.chars().any(|c| c.is_ascii_uppercase()))
        .collect();
    assert!(spoofed.is_empty(), "{spoofed:?} reached the upstream: {up}");
    assert_eq!(up["x-auth-user"], "admin@carbon.super", "{up}");
    assert_eq!(up["x-auth-client-id"], C1, "{up}");
}
