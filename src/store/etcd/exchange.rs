//! One store command carried out on etcd: the gateway requests it takes and
//! how their answers become the command's answer (sans-IO: the glue sends the
//! requests as Envoy callouts, tests send them over a socket). Besides the
//! request itself, a command may first need the time slice's shared lease
//! granted, or an authentication token.

use sha2::{Digest, Sha256};

use super::gateway::{self, AlsoPut, Expect, GatewayError, GatewayRequest};
use crate::host::WriteError;
use crate::store::kv::{Answer, Command, ScanPage, Stored, Unavailable};

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
    /// The leases a put names (its own slice's, and its event's): (ID, the
    /// expiry it covers). Granted on a 404, once, all of them.
    leases: Vec<(i64, u64)>,
    /// Which of `leases` the grant in flight is.
    granting: usize,
    granted: bool,
    authenticated: bool,
    /// Sends of the main request so far (bounded, see `retry_or_fail`).
    sent: u32,
    /// The login or lease grant in flight, and how often it was sent.
    side_request: Option<Outgoing>,
    side_sent: u32,
}

/// A get is sent to at most this many members (the cluster's load balancer
/// picks another one each time); a put only when the first surely never
/// reached etcd.
const MAX_SENDS: u32 = 3;

impl Exchange {
    /// Starts `command`; returns the first request to send.
    pub fn start(command: Command, settings: &EtcdSettings, session: &Session) -> (Self, Step) {
        let mut leases = Vec::new();
        if let Command::Put {
            expires_at, also, ..
        } = &command
        {
            for at in std::iter::once(*expires_at).chain(also.as_ref().map(|a| a.expires_at)) {
                let id = lease_for(&settings.prefix, at);
                if id != 0 && !leases.iter().any(|(l, _)| *l == id) {
                    leases.push((id, at));
                }
            }
        }
        let mut x = Exchange {
            command,
            stage: Stage::Main,
            leases,
            granting: 0,
            granted: false,
            authenticated: false,
            sent: 0,
            side_request: None,
            side_sent: 0,
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
        // Logging in and granting a lease are safe to repeat: a member that
        // could not answer is skipped like for a read.
        let unreachable = status == 0 || status >= 500;
        if unreachable && !matches!(self.stage, Stage::Main) && self.side_sent < MAX_SENDS {
            if let Some(again) = self.side_request.clone() {
                self.side_sent += 1;
                return Step::Send(again);
            }
        }
        match self.stage {
            Stage::Authenticate => match gateway::decode_authenticate(status, body) {
                Ok(token) => {
                    session.token = Some(token);
                    self.main(settings, session)
                }
                Err(_) => self.fail(),
            },
            Stage::GrantLease => match gateway::decode_lease_grant(status, body) {
                Ok(()) if self.granting + 1 < self.leases.len() => {
                    self.granting += 1;
                    self.grant_lease(session, now)
                }
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
            Command::Scan { .. } => {
                match gateway::decode_range(status, body).and_then(|r| scan_page(settings, r)) {
                    Ok(page) => Step::Done(Answer::Scanned(Ok(page))),
                    Err(e) => self.retry_or_fail(e, settings, session, now),
                }
            }
            Command::Put { .. } => match gateway::decode_txn(status, body) {
                Ok(t) if t.succeeded => Step::Done(Answer::Put(Ok(()))),
                Ok(t) => Step::Done(Answer::Lost(Stored {
                    version: t.current.as_ref().map(|kv| kv.mod_revision as u64),
                    value: t.current.map(|kv| kv.value),
                })),
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
            GatewayError::LeaseNotFound if !self.granted && !self.leases.is_empty() => {
                self.granted = true;
                self.granting = 0;
                self.grant_lease(session, now)
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
    /// safe to repeat; a conditional write only when Envoy says it never sent
    /// it (a write that timed out, or whose connection closed before the
    /// answer, may have been applied: repeating it would look like a lost
    /// race, so the same grant would be inserted twice, and a refresh like a
    /// reused token).
    fn should_resend(&self, status: u32, body: &[u8]) -> bool {
        if self.sent >= MAX_SENDS {
            return false;
        }
        match self.command {
            Command::Get { .. } | Command::Scan { .. } => status == 0 || status >= 500,
            Command::Put { .. } => status == 503 && never_sent(body),
        }
    }

    /// Grants `leases[granting]` (a lease that exists already is fine).
    fn grant_lease(&mut self, session: &Session, now: u64) -> Step {
        self.stage = Stage::GrantLease;
        let Some((id, expires_at)) = self.leases.get(self.granting).copied() else {
            return self.fail();
        };
        self.side(Outgoing {
            request: gateway::lease_grant(id, lease_ttl(expires_at, now)),
            token: session.token.clone(),
        })
    }

    fn side(&mut self, out: Outgoing) -> Step {
        self.side_request = Some(out.clone());
        self.side_sent = 1;
        Step::Send(out)
    }

    fn authenticate(&mut self, settings: &EtcdSettings) -> Step {
        self.authenticated = true;
        self.stage = Stage::Authenticate;
        match &settings.credentials {
            Some(c) => self.side(Outgoing {
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
            Command::Scan { from, to, limit } => {
                gateway::range_page(&prefixed(settings, from), &prefixed(settings, to), *limit)
            }
            Command::Put {
                key,
                value,
                expect,
                expires_at,
                also,
            } => {
                let expect = match expect {
                    None => Expect::Absent,
                    Some(v) => Expect::ModRevision(*v as i64),
                };
                let also_key = also.as_ref().map(|a| prefixed(settings, &a.key));
                let also = also
                    .as_ref()
                    .zip(also_key.as_deref())
                    .map(|(a, k)| AlsoPut {
                        key: k,
                        value: &a.value,
                        lease: lease_for(&settings.prefix, a.expires_at),
                    });
                gateway::put_if(
                    &prefixed(settings, key),
                    value,
                    expect,
                    lease_for(&settings.prefix, *expires_at),
                    also,
                )
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
            Command::Scan { .. } => Answer::Scanned(Err(Unavailable)),
        })
    }
}

/// A range answer as a scan page: keys without the prefix (a key outside it,
/// or not text, is not what was asked for: never trusted).
fn scan_page(settings: &EtcdSettings, r: gateway::RangeAnswer) -> Result<ScanPage, GatewayError> {
    let prefix = settings.prefix.as_bytes();
    let entries = r
        .kvs
        .into_iter()
        .map(|kv| {
            let key = kv
                .key
                .strip_prefix(prefix)
                .and_then(|k| std::str::from_utf8(k).ok())
                .ok_or(GatewayError::Malformed)?
                .to_string();
            let stored = Stored {
                version: Some(kv.mod_revision as u64),
                value: Some(kv.value),
            };
            Ok((key, stored))
        })
        .collect::<Result<_, _>>()?;
    Ok(ScanPage {
        entries,
        more: r.more,
    })
}

/// The status of a callout answer as [`Exchange::on_response`] takes it: the
/// `:status` digits, or 0 for no answer. A callout that failed (reset, timed
/// out before an answer, an answer over Envoy's buffer limit) is called back
/// with no headers at all; `read_status` is then never called: Envoy refuses
/// to read the headers of an answer that does not exist (BadArgument), which
/// the proxy-wasm SDK turns into a panic.
pub fn callout_status(headers: usize, read_status: impl FnOnce() -> Option<Vec<u8>>) -> u32 {
    if headers == 0 {
        return 0;
    }
    read_status()
        .and_then(|s| std::str::from_utf8(&s).ok()?.parse().ok())
        .unwrap_or(0)
}

/// Envoy's own 503 for a request it never sent upstream: no healthy member,
/// no connection (`... reset reason: remote connection failure`), a connect
/// timeout, the circuit breaker. Not `connection termination` or `remote
/// reset`: the request went out and etcd may have applied it. etcd's own
/// errors are JSON with a `code`.
fn never_sent(body: &[u8]) -> bool {
    const NEVER_SENT: [&[u8]; 4] = [
        b"no healthy upstream",
        b"connection failure",
        b"connection timeout",
        b"reset reason: overflow",
    ];
    !contains(body, b"\"code\"") && NEVER_SENT.iter().any(|m| contains(body, m))
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

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD as B64;
    use base64::Engine;

    fn settings(auth: bool) -> EtcdSettings {
        EtcdSettings {
            prefix: "/p/".into(),
            credentials: auth.then(|| Credentials {
                user: "u".into(),
                password: "secret".into(),
            }),
        }
    }

    fn sent(step: &Step) -> &Outgoing {
        match step {
            Step::Send(o) => o,
            Step::Done(a) => panic!("expected a request, got {a:?}"),
        }
    }

    fn body(o: &Outgoing) -> serde_json::Value {
        serde_json::from_slice(&o.request.body).unwrap()
    }

    const HEADER: &str = r#""header":{"revision":"7"}"#;

    #[test]
    fn a_get_reads_the_prefixed_key_and_returns_its_version() {
        let s = settings(false);
        let mut session = Session::default();
        let (mut x, step) = Exchange::start(Command::Get { key: "k".into() }, &s, &session);
        let o = sent(&step);
        assert_eq!(o.request.path, "/v3/kv/range");
        assert_eq!(body(o)["key"], B64.encode("/p/k"));
        let answer = format!(
            r#"{{{HEADER},"kvs":[{{"key":"{}","value":"{}","mod_revision":"5"}}],"count":"1"}}"#,
            B64.encode("/p/k"),
            B64.encode("v")
        );
        match x.on_response(200, answer.as_bytes(), &s, &mut session, 0) {
            Step::Done(Answer::Got(Ok(stored))) => {
                assert_eq!(stored.value.as_deref(), Some(&b"v"[..]));
                assert_eq!(stored.version, Some(5));
            }
            _ => panic!("expected the value"),
        }
        // A missing key: no `kvs` at all.
        let (mut x, _) = Exchange::start(Command::Get { key: "k".into() }, &s, &session);
        match x.on_response(200, format!("{{{HEADER}}}").as_bytes(), &s, &mut session, 0) {
            Step::Done(Answer::Got(Ok(stored))) => assert_eq!(stored, Stored::default()),
            _ => panic!("expected absent"),
        }
    }

    fn scan() -> Command {
        Command::Scan {
            from: "g/".into(),
            to: "g0".into(),
            limit: 2,
        }
    }

    #[test]
    fn a_scan_reads_a_prefixed_range_and_returns_keys_without_the_prefix() {
        let s = settings(false);
        let mut session = Session::default();
        let (mut x, step) = Exchange::start(scan(), &s, &session);
        let o = sent(&step);
        assert_eq!(o.request.path, "/v3/kv/range");
        assert_eq!(body(o)["key"], B64.encode("/p/g/"));
        assert_eq!(body(o)["range_end"], B64.encode("/p/g0"));
        assert_eq!(body(o)["limit"], "2");
        let kv = |k: &str, v: &str, rev: u32| {
            format!(
                r#"{{"key":"{}","value":"{}","mod_revision":"{rev}"}}"#,
                B64.encode(k),
                B64.encode(v)
            )
        };
        let answer = format!(
            r#"{{{HEADER},"kvs":[{},{}],"more":true,"count":"3"}}"#,
            kv("/p/g/1", "a", 3),
            kv("/p/g/2", "b", 4)
        );
        match x.on_response(200, answer.as_bytes(), &s, &mut session, 0) {
            Step::Done(Answer::Scanned(Ok(page))) => {
                assert!(page.more);
                let keys: Vec<&str> = page.entries.iter().map(|(k, _)| k.as_str()).collect();
                assert_eq!(keys, ["g/1", "g/2"]);
                assert_eq!(page.entries[1].1.version, Some(4));
                assert_eq!(page.entries[1].1.value.as_deref(), Some(&b"b"[..]));
            }
            _ => panic!("expected a page"),
        }
        // The last page: `more` left out (proto3 JSON drops false).
        let (mut x, _) = Exchange::start(scan(), &s, &session);
        match x.on_response(200, format!("{{{HEADER}}}").as_bytes(), &s, &mut session, 0) {
            Step::Done(Answer::Scanned(Ok(page))) => assert_eq!(page, ScanPage::default()),
            _ => panic!("expected an empty last page"),
        }
        // A key outside the prefix is not what was asked for: never trusted.
        let (mut x, _) = Exchange::start(scan(), &s, &session);
        let stray = format!(r#"{{{HEADER},"kvs":[{}]}}"#, kv("/other/g/1", "a", 3));
        assert!(matches!(
            x.on_response(200, stray.as_bytes(), &s, &mut session, 0),
            Step::Done(Answer::Scanned(Err(Unavailable)))
        ));
        // A scan is a read: an unreachable member is skipped like for a get.
        let (mut x, _) = Exchange::start(scan(), &s, &session);
        assert!(matches!(
            x.on_response(0, b"", &s, &mut session, 0),
            Step::Send(_)
        ));
    }

    #[test]
    fn a_read_is_sent_again_to_another_member_then_given_up() {
        let s = settings(false);
        let mut session = Session::default();
        let (mut x, _) = Exchange::start(Command::Get { key: "k".into() }, &s, &session);
        for _ in 1..MAX_SENDS {
            assert!(matches!(
                x.on_response(0, b"", &s, &mut session, 0),
                Step::Send(_)
            ));
        }
        assert!(matches!(
            x.on_response(503, b"", &s, &mut session, 0),
            Step::Done(Answer::Got(Err(Unavailable)))
        ));
    }

    fn put(expect: Option<u64>) -> Command {
        Command::Put {
            key: "k".into(),
            value: b"v".to_vec(),
            expect,
            expires_at: 1_000_000,
            also: None,
        }
    }

    #[test]
    fn an_announced_revocation_writes_its_event_in_the_same_txn_and_grants_both_leases() {
        use crate::store::kv::Also;
        let s = settings(false);
        let mut session = Session::default();
        let command = Command::Put {
            key: "g/7".into(),
            value: b"bucket".to_vec(),
            expect: Some(5),
            expires_at: 1_000_000,
            also: Some(Also {
                key: "revlog/1".into(),
                value: 7u32.to_be_bytes().to_vec(),
                expires_at: 500_180,
            }),
        };
        let (mut x, step) = Exchange::start(command, &s, &session);
        let b = body(sent(&step));
        // Both puts in the success branch: the event exists if and only if the
        // revocation was written.
        assert_eq!(b["compare"][0]["key"], B64.encode("/p/g/7"));
        let (bucket_lease, event_lease) = (lease_for("/p/", 1_000_000), lease_for("/p/", 500_180));
        assert_ne!(bucket_lease, event_lease);
        assert_eq!(b["success"][0]["requestPut"]["key"], B64.encode("/p/g/7"));
        assert_eq!(
            b["success"][0]["requestPut"]["lease"],
            bucket_lease.to_string()
        );
        assert_eq!(
            b["success"][1]["requestPut"]["key"],
            B64.encode("/p/revlog/1")
        );
        assert_eq!(
            b["success"][1]["requestPut"]["lease"],
            event_lease.to_string()
        );
        // A lease is missing (etcd does not say which): grant both, then the txn again.
        let not_found = br#"{"error":"etcdserver: requested lease not found","code":5,"message":"etcdserver: requested lease not found"}"#;
        let step = x.on_response(404, not_found, &s, &mut session, 500_000);
        assert_eq!(body(sent(&step))["ID"], bucket_lease.to_string());
        let granted = format!(r#"{{{HEADER},"ID":"1","TTL":"60"}}"#);
        let step = x.on_response(200, granted.as_bytes(), &s, &mut session, 500_000);
        let o = sent(&step);
        assert_eq!(o.request.path, "/v3/lease/grant");
        assert_eq!(body(o)["ID"], event_lease.to_string());
        let step = x.on_response(200, granted.as_bytes(), &s, &mut session, 500_000);
        assert_eq!(sent(&step).request.path, "/v3/kv/txn");
        // Granted once per exchange: another 404 fails the write.
        assert!(matches!(
            x.on_response(404, not_found, &s, &mut session, 500_000),
            Step::Done(Answer::Put(Err(WriteError::Failed)))
        ));
    }

    #[test]
    fn a_put_compares_the_version_and_grants_its_slice_lease_when_missing() {
        let s = settings(false);
        let mut session = Session::default();
        let (mut x, step) = Exchange::start(put(Some(5)), &s, &session);
        let b = body(sent(&step));
        assert_eq!(b["compare"][0]["target"], "MOD");
        assert_eq!(b["compare"][0]["mod_revision"], "5");
        let lease = lease_for("/p/", 1_000_000);
        assert_eq!(b["success"][0]["requestPut"]["lease"], lease.to_string());
        // The lease does not exist yet: grant it, then the same put again.
        let not_found = br#"{"error":"etcdserver: requested lease not found","message":"etcdserver: requested lease not found","code":5}"#;
        let step = x.on_response(404, not_found, &s, &mut session, 999_000);
        let o = sent(&step);
        assert_eq!(o.request.path, "/v3/lease/grant");
        assert_eq!(body(o)["ID"], lease.to_string());
        let exists = br#"{"error":"etcdserver: lease already exists","message":"etcdserver: lease already exists","code":9}"#;
        let step = x.on_response(412, exists, &s, &mut session, 999_000);
        assert_eq!(sent(&step).request.path, "/v3/kv/txn");
        // A lost compare has no `succeeded`: a conflict, with the key as it is
        // now from the failure branch's range (here: absent).
        let lost = format!(r#"{{{HEADER},"responses":[{{"response_range":{{}}}}]}}"#);
        assert!(matches!(
            x.on_response(200, lost.as_bytes(), &s, &mut session, 999_000),
            Step::Done(Answer::Lost(ref now)) if *now == Stored::default()
        ));
        let (mut x, _) = Exchange::start(put(Some(5)), &s, &session);
        let lost = format!(
            r#"{{{HEADER},"responses":[{{"response_range":{{"kvs":[{{"key":"{}","value":"{}","mod_revision":"6"}}]}}}}]}}"#,
            B64.encode("/p/k"),
            B64.encode("newer")
        );
        match x.on_response(200, lost.as_bytes(), &s, &mut session, 999_000) {
            Step::Done(Answer::Lost(now)) => {
                assert_eq!(now.version, Some(6));
                assert_eq!(now.value.as_deref(), Some(&b"newer"[..]));
            }
            _ => panic!("expected the key as it is now"),
        }
        let (mut x, step) = Exchange::start(put(None), &s, &session);
        assert_eq!(body(sent(&step))["compare"][0]["target"], "CREATE");
        let won = format!(r#"{{{HEADER},"succeeded":true}}"#);
        assert!(matches!(
            x.on_response(200, won.as_bytes(), &s, &mut session, 0),
            Step::Done(Answer::Put(Ok(())))
        ));
    }

    #[test]
    fn a_write_is_resent_only_when_it_surely_never_reached_etcd() {
        let s = settings(false);
        let mut session = Session::default();
        // Envoy's own 503 (no member reachable): never sent, so sent again.
        let (mut x, _) = Exchange::start(put(Some(1)), &s, &session);
        let envoy_503 = b"upstream connect error or disconnect/reset before headers. reset reason: connection failure";
        assert!(matches!(
            x.on_response(503, envoy_503, &s, &mut session, 0),
            Step::Send(_)
        ));
        // Envoy 1.40's words for a member that refused the connection.
        let (mut x, _) = Exchange::start(put(Some(1)), &s, &session);
        let refused = b"upstream connect error or disconnect/reset before headers. reset reason: remote connection failure";
        assert!(matches!(
            x.on_response(503, refused, &s, &mut session, 0),
            Step::Send(_)
        ));
        let (mut x, _) = Exchange::start(put(Some(1)), &s, &session);
        assert!(matches!(
            x.on_response(503, b"no healthy upstream", &s, &mut session, 0),
            Step::Send(_)
        ));
        // A timeout, or etcd's own error: it may have been applied. Not resent.
        let (mut x, _) = Exchange::start(put(Some(1)), &s, &session);
        assert!(matches!(
            x.on_response(504, b"upstream request timeout", &s, &mut session, 0),
            Step::Done(Answer::Put(Err(WriteError::Failed)))
        ));
        // Nor a connection that closed (or was reset) after the request went
        // out: etcd may have applied it before.
        for gone in [
            &b"upstream connect error or disconnect/reset before headers. reset reason: connection termination"[..],
            b"upstream connect error or disconnect/reset before headers. reset reason: remote reset",
            b"",
        ] {
            let (mut x, _) = Exchange::start(put(Some(1)), &s, &session);
            assert!(
                matches!(
                    x.on_response(503, gone, &s, &mut session, 0),
                    Step::Done(Answer::Put(Err(WriteError::Failed)))
                ),
                "{}",
                String::from_utf8_lossy(gone)
            );
            // A read is repeated all the same.
            let (mut x, _) = Exchange::start(Command::Get { key: "k".into() }, &s, &session);
            assert!(matches!(
                x.on_response(503, gone, &s, &mut session, 0),
                Step::Send(_)
            ));
        }
        let (mut x, _) = Exchange::start(put(Some(1)), &s, &session);
        let etcd_503 = br#"{"error":"etcdserver: request timed out","code":14}"#;
        assert!(matches!(
            x.on_response(503, etcd_503, &s, &mut session, 0),
            Step::Done(Answer::Put(Err(WriteError::Failed)))
        ));
    }

    #[test]
    fn with_credentials_it_logs_in_first_and_again_once_when_the_token_lapses() {
        let s = settings(true);
        let mut session = Session::default();
        let (mut x, step) = Exchange::start(Command::Get { key: "k".into() }, &s, &session);
        let o = sent(&step);
        assert_eq!(o.request.path, "/v3/auth/authenticate");
        assert_eq!(body(o)["password"], "secret");
        let step = x.on_response(
            200,
            format!(r#"{{{HEADER},"token":"tok.1"}}"#).as_bytes(),
            &s,
            &mut session,
            0,
        );
        assert_eq!(sent(&step).token.as_deref(), Some("tok.1"));
        assert_eq!(session.token.as_deref(), Some("tok.1"));
        // A later command starts with the session's token; it lapsed (401):
        // log in again, once.
        let (mut x, step) = Exchange::start(Command::Get { key: "k".into() }, &s, &session);
        assert_eq!(sent(&step).token.as_deref(), Some("tok.1"));
        let lapsed = br#"{"error":"etcdserver: invalid auth token","code":16}"#;
        let step = x.on_response(401, lapsed, &s, &mut session, 0);
        assert_eq!(sent(&step).request.path, "/v3/auth/authenticate");
        let step = x.on_response(
            200,
            format!(r#"{{{HEADER},"token":"tok.2"}}"#).as_bytes(),
            &s,
            &mut session,
            0,
        );
        assert_eq!(sent(&step).token.as_deref(), Some("tok.2"));
        assert!(matches!(
            x.on_response(401, lapsed, &s, &mut session, 0),
            Step::Done(Answer::Got(Err(Unavailable)))
        ));
        // Credentials never appear in Debug output.
        assert!(!format!("{s:?}").contains("secret"));
    }

    #[test]
    fn garbage_truncated_or_wrongly_typed_answers_are_unavailable_never_a_value() {
        let s = settings(false);
        let mut session = Session::default();
        for bad in [
            &b"garbage"[..],
            br#"{"header":{"revision":"7"},"kvs":[{"key":"!!","value":"x"#,
            br#"{"header":{"revision":"7"},"kvs":[{"key":"a2V5","value":"***"}]}"#,
            br#"{"header":{"revision":"x"}}"#,
            br#"{"kvs":[]}"#,
            br#"[]"#,
        ] {
            let (mut x, _) = Exchange::start(Command::Get { key: "k".into() }, &s, &session);
            // Resent to other members, then given up: never a value.
            let mut step = x.on_response(200, bad, &s, &mut session, 0);
            while let Step::Send(_) = step {
                step = x.on_response(200, bad, &s, &mut session, 0);
            }
            assert!(
                matches!(step, Step::Done(Answer::Got(Err(Unavailable)))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn a_failed_callout_is_status_0_and_its_headers_are_never_read() {
        assert_eq!(
            callout_status(0, || panic!("the host would refuse: BadArgument")),
            0
        );
        assert_eq!(callout_status(3, || Some(b"503".to_vec())), 503);
        assert_eq!(callout_status(3, || None), 0);
        assert_eq!(callout_status(3, || Some(b"\xff2".to_vec())), 0);
        assert_eq!(callout_status(3, || Some(b"OK".to_vec())), 0);
    }

    #[test]
    fn leases_are_shared_per_slice_positive_and_outlive_their_slice() {
        let a = lease_for("/p/", 1000);
        assert_eq!(a, lease_for("/p/", 1001), "same slice, same lease");
        assert_ne!(a, lease_for("/p/", 1000 + LEASE_SLICE_SECS));
        assert_ne!(a, lease_for("/q/", 1000), "per prefix");
        assert!(a > 0);
        assert_eq!(lease_for("/p/", u64::MAX), 0, "never expires: no lease");
        let ttl = lease_ttl(1000, 900);
        assert!(900 + ttl >= 1000 + LEASE_MARGIN_SECS);
        assert!(ttl <= LEASE_SLICE_SECS + LEASE_MARGIN_SECS + 100);
    }
}
