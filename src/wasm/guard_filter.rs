//! Glue for the bearer guard filter (root_id `oauth2_guard`): on request
//! headers, ask the core, then either pass with identity headers (always
//! replacing what the client sent) or answer 401/403/503 locally. In fleet
//! mode a cache miss reads etcd with the request paused, and every worker
//! polls the revocation log on its root context's tick.

use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, MapType};

use super::host::{self, HostClock, SharedDataKv};
use super::remote::{call_response, settings_of, Driven, EtcdClient, InFlight};
use super::stats;
use crate::audit::{event, field};
use crate::config::guard::GuardConfig;
use crate::config::ConfigError;
use crate::guard::bearer::{
    path_without_query_token, CacheUse, Check, Decision, Guard, GuardRequest, PendingLookup,
    Reason, Verdict,
};
use crate::guard::identity_headers::SentIdentityHeaders;
use crate::host::Clock;
use crate::store::etcd::exchange::{prefixed, Outgoing};
use crate::store::etcd::gateway;
use crate::store::grant::Grant;
use crate::store::keys::REVLOG_PREFIX;
use crate::store::kv::Kv;
use crate::store::revocation_feed::{FeedConfig, RevocationFeed};
use crate::store::{bump_local_generation, GrantStore, LookupFailed};

/// Counters resolved once (bumped in Wasm memory, flushed on the tick).
struct Counters {
    hit: host::Counter,
    miss: host::Counter,
    revalidated: host::Counter,
    allowed: host::Counter,
    passed_unguarded: host::Counter,
    denied: [host::Counter; Reason::ALL.len()],
}

/// One worker's guard: the core, and in fleet mode its way to etcd and its
/// place in the revocation log.
pub struct GuardShared {
    guard: RefCell<Guard>,
    counters: Counters,
    etcd: Option<Rc<EtcdClient>>,
    feed: RefCell<RevocationFeed>,
    /// When the poll in flight was sent (ms), if one is.
    poll_sent_ms: RefCell<Option<u64>>,
}

pub fn configure(bytes: &[u8]) -> Result<Rc<GuardShared>, ConfigError> {
    let cfg = GuardConfig::parse(bytes)?;
    let etcd = cfg.remote.clone().map(EtcdClient::new);
    let feed = RevocationFeed::new(FeedConfig {
        poll_interval_ms: cfg.remote.as_ref().map_or(1000, |r| r.revocation_poll_ms),
        staleness_ms: cfg.remote.as_ref().map_or(1000, |r| r.staleness_ms),
    });
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
        guard: RefCell::new(Guard::new(cfg)),
        counters,
        etcd,
        feed: RefCell::new(feed),
        poll_sent_ms: RefCell::new(None),
    }))
}

impl GuardShared {
    /// Root context tick (fleet mode): poll the revocation log when due.
    pub fn on_tick(&self) {
        let Some(etcd) = &self.etcd else {
            return;
        };
        let now_ms = host::now_millis();
        let Ok(mut feed) = self.feed.try_borrow_mut() else {
            return;
        };
        let Some(poll) = feed.due(now_ms) else {
            return;
        };
        let settings = settings_of(&etcd.remote);
        let from = prefixed(
            &settings,
            &format!("{REVLOG_PREFIX}{:012}", poll.first_slice),
        );
        // Just past every revlog key: the prefix with its `/` + 1 = `0`.
        let to = prefixed(
            &settings,
            &format!("{}0", REVLOG_PREFIX.trim_end_matches('/')),
        );
        let out = Outgoing {
            request: gateway::range_since(&from, &to, poll.after_revision, 0),
            token: etcd.session_token(),
        };
        if etcd.dispatch(&out) {
            if let Ok(mut sent) = self.poll_sent_ms.try_borrow_mut() {
                *sent = Some(now_ms);
            }
        } else {
            feed.failed();
        }
    }

