//! Issued tokens survive a plugin configuration change delivered by LDS from a
//! watched file: shared data belongs to the `vm_id` and lives as long as the
//! Envoy process, whatever the plugin configuration.

mod common;

use common::*;
use envoy_oauth2::config::secret_hash::hash_secret;
use std::path::Path;
use std::time::{Duration, Instant};

fn hash(s: &str) -> String {
    hash_secret(s.as_bytes(), b"lds-test-salt-16", 10_000)
}

fn listener(token_config: &str) -> String {
    let wasm = wasm_path();
    let wasm = wasm.to_string_lossy();
    let guard = r#"{"realm":"api","rules":[{"prefix":"/api/"}],"default_action":"allow"}"#;
    format!(
        r#"resources:
- "@type": type.googleapis.com/envoy.config.listener.v3.Listener
  name: http
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
  filter_chains:
  - filters:
    - name: envoy.filters.network.http_connection_manager
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
        stat_prefix: http
        route_config:
          virtual_hosts:
          - name: all
            domains: ["*"]
            routes:
            - match: {{ prefix: / }}
              direct_response: {{ status: 200, body: {{ inline_string: "upstream-ok" }} }}
        http_filters:
        - name: envoy.filters.http.wasm
          typed_config:
            "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
            config:
              name: oauth2_token
              root_id: oauth2_token
              allow_on_headers_stop_iteration: true
              vm_config: {{ vm_id: oauth2, runtime: envoy.wasm.runtime.v8, code: {{ local: {{ filename: "{wasm}" }} }} }}
              configuration: {{ "@type": type.googleapis.com/google.protobuf.StringValue, value: '{token_config}' }}
        - name: envoy.filters.http.wasm
          typed_config:
            "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
            config:
              name: oauth2_guard
              root_id: oauth2_guard
              vm_config: {{ vm_id: oauth2, runtime: envoy.wasm.runtime.v8, code: {{ local: {{ filename: "{wasm}" }} }} }}
              configuration: {{ "@type": type.googleapis.com/google.protobuf.StringValue, value: '{guard}' }}
        - name: envoy.filters.http.router
          typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }}
"#
    )
}

/// Atomic replace, so Envoy never reads half a file.
fn write_lds(dir: &Path, yaml: &str) {
    let tmp = dir.join("lds.yaml.tmp");
    std::fs::write(&tmp, yaml).unwrap();
    std::fs::rename(&tmp, dir.join("lds.yaml")).unwrap();
}

