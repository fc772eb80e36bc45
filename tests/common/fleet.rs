//! Fleet-mode helpers shared by the durability tests (`tests/fleet_*_envoy.rs`):
//! the filters' configuration over etcd, one Envoy of the fleet, and a client
//! that retries as `Retry-After` says.
#![allow(dead_code, unused_imports)]

use super::etcd::{envoy_etcd_cluster_yaml, EtcdCluster};
use super::*;
use envoy_oauth2::config::secret_hash::hash_secret;
use std::time::{Duration, Instant};

pub const C1: &str = "IZsIi6HDbB5e8VKdZAnUi_fZ3f8a";
pub const S1: &str = "Gm0bJ6oWV8fC5OQLLlC6jslACW8a";
/// A second client allowed the refresh grant (a different party than C1).
pub const C2: &str = "other-app";
pub const S2: &str = "other-app-secret";

pub fn store(prefix: &str, guard: bool) -> String {
    let poll = if guard {
        r#","revocation_poll_ms":50,"staleness_ms":1000"#
    } else {
        ""
    };
    format!(
        r#""store":{{"backend":"etcd","cluster":"etcd","prefix":"{prefix}","timeout_ms":1000{poll}}}"#
    )
}

/// The token endpoint's configuration; `extra`: more top-level fields, each
/// ending with `,` (e.g. `"refresh_token_grace_seconds":2,`).
pub fn token_config(prefix: &str, extra: &str) -> String {
    let h = |s: &str| hash_secret(s.as_bytes(), b"fedcba9876543210", 10_000);
    format!(
        r#"{{"realm":"test","issuer":"http://127.0.0.1",{},"throttle":{{"max_failures":0}},{extra}
            "clients":[{{"client_id":"{C1}","secret_hash":"{}","grant_types":["client_credentials","password","refresh_token"],"scopes":["default","PRODUCTION"]}},
                       {{"client_id":"{C2}","secret_hash":"{}","grant_types":["password","refresh_token"],"scopes":["default"]}}],
            "users":[{{"username":"admin","password_hash":"{}","scopes":["default","PRODUCTION"]}}]}}"#,
        store(prefix, false),
        h(S1),
        h(S2),
        h("admin")
    )
}

pub fn guard_config(prefix: &str) -> String {
    format!(
        r#"{{"realm":"test",{},"revocation_mode":"immediate","rules":[{{"prefix":"/api/"}}]}}"#,
        store(prefix, true)
    )
}

/// One Envoy of the fleet (`--concurrency 2`), once its health checks see every member.
pub fn node(etcd: &EtcdCluster, token_config: &str, guard_config: &str) -> Envoy {
    let e = Envoy::start_template(
        "fleet.yaml",
        &[
            ("TOKEN_CONFIG", token_config),
            ("GUARD_CONFIG", guard_config),
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

/// Until Envoy's health checks see at least `members` healthy etcd members.
pub fn wait_healthy(e: &Envoy, members: u64) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while e.stat("cluster.etcd.membership_healthy").unwrap_or(0) < members {
        assert!(Instant::now() < deadline, "etcd members never healthy");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn token_url(e: &Envoy) -> String {
    format!("{}/token", e.base_url("http"))
}

/// A password grant for `client`; `Err` carries the answer if it was not 200.
pub fn try_password_grant(e: &Envoy, client: (&str, &str)) -> Result<(String, String), Resp> {
    let r = try_request_form(
        &token_url(e),
        &[
            ("grant_type", "password"),
            ("username", "admin"),
            ("password", "admin"),
        ],
        &basic_auth(client.0, client.1),
    );
    pair(r)
}

pub fn try_refresh(e: &Envoy, client: (&str, &str), rt: &str) -> Result<(String, String), Resp> {
    let r = try_request_form(
        &token_url(e),
        &[("grant_type", "refresh_token"), ("refresh_token", rt)],
        &basic_auth(client.0, client.1),
    );
    pair(r)
}

fn pair(r: Resp) -> Result<(String, String), Resp> {
    if r.status != 200 {
        return Err(r);
    }
    let j = r.json();
    match (j["access_token"].as_str(), j["refresh_token"].as_str()) {
        (Some(a), Some(rt)) => Ok((a.to_string(), rt.to_string())),
        _ => Err(r),
    }
}

/// A form POST whose transport error (connection reset, timeout) comes back
/// as status 0, so a caller can retry it like a 503.
pub fn try_request_form(url: &str, form: &[(&str, &str)], authorization: &str) -> Resp {
    let body = form_encode(form);
    try_request(
        "POST",
        url,
        &[
            ("authorization", authorization),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        Some(body.as_bytes()),
    )
    .unwrap_or_else(|e| Resp {
        status: 0,
        headers: Vec::new(),
        body: e,
    })
}

pub fn api(e: &Envoy, token: &str) -> Resp {
    get(
        &format!("{}/api/hello", e.base_url("http")),
        &[("authorization", &format!("Bearer {token}"))],
    )
}

/// What a well-behaved client does: on a 503 (or a lost connection) it waits
/// as `Retry-After` says (1 s if absent) and sends the same request again,
/// until `give_up` passed. Returns the last answer and how many retries it took.
pub fn retrying<T>(
    give_up: Duration,
    mut op: impl FnMut() -> Result<T, Resp>,
) -> (Result<T, Resp>, u32) {
    let start = Instant::now();
    let mut retries = 0;
    loop {
        match op() {
            Err(r) if (r.status == 0 || r.status >= 500) && start.elapsed() < give_up => {
                let wait = r
                    .header("retry-after")
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .unwrap_or(1);
                std::thread::sleep(Duration::from_secs(wait.min(5)));
                retries += 1;
            }
            other => return (other, retries),
        }
    }
}

/// Polls `f` until it is true or `within` passed; the time it took.
pub fn until(within: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < within {
        if f() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}
