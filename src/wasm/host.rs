//! The proxy-wasm host behind the core's traits, plus non-panicking helpers.
//! The SDK's trait conveniences (`get_http_request_header` & co.) `unwrap`
//! host results and panic on non-UTF-8 header values; a panic kills the
//! worker's VM, so the filters only use these.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType, MetricType, Status};

use crate::host::{
    Clock, HostRandomness, KvStore, RandomUnavailable, Randomness, Versioned, WriteError,
};

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

/// The root contexts' tick: counters are written to Envoy and the clock is read
/// at least this often.
pub const TICK: Duration = Duration::from_millis(50);
/// A clock reading serves later calls only while it is this far from the next
/// whole second: a tick may come late by this much and the second still be right.
const CLOCK_SLACK_MS: u32 = 50;
/// ... and for at most this many calls (bounds the error if ticks stall under load).
const CLOCK_REUSES: u32 = 64;

thread_local! {
    /// (seconds, milliseconds within the second, reuses left) of the last reading.
    static CLOCK: Cell<(u64, u32, u32)> = const { Cell::new((0, 1000, 0)) };
}

/// The host clock, read at most once per tick in most of each second: the
/// answer is always the current whole second. A reading is reused only while
/// it is more than a tick (+ slack) before the next second, so it cannot have
/// rolled over; in the last `TICK + CLOCK_SLACK_MS` of a second every call
/// reads the host clock.
pub struct HostClock;

impl HostClock {
    /// Reads the host clock (one host call) and keeps the reading.
    pub fn refresh() -> u64 {
        let now = hostcalls::get_current_time().unwrap_or_else(|_| SystemTime::now());
        let d = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        let ms = d.subsec_millis();
        let reuses = if ms + (TICK.as_millis() as u32) + CLOCK_SLACK_MS < 1000 {
            CLOCK_REUSES
        } else {
            0
        };
        CLOCK.with(|c| c.set((d.as_secs(), ms, reuses)));
        d.as_secs()
    }
}

impl HostClock {
    /// Milliseconds of the kept reading, reused as `now_secs` reuses it: at most
    /// a tick (or `CLOCK_REUSES` calls) old. For checks whose bound is far longer
    /// (the revocation feed's staleness limit), without a host call per request.
    pub fn recent_millis() -> u64 {
        let (mut secs, mut ms, reuses) = CLOCK.with(Cell::get);
        if reuses == 0 {
            HostClock::refresh();
            (secs, ms, _) = CLOCK.with(Cell::get);
        } else {
            CLOCK.with(|c| c.set((secs, ms, reuses - 1)));
        }
        secs.saturating_mul(1000).saturating_add(ms as u64)
    }
}

impl Clock for HostClock {
    fn now_millis(&self) -> u64 {
        now_millis()
    }

    fn now_secs(&self) -> u64 {
        let (secs, ms, reuses) = CLOCK.with(Cell::get);
        if reuses == 0 {
            return HostClock::refresh();
        }
        CLOCK.with(|c| c.set((secs, ms, reuses - 1)));
        secs
    }
}

