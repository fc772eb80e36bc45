//! The shipped configurations (`envoy/envoy.yaml`, `envoy/fleet.yaml`,
//! `envoy/production.yaml`) at the network edge, run on Envoy with only their ports,
//! paths and placeholders made test-safe: slow requests (slowloris) are cut off within
//! their configured timeouts, a listener refuses connections beyond its limit, header
//! names with underscores are refused, and HTTPS answers carry HSTS.
//! See docs/security.md §3 and §4 and docs/deployment.md (limits at the edge).

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const DEMO_CLIENT: (&str, &str) = (
    "IZsIi6HDbB5e8VKdZAnUi_fZ3f8a",
    "Gm0bJ6oWV8fC5OQLLlC6jslACW8a",
);

/// `request_headers_timeout` and `request_timeout` of the shipped configurations.
const HEADERS_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// `envoy/fleet.yaml` as `envoy/run-fleet.sh` fills it, with free ports. No etcd runs:
/// the edge settings do not need one (its health checks just fail).
fn fleet() -> String {
    let yaml = std::fs::read_to_string(repo_root().join("envoy/fleet.yaml")).unwrap();
    replace_all(
        yaml,
        "envoy/fleet.yaml",
        &[
            ("${ADMIN_PORT}", "0".into()),
            ("${HTTP_PORT}", "0".into()),
            ("${HTTPS_PORT}", "0".into()),
            ("${DEMO_PORT}", "0".into()),
            (
                "filename: target/wasm32-wasip1/release/envoy_oauth2.wasm",
                "filename: {{WASM}}".into(),
            ),
            ("filename: .run/tls/", "filename: {{TLS_DIR}}/".into()),
        ],
    )
}

/// Starts the three shipped configurations at once (each compiles the module per worker).
fn start_shipped() -> (Envoy, Envoy, Envoy) {
    std::thread::scope(|s| {
        let demo = s.spawn(Envoy::from_demo_config);
        let fleet = s.spawn(|| Envoy::start(&fleet(), 2));
        let prod = s.spawn(|| Envoy::start(&production_for_test(), 2));
        (
            demo.join().unwrap(),
            fleet.join().unwrap(),
            prod.join().unwrap(),
        )
    })
}

/// What a trickling client saw: how long until the server closed, and what it answered.
struct Cut {
    after: Duration,
    answer: String,
}

