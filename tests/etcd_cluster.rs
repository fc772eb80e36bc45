//! The etcd test harness (tests/common/etcd.rs) against real etcd members: a 3-member
//! cluster replicates, survives one killed member, refuses (promptly, without hanging)
//! once it has lost its quorum, and heals when the members come back. Also the Envoy
//! cluster YAML it writes for the filters' callouts.

mod common;

use common::etcd::*;
use common::*;
use std::time::{Duration, Instant};

#[test]
fn three_members_replicate_a_put() {
    let mut etcd = EtcdCluster::start(3);
    assert_eq!(etcd.len(), 3);
    let ports = etcd.client_ports();
    assert_eq!(ports.len(), 3);
    let mut distinct = ports.clone();
    distinct.extend(etcd.peer_ports());
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 6, "client and peer ports must all differ");
    assert_eq!(
        etcd.client_urls()[2],
        format!("http://127.0.0.1:{}", ports[2])
    );
    for i in 0..3 {
        assert!(etcd.is_running(i));
        assert_eq!(etcd.health(i), Ok(true), "member {i}");
    }

    etcd.try_put_on(0, "/t/a", b"from member 0").unwrap();
    assert_eq!(
        etcd.try_get_on(2, "/t/a").unwrap().as_deref(),
        Some(&b"from member 0"[..])
    );
    assert_eq!(etcd.try_get_on(1, "/t/missing").unwrap(), None);
    // Binary values survive the base64 round trip.
    let bin: Vec<u8> = (0u8..=255).collect();
    etcd.put("/t/bin", &bin);
    assert_eq!(etcd.get("/t/bin"), Some(bin));

    // count_prefix counts exactly the keys under the prefix, and their bytes.
    etcd.put("/t/b", b"12345");
    etcd.put("/u/outside", b"x");
    etcd.put("/t", b"the prefix itself is not under /t/");
    let (keys, bytes) = etcd.count_prefix("/t/");
    assert_eq!(keys, 3);
    let expected = ("/t/a".len() + 13) + ("/t/bin".len() + 256) + ("/t/b".len() + 5);
    assert_eq!(bytes, expected as u64);
    assert_eq!(etcd.count_prefix("/nothing/"), (0, 0));
}

