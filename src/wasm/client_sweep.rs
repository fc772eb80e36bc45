//! Fleet mode: the `revoked_clients` sweep over etcd. Callouts cannot run
//! while the configuration loads, so each token worker starts the sweep on its
//! first tick, from its root context, and retries it every few seconds until
//! it succeeds. The first one to finish records the list in etcd; every later
//! one (other workers, other Envoys, restarts) reads that record and stops.

use std::cell::RefCell;
use std::rc::Rc;

use super::host::{self, BufferedRandomness};
use super::remote::{Driven, EtcdClient, InFlight};
use crate::host::Clock;
use crate::store::client_revocation;
use crate::store::kv::Kv;
use crate::store::{StoreError, StoreLayout};

/// Pause after a failed sweep before the next try.
const RETRY_AFTER_MS: u64 = 5_000;

type Outcome = Result<Option<u32>, StoreError>;

enum State {
    /// Not running; start at or after this time (ms).
    Due(u64),
    Running(InFlight<Outcome>),
    Finished,
}

pub struct ClientSweep {
    listed: Vec<String>,
    layout: StoreLayout,
    state: RefCell<State>,
}

impl ClientSweep {
    pub fn new(listed: Vec<String>, layout: StoreLayout) -> Self {
        ClientSweep {
            listed,
            layout,
            state: RefCell::new(State::Due(0)),
        }
    }

    /// Starts the sweep if it is due.
    pub fn on_tick(&self, etcd: &Rc<EtcdClient>) {
        let Ok(mut state) = self.state.try_borrow_mut() else {
            return;
        };
        match *state {
            State::Due(at) if host::now_millis() >= at => {}
            _ => return,
        }
        let link = etcd.link();
        let kv = Kv::Remote(link.clone());
        let (listed, layout) = (self.listed.clone(), self.layout);
        let now = host::HostClock.now_secs();
        let op = async move {
            client_revocation::apply(kv, &BufferedRandomness, layout, &listed, now).await
        };
        let (flight, driven) = etcd.start(link, op);
        *state = self.settle(State::Running(flight), driven);
    }

    /// The answer to the sweep's callout.
    pub fn on_response(&self, etcd: &EtcdClient, headers: usize, body_size: usize) {
        let Ok(mut state) = self.state.try_borrow_mut() else {
            return;
        };
        let State::Running(flight) = &mut *state else {
            return;
        };
        let driven = etcd.on_response(flight, headers, body_size);
        let current = std::mem::replace(&mut *state, State::Finished);
        *state = self.settle(current, driven);
    }

    fn settle(&self, current: State, driven: Driven<Outcome>) -> State {
        match driven {
            Driven::Waiting => current,
            Driven::Done(Ok(Some(n))) => {
                log::warn!(
                    "revoked_clients: revoked {n} grants of {} (audit event={})",
                    self.listed.join(", "),
                    crate::audit::event::GRANTS_REVOKED_BY_CONFIGURATION
                );
                State::Finished
            }
            Driven::Done(Ok(None)) => State::Finished,
            Driven::Done(Err(_)) | Driven::Failed => {
                log::warn!(
                    "revoked_clients: the sweep could not reach the store; next try in {} s",
                    RETRY_AFTER_MS / 1000
                );
                State::Due(host::now_millis().saturating_add(RETRY_AFTER_MS))
            }
        }
    }
}
