//! proxy-wasm entry: one root context per filter entry; its `root_id` says which
//! filter it is (`oauth2_token` or `oauth2_guard`). Both share the VM's shared
//! data when their filter entries use the same `vm_id`.

mod client_sweep;
mod guard_filter;
mod host;
mod remote;
mod stats;
mod token_filter;

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel};

use guard_filter::{GuardHttp, GuardShared};
use token_filter::{TokenHttp, TokenShared};

pub const TOKEN_ROOT_ID: &str = "oauth2_token";
pub const GUARD_ROOT_ID: &str = "oauth2_guard";

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(PluginRoot { role: None }) });
}}

enum Role {
    Token(Rc<TokenShared>),
    Guard(Rc<GuardShared>),
}

struct PluginRoot {
    role: Option<Role>,
}

impl Context for PluginRoot {
    /// Fleet mode: the answer to the guard's poll of the revocation log, or
    /// to the token filter's `revoked_clients` sweep.
    fn on_http_call_response(&mut self, _token: u32, headers: usize, body_size: usize, _: usize) {
        match &self.role {
            Some(Role::Guard(shared)) => shared.on_poll_answer(headers, body_size),
            Some(Role::Token(shared)) => shared.on_root_call_answer(headers, body_size),
            None => {}
        }
    }
}

impl RootContext for PluginRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let root_id = host::plugin_root_id();
        let config = host::plugin_configuration();
        let result = match root_id.as_str() {
            TOKEN_ROOT_ID => token_filter::configure(&config).map(Role::Token),
            GUARD_ROOT_ID => guard_filter::configure(&config).map(Role::Guard),
            other => {
                log::error!(
                    "unknown root_id `{other}`: use `{TOKEN_ROOT_ID}` or `{GUARD_ROOT_ID}`"
                );
                return false;
            }
        };
        match result {
            Ok(role) => {
                self.role = Some(role);
                // Counters and the clock are per-worker state refreshed on the tick.
                let _ = proxy_wasm::hostcalls::set_tick_period(host::TICK);
                true
            }
            Err(e) => {
                // One line naming the field; Envoy then refuses the configuration.
                log::error!("{root_id}: {e}");
                false
            }
        }
    }

    /// Writes the worker's counters to Envoy and reads the clock (see `host`);
    /// in fleet mode the guard polls the revocation log.
    fn on_tick(&mut self) {
        host::HostClock::refresh();
        host::flush_counters();
        match &self.role {
            Some(Role::Guard(shared)) => shared.on_tick(),
            Some(Role::Token(shared)) => shared.on_tick(),
            None => {}
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        match &self.role {
            Some(Role::Token(shared)) => Some(Box::new(TokenHttp::new(shared.clone()))),
            Some(Role::Guard(guard)) => Some(Box::new(GuardHttp::new(guard.clone()))),
            None => None,
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
