//! Proves the test harness itself (no wasm needed): Envoy starts on free ports, answers,
//! parallel Envoys do not collide, refused configs are reported, templates are filled.

mod common;

use common::*;
use std::time::Duration;

/// Plain listener `http` (direct responses + a Lua echo of content-type/method), TLS
/// listener `https`, and listener `side` on a unix socket with an extra TCP address.
const SMOKE: &str = r#"
admin:
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
          stat_prefix: smoke
          route_config: &routes
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: /echo }
                direct_response: { status: 500 }
              - match: { prefix: /missing }
                direct_response: { status: 404, body: { inline_string: "nope" } }
              - match: { prefix: / }
                direct_response: { status: 200, body: { inline_string: "smoke-ok" } }
                response_headers_to_add:
                - header: { key: X-Smoke, value: "1" }
          http_filters: &filters
          - name: envoy.filters.http.lua
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua
              default_source_code:
                inline_string: |
                  function envoy_on_request(h)
                    local p = h:headers():get(":path")
                    if p:sub(1, 5) ~= "/echo" then return end
                    local body = h:body()
                    local n = 0
                    if body ~= nil then n = body:length() end
                    h:respond({ [":status"] = "200", ["content-type"] = "application/json" },
                      string.format('{"method":"%s","content_type":"%s","len":%d}',
                        h:headers():get(":method"), h:headers():get("content-type") or "", n))
                  end
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  - name: https
    address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          common_tls_context:
            tls_certificates:
            - certificate_chain: { filename: "{{TLS_DIR}}/cert.pem" }
              private_key: { filename: "{{TLS_DIR}}/key.pem" }
      filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: smoke_tls
          route_config: *routes
          http_filters: *filters
  - name: side
    address: { pipe: { path: "{{RUN_DIR}}/side.sock" } }
    additional_addresses: [ { address: { socket_address: { address: 127.0.0.1, port_value: 0 } } } ]
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: side
          route_config: *routes
          http_filters: *filters
"#;

#[test]
fn starts_and_answers_on_concurrency_2() {
    let envoy = Envoy::start(SMOKE, 2);
    let url = format!("{}/hello", envoy.base_url("http"));
    let r = get(&url, &[]);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body, "smoke-ok");
    assert_eq!(r.header("X-SMOKE"), Some("1"));
    assert!(r.headers.iter().all(|(k, _)| *k == k.to_ascii_lowercase()));

    // 4xx is a normal response, not an error.
    let r = get(&format!("{}/missing", envoy.base_url("http")), &[]);
    assert_eq!((r.status, r.body.as_str()), (404, "nope"));

    // post_form sets the form content-type and encodes the pairs.
    let r = post_form(
        &format!("{}/echo", envoy.base_url("http")),
        &[("grant_type", "client_credentials"), ("scope", "a b")],
        &[],
    );
    assert_eq!(r.status, 200, "{r:?}");
    let j = r.json();
    assert_eq!(j["method"], "POST");
    assert_eq!(j["content_type"], "application/x-www-form-urlencoded");
    assert_eq!(j["len"], "grant_type=client_credentials&scope=a+b".len());
    let r = request(
        "PUT",
        &format!("{}/echo", envoy.base_url("http")),
        &[("content-type", "text/plain")],
        Some(b"xyz"),
    );
    assert_eq!(
        (r.json()["method"].as_str(), r.json()["len"].as_u64()),
        (Some("PUT"), Some(3))
    );

    // Unix-socket listener with an additional TCP address.
    assert!(matches!(
        envoy.listener("side").address,
        ListenerAddr::Pipe(_)
    ));
    let r = get(&format!("{}/", envoy.base_url("side")), &[]);
    assert_eq!(r.body, "smoke-ok");

    // HTTPS via curl, verified against the demo cert.
    let r = curl(
        "POST",
        &format!("{}/echo", envoy.base_url("https")),
        &[("content-type", "a/b")],
        Some(b"12345"),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["len"], 5);
    assert_eq!(r.json()["content_type"], "a/b");
    let r = curl("GET", &format!("{}/x", envoy.base_url("https")), &[], None);
    assert_eq!(
        (r.status, r.body.as_str(), r.header("x-smoke")),
        (200, "smoke-ok", Some("1"))
    );

    assert!(envoy.counter("http.smoke.downstream_rq_2xx") >= 3);
    assert!(envoy.counter("http.smoke.downstream_rq_4xx") >= 1);
    assert_eq!(envoy.stat("no.such.stat"), None);
    assert!(
        envoy.log().contains("starting main dispatch loop"),
        "{}",
        envoy.log()
    );
}

