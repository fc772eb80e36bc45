//! HTTP helpers (ureq 2, plain HTTP; `curl` for HTTPS).
#![allow(dead_code, unused_imports)]

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::*;

#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    /// Names lowercased, in received order; repeated headers appear repeatedly.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// All values of header `name`.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .filter(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Body as JSON; panics with status and body if it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| {
            panic!(
                "response is not JSON ({e}): status {} body {:?}",
                self.status, self.body
            )
        })
    }
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(HTTP_TIMEOUT)
        .max_idle_connections(0) // a fresh connection per request
        .redirects(0)
        .build()
}

fn from_ureq(r: ureq::Response) -> Resp {
    let status = r.status();
    let mut headers = Vec::new();
    for name in r.headers_names() {
        for v in r.all(&name) {
            headers.push((name.to_ascii_lowercase(), v.to_string()));
        }
    }
    let mut buf = Vec::new();
    let _ = r.into_reader().take(64 << 20).read_to_end(&mut buf);
    Resp {
        status,
        headers,
        body: String::from_utf8_lossy(&buf).into_owned(),
    }
}

/// Any method; 4xx/5xx are normal responses; `Err` only for transport errors.
pub fn try_request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Result<Resp, String> {
    let mut req = agent().request(method, url);
    for (k, v) in headers {
        req = req.set(k, v);
    }
    let res = match body {
        Some(b) => req.send_bytes(b),
        None => req.call(),
    };
    match res {
        Ok(r) => Ok(from_ureq(r)),
        Err(ureq::Error::Status(_, r)) => Ok(from_ureq(r)),
        Err(e) => Err(format!("{method} {url}: {e}")),
    }
}

/// Like [`try_request`]; panics on transport errors.
pub fn request(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Resp {
    try_request(method, url, headers, body).unwrap_or_else(|e| panic!("{e}"))
}

pub fn get(url: &str, headers: &[(&str, &str)]) -> Resp {
    request("GET", url, headers, None)
}

fn has_header(headers: &[(&str, &str)], name: &str) -> bool {
    headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name))
}

/// POST `form` url-encoded, with `content-type: application/x-www-form-urlencoded`
/// unless `headers` has a content-type.
pub fn post_form(url: &str, form: &[(&str, &str)], headers: &[(&str, &str)]) -> Resp {
    post_body(url, &form_encode(form), headers)
}

/// POST a raw body, with `content-type: application/x-www-form-urlencoded` unless
/// `headers` has a content-type (use [`request`] to send none).
pub fn post_body(url: &str, body: &str, headers: &[(&str, &str)]) -> Resp {
    let mut h: Vec<(&str, &str)> = headers.to_vec();
    if !has_header(headers, "content-type") {
        h.push(("content-type", "application/x-www-form-urlencoded"));
    }
    request("POST", url, &h, Some(body.as_bytes()))
}

/// Request through `curl`: for the HTTPS listener (ureq is built without TLS; the server
/// is verified against `.run/tls/cert.pem`) and for header values ureq refuses to send
/// (non-ASCII bytes). Panics if curl fails.
pub fn curl(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Resp {
    curl_inner(None, method, url, headers, body)
}

/// [`curl`] from another loopback source address (e.g. `127.0.0.2`): a second
/// client, as Envoy's peer address tells them apart.
pub fn curl_from(
    source: &str,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Resp {
    curl_inner(Some(source), method, url, headers, body)
}

fn curl_inner(
    source: Option<&str>,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Resp {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let hdr_file =
        std::env::temp_dir().join(format!("envoy-oauth2-curl-{}-{n}.hdr", std::process::id()));
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "--max-time",
        &HTTP_TIMEOUT.as_secs().to_string(),
        "-X",
        method,
    ]);
    if url.starts_with("https:") {
        cmd.arg("--cacert").arg(tls_dir().join("cert.pem"));
    }
    if let Some(ip) = source {
        cmd.args(["--interface", ip]);
    }
    cmd.arg("-D").arg(&hdr_file).args(["-H", "Expect:"]);
    for (k, v) in headers {
        cmd.arg("-H").arg(format!("{k}: {v}"));
    }
    if body.is_some() {
        cmd.args(["--data-binary", "@-"]);
    }
    cmd.arg(url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn curl (make setup installs it)");
    {
        let mut stdin = child.stdin.take().unwrap();
        if let Some(b) = body {
            stdin.write_all(b).expect("write curl stdin");
        }
    }
    let out = child.wait_with_output().expect("curl");
    let raw = fs::read_to_string(&hdr_file).unwrap_or_default();
    let _ = fs::remove_file(&hdr_file);
    if !out.status.success() {
        panic!(
            "curl {method} {url} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // -D may hold several blocks (e.g. 100 Continue); the last one is the response.
    let block = raw.trim_end().rsplit("\r\n\r\n").next().unwrap_or("");
    let mut lines = block.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("curl: no status line in {raw:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Resp {
        status,
        headers,
        body: String::from_utf8_lossy(&out.stdout).into_owned(),
    }
}
