//! A real etcd cluster (`/usr/bin/etcd`, from `make setup`) on free loopback ports, for
//! fleet-mode tests: start n members, kill and restart them, read and write through the
//! v3 JSON gateway, and the Envoy cluster YAML that points the filters' callouts at them.
//!
//! ```ignore
//! let mut etcd = EtcdCluster::start(3);
//! let cluster = envoy_etcd_cluster_yaml("etcd", &etcd.client_ports());   // fill into a template
//! etcd.put("/k", b"v");
//! etcd.kill(0);                 // SIGKILL; the other two keep quorum
//! assert_eq!(etcd.get("/k").as_deref(), Some(&b"v"[..]));
//! etcd.restart(0);              // same ports, same data dir
//! ```
//!
//! Environment override: `ETCD_BIN` (default `etcd` on the PATH).
#![allow(dead_code, unused_imports)]

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::{json, Value};

use super::*;

/// How long a fresh cluster, or a restarted member, may take to answer.
pub const ETCD_START_TIMEOUT: Duration = Duration::from_secs(15);
/// Per-request timeout of the gateway helpers. etcd itself holds a request it cannot
/// commit (no quorum) for about 5 s + 2 x election timeout; the helpers give up first.
pub const ETCD_HTTP_TIMEOUT: Duration = Duration::from_secs(3);

struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    data_dir: PathBuf,
    log_path: PathBuf,
    child: Option<Child>,
}

/// n etcd members on 127.0.0.1, each with its own data dir under one temp dir. Dropping it
/// kills every member and removes the dir (kept, and named on stderr, if a test panicked).
pub struct EtcdCluster {
    dir: PathBuf,
    token: String,
    members: Vec<Member>,
    agent: ureq::Agent,
    /// More etcd flags, after the defaults (a later flag wins).
    extra_args: Vec<String>,
}

/// The backend quota of the tests' clusters unless a test sets its own.
pub const TEST_QUOTA_BYTES: u64 = 1 << 30;

pub fn etcd_bin() -> PathBuf {
    std::env::var_os("ETCD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("etcd"))
}

/// `n` distinct free loopback ports: all bound to port 0 at once, then released.
pub fn free_ports(n: usize) -> Vec<u16> {
    let ls: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    ls.iter()
        .map(|l| l.local_addr().expect("local_addr").port())
        .collect()
}

/// etcd's range_end for "every key starting with `prefix`": the prefix with its last
/// byte + 1 (trailing 0xff bytes dropped first); `\0` (= every key) for an empty prefix.
pub fn prefix_range_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

fn b64(b: &[u8]) -> String {
    B64.encode(b)
}

/// A 64-bit number etcd's gateway wrote as a JSON string (or, defensively, a number);
/// absent = 0 (proto3 JSON omits zero values).
pub fn etcd_u64(v: &Value) -> u64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_u64().unwrap_or(0),
        _ => 0,
    }
}

impl EtcdCluster {
    /// Starts `n` members (a fresh cluster with a unique `--initial-cluster-token`) and
    /// waits until every member answers `/health` with `{"health":"true"}`. Ports are
    /// picked free (bind port 0, release); if a member cannot bind (a race with another
    /// process), the whole start is retried with new ports. Panics with the log tails if
    /// the cluster does not come up within [`ETCD_START_TIMEOUT`].
    pub fn start(n: usize) -> EtcdCluster {
        Self::start_with(n, &[])
    }

    /// [`EtcdCluster::start`] with more etcd flags (e.g. a small `--quota-backend-bytes`).
    pub fn start_with(n: usize, extra_args: &[&str]) -> EtcdCluster {
        assert!(n >= 1, "EtcdCluster::start(0)");
        let mut last_err = String::new();
        for attempt in 0..5 {
            let mut c = Self::spawn_fresh(n, extra_args);
            match c.wait_all_healthy(ETCD_START_TIMEOUT) {
                Ok(()) => return c,
                Err(e) => {
                    let bind_race = (0..n).any(|i| {
                        let log = c.log(i);
                        log.contains("address already in use") || log.contains("bind: address")
                    });
                    last_err = format!("{e}\n{}", c.log_tails(30));
                    if bind_race && attempt < 4 {
                        eprintln!("etcd: a port was taken, retrying with new ports");
                        continue; // c dropped: members killed, dir removed
                    }
                    c.keep_dir_on_drop();
                    panic!(
                        "etcd cluster of {n} did not start: {last_err}\n(dir kept: {})",
                        c.dir.display()
                    );
                }
            }
        }
        panic!("etcd cluster of {n} did not start: {last_err}");
    }

