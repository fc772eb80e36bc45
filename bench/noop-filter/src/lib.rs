//! The trivial proxy-wasm HTTP filters of `make bench`. One module, two roots:
//!
//! - root_id `noop` (variant `noop-wasm`): every callback continues. What it
//!   costs is what any Wasm filter costs before doing any work: the floor.
//! - root_id `hostcalls` (variant `wasm-hostcalls`): no logic, but the host calls
//!   the bearer guard makes on a cache hit: read `:path`, `:method` and
//!   `authorization`, read one shared-data key (the revocation generation),
//!   increment two counters and set four request headers. guard-hit minus this
//!   is the cost of the guard's own code; this minus `noop` is the ABI's.
//!   A plugin configuration (comma list of `read`, `shared`, `metrics`, `write`,
//!   and the extra experiments `map`: one `get_http_request_headers` instead of
//!   three reads, `clock`: one clock read, `add`: four `add_header` instead of
//!   replacing) limits it to some of them, for breakdown experiments (variants
//!   `hc-*` of bench/run.py); none means the four of the guard-hit list.
//! - root_id `reply` (variant `wasm-reply`): waits for the whole request body,
//!   reads it, and answers locally with a fixed JSON 200 of a token response's
//!   size: the floor of any Wasm filter that answers POST /token itself.

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(BenchRoot { mode: Mode::Noop, hostcalls: false, metrics: [0, 0], ops: Ops::ALL })
    });
}}

#[derive(Clone, Copy)]
struct Ops {
    read: bool,
    shared: bool,
    metrics: bool,
    write: bool,
    map: bool,
    clock: bool,
    add: bool,
}

impl Ops {
    const ALL: Ops = Ops { read: true, shared: true, metrics: true, write: true, map: false, clock: false, add: false };

    fn parse(config: &[u8]) -> Ops {
        let text = String::from_utf8_lossy(config);
        let list: Vec<&str> = text.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
        if list.is_empty() {
            return Ops::ALL;
        }
        Ops {
            read: list.contains(&"read"),
            shared: list.contains(&"shared"),
            metrics: list.contains(&"metrics"),
            write: list.contains(&"write"),
            map: list.contains(&"map"),
            clock: list.contains(&"clock"),
            add: list.contains(&"add"),
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Noop,
    Hostcalls,
    Reply,
}

struct BenchRoot {
    mode: Mode,
    hostcalls: bool,
    metrics: [u32; 2],
    ops: Ops,
}

impl Context for BenchRoot {}

impl RootContext for BenchRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let root_id = hostcalls::get_property(vec!["plugin_root_id"])
            .ok()
            .flatten()
            .unwrap_or_default();
        self.mode = match root_id.as_slice() {
            b"hostcalls" => Mode::Hostcalls,
            b"reply" => Mode::Reply,
            _ => Mode::Noop,
        };
        self.hostcalls = self.mode == Mode::Hostcalls;
        if let Ok(Some(config)) = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX) {
            self.ops = Ops::parse(&config);
        }
        if self.hostcalls {
            for (i, name) in ["bench.hostcalls.a", "bench.hostcalls.b"].iter().enumerate() {
                self.metrics[i] = hostcalls::define_metric(MetricType::Counter, name).unwrap_or(0);
            }
        }
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        match self.mode {
            Mode::Hostcalls => Some(Box::new(HostcallsHttp { metrics: self.metrics, ops: self.ops })),
            Mode::Reply => Some(Box::new(ReplyHttp)),
            Mode::Noop => Some(Box::new(NoopHttp)),
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct NoopHttp;

impl Context for NoopHttp {}

impl HttpContext for NoopHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        Action::Continue
    }
}

struct HostcallsHttp {
    metrics: [u32; 2],
    ops: Ops,
}

impl Context for HostcallsHttp {}

impl HttpContext for HostcallsHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let h = MapType::HttpRequestHeaders;
        let mut n = 0;
        if self.ops.read {
            for name in [":path", ":method", "authorization"] {
                n += hostcalls::get_map_value_bytes(h, name).ok().flatten().map_or(0, |v| v.len());
            }
        }
        if self.ops.map {
            n += hostcalls::get_map_bytes(h).map_or(0, |m| m.len());
        }
        if self.ops.clock {
            n += hostcalls::get_current_time().map_or(0, |_| 1);
        }
        if self.ops.shared {
            let (generation, _cas) = hostcalls::get_shared_data("bench.generation").unwrap_or((None, None));
            n += generation.map_or(0, |v| v.len());
        }
        if self.ops.metrics {
            let _ = hostcalls::increment_metric(self.metrics[0], 1);
            let _ = hostcalls::increment_metric(self.metrics[1], 1);
        }
        if self.ops.write {
            let n = n.to_string();
            for name in ["x-bench-a", "x-bench-b", "x-bench-c", "x-bench-d"] {
                let _ = hostcalls::set_map_value_bytes(h, name, Some(n.as_bytes()));
            }
        }
        if self.ops.add {
            let n = n.to_string();
            for name in ["x-bench-a", "x-bench-b", "x-bench-c", "x-bench-d"] {
                let _ = hostcalls::add_map_value_bytes(h, name, n.as_bytes());
            }
        }
        Action::Continue
    }
}

struct ReplyHttp;

impl Context for ReplyHttp {}

/// About the size of a real client_credentials answer.
const TOKEN_JSON: &[u8] = br#"{"access_token":"oFZ8iL5cUg3uVd0zQ2m7yR1xN4bT6wH9kA0jP3sE5fG8hJ1lC4vB7nM2qX5tY8rW","token_type":"Bearer","expires_in":3600,"scope":"default"}"#;

impl ReplyHttp {
    fn answer(&self) -> Action {
        let headers = vec![("content-type", "application/json"), ("cache-control", "no-store")];
        let _ = hostcalls::send_http_response(200, headers, Some(TOKEN_JSON));
        Action::Pause
    }
}

impl HttpContext for ReplyHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        if end_of_stream {
            return self.answer();
        }
        Action::Pause
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !end_of_stream {
            return Action::Pause;
        }
        let _ = hostcalls::get_buffer(BufferType::HttpRequestBody, 0, body_size);
        self.answer()
    }
}
