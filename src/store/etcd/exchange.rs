//! One store command carried out on etcd: the gateway requests it takes and
//! how their answers become the command's answer (sans-IO: the glue sends the
//! requests as Envoy callouts, tests send them over a socket). Besides the
//! request itself, a command may first need the time slice's shared lease
//! granted, or an authentication token.

use sha2::{Digest, Sha256};

use super::gateway::{self, Expect, GatewayError, GatewayRequest};
use crate::config::store::RemoteStore;
use crate::host::WriteError;
use crate::store::kv::{Answer, Command, Stored, Unavailable};

/// Seconds of one lease slice: every record expiring within the same slice
/// shares one lease, so at most `longest lifetime / LEASE_SLICE_SECS` leases
/// exist at once (24 h refresh tokens: 288).
pub const LEASE_SLICE_SECS: u64 = 300;
/// A lease outlives the latest expiry of its slice by this much.
const LEASE_MARGIN_SECS: u64 = 60;

/// How this node reaches etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdSettings {
    /// Prepended to every key (`/envoy-oauth2/` by default).
    pub prefix: String,
    pub credentials: Option<Credentials>,
}

#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Credentials {{ user: {:?}, password: <hidden> }}",
            self.user
        )
    }
}

impl EtcdSettings {
    pub fn of(remote: &RemoteStore) -> Self {
        EtcdSettings {
            prefix: remote.prefix.clone(),
            credentials: remote.credentials.as_ref().map(|(u, p)| Credentials {
                user: u.clone(),
                password: p.clone(),
            }),
        }
    }
}

/// Per-worker session state: the auth token, once there is one.
#[derive(Debug, Default)]
pub struct Session {
    pub token: Option<String>,
}

/// A request to send, with the auth token to send it with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub request: GatewayRequest,
    pub token: Option<String>,
}

pub enum Step {
    Send(Outgoing),
    Done(Answer),
}

enum Stage {
    Main,
    GrantLease,
    Authenticate,
}

pub struct Exchange {
    command: Command,
    stage: Stage,
    lease: i64,
    granted: bool,
    authenticated: bool,
    /// Sends of the main request so far (bounded, see `retry_or_fail`).
    sent: u32,
}

/// A get is sent to at most this many members (the cluster's load balancer
/// picks another one each time); a put only when the first surely never
/// reached etcd.
const MAX_SENDS: u32 = 3;

impl Exchange {
    /// Starts `command`; returns the first request to send.
    pub fn start(command: Command, settings: &EtcdSettings, session: &Session) -> (Self, Step) {
        let lease = match &command {
            Command::Put { expires_at, .. } => lease_for(&settings.prefix, *expires_at),
            Command::Get { .. } => 0,
        };
        let mut x = Exchange {
            command,
            stage: Stage::Main,
            lease,
            granted: false,
            authenticated: false,
            sent: 0,
        };
        let step = if settings.credentials.is_some() && session.token.is_none() {
            x.authenticate(settings)
        } else {
            x.main(settings, session)
        };
        (x, step)
    }

    /// Consumes the answer to the last request sent (`status` 0: no answer).
    pub fn on_response(
        &mut self,
        status: u32,
        body: &[u8],
        settings: &EtcdSettings,
        session: &mut Session,
        now: u64,
    ) -> Step {
        match self.stage {
            Stage::Authenticate => match gateway::decode_authenticate(status, body) {
                Ok(token) => {
                    session.token = Some(token);
                    self.main(settings, session)
                }
                Err(_) => self.fail(),
            },
            Stage::GrantLease => match gateway::decode_lease_grant(status, body) {
                Ok(()) => self.main(settings, session),
                Err(e) => self.retry_or_fail(e, settings, session, now),
            },
            Stage::Main => {
                if self.should_resend(status, body) {
                    return self.main(settings, session);
                }
                self.main_answer(status, body, settings, session, now)
            }
        }
    }

    fn main_answer(
        &mut self,
        status: u32,
        body: &[u8],
        settings: &EtcdSettings,
        session: &mut Session,
        now: u64,
    ) -> Step {
        match &self.command {
            Command::Get { .. } => match gateway::decode_range(status, body) {
                Ok(r) => {
                    let found = r.kvs.into_iter().next();
                    Step::Done(Answer::Got(Ok(Stored {
                        version: found.as_ref().map(|kv| kv.mod_revision as u64),
                        value: found.map(|kv| kv.value),
                    })))
                }
                Err(e) => self.retry_or_fail(e, settings, session, now),
            },
            Command::Put { .. } => match gateway::decode_txn(status, body) {
                Ok(t) if t.succeeded => Step::Done(Answer::Put(Ok(()))),
                Ok(_) => Step::Done(Answer::Put(Err(WriteError::CasMismatch))),
                Err(e) => self.retry_or_fail(e, settings, session, now),
            },
        }
    }

