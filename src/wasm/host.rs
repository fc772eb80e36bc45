//! The proxy-wasm host behind the core's traits, plus non-panicking helpers.
//! The SDK's trait conveniences (`get_http_request_header` & co.) `unwrap`
//! host results and panic on non-UTF-8 header values; a panic kills the
//! worker's VM, so the filters only use these.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType, MetricType, Status};

use crate::host::{Clock, KvStore, Versioned, WriteError};

/// Envoy shared data (one map per `vm_id`, shared by every worker).
pub struct SharedDataKv;

impl KvStore for SharedDataKv {
    fn get(&self, key: &str) -> Versioned {
        match hostcalls::get_shared_data(key) {
            Ok((value, cas)) => Versioned { value, cas },
            Err(_) => Versioned::default(),
        }
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), WriteError> {
        match hostcalls::set_shared_data(key, Some(value), cas) {
            Ok(()) => Ok(()),
            Err(Status::CasMismatch) => Err(WriteError::CasMismatch),
            Err(_) => Err(WriteError::Failed),
        }
    }
}

pub struct HostClock;

impl Clock for HostClock {
    fn now_secs(&self) -> u64 {
        let now = hostcalls::get_current_time().unwrap_or_else(|_| SystemTime::now());
        now.duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }
}

/// Milliseconds since the Unix epoch (the revocation feed's clock).
pub fn now_millis() -> u64 {
    let now = hostcalls::get_current_time().unwrap_or_else(|_| SystemTime::now());
    now.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub fn request_header(name: &str) -> Option<Vec<u8>> {
    hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, name)
        .ok()
        .flatten()
}

/// A header as text; a non-UTF-8 value counts as absent rather than panicking.
pub fn request_header_str(name: &str) -> Option<String> {
    request_header(name).and_then(|b| String::from_utf8(b).ok())
}

pub fn set_request_header(name: &str, value: Option<&[u8]>) {
    let _ = hostcalls::set_map_value_bytes(MapType::HttpRequestHeaders, name, value);
}

pub fn request_body(size: usize) -> Vec<u8> {
    hostcalls::get_buffer(BufferType::HttpRequestBody, 0, size)
        .ok()
        .flatten()
        .unwrap_or_default()
}

pub fn plugin_configuration() -> Vec<u8> {
    hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
        .ok()
        .flatten()
        .unwrap_or_default()
}

pub fn plugin_root_id() -> String {
    hostcalls::get_property(vec!["plugin_root_id"])
        .ok()
        .flatten()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

pub fn send_response(status: u16, headers: &[(String, String)], body: &[u8]) {
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let body = if body.is_empty() { None } else { Some(body) };
    if hostcalls::send_http_response(status as u32, headers, body).is_err() {
        log::warn!("could not send the local response");
    }
}

thread_local! {
    static METRICS: RefCell<HashMap<String, u32>> = RefCell::new(HashMap::new());
}

/// Adds to an Envoy counter, defining it on first use (per VM).
pub fn count(name: &str, by: u64) {
    if by == 0 {
        return;
    }
    METRICS.with(|m| {
        let mut m = m.borrow_mut();
        let id = match m.get(name) {
            Some(id) => *id,
            None => match hostcalls::define_metric(MetricType::Counter, name) {
                Ok(id) => {
                    m.insert(name.to_string(), id);
                    id
                }
                Err(_) => return,
            },
        };
        let _ = hostcalls::increment_metric(id, by as i64);
    });
}
