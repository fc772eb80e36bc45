//! Integration-test harness: starts a real Envoy (`.venv/bin/envoy`, from `make setup`)
//! with a YAML template, finds its ports, and offers small HTTP helpers.
//!
//! Use from `tests/*.rs` with `mod common;`.
//!
//! Templates
//! - Every listener and the admin should use `port_value: 0`; the bound ports are read
//!   back from the admin API (`/listeners?format=json`), so parallel tests never collide.
//! - Built-in placeholders: `{{WASM}}` (absolute path of the release .wasm),
//!   `{{TLS_DIR}}` (absolute `.run/tls`), `{{RUN_DIR}}` (this Envoy's private temp dir).
//! - Test-specific placeholders (e.g. `{{TOKEN_CONFIG}}`) are filled with [`fill`], which
//!   indents multi-line values (JSON) to the placeholder's column, so they can sit inside
//!   a YAML block scalar (`value: |`).
//!
//! Environment overrides: `ENVOY_BIN` (default `<repo>/.venv/bin/envoy`),
//! `ENVOY_OAUTH2_WASM` (default `<repo>/target/wasm32-wasip1/release/envoy_oauth2.wasm`),
//! `ENVOY_TEST_LOG_LEVEL` (default `info`).
#![allow(dead_code, unused_imports)]

pub mod authorize;
mod encoding;
mod envoy;
mod http;
pub mod jwt;
mod paths;
pub mod etcd;
pub mod etcd_driver;
pub mod fleet;
mod shipped;

pub use encoding::*;
pub use envoy::*;
pub use http::*;
pub use paths::*;
pub use shipped::*;

use std::time::Duration;

/// How long Envoy may take to become LIVE (V8 compiles the module once per worker).
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Per-request timeout of the HTTP helpers.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
