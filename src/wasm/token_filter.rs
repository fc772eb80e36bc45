//! Glue for the token endpoint filter (root_id `oauth2_token`): buffer the form
//! body of POST /token, /revoke, /introspect and /authorize (the login form),
//! answer GET /authorize and the metadata from the headers, call the core,
//! answer locally.

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

use super::client_sweep::ClientSweep;
use super::host::{self, BufferedRandomness, HostClock, SharedDataKv};
use super::remote::{Driven, EtcdClient, InFlight};
use super::stats;
use crate::authn::address::client_ip;
use crate::authn::credential_cache::CredentialCache;
use crate::authn::env::ServiceEnv;
use crate::authn::hash_budget::HashBudget;
use crate::config::{ConfigError, TokenConfig, METADATA_PATH};
use crate::endpoint::audit;
use crate::endpoint::authorize::browser_binding::RequestSite;
use crate::endpoint::authorize::{handle_authorize, AuthorizeRequest, AuthorizeResult};
use crate::endpoint::common::{
    create_shared_keys, method_not_allowed, payload_too_large, EndpointRequest, EndpointResult,
    Outcome,
};
use crate::endpoint::introspect::handle_introspect;
use crate::endpoint::jwks::jwks;
use crate::endpoint::metadata::metadata;
use crate::endpoint::revoke::handle_revoke;
use crate::endpoint::token::handle_token;
use crate::host::{Clock, HostRandomness, Randomness};
use crate::oauth::response::Response;
use crate::store::client_revocation;
use crate::store::kv::{run_now, Kv};
use crate::store::{StoreError, TxnReport};

pub struct TokenShared {
    cfg: TokenConfig,
    credentials: CredentialCache,
    hash_budget: HashBudget,
    /// Fleet mode: this worker's way to etcd.
    etcd: Option<Rc<EtcdClient>>,
    /// Fleet mode with `revoked_clients`: the sweep this worker still owes.
    sweep: Option<ClientSweep>,
}

impl TokenShared {
    /// Root context tick: fleet mode's `revoked_clients` sweep, while due.
    pub fn on_tick(&self) {
        if let (Some(etcd), Some(sweep)) = (&self.etcd, &self.sweep) {
            sweep.on_tick(etcd);
        }
    }

    /// Root context callout answer: only the sweep calls out from there.
    pub fn on_root_call_answer(&self, headers: usize, body_size: usize) {
        if let (Some(etcd), Some(sweep)) = (&self.etcd, &self.sweep) {
            sweep.on_response(etcd, headers, body_size);
        }
    }
}

/// Parses the configuration and makes sure the store's keys exist.
pub fn configure(bytes: &[u8]) -> Result<Rc<TokenShared>, ConfigError> {
    let cfg = TokenConfig::parse(bytes)?;
    let mut key = [0u8; 32];
    HostRandomness.fill(&mut key).map_err(|_| ConfigError {
        field: "(host)".into(),
        message: "the host CSPRNG is unavailable".into(),
    })?;
    if let Some(remote) = &cfg.remote {
        log::info!(
            "token store: etcd through cluster `{}`, prefix `{}`",
            remote.cluster,
            remote.prefix
        );
        // Listed clients are swept from the first tick on (see `client_sweep`).
        let sweep = (!cfg.revoked_clients.is_empty())
            .then(|| ClientSweep::new(cfg.revoked_clients.clone(), cfg.store));
        return Ok(Rc::new(TokenShared {
            etcd: Some(EtcdClient::new(remote.clone())),
            credentials: CredentialCache::new(key, 1024),
            hash_budget: HashBudget::new(cfg.slow_hash_budget),
            sweep,
            cfg,
        }));
    }
    let created = create_shared_keys(&SharedDataKv, &HostRandomness, &cfg)?;
    let swept = run_now(client_revocation::apply(
        Kv::Local(&SharedDataKv),
        &HostRandomness,
        cfg.store,
        &cfg.revoked_clients,
        HostClock.now_secs(),
    ))
    .unwrap_or(Err(StoreError::Unavailable))
    .map_err(|_| ConfigError {
        field: "revoked_clients".into(),
        message: "could not revoke the grants of the listed clients".into(),
    })?;
    if let Some(n) = swept {
        log::warn!(
            "revoked_clients: revoked {n} grants of {} (audit event={})",
            cfg.revoked_clients.join(", "),
            crate::audit::event::GRANTS_REVOKED_BY_CONFIGURATION
        );
    }
    if created > 0 {
        log::info!(
            "token store: created {created} shared-data keys ({} buckets x {} grants = {} grants at most)",
            cfg.store.buckets,
            cfg.store.grants_per_bucket,
            cfg.store.capacity()
        );
    }
    Ok(Rc::new(TokenShared {
        hash_budget: HashBudget::new(cfg.slow_hash_budget),
        cfg,
        credentials: CredentialCache::new(key, 1024),
        etcd: None,
        sweep: None,
    }))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Token,
    Revoke,
    Introspect,
    /// The login form's POST (the GET is answered from the headers).
    Authorize,
}