    /// The poll's answer: bump the local generation of every bucket revoked
    /// elsewhere, so this node's caches drop those tokens.
    pub fn on_poll_answer(&self, headers: usize, body_size: usize) {
        let (status, body) = call_response(headers, body_size);
        let sent = self
            .poll_sent_ms
            .try_borrow_mut()
            .ok()
            .and_then(|mut s| s.take());
        let Ok(mut feed) = self.feed.try_borrow_mut() else {
            return;
        };
        match (gateway::decode_range(status, &body), sent) {
            (Ok(answer), Some(sent_ms)) => {
                for kv in &answer.kvs {
                    if let Ok(b) = <[u8; 4]>::try_from(kv.value.as_slice()) {
                        bump_local_generation(&SharedDataKv, u32::from_be_bytes(b));
                    }
                }
                if !answer.kvs.is_empty() {
                    host::count(stats::GUARD_REVOCATIONS_HEARD, answer.kvs.len() as u64);
                }
                feed.heard(sent_ms, answer.revision);
            }
            _ => {
                host::count(stats::GUARD_REVOCATION_POLL_FAILED, 1);
                feed.failed();
            }
        }
    }
}

/// Fleet mode: a lookup in flight, what the guard will finish with it, the `:path`
/// and the identity headers the client sent (the header map is not kept across the pause).
type Waiting = (
    InFlight<Result<Option<Grant>, LookupFailed>>,
    PendingLookup,
    Vec<u8>,
    SentIdentityHeaders,
);

pub struct GuardHttp {
    shared: Rc<GuardShared>,
    /// Fleet mode: the lookup this request waits on.
    waiting: Option<Waiting>,
}

impl GuardHttp {
    pub fn new(shared: Rc<GuardShared>) -> Self {
        GuardHttp {
            shared,
            waiting: None,
        }
    }

    /// Applies a decision to the request; `Continue` when it may pass. `sent`:
    /// what the client sent under the identity names, all of it replaced or removed.
    fn apply(
        &mut self,
        guard: &Guard,
        decision: Decision,
        path: &[u8],
        sent: &SentIdentityHeaders,
    ) -> Action {
        let c = &self.shared.counters;
        match decision.cache {
            CacheUse::Hit => host::bump(c.hit, 1),
            CacheUse::Miss => host::bump(c.miss, 1),
            CacheUse::Revalidated => host::bump(c.revalidated, 1),
            CacheUse::NotNeeded => {}
        }
        let names = &guard.cfg.headers;
        match decision.verdict {
            Verdict::Allow(identity) => {
                // Other spellings (`x_auth_user`) go; under the name itself, whatever the
                // client sent is replaced, never appended to: one value replaces one, and
                // duplicates are removed first. No host call for a name the client did
                // not send and the guard has no value for.
                for other in &sent.other_spellings {
                    host::set_request_header(other, None);
                }
                let set = |i: usize, name: &str, value: Option<&[u8]>| match (value, sent.exact[i])
                {
                    (None, 0) => {}
                    (Some(v), 0) => host::add_request_header(name, v),
                    (v, 1) => host::set_request_header(name, v),
                    (v, _) => {
                        host::set_request_header(name, None);
                        if let Some(v) = v {
                            host::add_request_header(name, v);
                        }
                    }
                };
                match identity {
                    Some(id) => {
                        // The hot path: the event and the token's fingerprint only (two
                        // host calls; the client, user and scope are those of the record
                        // that issued the token with this fingerprint: a join, not a copy
                        // on every request, which measured 16% of guard-hit throughput).
                        host::set_filter_state(field::EVENT, event::GUARD_ALLOWED.as_bytes());
                        host::set_filter_state(field::TOKEN, id.fingerprint.as_bytes());
                        set(0, &names.client_id, Some(id.client_id.as_bytes()));
                        set(1, &names.user, id.user.as_deref().map(str::as_bytes));
                        set(2, &names.scope, Some(id.scope.as_bytes()));
                        set(3, &names.expires, Some(id.expires_header.as_bytes()));
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
                        for (i, name) in names.all().into_iter().enumerate() {
                            set(i, name, None);
                        }
                        host::bump(c.passed_unguarded, 1);
                    }
                }
                Action::Continue
            }
            Verdict::Deny(reason, response) => {
                host::bump(c.denied[reason as usize], 1);
                host::set_filter_state(field::EVENT, event::GUARD_DENIED.as_bytes());
                host::set_filter_state(field::ERROR, reason.as_str().as_bytes());
                host::send_response(response.status, &response.headers, &response.body);
                Action::Pause
            }
        }
    }