/// Milliseconds since the Unix epoch (the revocation feed's clock).
pub fn now_millis() -> u64 {
    let now = hostcalls::get_current_time().unwrap_or_else(|_| SystemTime::now());
    now.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[link(wasm_import_module = "env")]
extern "C" {
    // The proxy-wasm ABI call behind the SDK's `get_map_bytes`, declared as the SDK does.
    fn proxy_get_header_map_pairs(
        map_type: MapType,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> Status;
}

/// The request headers as Envoy serializes them (`count u32 | (name_len u32,
/// value_len u32)* | (name NUL value NUL)*`, little-endian), read in ONE host
/// call and looked up in place: cheaper than two single reads (each of which
/// makes the host call back into Wasm to allocate), and it tells which headers
/// are absent, so absent identity headers need no remove call.
pub struct RequestHeaders {
    raw: Vec<u8>,
    /// The whole map parsed: otherwise its names are unknown (see `names`).
    valid: bool,
}

impl RequestHeaders {
    pub fn read() -> Self {
        let mut data: *mut u8 = std::ptr::null_mut();
        let mut size: usize = 0;
        // SAFETY: the host writes a pointer to `size` bytes it allocated with the SDK's
        // `proxy_on_memory_allocate` (a boxed slice of exactly `size` bytes), which we
        // take ownership of, as the SDK's own `get_map_bytes` does.
        let raw = unsafe {
            match proxy_get_header_map_pairs(MapType::HttpRequestHeaders, &mut data, &mut size) {
                Status::Ok if !data.is_null() => Vec::from_raw_parts(data, size, size),
                _ => Vec::new(),
            }
        };
        let mut h = RequestHeaders { raw, valid: false };
        h.valid = h.find("").is_ok();
        h
    }

    /// The first value of `name` (lower case); `None` if absent or the map is malformed.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.find(name).ok().flatten()
    }

    /// Every header name in order (duplicates repeated); `None` when the map is
    /// malformed.
    pub fn names(&self) -> Option<impl Iterator<Item = &[u8]>> {
        self.valid.then(|| HeaderNames {
            raw: &self.raw,
            index: 0,
            count: self.word(0).unwrap_or(0),
            data: self
                .word(0)
                .map_or(0, |c| c.saturating_mul(8).saturating_add(4)),
        })
    }

    fn word(&self, at: usize) -> Option<usize> {
        let w = self.raw.get(at..at.checked_add(4)?)?;
        Some(u32::from_le_bytes([w[0], w[1], w[2], w[3]]) as usize)
    }

    /// `Err` when the map is malformed (before `name` was found).
    fn find(&self, name: &str) -> Result<Option<&[u8]>, ()> {
        let b = &self.raw;
        let word = |at: usize| -> Option<usize> {
            let w = b.get(at..at.checked_add(4)?)?;
            Some(u32::from_le_bytes([w[0], w[1], w[2], w[3]]) as usize)
        };
        let range =
            |from: usize, len: usize| -> Option<&[u8]> { b.get(from..from.checked_add(len)?) };
        let walk = || -> Option<Option<&[u8]>> {
            let count = word(0)?;
            let mut data = count.checked_mul(8)?.checked_add(4)?;
            for i in 0..count {
                let klen = word(4 + i * 8)?;
                let vlen = word(8 + i * 8)?;
                let key = range(data, klen)?;
                let vstart = data.checked_add(klen)?.checked_add(1)?;
                let value = range(vstart, vlen)?;
                if !name.is_empty() && key == name.as_bytes() {
                    return Some(Some(value));
                }
                data = vstart.checked_add(vlen)?.checked_add(1)?;
            }
            Some(None)
        };
        walk().ok_or(())
    }
}

/// The names of a map that parsed (see [`RequestHeaders::names`]).
struct HeaderNames<'a> {
    raw: &'a [u8],
    index: usize,
    count: usize,
    /// Where the next key starts.
    data: usize,
}

impl<'a> Iterator for HeaderNames<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.index >= self.count {
            return None;
        }
        let word = |at: usize| -> Option<usize> {
            let w = self.raw.get(at..at.checked_add(4)?)?;
            Some(u32::from_le_bytes([w[0], w[1], w[2], w[3]]) as usize)
        };
        let klen = word(self.index.checked_mul(8)?.checked_add(4)?)?;
        let vlen = word(self.index.checked_mul(8)?.checked_add(8)?)?;
        let key = self.raw.get(self.data..self.data.checked_add(klen)?)?;
        self.data = self
            .data
            .checked_add(klen)?
            .checked_add(vlen)?
            .checked_add(2)?;
        self.index += 1;
        Some(key)
    }
}