pub struct TokenHttp {
    shared: Rc<TokenShared>,
    endpoint: Option<Endpoint>,
    content_type: Option<String>,
    authorization: Option<String>,
    /// `/authorize` only: the browser binding cookie, the scheme, the Host and
    /// where the form's POST says it comes from.
    cookie: Option<String>,
    https: bool,
    host: Option<String>,
    site: OwnedSite,
    answered: bool,
    /// Fleet mode: the store operation this request waits on.
    in_flight: Option<InFlight<Response>>,
}

impl TokenHttp {
    pub fn new(shared: Rc<TokenShared>) -> Self {
        TokenHttp {
            shared,
            endpoint: None,
            content_type: None,
            authorization: None,
            cookie: None,
            https: false,
            host: None,
            site: OwnedSite::default(),
            answered: false,
            in_flight: None,
        }
    }

    fn answer(&mut self, status: u16, headers: &[(String, String)], body: &[u8]) -> Action {
        self.answered = true;
        host::send_response(status, headers, body);
        Action::Pause
    }

    fn handle(&mut self, body: &[u8]) -> Action {
        let Some(endpoint) = self.endpoint else {
            return Action::Continue;
        };
        let req = OwnedRequest {
            endpoint,
            content_type: self.content_type.take(),
            authorization: self.authorization.take(),
            cookie: self.cookie.take(),
            https: self.https,
            host: self.host.take(),
            site: std::mem::take(&mut self.site),
            body: body.to_vec(),
        };
        self.run(move |shared, kv| serve(shared, kv, req))
    }

    /// Runs an endpoint over the configured store: at once over shared data;
    /// over etcd as callouts, the request paused until the answer.
    fn run<F, Fut>(&mut self, op: F) -> Action
    where
        F: FnOnce(Rc<TokenShared>, Kv<'static>) -> Fut,
        Fut: std::future::Future<Output = Response> + 'static,
    {
        let shared = self.shared.clone();
        match shared.etcd.clone() {
            None => {
                let answer = run_now(op(shared, Kv::Local(&SharedDataKv)));
                self.respond(answer)
            }
            Some(etcd) => {
                let link = etcd.link();
                let (flight, driven) = etcd.start(link.clone(), op(shared, Kv::Remote(link)));
                self.in_flight = Some(flight);
                self.driven(driven)
            }
        }
    }

    fn driven(&mut self, driven: Driven<Response>) -> Action {
        match driven {
            Driven::Waiting => Action::Pause,
            Driven::Done(r) => {
                self.in_flight = None;
                self.answer(r.status, &r.headers, &r.body)
            }
            Driven::Failed => {
                self.in_flight = None;
                self.respond(None)
            }
        }
    }

    /// Writes the core's answer; `None` (state unexpectedly busy) is a 503, never a pass.
    fn respond(&mut self, answer: Option<Response>) -> Action {
        match answer {
            Some(r) => self.answer(r.status, &r.headers, &r.body),
            None => self.answer(503, &[], b""),
        }
    }
}

/// One request, owned, so its operation can outlive the callback that started it.
struct OwnedRequest {
    endpoint: Endpoint,
    content_type: Option<String>,
    authorization: Option<String>,
    cookie: Option<String>,
    https: bool,
    host: Option<String>,
    site: OwnedSite,
    body: Vec<u8>,
}

/// [`RequestSite`], owned across the wait for the body.
#[derive(Default)]
struct OwnedSite {
    authority: Option<String>,
    origin: Option<String>,
    fetch_site: Option<String>,
}

impl OwnedSite {
    fn borrow(&self) -> RequestSite<'_> {
        RequestSite {
            authority: self.authority.as_deref(),
            origin: self.origin.as_deref(),
            fetch_site: self.fetch_site.as_deref(),
        }
    }
}

/// Envoy's view of the client: the peer, or behind trusted proxies the address
/// `x-forwarded-for` gives (HCM `use_remote_address`, `xff_num_trusted_hops`);
/// the port does not matter. Read only when a slow credential check asks.
fn peer_ip() -> String {
    client_ip(&host::source_address().unwrap_or_default()).to_string()
}

