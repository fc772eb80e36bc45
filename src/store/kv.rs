//! The store as the core sees it: `get`, `put` and (remote only) `scan`, which may suspend.
//!
//! Store logic is written once, as `async fn`s over [`Kv`]; the compiler turns
//! each into a state machine. Its only suspension points are store calls, and
//! each one leaves exactly one [`Command`] for a driver (sans-IO, as rustls and
//! quinn-proto do):
//! - the local driver (Envoy shared data, or memory in tests) answers at once,
//!   so [`run_now`] finishes any operation in one poll;
//! - a remote driver ([`Suspended`]) hands the command to the glue, which sends
//!   it to etcd as a callout with the request paused, and feeds the answer
//!   back with [`Suspended::resume`].

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use crate::host::{KvStore, WriteError};
use crate::token::keyed_tag::ServerKey;

/// A value with the version it was read at (`None`: the key does not exist).
/// Shared data: the CAS; etcd: the key's `mod_revision`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Stored {
    pub value: Option<Vec<u8>>,
    pub version: Option<u64>,
}

/// One store operation the core wants done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Get {
        key: String,
    },
    /// Write `value` if the key is still at version `expect` (`None`: only if
    /// absent). `expires_at`: when everything in `value` is dead (seconds), so a
    /// remote store can let the key lapse (etcd: a shared lease).
    Put {
        key: String,
        value: Vec<u8>,
        expect: Option<u64>,
        expires_at: u64,
        /// Written with it, in the same transaction, if the compare holds.
        also: Option<Also>,
    },
    /// Up to `limit` keys in `[from, to)`, in key order, with their values.
    /// Remote stores only (Envoy shared data cannot list its keys).
    Scan {
        from: String,
        to: String,
        limit: u32,
    },
}

/// An unconditional write riding on a conditional one (a revocation-log event
/// with the revocation it announces: both happen, or neither).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Also {
    pub key: String,
    pub value: Vec<u8>,
    pub expires_at: u64,
}

/// A driver's answer to a [`Command`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Got(Result<Stored, Unavailable>),
    Put(Result<(), WriteError>),
    /// A conditional write lost its compare; the key as it is now (etcd sends
    /// it in the same answer, so the retry needs no read).
    Lost(Stored),
    Scanned(Result<ScanPage, Unavailable>),
}

/// Why a conditional write did not happen (see [`Kv::put_reporting`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutFailed {
    /// The key was not at the expected version; `Some`: as it is now.
    Conflict(Option<Stored>),
    /// The store did not answer, or refused.
    Unavailable,
}

/// One page of a [`Command::Scan`]: keys without the store's prefix.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScanPage {
    pub entries: Vec<(String, Stored)>,
    /// More keys lie in the range after the last one.
    pub more: bool,
}

/// The store did not answer (a callout failed, timed out or made no sense).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unavailable;

/// The link between suspended store logic and the driver of a remote store:
/// the command it waits on, and the answer once it came.
#[derive(Default)]
pub struct RemoteLink {
    outbox: RefCell<Option<Command>>,
    inbox: RefCell<Option<Answer>>,
    /// This node's own shared data, for what stays node-local (the guard's
    /// revocation counters, moved at once when this node revokes).
    node_local: Option<&'static dyn KvStore>,
    /// The worker's copy of the store's server key: made once, never changed,
    /// so read from the store only until known (see `server_key::load`).
    server_key: Option<Rc<Cell<Option<ServerKey>>>>,
}

impl RemoteLink {
    pub fn with_node_local(node_local: &'static dyn KvStore) -> Self {
        RemoteLink {
            node_local: Some(node_local),
            ..RemoteLink::default()
        }
    }

    /// Shares `cache` (one per worker and store) as the server key's copy.
    pub fn with_server_key_cache(mut self, cache: Rc<Cell<Option<ServerKey>>>) -> Self {
        self.server_key = Some(cache);
        self
    }
}

/// The store handle the core's operations take.
#[derive(Clone)]
pub enum Kv<'a> {
    /// Answers synchronously (Envoy shared data; memory in tests).
    Local(&'a dyn KvStore),
    /// Answers later, through the glue (etcd).
    Remote(Rc<RemoteLink>),
}

impl<'a> Kv<'a> {
    pub fn local(kv: &'a dyn KvStore) -> Self {
        Kv::Local(kv)
    }

    pub fn is_remote(&self) -> bool {
        matches!(self, Kv::Remote(_))
    }

