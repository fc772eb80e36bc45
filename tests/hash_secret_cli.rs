//! `make client-secret` and `make hash-secret` (the `hash-secret` binary): a
//! generated secret has 256 bits and a fast keyed hash that verifies it; a
//! human-chosen one gets PBKDF2.

use std::io::Write;
use std::process::{Command, Stdio};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use envoy_oauth2::config::secret_hash::SecretHash;

const BIN: &str = env!("CARGO_BIN_EXE_hash-secret");

fn field<'a>(out: &'a str, name: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(name))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {name} in {out:?}"))
}

#[test]
fn generate_prints_a_256_bit_secret_and_its_fast_hash() {
    let run = || {
        let out = Command::new(BIN).arg("--generate").output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    let (a, b) = (run(), run());
    let secret = field(&a, "client_secret:");
    assert_eq!(URL_SAFE_NO_PAD.decode(secret).unwrap().len(), 32);
    assert_ne!(secret, field(&b, "client_secret:"));
    let hash = SecretHash::parse(field(&a, "secret_hash:")).unwrap();
    assert!(field(&a, "secret_hash:").starts_with("$hmac-sha256$"));
    assert!(!hash.is_slow());
    assert!(hash.verify(secret.as_bytes()));
    assert!(!hash.verify(field(&b, "client_secret:").as_bytes()));
}

#[test]
fn a_chosen_secret_from_stdin_gets_pbkdf2() {
    let mut child = Command::new(BIN)
        .args(["--iterations", "10000"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"my password\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let hash = SecretHash::parse(text.trim()).unwrap();
    assert!(hash.is_slow());
    assert_eq!(hash.iterations(), 10_000);
    assert!(hash.verify(b"my password"));
    let bad = Command::new(BIN).arg("--bogus").output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
}
