//! A native, blocking driver of the store's remote path: what `src/wasm/remote.rs` does
//! with Envoy callouts, done with plain HTTP POSTs to a real etcd's JSON gateway.
//!
//! Every store command goes through `store::etcd::exchange::Exchange` only (the driver
//! never looks at which command it carries), so the gateway requests, the lease grants
//! and the answer decoding are the production ones.
//!
//! `ETCD_DRIVER_TRACE=1` prints every request and answer on stderr.
//!
//! ```ignore
//! let etcd = EtcdCluster::start(1);
//! let driver = EtcdDriver::new(etcd.client_urls(), "/test/unique-prefix/");
//! let granted = driver.run(|kv| async move { GrantStore::over(kv, &HostRandomness, LAYOUT).issue(&req, now).await });
//! ```
#![allow(dead_code, unused_imports)]

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io::Read;
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use envoy_oauth2::store::etcd::exchange::{EtcdSettings, Exchange, Outgoing, Session, Step};
use envoy_oauth2::store::kv::{Answer, Command, Kv, Progress, RemoteLink, Suspended};

use super::etcd::ETCD_HTTP_TIMEOUT;

/// Gateway requests one command may take before the driver calls the exchange stuck
/// (a get is sent to at most 3 members; a put may add a login and a lease grant).
const MAX_REQUESTS_PER_COMMAND: usize = 16;
/// Store commands one operation may take before the driver calls it stuck.
const MAX_COMMANDS_PER_OP: usize = 10_000;

pub struct EtcdDriver {
    urls: Vec<String>,
    /// Round robin over the members, as Envoy's cluster does.
    next: Cell<usize>,
    agent: ureq::Agent,
    pub settings: EtcdSettings,
    session: RefCell<Session>,
    /// Gateway requests sent so far (for the curious test).
    pub requests: Cell<u64>,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl EtcdDriver {
    /// A driver for the members at `urls` (`http://127.0.0.1:<port>`), every key under `prefix`.
    pub fn new(urls: Vec<String>, prefix: &str) -> EtcdDriver {
        assert!(!urls.is_empty(), "EtcdDriver needs at least one member");
        EtcdDriver {
            urls,
            next: Cell::new(0),
            agent: ureq::AgentBuilder::new()
                .timeout_connect(Duration::from_millis(500))
                .timeout(ETCD_HTTP_TIMEOUT)
                .build(),
            settings: EtcdSettings {
                prefix: prefix.to_string(),
                credentials: None,
            },
            session: RefCell::new(Session::default()),
            requests: Cell::new(0),
        }
    }

    /// Carries out one store command, whatever it is, through an `Exchange`: each
    /// request it asks for is POSTed to the next member, each answer fed back, until
    /// it gives the command's answer.
    pub fn execute(&self, command: Command) -> Answer {
        let (mut exchange, mut step) = {
            let session = self.session.borrow();
            Exchange::start(command.clone(), &self.settings, &session)
        };
        for _ in 0..MAX_REQUESTS_PER_COMMAND {
            match step {
                Step::Done(answer) => return answer,
                Step::Send(out) => {
                    let (status, body) = self.post(&out);
                    if std::env::var_os("ETCD_DRIVER_TRACE").is_some() {
                        eprintln!(
                            "etcd driver: POST {} {} -> {status} {}",
                            out.request.path,
                            String::from_utf8_lossy(&out.request.body),
                            String::from_utf8_lossy(&body)
                        );
                    }
                    let mut session = self.session.borrow_mut();
                    step = exchange.on_response(
                        status,
                        &body,
                        &self.settings,
                        &mut session,
                        now_secs(),
                    );
                }
            }
        }
        panic!("the exchange of {command:?} did not end within {MAX_REQUESTS_PER_COMMAND} requests")
    }

    /// POSTs one gateway request; (status, body), status 0 when no answer came (as a
    /// failed Envoy callout reports it).
    fn post(&self, out: &Outgoing) -> (u32, Vec<u8>) {
        self.requests.set(self.requests.get() + 1);
        let i = self.next.get();
        self.next.set((i + 1) % self.urls.len());
        let url = format!("{}{}", self.urls[i], out.request.path);
        let mut req = self
            .agent
            .post(&url)
            .set("content-type", "application/json");
        if let Some(t) = &out.token {
            req = req.set("authorization", t);
        }
        let response = match req.send_bytes(&out.request.body) {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(ureq::Error::Transport(e)) => {
                eprintln!("etcd driver: POST {url}: {e}");
                return (0, Vec::new());
            }
        };
        let status = u32::from(response.status());
        let mut body = Vec::new();
        match response.into_reader().read_to_end(&mut body) {
            Ok(_) => (status, body),
            // etcd's gateway ends an error answer (404 lease not found, 401, ...) with an
            // HTTP trailer (`Grpc-Trailer-Content-Type`) after the last chunk, which
            // ureq's chunked decoder refuses *after* handing over the whole body (Envoy
            // takes trailers in its stride). So keep what came; a body truly cut short
            // is garbage to the exchange, which never trusts it.
            Err(_) if !body.is_empty() => (status, body),
            Err(e) => {
                eprintln!("etcd driver: POST {url}: reading the answer: {e}");
                (0, Vec::new())
            }
        }
    }

    /// Runs a suspended operation to its end, one command at a time.
    pub fn finish<T>(&self, op: &mut Suspended<T>, mut progress: Progress<T>) -> T {
        for _ in 0..MAX_COMMANDS_PER_OP {
            match progress {
                Progress::Done(v) => return v,
                Progress::Waiting(command) => progress = op.resume(self.execute(command)),
                Progress::Stuck => panic!("the operation waits on no command (Progress::Stuck)"),
            }
        }
        panic!("the operation did not end within {MAX_COMMANDS_PER_OP} store commands")
    }

    /// Builds an operation over a fresh remote link and runs it to its end.
    pub fn run<T, F, Fut>(&self, make: F) -> T
    where
        T: 'static,
        F: FnOnce(Kv<'static>) -> Fut,
        Fut: Future<Output = T> + 'static,
    {
        let link = Rc::new(RemoteLink::default());
        let (mut op, progress) = Suspended::start(link.clone(), make(Kv::Remote(link)));
        self.finish(&mut op, progress)
    }
}
