//! The trivial proxy-wasm HTTP filters of `make bench`. One module, two roots:
//!
//! - root_id `noop` (variant `noop-wasm`): every callback continues. What it
//!   costs is what any Wasm filter costs before doing any work: the floor.
//! - root_id `hostcalls` (variant `wasm-hostcalls`): no logic, but the host calls
//!   the bearer guard makes on a cache hit: read `:path`, `:method` and
//!   `authorization`, read one shared-data key (the revocation generation),
//!   increment two counters and set four request headers. guard-hit minus this
//!   is the cost of the guard's own code; this minus `noop` is the ABI's.

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MapType, MetricType};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(BenchRoot { hostcalls: false, metrics: [0, 0] })
    });
}}

struct BenchRoot {
    hostcalls: bool,
    metrics: [u32; 2],
}

impl Context for BenchRoot {}

impl RootContext for BenchRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let root_id = hostcalls::get_property(vec!["plugin_root_id"])
            .ok()
            .flatten()
            .unwrap_or_default();
        self.hostcalls = root_id == b"hostcalls";
        if self.hostcalls {
            for (i, name) in ["bench.hostcalls.a", "bench.hostcalls.b"].iter().enumerate() {
                self.metrics[i] = hostcalls::define_metric(MetricType::Counter, name).unwrap_or(0);
            }
        }
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        if self.hostcalls {
            Some(Box::new(HostcallsHttp { metrics: self.metrics }))
        } else {
            Some(Box::new(NoopHttp))
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
}

impl Context for HostcallsHttp {}

impl HttpContext for HostcallsHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let h = MapType::HttpRequestHeaders;
        let path = hostcalls::get_map_value_bytes(h, ":path").ok().flatten();
        let method = hostcalls::get_map_value_bytes(h, ":method").ok().flatten();
        let auth = hostcalls::get_map_value_bytes(h, "authorization").ok().flatten();
        let (generation, _cas) = hostcalls::get_shared_data("bench.generation").unwrap_or((None, None));
        let n = path.map_or(0, |v| v.len())
            + method.map_or(0, |v| v.len())
            + auth.map_or(0, |v| v.len())
            + generation.map_or(0, |v| v.len());
        let _ = hostcalls::increment_metric(self.metrics[0], 1);
        let _ = hostcalls::increment_metric(self.metrics[1], 1);
        let n = n.to_string();
        for name in ["x-bench-a", "x-bench-b", "x-bench-c", "x-bench-d"] {
            let _ = hostcalls::set_map_value_bytes(h, name, Some(n.as_bytes()));
        }
        Action::Continue
    }
}
