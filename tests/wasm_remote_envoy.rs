//! Envoy's own remote loading of the module (`vm_config.code.remote` with its
//! `sha256`): a real Envoy fetches the `.wasm` over HTTP from a server this
//! test runs, serves tokens with it, and refuses a module whose hash is not
//! the configured one.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use common::*;
use sha2::{Digest, Sha256};

const TOKEN_CONFIG: &str = r#"{"issuer":"http://127.0.0.1","clients":[{"client_id":"c","secret_hash":"$hmac-sha256$MDEyMzQ1Njc4OWFiY2RlZg$6RA8IMty/Jf9wfEpYPJOv6zHRUu1EvVU5Rky2d0hi/U","grant_types":["client_credentials"],"scopes":["default"]}]}"#;

/// Serves `body` to every request on a loopback port, from a thread.
fn serve(body: Vec<u8>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let mut conn = conn;
            let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/wasm\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = conn.write_all(head.as_bytes());
            let _ = conn.write_all(&body);
        }
    });
    port
}

fn remote_yaml(port: u16, sha256: &str) -> String {
    let local = r#"code: { local: { filename: "{{WASM}}" } }"#;
    let remote = format!(
        r#"code: {{ remote: {{ http_uri: {{ uri: "http://127.0.0.1:{port}/envoy_oauth2.wasm", cluster: wasm_server, timeout: 10s }}, sha256: "{sha256}" }} }}"#
    );
    let yaml = fill(&template("token_only.yaml"), "TOKEN_CONFIG", TOKEN_CONFIG);
    assert!(yaml.contains(local));
    let cluster = format!(
        "  clusters:\n  - name: wasm_server\n    type: STATIC\n    connect_timeout: 2s\n    load_assignment:\n      cluster_name: wasm_server\n      endpoints: [ {{ lb_endpoints: [ {{ endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }} }} }} ] }} ]\n"
    );
    yaml.replace(local, &remote) + &cluster
}

#[test]
fn envoy_loads_the_module_over_http_only_with_its_sha256() {
    let module = std::fs::read(wasm_path()).unwrap();
    let sha = hex(&Sha256::digest(&module));
    let port = serve(module);
    let secret = "test-client-secret";
    let e = Envoy::start(&remote_yaml(port, &sha), 1);
    let r = post_form(
        &format!("{}/token", e.base_url("http")),
        &[("grant_type", "client_credentials")],
        &[("authorization", &basic_auth("c", secret))],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    drop(e);

    // The same module, from the same server, under another hash: Envoy
    // discards what it fetched (it logs only that the fetch failed) and the
    // plugin fails closed.
    let wrong = hex(&Sha256::digest(b"another module"));
    let refused = "Plugin oauth2_token failed to load";
    match Envoy::try_start(&remote_yaml(port, &wrong), 1) {
        Err(log) => assert!(log.contains(refused), "{log}"),
        Ok(e) => {
            let r = try_request(
                "POST",
                &format!("{}/token", e.base_url("http")),
                &[
                    ("authorization", &basic_auth("c", secret)),
                    ("content-type", "application/x-www-form-urlencoded"),
                ],
                Some(b"grant_type=client_credentials"),
            );
            assert!(
                !matches!(&r, Ok(r) if r.status == 200),
                "a module with the wrong hash issued a token: {r:?}"
            );
            assert!(e.log().contains(refused), "{}", e.log());
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