    /// The node's own shared data: the store itself when local; what the
    /// remote link was given otherwise.
    pub fn node_local(&self) -> Option<&dyn KvStore> {
        match self {
            Kv::Local(kv) => Some(*kv),
            Kv::Remote(link) => link.node_local,
        }
    }

    /// The server key as this worker already knows it (remote stores only).
    pub fn known_server_key(&self) -> Option<ServerKey> {
        match self {
            Kv::Remote(link) => link.server_key.as_ref().and_then(|c| c.get()),
            Kv::Local(_) => None,
        }
    }

    /// Keeps the server key read or made in the store, for later requests.
    pub fn remember_server_key(&self, key: ServerKey) {
        if let Kv::Remote(link) = self {
            if let Some(c) = &link.server_key {
                c.set(Some(key));
            }
        }
    }

    pub fn get(&self, key: &str) -> KvCall<Result<Stored, Unavailable>> {
        match self {
            Kv::Local(kv) => {
                let v = kv.get(key);
                KvCall::ready(Ok(Stored {
                    value: v.value,
                    version: v.cas.map(u64::from),
                }))
            }
            Kv::Remote(link) => KvCall::remote(
                link.clone(),
                Command::Get {
                    key: key.to_string(),
                },
                |a| match a {
                    Answer::Got(r) => r,
                    _ => Err(Unavailable),
                },
            ),
        }
    }

    /// See [`Command::Put`]. Locally, `expect: None` is an unconditional write
    /// (Envoy has no create-if-absent): callers pre-create keys they race on.
    pub fn put(
        &self,
        key: &str,
        value: Vec<u8>,
        expect: Option<u64>,
        expires_at: u64,
    ) -> KvCall<Result<(), WriteError>> {
        match self {
            Kv::Local(kv) => {
                let cas = match expect {
                    Some(v) => match u32::try_from(v) {
                        Ok(c) => Some(c),
                        Err(_) => return KvCall::ready(Err(WriteError::CasMismatch)),
                    },
                    None => None,
                };
                KvCall::ready(kv.set(key, &value, cas))
            }
            Kv::Remote(link) => KvCall::remote(
                link.clone(),
                Command::Put {
                    key: key.to_string(),
                    value,
                    expect,
                    expires_at,
                    also: None,
                },
                |a| match a {
                    Answer::Put(r) => r,
                    Answer::Lost(_) => Err(WriteError::CasMismatch),
                    _ => Err(WriteError::Failed),
                },
            ),
        }
    }

    /// [`Kv::put`], telling on a conflict what the key holds now when the
    /// store said so (etcd does; shared data does not). A remote store also
    /// writes `also` in the same transaction; a local one has no use for it
    /// (its revocations are seen through node-local counters).
    pub fn put_reporting(
        &self,
        key: &str,
        value: Vec<u8>,
        expect: Option<u64>,
        expires_at: u64,
        also: Option<Also>,
    ) -> KvCall<Result<(), PutFailed>> {
        fn failed(e: WriteError) -> PutFailed {
            match e {
                WriteError::CasMismatch => PutFailed::Conflict(None),
                WriteError::Failed => PutFailed::Unavailable,
            }
        }
        match self {
            Kv::Local(_) => match self.put(key, value, expect, expires_at).take_ready() {
                Some(r) => KvCall::ready(r.map_err(failed)),
                None => KvCall::ready(Err(PutFailed::Unavailable)),
            },
            Kv::Remote(link) => KvCall::remote(
                link.clone(),
                Command::Put {
                    key: key.to_string(),
                    value,
                    expect,
                    expires_at,
                    also,
                },
                |a| match a {
                    Answer::Put(r) => r.map_err(failed),
                    Answer::Lost(now) => Err(PutFailed::Conflict(Some(now))),
                    _ => Err(PutFailed::Unavailable),
                },
            ),
        }
    }

    /// See [`Command::Scan`]. A local store cannot list its keys: callers
    /// check [`Kv::is_remote`] and walk the keys they know instead.
    pub fn scan(&self, from: &str, to: &str, limit: u32) -> KvCall<Result<ScanPage, Unavailable>> {
        match self {
            Kv::Local(_) => KvCall::ready(Err(Unavailable)),
            Kv::Remote(link) => KvCall::remote(
                link.clone(),
                Command::Scan {
                    from: from.to_string(),
                    to: to.to_string(),
                    limit,
                },
                |a| match a {
                    Answer::Scanned(r) => r,
                    _ => Err(Unavailable),
                },
            ),
        }
    }
}