#[test]
fn parallel_envoys_get_different_ports() {
    let a = std::thread::spawn(|| Envoy::start(SMOKE, 2));
    let b = std::thread::spawn(|| Envoy::start(SMOKE, 2));
    let (a, b) = (a.join().unwrap(), b.join().unwrap());
    let ports = |e: &Envoy| [e.port("http"), e.port("https"), e.port("side")];
    let mut all: Vec<u16> = ports(&a).into_iter().chain(ports(&b)).collect();
    assert_ne!(a.admin_url(), b.admin_url());
    all.sort();
    all.dedup();
    assert_eq!(
        all.len(),
        6,
        "ports collide: {:?} {:?}",
        ports(&a),
        ports(&b)
    );
    assert_ne!(a.dir(), b.dir());
    for e in [&a, &b] {
        assert_eq!(
            get(&format!("{}/", e.base_url("http")), &[]).body,
            "smoke-ok"
        );
    }
}

#[test]
fn refused_config_is_reported_with_log() {
    let bad = SMOKE.replace(
        "direct_response: { status: 200, body: { inline_string: \"smoke-ok\" } }",
        "route: { cluster: no_such_cluster }",
    );
    let err = match Envoy::try_start(&bad, 1) {
        Ok(_) => panic!("Envoy accepted a route to an unknown cluster"),
        Err(log) => log,
    };
    assert!(err.contains("no_such_cluster"), "{err}");
}

#[test]
fn envoy_is_killed_on_drop() {
    let envoy = Envoy::start(SMOKE, 1);
    let url = format!("{}/", envoy.base_url("http"));
    let dir = envoy.dir().to_path_buf();
    drop(envoy);
    assert!(
        try_request("GET", &url, &[], None).is_err(),
        "Envoy still answers after drop"
    );
    assert!(!dir.exists(), "temp dir not removed");
}

#[test]
fn fill_indents_multiline_values() {
    let t = "a:\n  value: |\n    {{X}}\n  other: {{Y}}\n";
    let json = serde_json::to_string_pretty(&serde_json::json!({"k": [1, 2]})).unwrap();
    let out = fill_all(t, &[("X", &json), ("Y", "y")]);
    assert_eq!(out, "a:\n  value: |\n    {\n      \"k\": [\n        1,\n        2\n      ]\n    }\n  other: y\n");
}

#[test]
fn demo_config_rewrite_is_test_safe() {
    let y = demo_config_template();
    for fixed in ["9901", "8280", "8243", "8290"] {
        assert!(
            !y.contains(&format!("port_value: {fixed}")),
            "{fixed} left in:\n{y}"
        );
    }
    assert_eq!(y.matches("{{RUN_DIR}}/demo_api.sock").count(), 2);
    assert_eq!(y.matches("additional_addresses").count(), 1);
    assert!(y.contains("filename: {{WASM}}"));
    assert!(
        y.contains("filename: {{TLS_DIR}}/cert.pem") && y.contains("filename: {{TLS_DIR}}/key.pem")
    );
    assert!(!y.contains("filename: target/") && !y.contains("filename: .run/"));
}

#[test]
fn encoders() {
    assert_eq!(
        basic_auth(
            "IZsIi6HDbB5e8VKdZAnUi_fZ3f8a",
            "Gm0bJ6oWV8fC5OQLLlC6jslACW8a"
        ),
        "Basic SVpzSWk2SERiQjVlOFZLZFpBblVpX2ZaM2Y4YTpHbTBiSjZvV1Y4ZkM1T1FMTGxDNmpzbEFDVzhh"
    );
    assert_eq!(base64_encode(b""), "");
    assert_eq!(base64_encode(b"a"), "YQ==");
    assert_eq!(base64_encode(b"ab"), "YWI=");
    assert_eq!(
        form_encode(&[("a b", "x&y=z+é"), ("k", "")]),
        "a+b=x%26y%3Dz%2B%C3%A9&k="
    );
}

#[test]
fn wait_for_log_times_out() {
    let envoy = Envoy::start(SMOKE, 1);
    assert!(!envoy.wait_for_log("this line never appears", Duration::from_millis(100)));
}
