//! The asynchronous store driver (fleet mode): runs a suspended store
//! operation (`crate::store::kv::Suspended`) to its end as Envoy HTTP callouts
//! to etcd, one `Exchange` per store command. The request that owns the
//! operation stays paused meanwhile; its context feeds each callout's answer
//! back with [`EtcdClient::on_response`].

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType};

use super::host::{HostClock, SharedDataKv};
use crate::config::store::RemoteStore;
use crate::host::Clock;
use crate::store::etcd::exchange::{
    callout_status, Credentials, EtcdSettings, Exchange, Outgoing, Session, Step,
};
use crate::store::kv::{Progress, RemoteLink, Suspended};
use crate::token::keyed_tag::ServerKey;

/// One worker's way to etcd.
pub struct EtcdClient {
    pub remote: RemoteStore,
    settings: EtcdSettings,
    session: RefCell<Session>,
    /// The store's server key once read (it never changes): see `server_key::load`.
    server_key: Rc<Cell<Option<ServerKey>>>,
}

/// A store operation of one request, in flight.
pub struct InFlight<T> {
    op: Suspended<T>,
    exchange: Option<Exchange>,
}

pub enum Driven<T> {
    Done(T),
    /// A callout is out; the answer comes to `on_http_call_response`.
    Waiting,
    /// The operation cannot go on (a bug, never a store answer): fail closed.
    Failed,
}

impl EtcdClient {
    pub fn new(remote: RemoteStore) -> Rc<Self> {
        Rc::new(EtcdClient {
            settings: settings_of(&remote),
            remote,
            session: RefCell::new(Session::default()),
            server_key: Rc::default(),
        })
    }

    /// A link for one store operation of this worker.
    pub fn link(&self) -> Rc<RemoteLink> {
        Rc::new(
            RemoteLink::with_node_local(&SharedDataKv)
                .with_server_key_cache(self.server_key.clone()),
        )
    }

    /// Starts `op`, which must use `Kv::Remote(link)`, and runs it as far as it goes.
    pub fn start<T: 'static>(
        &self,
        link: Rc<RemoteLink>,
        op: impl Future<Output = T> + 'static,
    ) -> (InFlight<T>, Driven<T>) {
        let (suspended, progress) = Suspended::start(link, op);
        let mut flight = InFlight {
            op: suspended,
            exchange: None,
        };
        let driven = self.advance(&mut flight, progress);
        (flight, driven)
    }

    /// The answer to the callout `flight` waits on (`headers` and `body_size` from Envoy).
    pub fn on_response<T>(
        &self,
        flight: &mut InFlight<T>,
        headers: usize,
        body_size: usize,
    ) -> Driven<T> {
        let (status, body) = call_response(headers, body_size);
        let Some(exchange) = flight.exchange.as_mut() else {
            return Driven::Failed;
        };
        let step = match self.session.try_borrow_mut() {
            Ok(mut session) => exchange.on_response(
                status,
                &body,
                &self.settings,
                &mut session,
                HostClock.now_secs(),
            ),
            Err(_) => return Driven::Failed,
        };
        self.step(flight, step)
    }

    fn advance<T>(&self, flight: &mut InFlight<T>, progress: Progress<T>) -> Driven<T> {
        match progress {
            Progress::Done(v) => Driven::Done(v),
            Progress::Stuck => Driven::Failed,
            Progress::Waiting(command) => {
                let Ok(session) = self.session.try_borrow() else {
                    return Driven::Failed;
                };
                let (exchange, step) = Exchange::start(command, &self.settings, &session);
                drop(session);
                flight.exchange = Some(exchange);
                self.step(flight, step)
            }
        }
    }

    fn step<T>(&self, flight: &mut InFlight<T>, mut step: Step) -> Driven<T> {
        // Bounded: each failed dispatch is an answer the exchange counts.
        for _ in 0..8 {
            match step {
                Step::Done(answer) => {
                    let progress = flight.op.resume(answer);
                    return self.advance(flight, progress);
                }
                Step::Send(out) => {
                    if self.dispatch(&out) {
                        return Driven::Waiting;
                    }
                    let Some(exchange) = flight.exchange.as_mut() else {
                        return Driven::Failed;
                    };
                    let Ok(mut session) = self.session.try_borrow_mut() else {
                        return Driven::Failed;
                    };
                    step = exchange.on_response(
                        0,
                        b"",
                        &self.settings,
                        &mut session,
                        HostClock.now_secs(),
                    );
                }
            }
        }
        Driven::Failed
    }

    /// The auth token this worker holds, if any (for requests outside an exchange).
    pub fn session_token(&self) -> Option<String> {
        self.session.try_borrow().ok().and_then(|s| s.token.clone())
    }

    /// Sends one gateway request as a callout; false if Envoy refused it.
    pub fn dispatch(&self, out: &Outgoing) -> bool {
        let mut headers = vec![
            (":method", "POST"),
            (":path", out.request.path),
            (":authority", "etcd"),
            ("content-type", "application/json"),
        ];
        if let Some(t) = &out.token {
            headers.push(("authorization", t.as_str()));
        }
        hostcalls::dispatch_http_call(
            &self.remote.cluster,
            headers,
            Some(&out.request.body),
            vec![],
            Duration::from_millis(self.remote.timeout_ms),
        )
        .is_ok()
    }
}

/// Status and body of the callout answer at hand (`headers` and `body_size`
/// as Envoy called back with them); status 0 when there is none: Envoy reports
/// a failed callout with no headers, and then refuses to read them.
pub fn call_response(headers: usize, body_size: usize) -> (u32, Vec<u8>) {
    // The bytes form: the SDK's string form panics on non-UTF-8.
    let status = callout_status(headers, || {
        hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, ":status")
            .ok()
            .flatten()
    });
    if status == 0 || body_size == 0 {
        return (status, Vec::new());
    }
    let body = hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
        .ok()
        .flatten()
        .unwrap_or_default();
    (status, body)
}

/// The store's view of the configured etcd (the store layer knows no configuration).
pub fn settings_of(remote: &RemoteStore) -> EtcdSettings {
    EtcdSettings {
        prefix: remote.prefix.clone(),
        credentials: remote.credentials.as_ref().map(|(u, p)| Credentials {
            user: u.clone(),
            password: p.clone(),
        }),
    }
}
