//! Glue for the bearer guard filter (root_id `oauth2_guard`): on request
//! headers, strip client-sent identity headers, ask the core, then either
//! pass with identity headers or answer 401/403 locally.

use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

use super::host::{self, HostClock, SharedDataKv};
use super::stats;
use crate::config::guard::GuardConfig;
use crate::config::ConfigError;
use crate::guard::bearer::{path_without_query_token, CacheUse, Guard, GuardRequest, Verdict};
use crate::host::Clock;

pub fn configure(bytes: &[u8]) -> Result<Rc<RefCell<Guard>>, ConfigError> {
    Ok(Rc::new(RefCell::new(Guard::new(GuardConfig::parse(
        bytes,
    )?))))
}

pub struct GuardHttp {
    guard: Rc<RefCell<Guard>>,
}

impl GuardHttp {
    pub fn new(guard: Rc<RefCell<Guard>>) -> Self {
        GuardHttp { guard }
    }
}

impl Context for GuardHttp {}

impl HttpContext for GuardHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Ok(mut guard) = self.guard.try_borrow_mut() else {
            // Cannot happen (one request at a time per VM), but never fail open.
            host::send_response(503, &[], b"");
            return Action::Pause;
        };
        let path = host::request_header(":path").unwrap_or_default();
        // One host call fewer on the hot path when no rule looks at the method.
        let method = if guard.cfg.rules.iter().any(|r| !r.methods.is_empty()) {
            host::request_header_str(":method").unwrap_or_default()
        } else {
            String::new()
        };
        let authorization = host::request_header("authorization");
        let req = GuardRequest {
            method: &method,
            path: &path,
            authorization: authorization.as_deref(),
        };
        let verified_before = guard.jwt_verifications();
        let decision = guard.check(&SharedDataKv, HostClock.now_secs(), &req);
        if guard.jwt_verifications() != verified_before {
            host::count(stats::GUARD_JWT_VERIFIED, 1);
        }
        match decision.cache {
            CacheUse::Hit => host::count(stats::GUARD_CACHE_HIT, 1),
            CacheUse::Miss => host::count(stats::GUARD_CACHE_MISS, 1),
            CacheUse::Revalidated => host::count(stats::GUARD_CACHE_REVALIDATED, 1),
            CacheUse::NotNeeded => {}
        }
        let names = &guard.cfg.headers;
        match decision.verdict {
            Verdict::Allow(identity) => {
                // Replace (never append to) whatever the client sent under these names.
                match identity {
                    Some(id) => {
                        host::set_request_header(&names.client_id, Some(id.client_id.as_bytes()));
                        host::set_request_header(
                            &names.user,
                            id.user.as_deref().map(str::as_bytes),
                        );
                        host::set_request_header(&names.scope, Some(id.scope.as_bytes()));
                        host::set_request_header(
                            &names.expires,
                            Some(id.expires_header.as_bytes()),
                        );
                        if guard.cfg.hide_credentials {
                            if decision.token_in_query {
                                let stripped = path_without_query_token(&path);
                                host::set_request_header(":path", Some(&stripped));
                            } else {
                                host::set_request_header("authorization", None);
                            }
                        }
                        host::count(stats::GUARD_ALLOWED, 1);
                    }
                    None => {
                        for name in names.all() {
                            host::set_request_header(name, None);
                        }
                        host::count(stats::GUARD_PASSED_UNGUARDED, 1);
                    }
                }
                Action::Continue
            }
            Verdict::Deny(reason, response) => {
                host::count(&format!("{}{}", stats::GUARD_DENIED, reason.as_str()), 1);
                host::send_response(response.status, &response.headers, &response.body);
                Action::Pause
            }
        }
    }
}