    /// Fleet mode: the lookup came back (or failed); finish the decision.
    fn finish(&mut self, found: Result<Option<Grant>, LookupFailed>) -> Action {
        let Some((_, pending, path, sent)) = self.waiting.take() else {
            host::send_response(503, &[], b"");
            return Action::Pause;
        };
        let shared = self.shared.clone();
        let Ok(mut guard) = shared.guard.try_borrow_mut() else {
            host::send_response(503, &[], b"");
            return Action::Pause;
        };
        let decision = guard.finish(pending, found, HostClock.now_secs());
        self.apply(&guard, decision, &path, &sent)
    }
}

impl Context for GuardHttp {
    fn on_http_call_response(&mut self, _token: u32, headers: usize, body_size: usize, _: usize) {
        let Some(etcd) = self.shared.etcd.clone() else {
            return;
        };
        let Some((flight, _, _, _)) = self.waiting.as_mut() else {
            return;
        };
        let action = match etcd.on_response(flight, headers, body_size) {
            Driven::Waiting => return,
            Driven::Done(found) => self.finish(found),
            Driven::Failed => self.finish(Err(LookupFailed::Unavailable)),
        };
        if action == Action::Continue {
            let _ = hostcalls::resume_http_request();
        }
    }
}

impl HttpContext for GuardHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let shared = self.shared.clone();
        let Ok(mut guard) = shared.guard.try_borrow_mut() else {
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
        let sent = sent_identity_headers(&guard, &headers);
        let now = HostClock.now_secs();
        let verified_before = guard.jwt_verifications();
        let Some(etcd) = shared.etcd.clone() else {
            let decision = guard.check(&SharedDataKv, now, &req);
            count_jwt_verified(&guard, verified_before);
            return self.apply(&guard, decision, path, &sent);
        };
        // Fleet mode: a cache hit is trusted only while this worker hears the
        // revocation log; a miss reads etcd with the request paused.
        let trusted = shared
            .feed
            .try_borrow()
            .is_ok_and(|f| f.trusted(HostClock::recent_millis()));
        let check = guard.begin(&SharedDataKv, trusted, now, &req);
        count_jwt_verified(&guard, verified_before);
        let pending = match check {
            Check::Decided(decision) => return self.apply(&guard, decision, path, &sent),
            Check::Lookup(pending) => pending,
        };
        drop(guard);
        let token = pending.token.clone();
        let link = etcd.link();
        let kv = Kv::Remote(link.clone());
        let op = async move { GrantStore::lookup_in(&kv, &token, now).await };
        let (flight, driven) = etcd.start(link, op);
        self.waiting = Some((flight, pending, path.to_vec(), sent));
        match driven {
            Driven::Waiting => Action::Pause,
            Driven::Done(found) => self.finish(found),
            Driven::Failed => self.finish(Err(LookupFailed::Unavailable)),
        }
    }

    fn on_http_request_body(&mut self, _body_size: usize, _end_of_stream: bool) -> Action {
        // Returning Continue here would release headers still waiting on etcd.
        if self.waiting.is_some() {
            Action::Pause
        } else {
            Action::Continue
        }
    }
}

/// What the client sent under the identity names, from the map read once. A map
/// that did not parse (never seen) is read again name by name through the host.
fn sent_identity_headers(guard: &Guard, headers: &host::RequestHeaders) -> SentIdentityHeaders {
    let names = guard.cfg.headers.all();
    match headers.names() {
        Some(keys) => SentIdentityHeaders::scan(names, keys),
        None => match hostcalls::get_map_bytes(MapType::HttpRequestHeaders) {
            Ok(map) => {
                let mut sent =
                    SentIdentityHeaders::scan(names, map.iter().map(|(k, _)| k.as_bytes()));
                // Doubt means sent: each name is removed before the guard's value is added.
                sent.exact = SentIdentityHeaders::unknown().exact;
                sent
            }
            Err(_) => SentIdentityHeaders::unknown(),
        },
    }
}

fn count_jwt_verified(guard: &Guard, before: u64) {
    if guard.jwt_verifications() != before {
        host::count(stats::GUARD_JWT_VERIFIED, 1);
    }
}
