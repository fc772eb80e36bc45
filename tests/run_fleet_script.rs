//! `envoy/run-fleet.sh` as an operator runs it (issue 18, D4), on free loopback ports and
//! a temp FLEET_DIR so it can run beside `make run-fleet` and other tests: a SIGKILLed
//! Envoy, and a SIGKILLed etcd member, are started again by the script's supervisor and
//! serve; SIGTERM to the script stops everything it started, and nothing is left.

mod common;

use common::etcd::free_ports;
use common::fleet::{self, until};
use common::*;
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Script {
    child: Child,
    dir: PathBuf,
    http: [u16; 2],
    admin: [u16; 2],
    etcd: [u16; 3],
}

impl Drop for Script {
    fn drop(&mut self) {
        // If the test failed midway: SIGKILL the supervisor; its children get SIGKILL from
        // the kernel (PR_SET_PDEATHSIG), which the test's last step proves.
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("run-fleet dir kept: {}", self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

fn start_script() -> Script {
    let p = free_ports(14);
    let dir = std::env::temp_dir().join(format!(
        "envoy-oauth2-run-fleet-{}-{}",
        std::process::id(),
        p[0]
    ));
    fs::create_dir_all(&dir).expect("temp dir");
    let pair = |a: u16, b: u16| format!("{a} {b}");
    let base = (20000 + std::process::id() % 20000) as u16;
    let child = Command::new("bash")
        .arg(repo_root().join("envoy/run-fleet.sh"))
        .env("ENVOY", envoy_bin())
        .env("WASM", wasm_path())
        .env("FLEET_DIR", &dir)
        .env("ETCD_CLIENT_PORTS", format!("{} {} {}", p[0], p[1], p[2]))
        .env("ETCD_PEER_PORTS", format!("{} {} {}", p[3], p[4], p[5]))
        .env("HTTP_PORTS", pair(p[6], p[7]))
        .env("HTTPS_PORTS", pair(p[8], p[9]))
        .env("ADMIN_PORTS", pair(p[10], p[11]))
        .env("DEMO_PORTS", pair(p[12], p[13]))
        .env("BASE_IDS", pair(base, base + 1))
        .env("SUPERVISE_BACKOFF_MAX", "2")
        .env("ENVOY_LOG_LEVEL", "warning")
        .stdin(Stdio::null())
        .stdout(fs::File::create(dir.join("script.out")).expect("script.out"))
        .stderr(fs::File::create(dir.join("script.err")).expect("script.err"))
        .spawn()
        .expect("spawn bash envoy/run-fleet.sh");
    Script {
        child,
        dir,
        http: [p[6], p[7]],
        admin: [p[10], p[11]],
        etcd: [p[0], p[1], p[2]],
    }
}

impl Script {
    fn out(&self) -> String {
        let o = fs::read_to_string(self.dir.join("script.out")).unwrap_or_default();
        let e = fs::read_to_string(self.dir.join("script.err")).unwrap_or_default();
        format!("{o}{e}")
    }

    /// `name -> pid` from the supervisor's pid file.
    fn pid_of(&self, name: &str) -> Option<u32> {
        let s = fs::read_to_string(self.dir.join("supervisor.pids")).ok()?;
        s.lines().find_map(|l| {
            let (n, p) = l.split_once(' ')?;
            (n == name).then(|| p.trim().parse().ok()).flatten()
        })
    }

    fn live(&self, n: usize) -> bool {
        try_request(
            "GET",
            &format!("http://127.0.0.1:{}/ready", self.admin[n]),
            &[],
            None,
        )
        .is_ok_and(|r| r.status == 200 && r.body.trim() == "LIVE")
    }

    /// A password grant on Envoy `n`; status 0 if the connection failed.
    fn token(&self, n: usize) -> Resp {
        let body = form_encode(&[
            ("grant_type", "password"),
            ("username", "admin"),
            ("password", "admin"),
            ("scope", "PRODUCTION"),
        ]);
        let auth = basic_auth(fleet::C1, fleet::S1);
        let headers = [
            ("authorization", auth.as_str()),
            ("content-type", "application/x-www-form-urlencoded"),
        ];
        let url = format!("http://127.0.0.1:{}/token", self.http[n]);
        try_request("POST", &url, &headers, Some(body.as_bytes())).unwrap_or_else(|e| Resp {
            status: 0,
            headers: Vec::new(),
            body: e,
        })
    }

    /// The guard's answer on Envoy `n`; 0 if it does not answer (down).
    fn api(&self, n: usize, at: &str) -> u16 {
        try_request(
            "GET",
            &format!("http://127.0.0.1:{}/api/hello", self.http[n]),
            &[("authorization", &format!("Bearer {at}"))],
            None,
        )
        .map_or(0, |r| r.status)
    }
}

/// (pid, start time in clock ticks since boot) of a running process: the pair names one
/// process even if its pid is reused later.
fn identity(pid: u32) -> Option<(u32, u64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 22 (starttime), counted after the ")" that closes the command name.
    let rest = &stat[stat.rfind(')')? + 1..];
    let start = rest.split_whitespace().nth(19)?.parse().ok()?;
    Some((pid, start))
}

/// Every process but `except` whose command line names `needle` (here: the test's unique
/// FLEET_DIR, which every etcd and Envoy the script starts has in its arguments).
fn processes_naming(needle: &str, except: u32) -> BTreeSet<(u32, u64)> {
    let mut found = BTreeSet::new();
    for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == except {
            continue;
        }
        let Ok(cmd) = fs::read(e.path().join("cmdline")) else {
            continue;
        };
        if String::from_utf8_lossy(&cmd).contains(needle) {
            if let Some(id) = identity(pid) {
                found.insert(id);
            }
        }
    }
    found
}

fn wait_for(what: &str, s: &Script, within: Duration, mut f: impl FnMut() -> bool) -> Duration {
    until(within, || {
        let ok = f();
        if !ok {
            std::thread::sleep(Duration::from_millis(100));
        }
        ok
    })
    .unwrap_or_else(|| panic!("{what} within {within:?}; script output:\n{}", s.out()))
}

fn dir_str(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn run_fleet_restarts_a_killed_envoy_and_etcd_member_and_leaves_nothing_on_stop() {
    let mut s = start_script();
    let needle = dir_str(&s.dir);
    wait_for("both Envoys LIVE", &s, Duration::from_secs(60), || {
        s.live(0) && s.live(1)
    });
    let script = s.child.id();
    let mut seen = processes_naming(&needle, script);
    assert_eq!(seen.len(), 5, "3 etcd + 2 Envoys: {seen:?}\n{}", s.out());

    // A token issued by A passes B.
    let r = s.token(0);
    assert_eq!(r.status, 200, "{}", r.body);
    let at = r.json()["access_token"]
        .as_str()
        .expect("access_token")
        .to_string();
    assert_eq!(s.api(1, &at), 200);

    // SIGKILL Envoy A: the supervisor starts a new one, which serves the fleet's tokens.
    let a = s.pid_of("envoy-A").expect("envoy-A in supervisor.pids");
    assert!(identity(a).is_some());
    let killed = Instant::now();
    Command::new("kill")
        .args(["-KILL", &a.to_string()])
        .status()
        .expect("kill");
    wait_for("envoy-A down", &s, Duration::from_secs(5), || {
        s.api(0, &at) != 200
    });
    wait_for("envoy-A back and LIVE", &s, Duration::from_secs(30), || {
        s.pid_of("envoy-A").is_some_and(|p| p != a) && s.live(0)
    });
    eprintln!(
        "envoy-A LIVE again {:.1} s after SIGKILL",
        killed.elapsed().as_secs_f64()
    );
    wait_for(
        "the restarted A validates B's token",
        &s,
        Duration::from_secs(10),
        || s.api(0, &at) == 200,
    );
    let r = s.token(0);
    assert_eq!(r.status, 200, "the restarted A issues: {}", r.body);
    let at2 = r.json()["access_token"]
        .as_str()
        .expect("access_token")
        .to_string();
    assert_eq!(s.api(1, &at2), 200);
    assert!(s.out().contains("envoy-A restarted"), "{}", s.out());
    // B was never touched.
    assert!(!s.out().contains("envoy-B restarted"), "{}", s.out());

    // SIGKILL an etcd member: it is started again and rejoins (healthy).
    let m = s.pid_of("etcd1").expect("etcd1 in supervisor.pids");
    Command::new("kill")
        .args(["-KILL", &m.to_string()])
        .status()
        .expect("kill");
    wait_for(
        "etcd1 back and healthy",
        &s,
        Duration::from_secs(30),
        || {
            s.pid_of("etcd1").is_some_and(|p| p != m)
                && get(&format!("http://127.0.0.1:{}/health", s.etcd[1]), &[])
                    .body
                    .contains(r#""health":"true""#)
        },
    );
    let now = processes_naming(&needle, script);
    assert_eq!(
        now.len(),
        5,
        "still 3 etcd + 2 Envoys: {now:?}\n{}",
        s.out()
    );
    seen.extend(now);
    assert_eq!(
        seen.len(),
        7,
        "5 first, then a new Envoy A and etcd1: {seen:?}"
    );

    // SIGTERM the script: it exits, and no process it ever started is left.
    Command::new("kill")
        .args(["-TERM", &s.child.id().to_string()])
        .status()
        .expect("kill -TERM");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(st) = s.child.try_wait().expect("try_wait") {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "script still running 20 s after SIGTERM\n{}",
            s.out()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "exit status {status:?}\n{}", s.out());
    let left: Vec<_> = seen
        .iter()
        .filter(|&&(pid, start)| identity(pid) == Some((pid, start)))
        .collect();
    assert!(left.is_empty(), "left running: {left:?}\n{}", s.out());
    let naming = processes_naming(&needle, 0);
    assert!(
        naming.is_empty(),
        "processes naming {needle} after stop: {naming:?}"
    );
    assert!(s.out().contains("nothing left running"), "{}", s.out());
}
