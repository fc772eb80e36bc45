//! etcd answering badly, seen through a real Envoy: a fake etcd in this test
//! (a small HTTP/1.1 server) stands between Envoy's `etcd` cluster and one real
//! etcd member, and can be switched at run time from passing every request
//! through to answering slowly, with 5xx, with garbage, truncated, with JSON
//! of the wrong shape, or not at all. For each fault: `/token` answers 503
//! `temporarily_unavailable` with `Retry-After`, never a token that is not
//! stored; the guard answers 503 (not 200, not 401) for a token it has to look
//! up; nothing panics; and once the fake passes requests through again,
//! everything works without restarting Envoy.

mod common;

use common::etcd::{envoy_etcd_cluster_yaml, EtcdCluster};
use common::*;
use envoy_oauth2::config::secret_hash::hash_secret;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const C1: &str = "IZsIi6HDbB5e8VKdZAnUi_fZ3f8a";
const S1: &str = "Gm0bJ6oWV8fC5OQLLlC6jslACW8a";
/// The filters' per-callout timeout (`store.timeout_ms`).
const TIMEOUT_MS: u64 = 300;
/// How long the fake holds a slow answer: well past the callout timeout.
const SLOW: Duration = Duration::from_millis(3 * TIMEOUT_MS);

/// How the fake answers a request the fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Forward to the real etcd member and pass its answer back.
    Proxy,
    /// Forward, then hold the answer for [`SLOW`] (the write is applied; its
    /// answer comes after the callout timed out).
    Slow,
    /// 503 with etcd's own error body (`code` 14), not forwarded.
    Status503Etcd,
    /// 503 with an empty body, not forwarded.
    Status503Empty,
    /// 500 with an empty body, not forwarded.
    Status500Empty,
    /// Forward, then answer 200 with bytes that are not JSON.
    Garbage,
    /// Forward, then answer 200 with a `Content-Length` larger than the body
    /// (the first half of etcd's answer) and close.
    Truncated,
    /// Forward, then answer 200 with valid JSON that is no gateway answer.
    WrongShape,
    /// Forward, then close the connection without answering.
    Dropped,
    /// [`Mode::Dropped`] for one request, then [`Mode::Proxy`].
    DroppedOnce,
}

impl Mode {
    /// The request reaches etcd (so a write is applied) before the answer goes bad.
    fn forwards(self) -> bool {
        !matches!(
            self,
            Mode::Status503Etcd | Mode::Status503Empty | Mode::Status500Empty
        )
    }
}

/// Which requests a fault applies to; the others are passed through, and
/// `/health` (Envoy's health checks) is always passed through, so what is
/// tested is the filters' reading of callout answers, not Envoy's ejection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// Every `/v3/` request: reads, writes, lease grants, revocation polls.
    Every,
    /// Writes only (`/v3/kv/txn`, `/v3/lease/grant`): reads work.
    Writes,
    /// Conditional writes only (`/v3/kv/txn`).
    Txn,
}

/// Not JSON, with a NUL and invalid UTF-8.
const GARBAGE: &[u8] = b"\x00\xff\xfe<html>502 Bad Gateway</html>{\"header\":";

/// Valid JSON that is neither a range, a txn nor a lease answer (no header,
/// a header of the wrong type or revision 0, fields of the wrong type). A
/// header-only object is left out on purpose: that is how etcd says "absent".
const WRONG_SHAPES: &[&str] = &[
    "[]",
    "\"ok\"",
    "null",
    r#"{"kvs":[],"succeeded":true}"#,
    r#"{"header":"7","succeeded":true}"#,
    r#"{"header":{"revision":"0"},"succeeded":true}"#,
    r#"{"header":{"revision":"7"},"kvs":"x","succeeded":"yes"}"#,
    r#"{"header":{"revision":"7"},"kvs":[{"key":7,"value":[]}],"succeeded":1}"#,
    r#"{"result":{"header":{"revision":"7"},"succeeded":true}}"#,
];

const ETCD_503: &str = r#"{"error":"etcdserver: request timed out","message":"etcdserver: request timed out","code":14}"#;

struct Fault {
    mode: Mode,
    scope: Scope,
}

