//! Glue for the bearer guard filter (root_id `oauth2_guard`): on request
//! headers, strip client-sent identity headers, ask the core, then either
//! pass with identity headers or answer 401/403 locally.

use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

use super::host::{self, Counter, HostClock, SharedDataKv};
use super::stats;
use crate::config::guard::GuardConfig;
use crate::config::ConfigError;
use crate::guard::bearer::{
    path_without_query_token, CacheUse, Guard, GuardRequest, Reason, Verdict,
};
use crate::host::Clock;

/// The guard of one worker and its counters (registered once: bumping one is
/// no host call; `host::flush_counters` writes them on the tick).
pub struct GuardShared {
    guard: RefCell<Guard>,
    counters: Counters,
}

struct Counters {
    hit: Counter,
    miss: Counter,
    revalidated: Counter,
    allowed: Counter,
    passed_unguarded: Counter,
    denied: [Counter; Reason::ALL.len()],
}

pub fn configure(bytes: &[u8]) -> Result<Rc<GuardShared>, ConfigError> {
    let guard = Guard::new(GuardConfig::parse(bytes)?);
    let counters = Counters {
        hit: host::counter(stats::GUARD_CACHE_HIT),
        miss: host::counter(stats::GUARD_CACHE_MISS),
        revalidated: host::counter(stats::GUARD_CACHE_REVALIDATED),
        allowed: host::counter(stats::GUARD_ALLOWED),
        passed_unguarded: host::counter(stats::GUARD_PASSED_UNGUARDED),
        denied: Reason::ALL
            .map(|r| host::counter(&format!("{}{}", stats::GUARD_DENIED, r.as_str()))),
    };
    Ok(Rc::new(GuardShared {
        guard: RefCell::new(guard),
        counters,
    }))
}

pub struct GuardHttp {
    shared: Rc<GuardShared>,
}

impl GuardHttp {
    pub fn new(shared: Rc<GuardShared>) -> Self {
        GuardHttp { shared }
    }
}

impl Context for GuardHttp {}

impl HttpContext for GuardHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let c = &self.shared.counters;
        let Ok(mut guard) = self.shared.guard.try_borrow_mut() else {
            // Cannot happen (one request at a time per VM), but never fail open.
            host::send_response(503, &[], b"");
            return Action::Pause;
        };
        // One read of the whole map instead of one per header.
        let headers = host::RequestHeaders::read();
        let path = headers.get(":path").unwrap_or_default();
        // The method only matters when a rule names methods.
        let method = if guard.cfg.rules.iter().any(|r| !r.methods.is_empty()) {
            headers
                .get(":method")
                .and_then(|m| std::str::from_utf8(m).ok())
                .unwrap_or_default()
        } else {
            ""
        };
        let req = GuardRequest {
            method,
            path,
            authorization: headers.get("authorization"),
        };
        let decision = guard.check(&SharedDataKv, HostClock.now_secs(), &req);
        match decision.cache {
            CacheUse::Hit => host::bump(c.hit, 1),
            CacheUse::Miss => host::bump(c.miss, 1),
            CacheUse::Revalidated => host::bump(c.revalidated, 1),
            CacheUse::NotNeeded => {}
        }
        let names = &guard.cfg.headers;
        match decision.verdict {
            Verdict::Allow(identity) => {
                // Replace (never append to) whatever the client sent under these names;
                // a name the client did not send is added (or, without a value, left alone).
                let set = |name: &str, value: Option<&[u8]>| match (value, headers.contains(name)) {
                    (Some(v), false) => host::add_request_header(name, v),
                    (v, true) => host::set_request_header(name, v),
                    (None, false) => {}
                };
                match identity {
                    Some(id) => {
                        set(&names.client_id, Some(id.client_id.as_bytes()));
                        set(&names.user, id.user.as_deref().map(str::as_bytes));
                        set(&names.scope, Some(id.scope.as_bytes()));
                        set(&names.expires, Some(id.expires_header.as_bytes()));
                        if guard.cfg.hide_credentials {
                            if decision.token_in_query {
                                let stripped = path_without_query_token(path);
                                host::set_request_header(":path", Some(&stripped));
                            } else {
                                host::set_request_header("authorization", None);
                            }
                        }
                        host::bump(c.allowed, 1);
                    }
                    None => {
                        for name in names.all() {
                            set(name, None);
                        }
                        host::bump(c.passed_unguarded, 1);
                    }
                }
                Action::Continue
            }
            Verdict::Deny(reason, response) => {
                host::bump(c.denied[reason as usize], 1);
                host::send_response(response.status, &response.headers, &response.body);
                Action::Pause
            }
        }
    }
}