#[test]
fn quorum_loss_fails_fast_and_heals_after_restart() {
    let mut etcd = EtcdCluster::start(3);
    etcd.put("/q/before", b"1");

    // One member down: the other two keep the quorum, reads and writes go on.
    assert!(etcd.leader().is_some());
    etcd.kill(1);
    assert!(!etcd.is_running(1));
    // If member 1 led, the other two elect a leader first (about a second on a busy machine).
    let deadline = Instant::now() + Duration::from_secs(5);
    while let Err(e) = etcd.try_put_on(0, "/q/one-down", b"2") {
        assert!(
            Instant::now() < deadline,
            "no write with two of three members: {e}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        etcd.try_get_on(2, "/q/one-down").unwrap().as_deref(),
        Some(&b"2"[..])
    );
    assert_eq!(etcd.get("/q/before").as_deref(), Some(&b"1"[..]));

    // Two down: the survivor has no quorum. A request fails within a few seconds
    // (the helpers' timeout, or etcd's own error) instead of hanging.
    etcd.kill(2);
    let t = Instant::now();
    let r = etcd.try_put_on(0, "/q/no-quorum", b"3");
    assert!(r.is_err(), "a write without quorum succeeded: {r:?}");
    let t_put = t.elapsed();
    let t = Instant::now();
    let r = etcd.try_get_on(0, "/q/before");
    assert!(
        r.is_err(),
        "a linearizable read without quorum succeeded: {r:?}"
    );
    let t_get = t.elapsed();
    eprintln!("without quorum: put failed after {t_put:?}, get after {t_get:?}");
    for (what, took) in [("put", t_put), ("get", t_get)] {
        assert!(
            took < ETCD_HTTP_TIMEOUT + Duration::from_secs(2),
            "{what} without quorum took {took:?}"
        );
    }
    assert_ne!(etcd.health(0), Ok(true), "no quorum, yet /health says true");

    // Both back (same ports, same data dirs): everything written before is there.
    etcd.restart(1);
    etcd.restart(2);
    for i in 0..3 {
        assert!(etcd.is_running(i));
        assert_eq!(etcd.health(i), Ok(true), "member {i} after restart");
    }
    assert_eq!(
        etcd.try_get_on(1, "/q/one-down").unwrap().as_deref(),
        Some(&b"2"[..]),
        "member 1 caught up with the write it missed"
    );
    etcd.try_put_on(2, "/q/after", b"4").unwrap();
    assert_eq!(
        etcd.try_get_on(1, "/q/after").unwrap().as_deref(),
        Some(&b"4"[..])
    );
    // The write that failed without quorum is an unknown outcome, not a refusal: the
    // survivor may have appended it to its log, and it commits once the quorum is back
    // (seen here). A client must treat a timed-out write as possibly applied.
    let late = etcd.get("/q/no-quorum");
    assert!(
        late.is_none() || late.as_deref() == Some(&b"3"[..]),
        "{late:?}"
    );
}

#[test]
fn restart_of_a_single_member_cluster_keeps_its_data() {
    let mut etcd = EtcdCluster::start(1);
    etcd.put("/s/k", b"v");
    let dir = etcd.dir().to_path_buf();
    etcd.kill(0);
    assert!(
        etcd.try_get_on(0, "/s/k").is_err(),
        "a killed member answered"
    );
    etcd.restart(0);
    assert_eq!(etcd.get("/s/k").as_deref(), Some(&b"v"[..]));
    assert!(etcd.log(0).contains("m0"), "log file is written");
    drop(etcd);
    assert!(!dir.exists(), "Drop removes {}", dir.display());
}

#[test]
fn prefix_range_end_is_the_next_prefix() {
    assert_eq!(prefix_range_end(b"/a/"), b"/a0".to_vec());
    assert_eq!(prefix_range_end(b"a\xff"), b"b".to_vec());
    assert_eq!(prefix_range_end(b"\xff\xff"), vec![0]);
    assert_eq!(prefix_range_end(b""), vec![0]);
}

#[test]
fn envoy_cluster_yaml_is_valid_and_names_every_member() {
    let y = envoy_etcd_cluster_yaml("etcd", &[23790, 23791, 23792]);
    let v: serde_yaml::Value = serde_yaml::from_str(&y).unwrap();
    let c = &v[0];
    assert_eq!(c["name"].as_str(), Some("etcd"));
    assert_eq!(c["type"].as_str(), Some("STATIC"));
    assert_eq!(c["lb_policy"].as_str(), Some("ROUND_ROBIN"));
    assert_eq!(c["connect_timeout"].as_str(), Some("0.25s"));
    let hc = &c["health_checks"][0];
    assert_eq!(hc["interval"].as_str(), Some("0.2s"));
    assert_eq!(hc["unhealthy_threshold"].as_u64(), Some(1));
    assert_eq!(hc["healthy_threshold"].as_u64(), Some(1));
    assert_eq!(hc["http_health_check"]["path"].as_str(), Some("/health"));
    let od = &c["outlier_detection"];
    assert_eq!(od["consecutive_gateway_failure"].as_u64(), Some(1));
    assert_eq!(od["consecutive_local_origin_failure"].as_u64(), Some(1));
    assert_eq!(
        od["split_external_local_origin_errors"].as_bool(),
        Some(true)
    );
    assert_eq!(od["base_ejection_time"].as_str(), Some("1s"));
    let eps = c["load_assignment"]["endpoints"][0]["lb_endpoints"]
        .as_sequence()
        .unwrap();
    let ports: Vec<u64> = eps
        .iter()
        .map(|e| {
            e["endpoint"]["address"]["socket_address"]["port_value"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(ports, vec![23790, 23791, 23792]);
    // envoy/fleet.yaml carries exactly this cluster (indented under `clusters:`).
    let fleet = std::fs::read_to_string(repo_root().join("envoy/fleet.yaml")).unwrap();
    let indented = fill("  {{C}}\n", "C", &y);
    assert!(
        fleet.contains(&indented),
        "envoy/fleet.yaml's etcd cluster differs from envoy_etcd_cluster_yaml(\"etcd\", 23790..=23792):\n{indented}"
    );
}

/// A real Envoy routes to the cluster YAML: it loads, health-checks the members, and
/// stops sending to a killed member (the route-level view of what the filters' callouts
/// get). Uses a plain router to the etcd cluster, no wasm.
#[test]
fn envoy_ejects_a_killed_member_quickly() {
    let mut etcd = EtcdCluster::start(3);
    let yaml = fill_all(
        r#"admin:
  address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
static_resources:
  listeners:
  - name: http
    address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: http
          route_config:
            virtual_hosts:
            - name: etcd
              domains: ["*"]
              routes:
              - match: { prefix: / }
                route: { cluster: etcd, timeout: 2s }
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  {{ETCD_CLUSTER}}
"#,
        &[(
            "ETCD_CLUSTER",
            &envoy_etcd_cluster_yaml("etcd", &etcd.client_ports()),
        )],
    );
    let e = Envoy::start(&yaml, 1);
    let url = format!("{}/v3/kv/range", e.base_url("http"));
    let body = format!(r#"{{"key":"{}"}}"#, base64_encode(b"/e/k"));
    let ok = |_: &Envoy| {
        let r = request(
            "POST",
            &url,
            &[("content-type", "application/json")],
            Some(body.as_bytes()),
        );
        r.status
    };
    let healthy = |e: &Envoy| e.stat("cluster.etcd.membership_healthy");
    let deadline = Instant::now() + Duration::from_secs(5);
    while healthy(&e) != Some(3) {
        assert!(
            Instant::now() < deadline,
            "members never all healthy in Envoy"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for _ in 0..6 {
        assert_eq!(ok(&e), 200);
    }
    // A follower: no election follows, so the survivors answer at once. (Killing the
    // leader makes the others answer 503 "leader changed"/"no leader", /health included,
    // for the ~0.5-1 s of the election: see quorum test for the no-quorum case.)
    let f = etcd
        .follower()
        .expect("a 3-member cluster has a leader and followers");
    etcd.kill(f);
    let t = Instant::now();
    while healthy(&e) != Some(2) {
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "killed member still healthy in Envoy after {:?}",
            t.elapsed()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("killed member marked unhealthy after {:?}", t.elapsed());
    // From now on every request goes to a live member (round robin would hit the dead
    // one every third request otherwise).
    for _ in 0..20 {
        assert_eq!(ok(&e), 200);
    }
    etcd.restart(f);
    let t = Instant::now();
    while healthy(&e) != Some(3) {
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "restarted member not healthy"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