/// One endpoint request over `kv`, with stats.
async fn serve(shared: Rc<TokenShared>, kv: Kv<'static>, req: OwnedRequest) -> Response {
    let mut env = ServiceEnv {
        kv,
        clock: &HostClock,
        rng: &BufferedRandomness,
        credentials: &shared.credentials,
        hash_budget: &shared.hash_budget,
        client_address: &peer_ip,
    };
    let cfg = &shared.cfg;
    let endpoint_req = EndpointRequest {
        method: "POST",
        content_type: req.content_type.as_deref(),
        authorization: req.authorization.as_deref(),
        body: &req.body,
    };
    let result = match req.endpoint {
        Endpoint::Token => handle_token(cfg, &mut env, &endpoint_req).await,
        Endpoint::Revoke => handle_revoke(cfg, &mut env, &endpoint_req).await,
        Endpoint::Introspect => handle_introspect(cfg, &mut env, &endpoint_req).await,
        Endpoint::Authorize => {
            let auth_req = AuthorizeRequest {
                method: "POST",
                query: "",
                content_type: req.content_type.as_deref(),
                body: &req.body,
                cookie: req.cookie.as_deref(),
                https: req.https,
                host: req.host.as_deref(),
                site: req.site.borrow(),
            };
            let result = handle_authorize(cfg, &mut env, &auth_req).await;
            record_authorize(&result);
            record_slow_hashes(&shared.hash_budget);
            return result.response;
        }
    };
    record(&result);
    record_slow_hashes(&shared.hash_budget);
    host::write_audit(&audit::record(
        cfg,
        &endpoint_req,
        result.outcome,
        &result.response,
    ));
    result.response
}

fn record_slow_hashes(budget: &HashBudget) {
    let (spent, refused) = budget.drain_counts();
    host::count(stats::AUTHN_SLOW_HASHES, spent);
    host::count(stats::AUTHN_SLOW_HASH_RATIONED, refused);
}

/// `/authorize` with any method but POST: answered from the headers alone.
async fn serve_authorize_page(
    shared: Rc<TokenShared>,
    kv: Kv<'static>,
    method: String,
    query: String,
    cookie: Option<String>,
    https: bool,
    host: Option<String>,
) -> Response {
    // A GET checks no credential: no address needed.
    let mut env = ServiceEnv {
        kv,
        clock: &HostClock,
        rng: &BufferedRandomness,
        credentials: &shared.credentials,
        hash_budget: &shared.hash_budget,
        client_address: &peer_ip,
    };
    let req = AuthorizeRequest {
        method: &method,
        query: &query,
        content_type: None,
        body: &[],
        cookie: cookie.as_deref(),
        https,
        host: host.as_deref(),
        // Only the form's POST is checked: the GET comes from the client's site.
        site: RequestSite::default(),
    };
    let result = handle_authorize(&shared.cfg, &mut env, &req).await;
    record_authorize(&result);
    result.response
}

/// What `/authorize` needs beyond the form: the `Cookie` header, whether the
/// request came over HTTPS, and its Host (`:authority`).
fn authorize_context() -> (Option<String>, bool, Option<String>) {
    let https = host::request_header(":scheme").as_deref() == Some(b"https");
    (
        host::request_header_str("cookie"),
        https,
        host::request_header_str(":authority"),
    )
}

fn record(result: &EndpointResult) {
    if result.response.status == 429 {
        host::count(stats::THROTTLED, 1);
    }
    match result.outcome {
        Outcome::Issued(g) => host::count(&format!("{}{}", stats::TOKEN_ISSUED, g.as_str()), 1),
        Outcome::Revoked => host::count(stats::REVOKE_REVOKED, 1),
        Outcome::RevokeUnknown => host::count(stats::REVOKE_UNKNOWN, 1),
        Outcome::IntrospectedActive => host::count(stats::INTROSPECT_ACTIVE, 1),
        Outcome::IntrospectedInactive => host::count(stats::INTROSPECT_INACTIVE, 1),
        Outcome::Failed(code) => {
            host::count(&format!("{}{}", stats::TOKEN_ERROR, code.as_str()), 1)
        }
    }
    record_store(&result.store);
}

fn record_authorize(result: &AuthorizeResult) {
    host::write_audit(&result.outcome.audit());
    host::count(
        &format!("{}{}", stats::AUTHORIZE, result.outcome.as_str()),
        1,
    );
    record_store(&result.store);
}

pub fn record_store(r: &TxnReport) {
    host::count(stats::STORE_CAS_RETRIES, r.cas_retries as u64);
    host::count(stats::STORE_CORRUPT_VALUES, r.corrupt_values as u64);
    host::count(stats::STORE_RECLAIMED, r.reclaimed as u64);
    host::count(stats::STORE_FULL, r.full as u64);
    host::count(
        stats::TOKEN_REFRESH_REUSE_REVOKED,
        r.refresh_reuse_revoked as u64,
    );
    host::count(
        stats::TOKEN_CODE_REPLAY_REVOKED,
        r.code_replay_revoked as u64,
    );
}