/// Envoy with `--concurrency 2` whose listeners come from `<dir>/lds.yaml`
/// (watched), first holding `listeners`; `tag` keeps parallel tests' dirs apart.
fn start_with_lds(tag: u32, listeners: &str) -> (Envoy, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("envoy-oauth2-lds-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    write_lds(&dir, listeners);
    let bootstrap = format!(
        r#"admin: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }} }}
node: {{ id: lds-test, cluster: lds-test }}
dynamic_resources:
  lds_config:
    resource_api_version: V3
    path_config_source:
      path: {0}/lds.yaml
      watched_directory: {{ path: {0} }}
"#,
        dir.display()
    );
    (Envoy::start(&bootstrap, 2), dir)
}

/// Waits until a client_credentials request by `id` gets `status` (the updated
/// listener is in force) and returns that listener's base URL.
fn once_in_force(e: &Envoy, id: &str, secret: &str, status: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let base = format!("http://127.0.0.1:{}", http_port(e));
        let r = post_form(
            &format!("{base}/token"),
            &[("grant_type", "client_credentials")],
            &[("authorization", &basic_auth(id, secret))],
        );
        if r.status == status {
            return base;
        }
        assert!(
            Instant::now() < deadline,
            "the new configuration never took effect:\n{}",
            e.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn http_port(e: &Envoy) -> u16 {
    let v = get(&format!("{}/listeners?format=json", e.admin_url()), &[]).json();
    v["listener_statuses"]
        .as_array()
        .and_then(|ls| ls.iter().find(|l| l["name"] == "http"))
        .and_then(|l| l["local_address"]["socket_address"]["port_value"].as_u64())
        .expect("listener http") as u16
}

#[test]
fn tokens_survive_a_listener_update_with_a_changed_plugin_configuration() {
    let one_client = format!(
        r#"{{"issuer":"http://127.0.0.1","realm":"v1","clients":[{{"client_id":"c1","secret_hash":"{}","grant_types":["client_credentials","password","refresh_token"],"scopes":["default"]}}],"users":[{{"username":"u","password_hash":"{}","scopes":["default"]}}]}}"#,
        hash("s1"),
        hash("pw")
    );
    let (e, dir) = start_with_lds(line!(), &listener(&one_client));
    let base = format!("http://127.0.0.1:{}", http_port(&e));
    let app = post_form(
        &format!("{base}/token"),
        &[("grant_type", "client_credentials")],
        &[("authorization", &basic_auth("c1", "s1"))],
    );
    assert_eq!(app.status, 200, "{}", app.body);
    let user = post_form(
        &format!("{base}/token"),
        &[
            ("grant_type", "password"),
            ("username", "u"),
            ("password", "pw"),
        ],
        &[("authorization", &basic_auth("c1", "s1"))],
    )
    .json();
    let app_token = app.json()["access_token"].as_str().unwrap().to_string();

    // A new client and another realm: a changed plugin configuration.
    let two_clients = one_client.replace(r#""realm":"v1""#, r#""realm":"v2""#).replace(
        r#""clients":["#,
        &format!(r#""clients":[{{"client_id":"c2","secret_hash":"{}","grant_types":["client_credentials"],"scopes":["default"]}},"#, hash("s2")),
    );
    let updates = e.stat("listener_manager.lds.update_success").unwrap_or(0);
    write_lds(&dir, &listener(&two_clients));
    let base = once_in_force(&e, "c2", "s2", 200);
    assert!(e.stat("listener_manager.lds.update_success").unwrap_or(0) > updates);
    // The new realm is in force...
    let r = post_form(
        &format!("{base}/token"),
        &[("grant_type", "client_credentials")],
        &[("authorization", &basic_auth("c1", "wrong"))],
    );
    assert_eq!(r.header("www-authenticate"), Some("Basic realm=\"v2\""));
    // ...and every token issued before the update still works, on both workers.
    for _ in 0..20 {
        let r = get(
            &format!("{base}/api/x"),
            &[("authorization", &format!("Bearer {app_token}"))],
        );
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let r = post_form(
        &format!("{base}/introspect"),
        &[("token", &app_token)],
        &[("authorization", &basic_auth("c1", "s1"))],
    );
    assert_eq!(r.json()["active"], true);
    let r = post_form(
        &format!("{base}/token"),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", user["refresh_token"].as_str().unwrap()),
        ],
        &[("authorization", &basic_auth("c1", "s1"))],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    drop(e);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Removing a client keeps its tokens (above); listing it in `revoked_clients`
/// ends all of them, at every worker's guard, while other clients keep theirs.
#[test]
fn revoked_clients_end_every_token_of_a_client_on_a_listener_update() {
    let client = |id: &str, secret: &str| {
        format!(
            r#"{{"client_id":"{id}","secret_hash":"{}","grant_types":["client_credentials","password","refresh_token"],"scopes":["default"]}}"#,
            hash(secret)
        )
    };
    let users = format!(
        r#""users":[{{"username":"u","password_hash":"{}","scopes":["default"]}}]"#,
        hash("pw")
    );
    let before = format!(
        r#"{{"issuer":"http://127.0.0.1","clients":[{},{}],{users}}}"#,
        client("leaked", "s1"),
        client("fine", "s2")
    );
    let (e, dir) = start_with_lds(line!(), &listener(&before));
    let base = format!("http://127.0.0.1:{}", http_port(&e));
    let token = |base: &str, id: &str, secret: &str, form: &[(&str, &str)]| {
        let r = post_form(
            &format!("{base}/token"),
            form,
            &[("authorization", &basic_auth(id, secret))],
        );
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()
    };
    let cc = [("grant_type", "client_credentials")];
    let password = [
        ("grant_type", "password"),
        ("username", "u"),
        ("password", "pw"),
    ];
    let leaked_app = token(&base, "leaked", "s1", &cc);
    let leaked_user = token(&base, "leaked", "s1", &password);
    let fine_app = token(&base, "fine", "s2", &cc);
    let api = |base: &str, t: &serde_json::Value| {
        let bearer = format!("Bearer {}", t["access_token"].as_str().unwrap());
        get(&format!("{base}/api/x"), &[("authorization", &bearer)]).status
    };
    // Cached as valid by the guard on both workers.
    for _ in 0..20 {
        for t in [&leaked_app, &leaked_user, &fine_app] {
            assert_eq!(api(&base, t), 200);
        }
    }

    let after = format!(
        r#"{{"issuer":"http://127.0.0.1","clients":[{}],"revoked_clients":["leaked"],{users}}}"#,
        client("fine", "s2")
    );
    write_lds(&dir, &listener(&after));
    let base = once_in_force(&e, "leaked", "s1", 401);
    for _ in 0..20 {
        assert_eq!(api(&base, &leaked_app), 401);
        assert_eq!(api(&base, &leaked_user), 401);
        assert_eq!(api(&base, &fine_app), 200);
    }
    assert!(
        e.log()
            .contains("revoked_clients: revoked 2 grants of leaked"),
        "{}",
        e.log()
    );
    drop(e);
    let _ = std::fs::remove_dir_all(&dir);
}