/// A store call in flight.
pub struct KvCall<T> {
    state: CallState<T>,
}

enum CallState<T> {
    Ready(Option<T>),
    Remote {
        link: Rc<RemoteLink>,
        command: Option<Command>,
        decode: fn(Answer) -> T,
    },
}

impl<T> KvCall<T> {
    fn ready(v: T) -> Self {
        KvCall {
            state: CallState::Ready(Some(v)),
        }
    }
    /// The value of a call that answered at once (a local store's).
    fn take_ready(self) -> Option<T> {
        match self.state {
            CallState::Ready(v) => v,
            CallState::Remote { .. } => None,
        }
    }
    fn remote(link: Rc<RemoteLink>, command: Command, decode: fn(Answer) -> T) -> Self {
        KvCall {
            state: CallState::Remote {
                link,
                command: Some(command),
                decode,
            },
        }
    }
}

// No self-references: safe to move while pinned.
impl<T> Unpin for KvCall<T> {}

impl<T> Future for KvCall<T> {
    type Output = T;
    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<T> {
        let this = self.get_mut();
        match &mut this.state {
            CallState::Ready(v) => match v.take() {
                Some(v) => Poll::Ready(v),
                None => Poll::Pending,
            },
            CallState::Remote {
                link,
                command,
                decode,
            } => {
                if let Some(c) = command.take() {
                    *link.outbox.borrow_mut() = Some(c);
                    return Poll::Pending;
                }
                match link.inbox.borrow_mut().take() {
                    Some(a) => Poll::Ready(decode(a)),
                    None => Poll::Pending,
                }
            }
        }
    }
}

/// Polls `fut` once. Over a local store every operation finishes in one poll,
/// so `None` means the operation waited on a remote store it was not given.
pub fn run_now<F: Future>(fut: F) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        Poll::Ready(v) => Some(v),
        Poll::Pending => None,
    }
}

/// Where a suspended operation stands.
#[derive(Debug)]
pub enum Progress<T> {
    Done(T),
    /// Waiting on this command; call [`Suspended::resume`] with its answer.
    Waiting(Command),
    /// Waiting on nothing (a bug): the caller fails the request.
    Stuck,
}

/// An operation over a remote store, paused between store calls
/// (as Kuadrant's `TaskOutcome::Deferred`): the glue keeps it while the
/// request is paused and resumes it when the callout answers.
pub struct Suspended<T> {
    fut: Pin<Box<dyn Future<Output = T>>>,
    link: Rc<RemoteLink>,
}

impl<T> Suspended<T> {
    /// Starts `op` (made with [`Kv::Remote`] over `link`) and runs it to its first store call.
    pub fn start(link: Rc<RemoteLink>, op: impl Future<Output = T> + 'static) -> (Self, Progress<T>)
    where
        T: 'static,
    {
        let mut s = Suspended {
            fut: Box::pin(op),
            link,
        };
        let p = s.step();
        (s, p)
    }

    /// Feeds the answer to the command it waits on and runs to the next one.
    pub fn resume(&mut self, answer: Answer) -> Progress<T> {
        *self.link.inbox.borrow_mut() = Some(answer);
        self.step()
    }

    fn step(&mut self) -> Progress<T> {
        let mut cx = Context::from_waker(Waker::noop());
        match self.fut.as_mut().poll(&mut cx) {
            Poll::Ready(v) => Progress::Done(v),
            Poll::Pending => match self.link.outbox.borrow_mut().take() {
                Some(c) => Progress::Waiting(c),
                // Pending on nothing: cannot happen (store calls are the only
                // suspension points), and must not hang a request.
                None => Progress::Stuck,
            },
        }
    }
}

/// Tests run store operations over memory, which answers at once.
#[cfg(test)]
pub(crate) trait Sync_: Future + Sized {
    fn sync(self) -> Self::Output {
        run_now(self).expect("a local store answers at once")
    }
}
#[cfg(test)]
impl<F: Future> Sync_ for F {}

/// For native tests and tools: runs an operation over a local store to its
/// end. `None` only if it waited on a remote store.
pub trait RunNow: Future + Sized {
    fn run_now(self) -> Option<Self::Output> {
        run_now(self)
    }
}
impl<F: Future> RunNow for F {}