struct Shared {
    upstream: String,
    fault: Mutex<Fault>,
    /// Answers the fault changed since it was last set.
    faulted: AtomicU64,
    wrong_shape: AtomicU64,
    stop: AtomicBool,
    agent: ureq::Agent,
}

/// The fake etcd: a listener on 127.0.0.1, one thread per connection (Envoy
/// keeps connections open; several requests come over one).
struct FakeEtcd {
    port: u16,
    shared: Arc<Shared>,
}

struct Request {
    method: String,
    path: String,
    content_type: Option<String>,
    authorization: Option<String>,
    body: Vec<u8>,
}

impl FakeEtcd {
    fn start(upstream: String) -> FakeEtcd {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fake etcd");
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            upstream,
            fault: Mutex::new(Fault {
                mode: Mode::Proxy,
                scope: Scope::Every,
            }),
            faulted: AtomicU64::new(0),
            wrong_shape: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            agent: ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(5))
                .build(),
        });
        let s = shared.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    return;
                }
                if let Ok(conn) = conn {
                    let s = s.clone();
                    std::thread::spawn(move || serve(&s, conn));
                }
            }
        });
        FakeEtcd { port, shared }
    }

    fn set(&self, mode: Mode, scope: Scope) {
        *self.shared.fault.lock().unwrap() = Fault { mode, scope };
        self.shared.faulted.store(0, Ordering::SeqCst);
    }

    fn proxy(&self) {
        self.set(Mode::Proxy, Scope::Every);
    }

    /// Answers the fault changed since it was set.
    fn faulted(&self) -> u64 {
        self.shared.faulted.load(Ordering::SeqCst)
    }
}

impl Drop for FakeEtcd {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port)); // wakes the accept loop
    }
}

fn serve(s: &Shared, conn: TcpStream) {
    let Ok(write_half) = conn.try_clone() else {
        return;
    };
    let mut out = write_half;
    let mut reader = BufReader::new(conn);
    while let Some(req) = read_request(&mut reader) {
        let mode = {
            let mut f = s.fault.lock().unwrap();
            let applies = req.path.starts_with("/v3/")
                && match f.scope {
                    Scope::Every => true,
                    Scope::Writes => req.path == "/v3/kv/txn" || req.path == "/v3/lease/grant",
                    Scope::Txn => req.path == "/v3/kv/txn",
                };
            let mode = if applies { f.mode } else { Mode::Proxy };
            if mode == Mode::DroppedOnce {
                f.mode = Mode::Proxy;
            }
            mode
        };
        if mode != Mode::Proxy {
            s.faulted.fetch_add(1, Ordering::SeqCst);
        }
        let keep = match mode {
            Mode::Proxy => {
                let (status, body) = forward(s, &req);
                respond(&mut out, status, &body).is_ok()
            }
            Mode::Slow => {
                let (status, body) = forward(s, &req);
                std::thread::sleep(SLOW);
                respond(&mut out, status, &body).is_ok()
            }
            Mode::Status503Etcd => respond(&mut out, 503, ETCD_503.as_bytes()).is_ok(),
            Mode::Status503Empty => respond(&mut out, 503, b"").is_ok(),
            Mode::Status500Empty => respond(&mut out, 500, b"").is_ok(),
            Mode::Garbage => {
                forward(s, &req);
                respond(&mut out, 200, GARBAGE).is_ok()
            }
            Mode::WrongShape => {
                forward(s, &req);
                let i = s.wrong_shape.fetch_add(1, Ordering::SeqCst) as usize;
                let body = WRONG_SHAPES[i % WRONG_SHAPES.len()];
                respond(&mut out, 200, body.as_bytes()).is_ok()
            }
            Mode::Truncated => {
                let (_, body) = forward(s, &req);
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                    body.len() + 100
                );
                let _ = out.write_all(head.as_bytes());
                let _ = out.write_all(&body[..body.len() / 2]);
                let _ = out.flush();
                false
            }
            Mode::Dropped | Mode::DroppedOnce => {
                forward(s, &req);
                false
            }
        };
        if !keep {
            let _ = out.shutdown(Shutdown::Both);
            return;
        }
    }
}