    /// Lease missing: grant it once; token expired: authenticate once; else fail.
    fn retry_or_fail(
        &mut self,
        e: GatewayError,
        settings: &EtcdSettings,
        session: &mut Session,
        now: u64,
    ) -> Step {
        match e {
            GatewayError::LeaseNotFound if !self.granted && self.lease != 0 => {
                self.granted = true;
                self.stage = Stage::GrantLease;
                Step::Send(Outgoing {
                    request: gateway::lease_grant(
                        self.lease,
                        lease_ttl(self.command_expiry(), now),
                    ),
                    token: session.token.clone(),
                })
            }
            GatewayError::Unauthenticated
                if settings.credentials.is_some() && !self.authenticated =>
            {
                session.token = None;
                self.authenticate(settings)
            }
            _ => self.fail(),
        }
    }

    /// A member that could not be reached: another may be. A read is always
    /// safe to repeat; a conditional write only when Envoy says it never
    /// connected (a timed-out write may have been applied: repeating it would
    /// look like a lost race, and a refresh like a reused token).
    fn should_resend(&self, status: u32, body: &[u8]) -> bool {
        if self.sent >= MAX_SENDS {
            return false;
        }
        let never_connected = status == 503
            && (contains(body, b"no healthy upstream") || contains(body, b"connection failure"));
        match self.command {
            Command::Get { .. } => status == 0 || status >= 500,
            Command::Put { .. } => never_connected,
        }
    }

    fn command_expiry(&self) -> u64 {
        match &self.command {
            Command::Put { expires_at, .. } => *expires_at,
            Command::Get { .. } => 0,
        }
    }

    fn authenticate(&mut self, settings: &EtcdSettings) -> Step {
        self.authenticated = true;
        self.stage = Stage::Authenticate;
        match &settings.credentials {
            Some(c) => Step::Send(Outgoing {
                request: gateway::authenticate(&c.user, &c.password),
                token: None,
            }),
            None => self.fail(),
        }
    }

    fn main(&mut self, settings: &EtcdSettings, session: &Session) -> Step {
        self.stage = Stage::Main;
        self.sent += 1;
        let request = match &self.command {
            Command::Get { key } => gateway::range(&prefixed(settings, key)),
            Command::Put {
                key, value, expect, ..
            } => {
                let expect = match expect {
                    None => Expect::Absent,
                    Some(v) => Expect::ModRevision(*v as i64),
                };
                gateway::put_if(&prefixed(settings, key), value, expect, self.lease)
            }
        };
        Step::Send(Outgoing {
            request,
            token: session.token.clone(),
        })
    }

    fn fail(&self) -> Step {
        Step::Done(match &self.command {
            Command::Get { .. } => Answer::Got(Err(Unavailable)),
            Command::Put { .. } => Answer::Put(Err(WriteError::Failed)),
        })
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

pub fn prefixed(settings: &EtcdSettings, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(settings.prefix.len() + key.len());
    k.extend_from_slice(settings.prefix.as_bytes());
    k.extend_from_slice(key.as_bytes());
    k
}

/// The shared lease of the slice `expires_at` falls in; the same on every node
/// (derived from the prefix and the slice). 0 (no lease) for records that never expire.
pub fn lease_for(prefix: &str, expires_at: u64) -> i64 {
    if expires_at == u64::MAX {
        return 0;
    }
    let slice = expires_at / LEASE_SLICE_SECS;
    let d = Sha256::new()
        .chain_update(b"envoy-oauth2 lease\0")
        .chain_update(prefix.as_bytes())
        .chain_update(slice.to_be_bytes())
        .finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    // Positive and non-zero, as etcd wants lease IDs.
    (i64::from_be_bytes(b) & i64::MAX) | 1
}

/// Seconds the lease of `expires_at`'s slice must live from `now`.
pub fn lease_ttl(expires_at: u64, now: u64) -> u64 {
    let slice_end = (expires_at / LEASE_SLICE_SECS + 1).saturating_mul(LEASE_SLICE_SECS);
    slice_end
        .saturating_add(LEASE_MARGIN_SECS)
        .saturating_sub(now)
        .max(LEASE_MARGIN_SECS)
}
