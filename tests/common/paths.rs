//! Where things are: the repo, the Envoy binary, the built .wasm, the TLS
//! files, and the YAML templates with their placeholders.
#![allow(dead_code, unused_imports)]

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::*;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn envoy_bin() -> PathBuf {
    let p = std::env::var_os("ENVOY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv/bin/envoy"));
    if !p.exists() {
        panic!(
            "Envoy binary {} not found: run `make setup` first",
            p.display()
        );
    }
    p
}

/// Absolute path of the release .wasm; panics if it was not built.
pub fn wasm_path() -> PathBuf {
    let p = std::env::var_os("ENVOY_OAUTH2_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/wasm32-wasip1/release/envoy_oauth2.wasm"));
    if !p.exists() {
        panic!("{} not found: run `make build` first", p.display());
    }
    p
}

/// Absolute `.run/tls` (cert.pem, key.pem); panics if the cert was not made.
pub fn tls_dir() -> PathBuf {
    let d = repo_root().join(".run/tls");
    if !d.join("cert.pem").exists() || !d.join("key.pem").exists() {
        panic!(
            "{}/cert.pem or key.pem missing: run `make setup` first",
            d.display()
        );
    }
    d
}

/// Reads `tests/templates/<name>`.
pub fn template(name: &str) -> String {
    let p = repo_root().join("tests/templates").join(name);
    fs::read_to_string(&p).unwrap_or_else(|e| panic!("cannot read template {}: {e}", p.display()))
}

/// Replaces every `{{KEY}}` in `template` with `value`. When the placeholder is the first
/// thing on its line, the 2nd and later lines of `value` are indented to the placeholder's
/// column, so multi-line JSON stays inside a YAML block scalar. The first line of `value`
/// must not start with whitespace (YAML takes the block indentation from it).
pub fn fill(template: &str, key: &str, value: &str) -> String {
    let ph = format!("{{{{{key}}}}}");
    let mut out = String::with_capacity(template.len() + value.len());
    let mut rest = template;
    while let Some(pos) = rest.find(&ph) {
        let before = &rest[..pos];
        out.push_str(before);
        let line_start = out.rfind('\n').map(|i| i + 1).unwrap_or(0);
        let prefix = &out[line_start..];
        let indent = if prefix.chars().all(|c| c == ' ') {
            prefix.to_string()
        } else {
            String::new()
        };
        let value = value.trim_end_matches('\n');
        for (i, line) in value.split('\n').enumerate() {
            if i > 0 {
                out.push('\n');
                if !line.is_empty() {
                    out.push_str(&indent);
                }
            }
            out.push_str(line);
        }
        rest = &rest[pos + ph.len()..];
    }
    out.push_str(rest);
    out
}

/// [`fill`] for several keys.
pub fn fill_all(template: &str, vars: &[(&str, &str)]) -> String {
    vars.iter()
        .fold(template.to_string(), |t, (k, v)| fill(&t, k, v))
}

/// Placeholders `{{NAME}}` (NAME = [A-Z0-9_]+) still present in `s`.
pub(crate) fn unfilled_placeholders(s: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find("{{") {
        let after = &rest[i + 2..];
        if let Some(j) = after.find("}}") {
            let name = &after[..j];
            if !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
            {
                found.push(format!("{{{{{name}}}}}"));
            }
        }
        rest = after;
    }
    found
}