/// Sends `head` at once, then `trickle` one byte a second, until the server closes the
/// connection or `give_up` passes (then `None`: the server kept it open).
fn trickle_plain(port: u16, head: &str, trickle: &[u8], give_up: Duration) -> Option<Cut> {
    let start = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    s.write_all(head.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let mut next_byte = 0;
    let mut next_at = start + Duration::from_secs(1);
    while start.elapsed() < give_up {
        let mut buf = [0u8; 4096];
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
        if Instant::now() >= next_at {
            next_at += Duration::from_secs(1);
            // A write can fail once the server has closed: the next read says so.
            let byte = trickle[next_byte % trickle.len()];
            next_byte += 1;
            let _ = s.write_all(&[byte]);
        }
    }
    (start.elapsed() < give_up).then(|| Cut {
        after: start.elapsed(),
        answer: String::from_utf8_lossy(&answer).into_owned(),
    })
}

/// [`trickle_plain`] over TLS, through `openssl s_client` (the harness has no TLS client).
fn trickle_tls(port: u16, head: &str, trickle: &[u8], give_up: Duration) -> Option<Cut> {
    let start = Instant::now();
    let mut child = Command::new("openssl")
        .args(["s_client", "-quiet", "-servername", "localhost", "-connect"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("-CAfile")
        .arg(tls_dir().join("cert.pem"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl (make setup installs it)");
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = stdout.read_to_end(&mut out);
        let _ = tx.send(out);
    });
    stdin.write_all(head.as_bytes()).unwrap();
    let _ = stdin.flush();
    let mut next_byte = 0;
    let mut next_at = start + Duration::from_secs(1);
    let cut = loop {
        if let Ok(Some(_)) = child.try_wait() {
            break Some(start.elapsed());
        }
        if start.elapsed() >= give_up {
            break None;
        }
        if Instant::now() >= next_at {
            next_at += Duration::from_secs(1);
            let byte = trickle[next_byte % trickle.len()];
            next_byte += 1;
            let _ = stdin.write_all(&[byte]);
            let _ = stdin.flush();
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = child.kill();
    let _ = child.wait();
    drop(stdin);
    let answer = rx.recv_timeout(Duration::from_secs(5)).unwrap_or_default();
    cut.map(|after| Cut {
        after,
        answer: String::from_utf8_lossy(&answer).into_owned(),
    })
}

fn assert_cut(what: &str, cut: Option<Cut>, timeout: Duration) {
    let cut = cut.unwrap_or_else(|| {
        panic!("{what}: the connection was still open well after the {timeout:?} timeout")
    });
    // Cut by the timeout (not at once by something else), and soon after it.
    assert!(
        cut.after >= timeout - Duration::from_secs(2)
            && cut.after <= timeout + Duration::from_secs(3),
        "{what}: closed after {:?}, expected about {timeout:?}; answer {:?}",
        cut.after,
        cut.answer
    );
    assert!(
        cut.answer.starts_with("HTTP/1.1 408"),
        "{what}: answer {:?}",
        cut.answer
    );
}

#[test]
fn every_shipped_config_cuts_off_headers_that_trickle_in() {
    let (demo, fleet, prod) = start_shipped();
    let head = "POST /token HTTP/1.1\r\nHost: localhost\r\nx-slow: ";
    let give_up = HEADERS_TIMEOUT + Duration::from_secs(6);
    let trickle = b"abcdefghijklmnopqrstuvwxyz";
    let (d, f, p) = std::thread::scope(|s| {
        let d = s.spawn(|| trickle_plain(demo.port("http"), head, trickle, give_up));
        let f = s.spawn(|| trickle_plain(fleet.port("http"), head, trickle, give_up));
        let p = s.spawn(|| trickle_tls(prod.port("https"), head, trickle, give_up));
        (d.join().unwrap(), f.join().unwrap(), p.join().unwrap())
    });
    assert_cut("envoy.yaml http", d, HEADERS_TIMEOUT);
    assert_cut("fleet.yaml http", f, HEADERS_TIMEOUT);
    assert_cut("production.yaml https", p, HEADERS_TIMEOUT);
    assert!(demo.counter("http.http.downstream_rq_header_timeout") >= 1);
}

#[test]
fn a_body_that_trickles_in_is_cut_off_by_the_request_timeout() {
    let demo = Envoy::from_demo_config();
    // Headers at once, then a byte a second of a 100-byte form: never idle long enough
    // for stream_idle_timeout, so request_timeout must end it.
    let head = "POST /token HTTP/1.1\r\nHost: localhost\r\n\
                content-type: application/x-www-form-urlencoded\r\ncontent-length: 100\r\n\r\n";
    let cut = trickle_plain(
        demo.port("http"),
        head,
        b"grant_type=client_credentials&",
        REQUEST_TIMEOUT + Duration::from_secs(6),
    );
    assert_cut("envoy.yaml http, slow body", cut, REQUEST_TIMEOUT);
}

#[test]
fn a_listener_refuses_connections_beyond_its_limit() {
    // The shipped per-listener limit, lowered so the test can reach it.
    let limit = "envoy.resource_limits.listener.http.connection_limit: 5000";
    let demo = Envoy::from_demo_config_with(2, |y| {
        assert!(
            y.contains(limit),
            "envoy/envoy.yaml no longer contains {limit:?}"
        );
        y.replace(
            limit,
            "envoy.resource_limits.listener.http.connection_limit: 3",
        )
    });
    let port = demo.port("http");
    let open: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    // Let Envoy accept the three before the fourth arrives.
    std::thread::sleep(Duration::from_millis(300));
    let mut extra = TcpStream::connect(("127.0.0.1", port)).unwrap();
    extra
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let mut buf = [0u8; 16];
    let closed = match extra.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    };
    assert!(closed, "a 4th connection stayed open over a limit of 3");
    let overflow: u64 = demo
        .stats()
        .lines()
        .filter(|l| {
            l.starts_with("listener.127.0.0.1_0.")
                || l.starts_with(&format!("listener.127.0.0.1_{port}."))
        })
        .filter_map(|l| {
            l.strip_prefix("listener.")
                .and_then(|l| l.split_once(".downstream_cx_overflow: "))
        })
        .filter_map(|(_, n)| n.trim().parse::<u64>().ok())
        .sum();
    assert!(overflow >= 1, "no downstream_cx_overflow counted");
    // Once the three close, Envoy serves again (it may take a moment to
    // notice the closes: retry for up to 5 s).
    drop(open);
    let url = format!("{}/callback", demo.base_url("http"));
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let status = loop {
        match try_request("GET", &url, &[], None) {
            Ok(r) => break r.status,
            Err(e) if std::time::Instant::now() > deadline => panic!("never served again: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    assert_eq!(status, 200);
}

/// GET over HTTPS with curl, HTTP/2 or HTTP/1.1: the status, or curl's exit code.
fn https_get(url: &str, header: (&str, &str), http2: bool) -> Result<u16, i32> {
    let out = Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "10",
        ])
        .arg(if http2 { "--http2" } else { "--http1.1" })
        .arg("--cacert")
        .arg(tls_dir().join("cert.pem"))
        .arg("-H")
        .arg(format!("{}: {}", header.0, header.1))
        .arg(url)
        .output()
        .expect("curl");
    match out.status.code() {
        Some(0) => Ok(String::from_utf8_lossy(&out.stdout).parse().unwrap_or(0)),
        code => Err(code.unwrap_or(-1)),
    }
}

#[test]
fn shipped_configs_refuse_underscored_headers_and_send_hsts_over_https() {
    let (demo, fleet, prod) = start_shipped();
    let https = format!("https://localhost:{}", demo.port("https"));
    let http = demo.base_url("http");
    let token = {
        let r = post_form(
            &format!("{http}/token"),
            &[("grant_type", "client_credentials")],
            &[("authorization", &basic_auth(DEMO_CLIENT.0, DEMO_CLIENT.1))],
        );
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()["access_token"].as_str().unwrap().to_string()
    };
    let bearer = format!("Bearer {token}");
    // The demo upstream sees the guard's identity...
    let r = get(&format!("{http}/api/hello"), &[("authorization", &bearer)]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["x-auth-client-id"], DEMO_CLIENT.0);
    // ...and a header spelled with an underscore is refused before any filter runs,
    // with or without a token, over HTTP and HTTPS, on every shipped config.
    for (name, value) in [("x_auth_user", "mallory"), ("x-auth_client-id", "evil")] {
        let r = get(
            &format!("{http}/api/hello"),
            &[("authorization", &bearer), (name, value)],
        );
        assert_eq!(r.status, 400, "{name}: {} {}", r.status, r.body);
        let r = get(
            &format!("{}/api/hello", fleet.base_url("http")),
            &[(name, value)],
        );
        assert_eq!(r.status, 400, "{name} on fleet.yaml: {}", r.body);
        for url in [
            format!("{https}/api/hello"),
            format!("https://localhost:{}/orders/1", prod.port("https")),
        ] {
            assert_eq!(
                https_get(&url, (name, value), false),
                Ok(400),
                "{url} {name}"
            );
            // HTTP/2 has no 400 for a header: the stream is reset.
            assert_eq!(
                https_get(&url, (name, value), true),
                Err(92),
                "{url} {name}"
            );
        }
    }
    assert!(demo.counter("http.http.downstream_rq_4xx") >= 2);

    // HSTS on HTTPS answers: the wasm filters' own (token endpoint, login page, guard)
    // and the routes'; never over plain HTTP.
    let hsts = |r: &Resp| r.header("strict-transport-security").map(str::to_string);
    let login = "/authorize?response_type=token&client_id=demo-spa&redirect_uri=http%3A%2F%2F127.0.0.1%3A8280%2Fcallback";
    for (what, url) in [
        ("demo", https.clone()),
        (
            "fleet",
            format!("https://localhost:{}", fleet.port("https")),
        ),
    ] {
        for (method, path) in [
            ("POST", "/token"),
            ("GET", login),
            ("GET", "/api/hello"),
            ("GET", "/callback"),
        ] {
            let r = curl(method, &format!("{url}{path}"), &[], None);
            // The fleet's /authorize needs etcd (503): its answer still carries HSTS.
            assert_eq!(
                hsts(&r).as_deref(),
                Some("max-age=3600"),
                "{what} {method} {path}: {} {:?}",
                r.status,
                r.headers
            );
        }
        let r = get(&format!("{http}/api/hello"), &[]);
        assert_eq!((r.status, hsts(&r)), (401, None));
    }
    let r = curl(
        "POST",
        &format!("https://localhost:{}/token", prod.port("https")),
        &[],
        None,
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(
        hsts(&r).as_deref(),
        Some("max-age=31536000; includeSubDomains")
    );
}
