//! A real Envoy process started from a template, its ports read back from the
//! admin API, killed when dropped.
#![allow(dead_code, unused_imports)]

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::*;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenerAddr {
    Tcp(u16),
    Pipe(String),
}

#[derive(Debug, Clone)]
pub struct Listener {
    pub address: ListenerAddr,
    /// Ports of `additional_addresses` (TCP only).
    pub additional_ports: Vec<u16>,
}

pub struct Envoy {
    child: Option<Child>,
    dir: PathBuf,
    log_path: PathBuf,
    admin: String,
    listeners: HashMap<String, Listener>,
    /// false: Drop leaves the temp dir alone (start_inner's caller owns it).
    cleanup: bool,
}

pub(crate) static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn unique_dir() -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "envoy-oauth2-{}-{}-{}",
        std::process::id(),
        n,
        nanos
    ));
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

fn tail(s: &str, lines: usize) -> String {
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

impl Envoy {
    /// Starts Envoy with `yaml_template` (built-in placeholders are filled here; fill your
    /// own first with [`fill`]). Panics with the Envoy log tail if it does not become LIVE.
    pub fn start(yaml_template: &str, concurrency: u32) -> Envoy {
        match Self::start_inner(yaml_template, concurrency) {
            Ok(e) => e,
            Err((msg, dir)) => {
                panic!("{msg}\n(temp dir kept: {})", dir.display())
            }
        }
    }

    /// Like [`Envoy::start`] but returns `Err(envoy log)` when Envoy refuses the config or
    /// does not become LIVE (for tests that expect a bad config to be rejected).
    pub fn try_start(yaml_template: &str, concurrency: u32) -> Result<Envoy, String> {
        match Self::start_inner(yaml_template, concurrency) {
            Ok(e) => Ok(e),
            Err((msg, dir)) => {
                let _ = fs::remove_dir_all(&dir);
                Err(msg)
            }
        }
    }

    /// `tests/templates/<name>` with `vars` filled, then [`Envoy::start`].
    pub fn start_template(name: &str, vars: &[(&str, &str)], concurrency: u32) -> Envoy {
        Self::start(&fill_all(&template(name), vars), concurrency)
    }

    /// `tests/templates/<name>` with `vars` filled, then [`Envoy::try_start`].
    pub fn try_start_template(
        name: &str,
        vars: &[(&str, &str)],
        concurrency: u32,
    ) -> Result<Envoy, String> {
        Self::try_start(&fill_all(&template(name), vars), concurrency)
    }

    /// The real demo config `envoy/envoy.yaml`, made test-safe by [`demo_config_template`],
    /// on concurrency 2. Listeners: `http`, `https`, `demo_api`.
    pub fn from_demo_config() -> Envoy {
        Self::from_demo_config_with(2, |y| y)
    }

    /// Like [`Envoy::from_demo_config`]; `edit` may change the YAML text first (e.g. replace
    /// the `__HASH_*__` placeholders).
    pub fn from_demo_config_with(concurrency: u32, edit: impl FnOnce(String) -> String) -> Envoy {
        Self::start(&edit(demo_config_template()), concurrency)
    }

    /// On error: (message with log tail, temp dir).
    fn start_inner(yaml_template: &str, concurrency: u32) -> Result<Envoy, (String, PathBuf)> {
        let envoy = envoy_bin();
        let dir = unique_dir();
        let mut yaml = yaml_template.to_string();
        if yaml.contains("{{WASM}}") {
            yaml = fill(&yaml, "WASM", &wasm_path().to_string_lossy());
        }
        if yaml.contains("{{TLS_DIR}}") {
            yaml = fill(&yaml, "TLS_DIR", &tls_dir().to_string_lossy());
        }
        yaml = fill(&yaml, "RUN_DIR", &dir.to_string_lossy());
        let left = unfilled_placeholders(&yaml);
        if !left.is_empty() {
            let _ = fs::remove_dir_all(&dir);
            panic!("unfilled placeholders in Envoy template: {left:?}");
        }

        let config = dir.join("envoy.yaml");
        let admin_file = dir.join("admin.txt");
        let log_path = dir.join("envoy.log");
        fs::write(&config, &yaml).expect("write envoy.yaml");
        // Envoy's own log goes to stderr (flushed per line, unlike --log-path which is
        // flushed on a timer); stdout (e.g. stdout access logs) goes to the same file.
        let log_file = fs::File::create(&log_path).expect("create envoy.log");
        let level = std::env::var("ENVOY_TEST_LOG_LEVEL").unwrap_or_else(|_| "info".into());
        let child = Command::new(&envoy)
            .current_dir(repo_root())
            .arg("-c")
            .arg(&config)
            .arg("--admin-address-path")
            .arg(&admin_file)
            .args([
                "--disable-hot-restart",
                "--concurrency",
                &concurrency.to_string(),
                // File access logs (the audit trail) flushed each second, not each 10.
                "--file-flush-interval-msec",
                "1000",
            ])
            .args(["--log-level", &level])
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("clone log fd"))
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {}: {e}", envoy.display()));

        let mut me = Envoy {
            child: Some(child),
            dir: dir.clone(),
            log_path,
            admin: String::new(),
            listeners: HashMap::new(),
            cleanup: true,
        };
        match me.wait_live(&admin_file) {
            Ok(()) => Ok(me),
            Err(why) => {
                me.kill();
                let log = me.log();
                let msg = format!(
                    "Envoy did not start: {why}\n--- config: {} ---\n--- envoy log (tail) ---\n{}",
                    config.display(),
                    tail(&log, 80)
                );
                // start() keeps the dir (and panics), try_start() removes it.
                me.cleanup = false;
                Err((msg, dir))
            }
        }
    }

    fn wait_live(&mut self, admin_file: &Path) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        // 1. admin address file
        loop {
            self.check_alive()?;
            if let Ok(s) = fs::read_to_string(admin_file) {
                let s = s.trim();
                if s.contains(':') {
                    self.admin = s.to_string();
                    break;
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "no admin address in {} after {:?}",
                    admin_file.display(),
                    START_TIMEOUT
                ));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        // 2. /ready == LIVE
        loop {
            self.check_alive()?;
            if let Ok(r) = try_request("GET", &format!("{}/ready", self.admin_url()), &[], None) {
                if r.status == 200 && r.body.trim() == "LIVE" {
                    break;
                }
            }
            if Instant::now() > deadline {
                return Err(format!("/ready not LIVE after {:?}", START_TIMEOUT));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        // 3. listener ports
        let r = try_request(
            "GET",
            &format!("{}/listeners?format=json", self.admin_url()),
            &[],
            None,
        )?;
        let v: serde_json::Value =
            serde_json::from_str(&r.body).map_err(|e| format!("/listeners: {e}: {}", r.body))?;
        for l in v["listener_statuses"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            let name = l["name"].as_str().unwrap_or_default().to_string();
            let address = parse_addr(&l["local_address"])
                .ok_or_else(|| format!("cannot parse listener {l}"))?;
            let additional_ports = l["additional_local_addresses"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| match parse_addr(x) {
                            Some(ListenerAddr::Tcp(p)) => Some(p),
                            _ => None,
                        })
                        .collect()
                })
                .unwrap_or_default();
            self.listeners.insert(
                name,
                Listener {
                    address,
                    additional_ports,
                },
            );
        }
        Ok(())
    }

    fn check_alive(&mut self) -> Result<(), String> {
        if let Some(c) = self.child.as_mut() {
            if let Ok(Some(status)) = c.try_wait() {
                return Err(format!("Envoy exited early with {status}"));
            }
        }
        Ok(())
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Is the Envoy process still running?
    pub fn is_running(&mut self) -> bool {
        self.check_alive().is_ok() && self.child.is_some()
    }

    pub fn listener(&self, name: &str) -> &Listener {
        self.listeners.get(name).unwrap_or_else(|| {
            panic!(
                "no listener named {name:?}; have {:?}",
                self.listeners.keys().collect::<Vec<_>>()
            )
        })
    }

    /// TCP port of listener `name` (its main address, else its first additional address).
    pub fn port(&self, name: &str) -> u16 {
        let l = self.listener(name);
        match &l.address {
            ListenerAddr::Tcp(p) => *p,
            ListenerAddr::Pipe(path) => *l.additional_ports.first().unwrap_or_else(|| {
                panic!("listener {name:?} is a unix socket ({path}) with no TCP port")
            }),
        }
    }

    /// `http://127.0.0.1:<port>`, or `https://...` for a listener named `https`.
    pub fn base_url(&self, name: &str) -> String {
        let scheme = if name == "https" { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port(name))
    }

    pub fn admin_url(&self) -> String {
        format!("http://{}", self.admin)
    }

    /// This Envoy's private temp dir (config, log, unix sockets).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The whole Envoy log so far.
    pub fn log(&self) -> String {
        fs::read(&self.log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Waits up to `timeout` for `needle` to appear in the log.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log().contains(needle) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Admin `/stats` (text). The filters add to their counters in Wasm memory and
    /// write them to Envoy on a 50 ms tick: wait for two ticks first.
    pub fn stats(&self) -> String {
        std::thread::sleep(std::time::Duration::from_millis(150));
        let r = get(&format!("{}/stats", self.admin_url()), &[]);
        assert_eq!(r.status, 200, "/stats: {}", r.body);
        r.body
    }

    /// Value of stat `name` (counter or gauge), None if absent.
    pub fn stat(&self, name: &str) -> Option<u64> {
        let prefix = format!("{name}: ");
        self.stats()
            .lines()
            .find_map(|l| l.strip_prefix(&prefix).and_then(|v| v.trim().parse().ok()))
    }

    /// Value of counter `name`; panics (listing similar names) if absent.
    pub fn counter(&self, name: &str) -> u64 {
        let stats = self.stats();
        let prefix = format!("{name}: ");
        if let Some(v) = stats
            .lines()
            .find_map(|l| l.strip_prefix(&prefix).and_then(|v| v.trim().parse().ok()))
        {
            return v;
        }
        let key = name.rsplit('.').next().unwrap_or(name);
        let similar: Vec<&str> = stats.lines().filter(|l| l.contains(key)).take(20).collect();
        panic!("no stat {name:?} in /stats; similar: {similar:#?}");
    }
}

fn parse_addr(v: &serde_json::Value) -> Option<ListenerAddr> {
    if let Some(p) = v["socket_address"]["port_value"].as_u64() {
        return Some(ListenerAddr::Tcp(p as u16));
    }
    v["pipe"]["path"]
        .as_str()
        .map(|p| ListenerAddr::Pipe(p.to_string()))
}

impl Drop for Envoy {
    fn drop(&mut self) {
        self.kill();
        if !self.cleanup {
            return;
        }
        if std::thread::panicking() {
            eprintln!(
                "Envoy test dir kept: {} (log: {})",
                self.dir.display(),
                self.log_path.display()
            );
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// `envoy/envoy.yaml` rewritten for tests: admin and listener ports 8280/8243/9901 -> 0;
/// the `demo_api` listener moves to a unix socket in the Envoy's private dir (the
/// `demo_api` cluster follows it) and keeps a TCP port via `additional_addresses` (port
/// 0); the relative wasm and cert paths become `{{WASM}}` / `{{TLS_DIR}}`.
/// Panics if the demo file no longer has the expected shape.
pub fn demo_config_template() -> String {
    let path = repo_root().join("envoy/envoy.yaml");
    let src =
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));

    fn replace_exact(s: &str, from: &str, to: &str, expected: usize) -> String {
        let n = s.matches(from).count();
        assert_eq!(n, expected, "envoy/envoy.yaml: expected {expected}x {from:?}, found {n}: update tests/common/mod.rs");
        s.replace(from, to)
    }
    let mut y = replace_exact(&src, "port_value: 9901 }", "port_value: 0 }", 1);
    y = replace_exact(&y, "port_value: 8280 }", "port_value: 0 }", 1);
    y = replace_exact(&y, "port_value: 8243 }", "port_value: 0 }", 1);
    let wasm_n = y
        .matches("filename: target/wasm32-wasip1/release/envoy_oauth2.wasm")
        .count();
    assert!(wasm_n >= 1, "envoy/envoy.yaml: wasm filename not found");
    y = y.replace(
        "filename: target/wasm32-wasip1/release/envoy_oauth2.wasm",
        "filename: {{WASM}}",
    );
    y = replace_exact(&y, "filename: .run/tls/", "filename: {{TLS_DIR}}/", 2);
    y = replace_exact(
        &y,
        "path: .run/access.log",
        "path: {{RUN_DIR}}/access.log",
        1,
    );

    // demo_api: listener (line after `- name: demo_api`) and cluster endpoint.
    let demo = "socket_address: { address: 127.0.0.1, port_value: 8290 }";
    let pipe = "pipe: { path: \"{{RUN_DIR}}/demo_api.sock\" }";
    let mut out = Vec::new();
    let (mut listener_done, mut endpoint_done) = (0, 0);
    let mut prev = "";
    for line in y.lines() {
        if line.contains(demo) {
            let indent = &line[..line.len() - line.trim_start().len()];
            if prev.trim() == "- name: demo_api" {
                out.push(line.replace(demo, pipe));
                out.push(format!(
                    "{indent}additional_addresses: [ {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }} }} ]"
                ));
                listener_done += 1;
            } else if prev.trim().trim_start_matches("- ") == "endpoint:" {
                out.push(line.replace(demo, pipe));
                endpoint_done += 1;
            } else {
                panic!("envoy/envoy.yaml: unexpected use of 127.0.0.1:8290: {line:?}");
            }
        } else {
            out.push(line.to_string());
        }
        if !line.trim().is_empty() {
            prev = line;
        }
    }
    assert_eq!(
        (listener_done, endpoint_done),
        (1, 1),
        "envoy/envoy.yaml: demo_api listener/endpoint not found"
    );
    let y = out.join("\n") + "\n";
    for l in y.lines() {
        if let Some(p) = l.split("port_value:").nth(1) {
            let p = p.trim_start();
            assert!(
                p.starts_with("0 ") || p.starts_with("0}"),
                "envoy/envoy.yaml: unhandled fixed port: {l:?}"
            );
        }
    }
    y
}