/// One HTTP/1.1 request (Content-Length or chunked body); None at EOF or on
/// anything unreadable.
fn read_request(r: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let (mut length, mut chunked) = (0usize, false);
    let (mut content_type, mut authorization) = (None, None);
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_string());
        match k.as_str() {
            "content-length" => length = v.parse().ok()?,
            "transfer-encoding" => chunked = v.eq_ignore_ascii_case("chunked"),
            "content-type" => content_type = Some(v),
            "authorization" => authorization = Some(v),
            _ => {}
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).ok()?;
            let n = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
            if n == 0 {
                // Trailers, up to the empty line.
                loop {
                    let mut t = String::new();
                    if r.read_line(&mut t).ok()? == 0 || t.trim().is_empty() {
                        break;
                    }
                }
                break;
            }
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk).ok()?;
            body.extend_from_slice(&chunk[..n]);
        }
    } else {
        body.resize(length, 0);
        r.read_exact(&mut body).ok()?;
    }
    Some(Request {
        method,
        path,
        content_type,
        authorization,
        body,
    })
}

/// The request sent on to the real etcd: its status and body (502 if it
/// could not be reached).
fn forward(s: &Shared, req: &Request) -> (u16, Vec<u8>) {
    let url = format!("{}{}", s.upstream, req.path);
    let mut rq = s.agent.request(&req.method, &url);
    if let Some(ct) = &req.content_type {
        rq = rq.set("content-type", ct);
    }
    if let Some(a) = &req.authorization {
        rq = rq.set("authorization", a);
    }
    let res = if req.method == "GET" {
        rq.call()
    } else {
        rq.send_bytes(&req.body)
    };
    let r = match res {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => {
            eprintln!("fake etcd: {} {url}: {e}", req.method);
            return (502, Vec::new());
        }
    };
    let status = r.status();
    let mut body = Vec::new();
    let _ = r.into_reader().read_to_end(&mut body);
    (status, body)
}

fn respond(out: &mut TcpStream, status: u16, body: &[u8]) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    out.write_all(head.as_bytes())?;
    out.write_all(body)?;
    out.flush()
}

// --- the Envoy under test ---------------------------------------------------

fn store() -> String {
    format!(
        r#""store":{{"backend":"etcd","cluster":"etcd","prefix":"/faults/","timeout_ms":{TIMEOUT_MS},"revocation_poll_ms":50,"staleness_ms":1000}}"#
    )
}

fn token_config() -> String {
    token_config_with("", "")
}

/// A second client, later listed in `revoked_clients`.
const C2: &str = "leaky-app";
const S2: &str = "leaky-app-secret";

/// `extra`: more entries of `clients` (each starting with `,`); `more`: more
/// top-level fields (each ending with `,`).
fn token_config_with(extra: &str, more: &str) -> String {
    let h = |s: &str| hash_secret(s.as_bytes(), b"fedcba9876543210", 10_000);
    let store = store().replace(r#","revocation_poll_ms":50,"staleness_ms":1000"#, "");
    format!(
        r#"{{"issuer":"http://127.0.0.1","realm":"test",{store},"throttle":{{"max_failures":0}},{more}
            "clients":[{{"client_id":"{C1}","secret_hash":"{}","grant_types":["client_credentials","password","refresh_token"],"scopes":["default"]}}{extra}],
            "users":[{{"username":"admin","password_hash":"{}","scopes":["default"]}}]}}"#,
        h(S1),
        h("admin")
    )
}

fn guard_config() -> String {
    format!(
        r#"{{"realm":"test",{},"revocation_mode":"immediate","rules":[{{"prefix":"/api/"}}]}}"#,
        store()
    )
}

/// One real etcd member, the fake in front of it, and one Envoy (two workers)
/// whose `etcd` cluster is the fake.
struct Rig {
    etcd: EtcdCluster,
    fake: FakeEtcd,
    envoy: Envoy,
}

impl Rig {
    fn start() -> Rig {
        Rig::start_with(EtcdCluster::start(1), &token_config(), None)
    }