    fn spawn_fresh(n: usize, extra_args: &[&str]) -> EtcdCluster {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let k = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!(
            "envoy-oauth2-etcd-{}-{k}-{}",
            std::process::id(),
            nanos % 1_000_000_000
        ));
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let ports = free_ports(2 * n);
        let members = (0..n)
            .map(|i| {
                let data_dir = dir.join(format!("m{i}"));
                fs::create_dir_all(&data_dir).expect("create member dir");
                Member {
                    name: format!("m{i}"),
                    client_port: ports[2 * i],
                    peer_port: ports[2 * i + 1],
                    log_path: data_dir.join("etcd.log"),
                    data_dir,
                    child: None,
                }
            })
            .collect();
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_millis(500))
            .timeout(ETCD_HTTP_TIMEOUT)
            .max_idle_connections(0) // a killed/restarted member leaves no stale connection
            .build();
        let mut c = EtcdCluster {
            token: format!("envoy-oauth2-test-{}-{k}-{nanos}", std::process::id()),
            dir,
            members,
            agent,
            extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
        };
        for i in 0..n {
            c.spawn(i);
        }
        c
    }

    fn initial_cluster(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn spawn(&mut self, i: usize) {
        let initial_cluster = self.initial_cluster();
        let m = &mut self.members[i];
        assert!(m.child.is_none(), "etcd member {i} is already running");
        // Data files live in <member>/data; the log next to it (append: a restart keeps
        // the earlier log).
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.log_path)
            .expect("open etcd.log");
        let client = format!("http://127.0.0.1:{}", m.client_port);
        let peer = format!("http://127.0.0.1:{}", m.peer_port);
        let child = Command::new(etcd_bin())
            .args(["--name", &m.name])
            .arg("--data-dir")
            .arg(m.data_dir.join("data"))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &initial_cluster])
            .args(["--initial-cluster-token", &self.token])
            .args(["--initial-cluster-state", "new"])
            .args(["--heartbeat-interval", "100", "--election-timeout", "1000"])
            // As docs/fleet.md tells operators: leases keep their remaining
            // TTL across leader changes, old revisions go, storage is capped.
            .args(["--auto-compaction-mode", "periodic"])
            .args(["--auto-compaction-retention", "5m"])
            .args(["--quota-backend-bytes", &TEST_QUOTA_BYTES.to_string()])
            // 3.4.23 crashes on capnslog's nil logger when checkpointing is on.
            .args(["--logger", "zap"])
            .arg("--experimental-enable-lease-checkpoint")
            .arg("--experimental-enable-lease-checkpoint-persist")
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log fd"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot spawn {}: {e} (run `make setup`: it installs etcd-server)",
                    etcd_bin().display()
                )
            });
        m.child = Some(child);
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn client_ports(&self) -> Vec<u16> {
        self.members.iter().map(|m| m.client_port).collect()
    }

    pub fn peer_ports(&self) -> Vec<u16> {
        self.members.iter().map(|m| m.peer_port).collect()
    }

    /// `http://127.0.0.1:<client port>` of each member.
    pub fn client_urls(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("http://127.0.0.1:{}", m.client_port))
            .collect()
    }

    /// The temp dir holding every member's data dir (`m<i>/data`) and log (`m<i>/etcd.log`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Member `i`'s log so far.
    pub fn log(&self, i: usize) -> String {
        fs::read(&self.members[i].log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    fn log_tails(&self, lines: usize) -> String {
        (0..self.len())
            .map(|i| {
                let log = self.log(i);
                let v: Vec<&str> = log.lines().collect();
                format!(
                    "--- etcd member {i} ({}) log tail ---\n{}",
                    self.members[i].log_path.display(),
                    v[v.len().saturating_sub(lines)..].join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Is member `i`'s process running?
    pub fn is_running(&mut self, i: usize) -> bool {
        let m = &mut self.members[i];
        match m.child.as_mut() {
            None => false,
            Some(c) => match c.try_wait() {
                Ok(None) => true,
                _ => {
                    m.child = None;
                    false
                }
            },
        }
    }

    /// SIGKILLs member `i` (no-op if it is not running) and reaps it.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts member `i` again on the same ports with the same data dir (it rejoins from
    /// its WAL) and waits until it is back: `/health` true on it when a quorum of members
    /// runs, else until it answers HTTP at all (it cannot be healthy without a quorum).
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        let deadline = Instant::now() + ETCD_START_TIMEOUT;
        // The killed process's port may linger briefly; etcd sets SO_REUSEADDR, so this
        // normally succeeds at once, but retry if the member exits on a bind error.
        loop {
            self.spawn(i);
            let quorum = {
                let n = self.len();
                (0..n).filter(|&j| self.is_running(j)).count() > n / 2
            };
            let r = self.wait_member(i, quorum, deadline);
            match r {
                Ok(()) => return,
                Err(e) if !self.is_running(i) && Instant::now() < deadline => {
                    eprintln!("etcd member {i} exited on restart ({e}); retrying");
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => {
                    self.keep_dir_on_drop();
                    panic!(
                        "etcd member {i} did not come back: {e}\n{}",
                        self.log_tails(30)
                    );
                }
            }
        }
    }

    fn wait_member(
        &mut self,
        i: usize,
        need_health: bool,
        deadline: Instant,
    ) -> Result<(), String> {
        loop {
            if !self.is_running(i) {
                return Err(format!("member {i} exited"));
            }
            match self.health(i) {
                Ok(true) => return Ok(()),
                Ok(false) if !need_health => return Ok(()),
                _ => {}
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "member {i} not {} after {:?}",
                    if need_health { "healthy" } else { "answering" },
                    ETCD_START_TIMEOUT
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until every running member answers `/health` with `{"health":"true"}`.
    pub fn wait_all_healthy(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        for i in 0..self.len() {
            if self.members[i].child.is_some() {
                self.wait_member(i, true, deadline)?;
            }
        }
        Ok(())
    }

    /// `GET /health` on member `i`: Ok(true) for `{"health":"true"}`, Ok(false) for any
    /// other answer (etcd answers 503 `{"health":"false"}` without a leader), Err if it
    /// does not answer (down, or no answer within the helpers' timeout).
    pub fn health(&self, i: usize) -> Result<bool, String> {
        let url = format!("{}/health", self.client_urls()[i]);
        let body = match self.agent.get(&url).call() {
            Ok(r) => r.into_string().map_err(|e| e.to_string())?,
            Err(ureq::Error::Status(_, r)) => r.into_string().unwrap_or_default(),
            Err(e) => return Err(e.to_string()),
        };
        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        Ok(v["health"] == "true")
    }

    /// Index of the member that is the raft leader, as the first running member that
    /// answers `/v3/maintenance/status` sees it; None if none knows a leader.
    pub fn leader(&mut self) -> Option<usize> {
        let mut ids = vec![None; self.len()];
        let mut leader = None;
        for (i, id) in ids.iter_mut().enumerate() {
            if !self.is_running(i) {
                continue;
            }
            if let Ok(v) = self.gateway(i, "/v3/maintenance/status", &json!({})) {
                *id = Some(etcd_u64(&v["header"]["member_id"]));
                let l = etcd_u64(&v["leader"]);
                if l != 0 && leader.is_none() {
                    leader = Some(l);
                }
            }
        }
        let leader = leader?;
        ids.iter().position(|id| *id == Some(leader))
    }

    /// Index of a running member that is not the leader (needs a leader).
    pub fn follower(&mut self) -> Option<usize> {
        let l = self.leader()?;
        (0..self.len()).find(|&i| i != l && self.is_running(i))
    }

    /// POSTs `body` to the JSON gateway path (e.g. `/v3/kv/range`) of member `i`.
    /// Err names the member, the status and etcd's message; any non-200 is an Err.
    pub fn gateway(&self, i: usize, path: &str, body: &Value) -> Result<Value, String> {
        let url = format!("{}{path}", self.client_urls()[i]);
        let r = self
            .agent
            .post(&url)
            .set("content-type", "application/json")
            .send_string(&body.to_string());
        let text = match r {
            Ok(r) => r.into_string().map_err(|e| format!("{url}: {e}"))?,
            Err(ureq::Error::Status(code, r)) => {
                return Err(format!(
                    "{url}: HTTP {code}: {}",
                    r.into_string().unwrap_or_default()
                ))
            }
            Err(e) => return Err(format!("{url}: {e}")),
        };
        serde_json::from_str(&text).map_err(|e| format!("{url}: {e}: {text}"))
    }

    /// Put through member `i`.
    pub fn try_put_on(&self, i: usize, key: &str, value: &[u8]) -> Result<(), String> {
        self.gateway(
            i,
            "/v3/kv/put",
            &json!({"key": b64(key.as_bytes()), "value": b64(value)}),
        )
        .map(|_| ())
    }

    /// Linearizable get through member `i` (needs a quorum); Ok(None) if the key is absent.
    pub fn try_get_on(&self, i: usize, key: &str) -> Result<Option<Vec<u8>>, String> {
        let v = self.gateway(i, "/v3/kv/range", &json!({"key": b64(key.as_bytes())}))?;
        match v["kvs"].get(0) {
            None => Ok(None),
            // an empty value is omitted too
            Some(kv) => B64
                .decode(kv["value"].as_str().unwrap_or(""))
                .map(Some)
                .map_err(|e| format!("bad base64 value from etcd: {e}: {v}")),
        }
    }

    /// Every key under `prefix` via member `i`: (number of keys, bytes of keys + values).
    pub fn try_count_prefix_on(&self, i: usize, prefix: &str) -> Result<(u64, u64), String> {
        let v = self.gateway(
            i,
            "/v3/kv/range",
            &json!({"key": b64(prefix.as_bytes()),
                    "range_end": b64(&prefix_range_end(prefix.as_bytes()))}),
        )?;
        let mut bytes = 0u64;
        let kvs = v["kvs"].as_array().cloned().unwrap_or_default();
        for kv in &kvs {
            for f in ["key", "value"] {
                bytes += B64
                    .decode(kv[f].as_str().unwrap_or(""))
                    .map_err(|e| format!("bad base64 from etcd: {e}: {kv}"))?
                    .len() as u64;
            }
        }
        Ok((kvs.len() as u64, bytes))
    }

    /// Runs `f` on each running member in turn until one succeeds; panics with every error.
    fn on_any<T>(&mut self, what: &str, f: impl Fn(&Self, usize) -> Result<T, String>) -> T {
        let mut errs = Vec::new();
        for i in 0..self.len() {
            if !self.is_running(i) {
                continue;
            }
            match f(self, i) {
                Ok(v) => return v,
                Err(e) => errs.push(e),
            }
        }
        panic!("etcd {what} failed on every running member: {errs:#?}");
    }

    /// Put through the first running member that accepts it; panics if none does.
    pub fn put(&mut self, key: &str, value: &[u8]) {
        self.on_any(&format!("put {key}"), |c, i| c.try_put_on(i, key, value))
    }

    /// Linearizable get through the first running member that answers; panics if none does.
    pub fn get(&mut self, key: &str) -> Option<Vec<u8>> {
        self.on_any(&format!("get {key}"), |c, i| c.try_get_on(i, key))
    }

    /// (number of keys, bytes of keys + values) under `prefix`; panics if no member answers.
    pub fn count_prefix(&mut self, prefix: &str) -> (u64, u64) {
        self.on_any(&format!("range {prefix}"), |c, i| {
            c.try_count_prefix_on(i, prefix)
        })
    }

    /// For a cluster shared by every test of a process (kept in a static, so never
    /// dropped): starts a small watchdog that kills the members and removes the dir
    /// once this process has exited, however it ends. Only for clusters whose members
    /// are not restarted (it knows the members' current process ids).
    pub fn stop_when_process_exits(&self) {
        let mut args = vec![
            std::process::id().to_string(),
            self.dir.display().to_string(),
        ];
        args.extend(
            self.members
                .iter()
                .filter_map(|m| m.child.as_ref())
                .map(|c| c.id().to_string()),
        );
        Command::new("sh")
            .arg("-c")
            .arg(
                r#"parent=$1; dir=$2; shift 2
while kill -0 "$parent" 2>/dev/null; do sleep 0.5; done
kill -9 "$@" 2>/dev/null; sleep 0.5; rm -rf "$dir""#,
            )
            .arg("etcd-watchdog")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the etcd watchdog (sh)");
    }

    fn keep_dir_on_drop(&mut self) {
        self.token.clear(); // marker: Drop keeps the dir
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
        if self.token.is_empty() || std::thread::panicking() {
            eprintln!("etcd test dir kept: {}", self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// The Envoy cluster (one list item of `static_resources.clusters`, at column 0: put it in
/// a template with [`fill`], which indents it) for etcd members on 127.0.0.1 `ports`:
/// STATIC, round robin, plain HTTP/1.1 (the JSON gateway), active `/health` checks every
/// 0.2 s (one failure ejects, one success restores; also while the cluster has no
/// traffic) and outlier detection on the first gateway or connect failure, so a killed
/// member stops receiving callouts within about 0.2 s.
pub fn envoy_etcd_cluster_yaml(name: &str, ports: &[u16]) -> String {
    let mut y = format!(
        r#"- name: {name}
  type: STATIC
  connect_timeout: 0.25s
  lb_policy: ROUND_ROBIN
  typed_extension_protocol_options:
    envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
      "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
      explicit_http_config: {{ http_protocol_options: {{}} }}
  health_checks:
  - timeout: 0.5s
    interval: 0.2s
    no_traffic_interval: 0.2s
    unhealthy_threshold: 1
    healthy_threshold: 1
    http_health_check: {{ path: /health }}
  outlier_detection:
    consecutive_gateway_failure: 1
    consecutive_local_origin_failure: 1
    split_external_local_origin_errors: true
    base_ejection_time: 1s
  load_assignment:
    cluster_name: {name}
    endpoints:
    - lb_endpoints:
"#
    );
    for p in ports {
        y.push_str(&format!(
            "      - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {p} }} }} }}\n"
        ));
    }
    y
}
