//! The deployment examples in `envoy/` are real: the production-shaped config
//! runs on Envoy (with test paths, ports and a known secret), and the Istio
//! resources have the right shape and carry configurations the filters accept.

mod common;

use common::*;
use envoy_oauth2::config::guard::GuardConfig;
use envoy_oauth2::config::secret_hash::hash_secret;
use envoy_oauth2::config::TokenConfig;

#[test]
fn production_config_runs_tls_only_with_prometheus_stats() {
    let yaml = production_for_test();
    assert!(!yaml.contains("\"users\""), "no demo users in production");
    let e = Envoy::start(&yaml, 2);
    let base = format!("https://localhost:{}", e.port("https"));
    let r = curl(
        "POST",
        &format!("{base}/token"),
        &[
            (
                "authorization",
                &basic_auth("orders-service", "orders-secret"),
            ),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        Some(b"grant_type=client_credentials"),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["scope"], "orders.read");
    assert_eq!(r.json()["expires_in"], 900);
    let token = r.json()["access_token"].as_str().unwrap().to_string();
    let r = curl(
        "GET",
        &format!("{base}/.well-known/oauth-authorization-server"),
        &[],
        None,
    );
    assert_eq!(r.json()["token_endpoint"], "https://auth.example.com/token");
    // The guard protects /orders/ (no backend runs, so a pass shows as 503 from the router).
    let r = curl("GET", &format!("{base}/orders/1"), &[], None);
    assert_eq!(r.status, 401);
    let r = curl(
        "GET",
        &format!("{base}/orders/1"),
        &[("authorization", &format!("Bearer {token}"))],
        None,
    );
    assert_eq!(r.status, 503, "{}", r.body);
    let r = curl(
        "DELETE",
        &format!("{base}/orders/1"),
        &[("authorization", &format!("Bearer {token}"))],
        None,
    );
    assert_eq!(r.status, 403);
    // Plain HTTP is not served on the TLS port.
    assert!(try_request(
        "GET",
        &format!("http://127.0.0.1:{}/token", e.port("https")),
        &[],
        None
    )
    .map_or(true, |r| r.status != 200));
    // Our counters in Prometheus form (written to Envoy on the filters' 50 ms tick).
    std::thread::sleep(std::time::Duration::from_millis(150));
    let prom = get(&format!("{}/stats/prometheus", e.admin_url()), &[]).body;
    for name in [
        "oauth2_token_issued_client_credentials",
        "oauth2_guard_denied_missing_token",
        "oauth2_guard_allowed",
    ] {
        assert!(
            prom.lines().any(|l| l.starts_with(name)),
            "{name} missing from /stats/prometheus"
        );
    }
}

fn yaml_docs(path: &str) -> Vec<serde_yaml::Value> {
    let text = std::fs::read_to_string(repo_root().join(path)).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect()
}

#[test]
fn istio_resources_have_the_right_shape_and_configurations_the_filters_accept() {
    let docs = yaml_docs("envoy/istio-wasmplugin.yaml");
    let plugins: Vec<&serde_yaml::Value> =
        docs.iter().filter(|d| d["kind"] == "WasmPlugin").collect();
    assert_eq!(plugins.len(), 2);
    let mut root_ids = Vec::new();
    for p in &plugins {
        assert_eq!(p["apiVersion"], "extensions.istio.io/v1alpha1");
        assert_eq!(p["spec"]["phase"], "AUTHN");
        assert_eq!(p["spec"]["failStrategy"], "FAIL_CLOSE");
        assert_eq!(
            p["spec"]["url"], plugins[0]["spec"]["url"],
            "both filters come from one .wasm"
        );
        let root_id = p["spec"]["pluginName"].as_str().unwrap();
        // pluginConfig reaches the filter as JSON.
        let json = serde_json::to_string(&p["spec"]["pluginConfig"]).unwrap();
        match root_id {
            "oauth2_token" => {
                let json = json.replace(
                    PRODUCTION_PLACEHOLDER_HASH,
                    &hash_secret(b"x", b"istio-test-salt!", 10_000),
                );
                TokenConfig::parse(json.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
            }
            "oauth2_guard" => {
                GuardConfig::parse(json.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
            }
            other => panic!("unexpected pluginName {other}"),
        }
        root_ids.push(root_id);
    }
    root_ids.sort();
    assert_eq!(root_ids, ["oauth2_guard", "oauth2_token"]);
    // The token endpoint runs first (higher priority) and gets the settings WasmPlugin lacks.
    let prio = |id: &str| {
        plugins
            .iter()
            .find(|p| p["spec"]["pluginName"] == id)
            .unwrap()["spec"]["priority"]
            .as_i64()
            .unwrap()
    };
    assert!(prio("oauth2_token") > prio("oauth2_guard"));
    let filter = docs
        .iter()
        .find(|d| d["kind"] == "EnvoyFilter")
        .expect("EnvoyFilter");
    let patches = filter["spec"]["configPatches"].as_sequence().unwrap();
    let config_of = |name: &str| {
        patches
            .iter()
            .find(|p| p["match"]["configName"] == format!("istio-system.{name}").as_str())
            .unwrap_or_else(|| panic!("no patch for {name}"))["patch"]["value"]["typed_config"]
            ["config"]
            .clone()
    };
    let token = config_of("oauth2-token");
    assert_eq!(token["allow_on_headers_stop_iteration"], true);
    assert_eq!(
        token["vm_config"]["vm_id"],
        config_of("oauth2-guard")["vm_config"]["vm_id"]
    );
}

#[test]
fn production_filter_configurations_are_accepted_by_the_filters() {
    // The same check as for Istio, on the plain Envoy file: pull the two JSON blocks out.
    let yaml = production_for_test();
    let docs: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
    let filters = &docs["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"]["http_filters"];
    // Found by root_id: other filters (HSTS) come first.
    let config = |root_id: &str| {
        filters
            .as_sequence()
            .unwrap()
            .iter()
            .map(|f| &f["typed_config"]["config"])
            .find(|c| c["root_id"] == root_id)
            .unwrap_or_else(|| panic!("no {root_id} filter"))["configuration"]["value"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let token =
        TokenConfig::parse(config("oauth2_token").as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    assert!(token.users.is_empty());
    let guard =
        GuardConfig::parse(config("oauth2_guard").as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    assert!(guard.hide_credentials);
}

#[test]
fn envoy_gateway_policy_loads_one_pinned_image_with_configurations_the_filters_accept() {
    let docs = yaml_docs("envoy/envoy-gateway-extension-policy.yaml");
    let policy = docs
        .iter()
        .find(|d| d["kind"] == "EnvoyExtensionPolicy")
        .expect("EnvoyExtensionPolicy");
    let wasm = policy["spec"]["wasm"].as_sequence().unwrap();
    assert_eq!(wasm.len(), 2);
    let fast = envoy_oauth2::config::secret_hash::hash_generated_secret(b"x", b"eg-test-salt-16!");
    for w in wasm {
        assert_eq!(w["failOpen"], false);
        let url = w["code"]["image"]["url"].as_str().unwrap();
        assert!(url.contains("@sha256:"), "pinned by digest: {url}");
        assert_eq!(url, wasm[0]["code"]["image"]["url"].as_str().unwrap());
        let json = serde_json::to_string(&w["config"]).unwrap();
        match w["rootID"].as_str().unwrap() {
            "oauth2_token" => {
                let json = json.replace(
                    "$hmac-sha256$REPLACE+WITH+make+client+secret$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                    &fast,
                );
                TokenConfig::parse(json.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
            }
            "oauth2_guard" => {
                GuardConfig::parse(json.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
            }
            other => panic!("unexpected rootID {other}"),
        }
    }
    let patch = docs
        .iter()
        .find(|d| d["kind"] == "EnvoyPatchPolicy")
        .expect("EnvoyPatchPolicy");
    let paths: Vec<&str> = patch["spec"]["jsonPatches"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| p["operation"]["path"].as_str().unwrap())
        .collect();
    assert!(paths
        .iter()
        .any(|p| p.ends_with("allow_on_headers_stop_iteration")));
    assert_eq!(paths.iter().filter(|p| p.ends_with("vm_id")).count(), 2);
}