impl TokenHttp {
    /// `/authorize` with any method but POST: answered from the headers alone.
    fn serve_authorize(&mut self, method: &str, query: &str) -> Action {
        let (cookie, https, authority) = authorize_context();
        let (method, query) = (method.to_string(), query.to_string());
        self.run(move |shared, kv| {
            serve_authorize_page(shared, kv, method, query, cookie, https, authority)
        })
    }

    fn serve_metadata(&mut self) -> Action {
        let r = match host::request_header(":method").as_deref() {
            Some(b"GET") | Some(b"HEAD") => {
                let https = host::request_header(":scheme").as_deref() == Some(b"https");
                let authority = host::request_header_str(":authority");
                metadata(&self.shared.cfg, https, authority.as_deref())
            }
            _ => Response::new(405).header("allow", "GET, HEAD"),
        };
        self.answer(r.status, &r.headers, &r.body)
    }
}

impl Context for TokenHttp {
    fn on_http_call_response(&mut self, _token: u32, headers: usize, body_size: usize, _: usize) {
        let (Some(etcd), Some(mut flight)) = (self.shared.etcd.clone(), self.in_flight.take())
        else {
            return;
        };
        let driven = etcd.on_response(&mut flight, headers, body_size);
        self.in_flight = Some(flight);
        self.driven(driven);
    }
}

impl HttpContext for TokenHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        // One read of the whole map instead of up to five single reads.
        let headers = host::RequestHeaders::read();
        let text = |name: &str| {
            headers
                .get(name)
                .and_then(|v| std::str::from_utf8(v).ok())
                .map(str::to_string)
        };
        let full_path = headers.get(":path").unwrap_or_default();
        let mut parts = full_path.splitn(2, |b| *b == b'?');
        let path = parts.next().unwrap_or_default();
        let query = parts.next().unwrap_or_default();
        let paths = &self.shared.cfg.paths;
        let method = headers.get(":method").unwrap_or_default();
        if path == paths.authorize.as_bytes() && method != b"POST" {
            let method = String::from_utf8_lossy(method).into_owned();
            let query = String::from_utf8_lossy(query).into_owned();
            return self.serve_authorize(&method, &query);
        }
        self.endpoint = if path == paths.authorize.as_bytes() {
            Some(Endpoint::Authorize)
        } else if path == paths.token.as_bytes() {
            Some(Endpoint::Token)
        } else if path == paths.revoke.as_bytes() {
            Some(Endpoint::Revoke)
        } else if path == paths.introspect.as_bytes() {
            Some(Endpoint::Introspect)
        } else if path == METADATA_PATH.as_bytes() {
            return self.serve_metadata();
        } else if path == paths.jwks.as_bytes() {
            let method = host::request_header_str(":method").unwrap_or_default();
            return match jwks(&self.shared.cfg, &method) {
                Some(r) => self.answer(r.status, &r.headers, &r.body),
                None => Action::Continue,
            };
        } else {
            None
        };
        if self.endpoint.is_none() {
            return Action::Continue;
        }
        if method != b"POST" {
            host::count(&format!("{}invalid_request", stats::TOKEN_ERROR), 1);
            let r = method_not_allowed();
            return self.answer(r.status, &r.headers, &r.body);
        }
        let max = self.shared.cfg.max_body_bytes;
        let declared = text("content-length").and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > max as u64) {
            host::count(&format!("{}invalid_request", stats::TOKEN_ERROR), 1);
            let r = payload_too_large(max);
            return self.answer(r.status, &r.headers, &r.body);
        }
        self.content_type = text("content-type");
        self.authorization = text("authorization");
        if self.endpoint == Some(Endpoint::Authorize) {
            self.cookie = text("cookie");
            self.https = headers.get(":scheme") == Some(b"https");
            self.host = text(":authority");
            self.site = OwnedSite {
                authority: text(":authority"),
                origin: text("origin"),
                fetch_site: text("sec-fetch-site"),
            };
        }
        if end_of_stream {
            return self.handle(&[]);
        }
        // Needs `allow_on_headers_stop_iteration: true`: wait for the whole body.
        Action::Pause
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.endpoint.is_none() {
            return Action::Continue;
        }
        if self.answered {
            return Action::Pause;
        }
        let max = self.shared.cfg.max_body_bytes;
        if body_size > max {
            host::count(&format!("{}invalid_request", stats::TOKEN_ERROR), 1);
            let r = payload_too_large(max);
            return self.answer(r.status, &r.headers, &r.body);
        }
        if !end_of_stream {
            return Action::Pause;
        }
        let body = host::request_body(body_size);
        self.handle(&body)
    }
}