/// Sets a request header known to be absent (one `add`, no lookup on the host side).
pub fn add_request_header(name: &str, value: &[u8]) {
    let _ = hostcalls::add_map_value_bytes(MapType::HttpRequestHeaders, name, value);
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

/// Writes an audit record as filter state (`wasm.oauth2.<field>`), where the
/// access log's `%FILTER_STATE(wasm.oauth2.event:PLAIN)%` prints it.
pub fn write_audit(record: &crate::audit::AuditRecord) {
    for (name, value) in record.fields() {
        set_filter_state(name, value.as_bytes());
    }
}

/// One filter state value of this request (`wasm.<name>`).
pub fn set_filter_state(name: &str, value: &[u8]) {
    let _ = hostcalls::set_property(vec![name], Some(value));
}

/// The downstream connection's peer, `ip:port`.
pub fn source_address() -> Option<String> {
    hostcalls::get_property(vec!["source", "address"])
        .ok()
        .flatten()
        .and_then(|v| String::from_utf8(v).ok())
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

/// A counter registered once ([`counter`]), bumped without a host call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counter(usize);

struct Slot {
    name: String,
    /// Envoy's id, once defined (at the first flush with something to add).
    id: Option<u32>,
    pending: u64,
}

#[derive(Default)]
struct Metrics {
    index: HashMap<String, usize>,
    slots: Vec<Slot>,
}

thread_local! {
    static METRICS: RefCell<Metrics> = RefCell::new(Metrics::default());
}

/// The counter named `name` (per VM, so per worker): adds up in Wasm memory,
/// written to Envoy by [`flush_counters`] on the tick. No host call.
pub fn counter(name: &str) -> Counter {
    METRICS.with(|m| {
        let mut m = m.borrow_mut();
        if let Some(i) = m.index.get(name) {
            return Counter(*i);
        }
        let i = m.slots.len();
        m.slots.push(Slot {
            name: name.to_string(),
            id: None,
            pending: 0,
        });
        m.index.insert(name.to_string(), i);
        Counter(i)
    })
}

/// Adds to a registered counter (no host call; Envoy sees it at the next tick).
pub fn bump(c: Counter, by: u64) {
    METRICS.with(|m| {
        if let Some(s) = m.borrow_mut().slots.get_mut(c.0) {
            s.pending += by;
        }
    });
}

/// Adds to the counter named `name` (registered on first use).
pub fn count(name: &str, by: u64) {
    if by == 0 {
        return;
    }
    bump(counter(name), by);
}

/// Writes what the counters added since the last flush to Envoy: one host call
/// per counter that moved (and one to define it, the first time). On the tick.
pub fn flush_counters() {
    METRICS.with(|m| {
        let Ok(mut m) = m.try_borrow_mut() else {
            return;
        };
        for s in m.slots.iter_mut().filter(|s| s.pending > 0) {
            let id = match s.id {
                Some(id) => id,
                None => match hostcalls::define_metric(MetricType::Counter, &s.name) {
                    Ok(id) => {
                        s.id = Some(id);
                        id
                    }
                    Err(_) => continue,
                },
            };
            if hostcalls::increment_metric(id, s.pending as i64).is_ok() {
                s.pending = 0;
            }
        }
    });
}

const RANDOM_BUFFER: usize = 256;

thread_local! {
    /// Host CSPRNG output not handed out yet (the tail `RANDOM_BUFFER - used` bytes).
    static RANDOM: RefCell<([u8; RANDOM_BUFFER], usize)> =
        const { RefCell::new(([0; RANDOM_BUFFER], RANDOM_BUFFER)) };
}

/// The host CSPRNG, read 256 bytes at a time: an issuance needs three draws
/// (bucket, grant id, secret; four with a refresh token), each a WASI
/// `random_get` host call when unbuffered. Bytes handed out are zeroed in the
/// buffer, so a secret never stays in it after it was drawn.
pub struct BufferedRandomness;

impl Randomness for BufferedRandomness {
    fn fill(&self, buf: &mut [u8]) -> Result<(), RandomUnavailable> {
        if buf.len() > RANDOM_BUFFER / 2 {
            return HostRandomness.fill(buf);
        }
        RANDOM.with(|r| {
            let Ok(mut r) = r.try_borrow_mut() else {
                return HostRandomness.fill(buf);
            };
            let (pool, used) = &mut *r;
            if RANDOM_BUFFER - *used < buf.len() {
                HostRandomness.fill(pool)?;
                *used = 0;
            }
            let end = *used + buf.len();
            buf.copy_from_slice(&pool[*used..end]);
            pool[*used..end].fill(0);
            *used = end;
            Ok(())
        })
    }
}