    /// Over `etcd`, with this token configuration; `fault`: the fake's mode
    /// (every `/v3/` request) from before Envoy loads its configuration.
    fn start_with(etcd: EtcdCluster, token_config: &str, fault: Option<Mode>) -> Rig {
        let fake = FakeEtcd::start(etcd.client_urls()[0].clone());
        if let Some(mode) = fault {
            fake.set(mode, Scope::Every);
        }
        let envoy = Envoy::start_template(
            "fleet.yaml",
            &[
                ("TOKEN_CONFIG", token_config),
                ("GUARD_CONFIG", &guard_config()),
                (
                    "ETCD_CLUSTER",
                    &envoy_etcd_cluster_yaml("etcd", &[fake.port]),
                ),
            ],
            2,
        );
        let rig = Rig { etcd, fake, envoy };
        let deadline = Instant::now() + Duration::from_secs(10);
        while rig.envoy.stat("cluster.etcd.membership_healthy") != Some(1) {
            assert!(Instant::now() < deadline, "the fake etcd never healthy");
            std::thread::sleep(Duration::from_millis(50));
        }
        rig
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.envoy.base_url("http"))
    }

    fn token(&self) -> Resp {
        post_form(
            &self.url("/token"),
            &[("grant_type", "client_credentials")],
            &[("authorization", &basic_auth(C1, S1))],
        )
    }

    /// A token issued while the fake passes requests through.
    fn issued(&self) -> String {
        let r = self.token();
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()["access_token"].as_str().unwrap().to_string()
    }

    fn api(&self, token: &str) -> Resp {
        get(
            &self.url("/api/hello"),
            &[("authorization", &format!("Bearer {token}"))],
        )
    }

    /// No panic, no trapped VM in Envoy's log so far.
    fn assert_no_crash(&self) {
        let log = self.envoy.log();
        for bad in ["panicked", "Uncaught", "RuntimeError", "wasm trap"] {
            assert!(
                !log.contains(bad),
                "Envoy log has {bad:?}:\n{}",
                log.lines()
                    .filter(|l| l.contains(bad))
                    .take(5)
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
    }
}

impl Rig {
    /// Every grant record in etcd, by grant id: how many records each has.
    fn grant_records(&self) -> std::collections::HashMap<Vec<u8>, usize> {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        let range = self
            .etcd
            .gateway(
                0,
                "/v3/kv/range",
                &serde_json::json!({
                    "key": b64.encode("/faults/oauth2/g/"),
                    "range_end": b64.encode("/faults/oauth2/g0"),
                }),
            )
            .unwrap();
        let mut ids = std::collections::HashMap::new();
        for kv in range["kvs"].as_array().cloned().unwrap_or_default() {
            let value = b64.decode(kv["value"].as_str().unwrap_or("")).unwrap();
            for g in envoy_oauth2::store::bucket::Bucket::decode(&value)
                .unwrap()
                .grants
            {
                *ids.entry(g.id.to_vec()).or_insert(0) += 1;
            }
        }
        ids
    }
}

/// Polls `f` until it is true or `within` passed.
fn until(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < within {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// A 503 as RFC 6749 §5.2 and docs/endpoints.md describe it.
fn assert_unavailable(r: &Resp, what: &str) {
    assert_eq!(r.status, 503, "{what}: {} {:?}", r.status, r.body);
    assert_eq!(
        r.json()["error"],
        "temporarily_unavailable",
        "{what}: {}",
        r.body
    );
    assert_eq!(
        r.header("retry-after"),
        Some("1"),
        "{what}: {:?}",
        r.headers
    );
    assert_eq!(
        r.header("content-type"),
        Some("application/json"),
        "{what}: {:?}",
        r.headers
    );
}

/// What one fault showed, for the summary.
#[derive(Debug)]
struct Seen {
    mode: Mode,
    scope: Scope,
    token: Vec<u16>,
    guard: Vec<u16>,
    answers_faulted: u64,
    took: Duration,
}

/// One fault, start to end: tokens issued before it and never shown to the
/// guard; /token and the guard under the fault; then back to passing through.
fn exercise(rig: &Rig, mode: Mode, scope: Scope) -> Seen {
    let start = Instant::now();
    eprintln!("fault {mode:?}/{scope:?}");
    rig.fake.proxy();
    let unseen = rig.issued();
    rig.fake.set(mode, scope);
    // /token, enough times for both workers: never a token that is not stored.
    let mut token = Vec::new();
    let mut handed_out = Vec::new();
    for _ in 0..4 {
        let r = rig.token();
        token.push(r.status);
        if r.status == 200 {
            handed_out.push(r.json()["access_token"].as_str().unwrap().to_string());
        } else {
            assert_unavailable(&r, &format!("/token under {mode:?}/{scope:?}"));
        }
    }
    if scope == Scope::Every || !mode.forwards() {
        // The store cannot be asked, or the write never reached it: 503 every time.
        assert!(
            token.iter().all(|s| *s == 503),
            "{mode:?}/{scope:?}: /token without a store: {token:?}"
        );
    } else {
        // Reads work and etcd applied the write whose answer went bad: the issuance
        // reads its bucket again, finds its own grant and hands the token out.
        assert!(
            token.iter().all(|s| *s == 200),
            "{mode:?}/{scope:?}: /token's applied write not recognised: {token:?}"
        );
    }
    // The guard, for a token no worker has cached: it must ask the store.
    let mut guard = Vec::new();
    for _ in 0..3 {
        let r = rig.api(&unseen);
        guard.push(r.status);
        match scope {
            // It cannot: 503, never a pass and never a refusal of a valid token.
            Scope::Every => assert_unavailable(&r, &format!("guard under {mode:?}/{scope:?}")),
            // Reads still work.
            Scope::Writes | Scope::Txn => {
                assert_eq!(r.status, 200, "{mode:?}/{scope:?}: {}", r.body)
            }
        }
    }
    let answers_faulted = rig.fake.faulted();
    assert!(
        answers_faulted > 0,
        "{mode:?}/{scope:?}: the fault was never served"
    );
    // Back to normal, without restarting Envoy.
    rig.fake.proxy();
    assert!(
        until(Duration::from_secs(5), || rig.token().status == 200),
        "{mode:?}/{scope:?}: /token did not come back"
    );
    let r = rig.api(&unseen);
    assert_eq!(r.status, 200, "{mode:?}/{scope:?}: {}", r.body);
    for t in &handed_out {
        let r = rig.api(t);
        assert_eq!(
            r.status, 200,
            "{mode:?}/{scope:?}: a token handed out during the fault is not stored"
        );
    }
    assert_eq!(rig.api(&rig.issued()).status, 200);
    rig.assert_no_crash();
    Seen {
        mode,
        scope,
        token,
        guard,
        answers_faulted,
        took: start.elapsed(),
    }
}

#[test]
fn every_fault_gives_503_or_a_stored_token_never_an_unstored_one_and_heals() {
    let started = Instant::now();
    let rig = Rig::start();
    let mut seen = Vec::new();
    for mode in [
        Mode::Slow,
        Mode::Status503Etcd,
        Mode::Status503Empty,
        Mode::Status500Empty,
        Mode::Garbage,
        Mode::Truncated,
        Mode::WrongShape,
        Mode::Dropped,
    ] {
        for scope in [Scope::Every, Scope::Writes] {
            seen.push(exercise(&rig, mode, scope));
        }
    }
    for s in &seen {
        eprintln!(
            "{:>14} {:>6}: /token {:?}, guard {:?}, {} answers faulted, {:.1} s",
            format!("{:?}", s.mode),
            format!("{:?}", s.scope),
            s.token,
            s.guard,
            s.answers_faulted,
            s.took.as_secs_f64()
        );
    }
    let denied = rig
        .envoy
        .counter("wasmcustom.oauth2.guard.denied.store_unavailable");
    assert!(denied >= 3 * 8, "guard store_unavailable denials: {denied}");
    eprintln!("whole test: {:.1} s", started.elapsed().as_secs_f64());
}

/// etcd applied the write, then the connection closed before its answer
/// (Envoy: 503 "upstream connect error or disconnect/reset before headers.
/// reset reason: connection termination", no etcd `code`). The write may have
/// been applied, so it is not sent again as it was: the issuance reads the
/// bucket and looks for its own grant first. Were the same grant inserted a
/// second time, revoking the token would mark one record, the revoked record
/// would be reclaimed in the same write, and the other one would let the token
/// pass again.
#[test]
fn a_write_whose_answer_was_lost_is_recognised_and_never_applied_twice() {
    let started = Instant::now();
    let rig = Rig::start();
    // The lease of this expiry slice exists now: the next write is the txn.
    rig.issued();
    let before = rig.grant_records();
    rig.fake.set(Mode::DroppedOnce, Scope::Txn);
    let r = rig.token();
    assert_eq!(rig.fake.faulted(), 1, "the fault was not served");
    let after = rig.grant_records();
    let doubled: Vec<_> = after.values().filter(|n| **n > 1).collect();
    assert!(doubled.is_empty(), "a grant stored twice: {after:?}");
    assert_eq!(
        after.len(),
        before.len() + 1,
        "the write whose answer was lost is in etcd, once"
    );
    // Applied though its answer was lost: the issuance reads its bucket again, finds
    // its own grant (by its random id) and hands the token out: no 503, never twice.
    assert_eq!(r.status, 200, "{}", r.body);
    let t = r.json()["access_token"].as_str().unwrap().to_string();
    assert_eq!(rig.api(&t).status, 200);
    // One record: revoking it ends the token (a duplicate would let it pass again).
    let rv = post_form(
        &rig.url("/revoke"),
        &[("token", &t)],
        &[("authorization", &basic_auth(C1, S1))],
    );
    assert_eq!(rv.status, 200);
    assert_eq!(rig.api(&t).status, 401, "a revoked token passes");
    assert_eq!(rig.api(&rig.issued()).status, 200);
    rig.assert_no_crash();
    eprintln!("whole test: {:.1} s", started.elapsed().as_secs_f64());
}

/// `revoked_clients` loaded while etcd answers only errors: the sweep cannot run
/// at load (and the configuration is not refused for it); it is tried again
/// every few seconds, and once etcd answers, the listed client's grant is revoked.
#[test]
fn a_revoked_clients_sweep_that_cannot_reach_etcd_is_tried_again_until_it_can() {
    let started = Instant::now();
    let etcd = EtcdCluster::start(1);
    // The leaky client's token, issued straight over the real member.
    let h = hash_secret(S2.as_bytes(), b"0123456789abcdef", 10_000);
    let leaky = format!(
        r#",{{"client_id":"{C2}","secret_hash":"{h}","grant_types":["client_credentials"],"scopes":["default"]}}"#
    );
    let before = Envoy::start_template(
        "fleet.yaml",
        &[
            ("TOKEN_CONFIG", &token_config_with(&leaky, "")),
            ("GUARD_CONFIG", &guard_config()),
            (
                "ETCD_CLUSTER",
                &envoy_etcd_cluster_yaml("etcd", &etcd.client_ports()),
            ),
        ],
        1,
    );
    let r = post_form(
        &format!("{}/token", before.base_url("http")),
        &[("grant_type", "client_credentials")],
        &[("authorization", &basic_auth(C2, S2))],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let leaked = r.json()["access_token"].as_str().unwrap().to_string();
    drop(before);
    // The operator's new configuration, loaded while etcd answers 503 to everything.
    let listed = format!(r#""revoked_clients":["{C2}"],"#);
    let rig = Rig::start_with(
        etcd,
        &token_config_with("", &listed),
        Some(Mode::Status503Empty),
    );
    assert!(
        rig.envoy.wait_for_log(
            "revoked_clients: the sweep could not reach the store",
            Duration::from_secs(5)
        ),
        "{}",
        rig.envoy.log()
    );
    rig.fake.proxy();
    assert!(
        rig.envoy
            .wait_for_log("revoked_clients: revoked 1 grants", Duration::from_secs(10)),
        "the sweep never ran once etcd answered:\n{}",
        rig.envoy.log()
    );
    assert_eq!(
        rig.api(&leaked).status,
        401,
        "a listed client's token passes"
    );
    assert_eq!(rig.api(&rig.issued()).status, 200);
    rig.assert_no_crash();
    eprintln!("whole test: {:.1} s", started.elapsed().as_secs_f64());
}
