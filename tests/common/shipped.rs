//! The shipped `envoy/production.yaml` made runnable in a test: free ports, the
//! test wasm and certificate, a known client secret and a local backend.
#![allow(dead_code)]

use envoy_oauth2::config::secret_hash::hash_secret;

use super::*;

/// The client `secret_hash` placeholder of the shipped production configs.
pub const PRODUCTION_PLACEHOLDER_HASH: &str =
    "$pbkdf2-sha256$i=600000$REPLACE+WITH+make+hash+secret$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

/// `yaml` with each `(from, to)` replaced; panics naming `file` when one is gone.
pub fn replace_all(mut yaml: String, file: &str, replacements: &[(&str, String)]) -> String {
    for (from, to) in replacements {
        assert!(yaml.contains(from), "{file} no longer contains {from:?}");
        yaml = yaml.replace(from, to);
    }
    yaml
}

/// `envoy/production.yaml` for a test; the client's secret is `orders-secret`.
pub fn production_for_test() -> String {
    let yaml = std::fs::read_to_string(repo_root().join("envoy/production.yaml")).unwrap();
    replace_all(
        yaml,
        "envoy/production.yaml",
        &[
            (
                "/etc/envoy/envoy_oauth2.wasm",
                wasm_path().to_string_lossy().into_owned(),
            ),
            ("/etc/envoy/tls", tls_dir().to_string_lossy().into_owned()),
            (
                PRODUCTION_PLACEHOLDER_HASH,
                hash_secret(b"orders-secret", b"production-test!", 10_000),
            ),
            ("port_value: 8443", "port_value: 0".into()),
            ("port_value: 9902", "port_value: 0".into()),
            // Admin (and the metrics listener's route to it) on a free port.
            (
                "address: { socket_address: { address: 127.0.0.1, port_value: 9901 } }",
                "address: { socket_address: { address: 127.0.0.1, port_value: 0 } }".into(),
            ),
            // No DNS in tests: the backend is a local address.
            ("type: STRICT_DNS", "type: STATIC".into()),
            (
                "address: backend.internal, port_value: 8080",
                "address: 127.0.0.1, port_value: 9".into(),
            ),
            ("0.0.0.0", "127.0.0.1".into()),
        ],
    )
}
