//! One suite of store tests for every backend, natively: the same cases run on
//!
//! - `shared_data`: `MemoryKv` through `Kv::Local` (Envoy shared data's semantics;
//!   every operation ends in one poll, `run_now`);
//! - `memory_remote`: `Kv::Remote`, each `Command` answered by a small in-memory model
//!   of etcd (global revisions, create-if-absent, compare on the version);
//! - `etcd`: `Kv::Remote`, each `Command` carried out by the production `Exchange`
//!   as HTTP POSTs to a real etcd (one member, shared by the whole file, a key prefix
//!   per test; see `common::etcd_driver`).
//!
//! The two remote backends also run two operations interleaved one store command at
//! a time, so the CAS races (two refreshes of one token, two issuances into one
//! bucket, two first loads of the server key) happen the same way on every run.
//!
//! Each (case, backend) is its own test, `<case>::<backend>`:
//!
//!     cargo test --release --test store_suite

mod common;

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::rc::Rc;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use std::cell::{Cell, RefCell};

use common::etcd::EtcdCluster;
use common::etcd_driver::EtcdDriver;
use envoy_oauth2::host::memory::MemoryKv;
use envoy_oauth2::host::{HostRandomness, WriteError};
use envoy_oauth2::oauth::pkce;
use envoy_oauth2::store::bucket::Bucket;
use envoy_oauth2::store::grant::Grant;
use envoy_oauth2::store::keys::REVLOG_PREFIX;
use envoy_oauth2::store::kv::{
    Answer, Command, Kv, Progress, RemoteLink, RunNow, ScanPage, Stored, Suspended,
};
use envoy_oauth2::store::server_key::{self, ServerKey};
use envoy_oauth2::store::{
    bucket_key, CodeBinding, CodeRedemption, GrantRequest, GrantStore, IssuedTokens, Lifetimes,
    RedeemError, RefreshError, StoreError, StoreLayout, TxnReport, CODE_INVALID,
};
use envoy_oauth2::token::{self, HandleKind, ParsedToken};

static RNG: HostRandomness = HostRandomness;

const LAYOUT: StoreLayout = StoreLayout {
    buckets: 8,
    grants_per_bucket: 16,
};
/// Many buckets, most never written (a remote store's default layout has 2^20).
const WIDE: StoreLayout = StoreLayout {
    buckets: 4096,
    grants_per_bucket: 16,
};
/// Every grant in bucket 0: two issuances meet there.
const ONE_BUCKET: StoreLayout = StoreLayout {
    buckets: 1,
    grants_per_bucket: 16,
};

const C1: &str = "client-one";
const C2: &str = "client-two";
const USER: &str = "admin@carbon.super";
const REDIRECT: &str = "https://app.example/cb";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const OTHER_VERIFIER: &str = "eBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const LIFE: Lifetimes = Lifetimes {
    access: 3600,
    refresh: Some(86400),
};

/// Real time: the etcd leases the exchange grants are sized from it.
fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

// ---------------------------------------------------------------- backends

/// etcd's semantics for the store's two commands, in memory: every write gets the
/// next global revision; a put with `expect: None` only creates, `Some(v)` only
/// replaces the key last written at revision `v`. (Leases are not modelled: no key
/// lapses during a test.)
#[derive(Default)]
struct MemoryModel {
    keys: RefCell<BTreeMap<String, (Vec<u8>, u64)>>,
    revision: Cell<u64>,
    /// Apply this many of the next successful writes, but answer each as lost
    /// (a timeout or a closed connection after etcd applied it).
    lose_put_answers: Cell<u32>,
}

impl MemoryModel {
    fn answer(&self, command: Command) -> Answer {
        let mut keys = self.keys.borrow_mut();
        match command {
            Command::Get { key } => Answer::Got(Ok(match keys.get(&key) {
                Some((value, version)) => Stored {
                    value: Some(value.clone()),
                    version: Some(*version),
                },
                None => Stored::default(),
            })),
            Command::Put {
                key,
                value,
                expect,
                also,
                ..
            } => {
                if keys.get(&key).map(|(_, v)| *v) != expect {
                    // As etcd's failure branch: the key as it is now.
                    return Answer::Lost(match keys.get(&key) {
                        Some((value, version)) => Stored {
                            value: Some(value.clone()),
                            version: Some(*version),
                        },
                        None => Stored::default(),
                    });
                }
                let revision = self.revision.get() + 1;
                self.revision.set(revision);
                keys.insert(key, (value, revision));
                // etcd's success branch writes both, at one revision.
                if let Some(a) = also {
                    keys.insert(a.key, (a.value, revision));
                }
                if self.lose_put_answers.get() > 0 {
                    self.lose_put_answers.set(self.lose_put_answers.get() - 1);
                    return Answer::Put(Err(WriteError::Failed));
                }
                Answer::Put(Ok(()))
            }
            Command::Scan { from, to, limit } => {
                let mut entries: Vec<(String, Stored)> = keys
                    .range(from..to)
                    .map(|(k, (value, version))| {
                        let stored = Stored {
                            value: Some(value.clone()),
                            version: Some(*version),
                        };
                        (k.clone(), stored)
                    })
                    .take(limit as usize + 1)
                    .collect();
                let more = entries.len() > limit as usize;
                entries.truncate(limit as usize);
                Answer::Scanned(Ok(ScanPage { entries, more }))
            }
        }
    }
}

/// A store the cases run on.
enum Backend {
    SharedData(&'static MemoryKv),
    MemoryRemote(MemoryModel),
    Etcd(EtcdDriver),
}

/// One etcd member for the whole test binary (a static is never dropped: a watchdog
/// stops it when the process exits). Tests keep apart by key prefix.
fn etcd_urls() -> Vec<String> {
    static URLS: OnceLock<Vec<String>> = OnceLock::new();
    URLS.get_or_init(|| {
        let cluster = EtcdCluster::start(1);
        cluster.stop_when_process_exits();
        let urls = cluster.client_urls();
        std::mem::forget(cluster);
        urls
    })
    .clone()
}

impl Backend {
    /// Envoy shared data: the keys are made at configuration, as the filter does.
    fn shared_data(_test: &str) -> Backend {
        let b = Backend::SharedData(Box::leak(Box::default()));
        b.configure(LAYOUT);
        b
    }

    fn memory_remote(_test: &str) -> Backend {
        Backend::MemoryRemote(MemoryModel::default())
    }

    fn etcd(test: &str) -> Backend {
        let prefix = format!("/store-suite/{}/{test}/", std::process::id());
        Backend::Etcd(EtcdDriver::new(etcd_urls(), &prefix))
    }

    /// What configuration does before requests (a remote store creates nothing).
    fn configure(&self, layout: StoreLayout) {
        self.run(move |kv| async move { GrantStore::over(kv, &RNG, layout).ensure_created() })
            .expect("configure the store");
    }

    /// Builds an operation over this store and runs it to its end.
    fn run<T, F, Fut>(&self, make: F) -> T
    where
        T: 'static,
        F: FnOnce(Kv<'static>) -> Fut,
        Fut: Future<Output = T> + 'static,
    {
        match self {
            Backend::SharedData(kv) => make(Kv::Local(*kv))
                .run_now()
                .expect("over shared data an operation ends in one poll"),
            Backend::Etcd(driver) => driver.run(make),
            Backend::MemoryRemote(_) => {
                let mut racer = Racer::start(make);
                let mut trace = Trace::default();
                while racer.step(self, 'A', &mut trace) {}
                racer.done.expect("the operation ended")
            }
        }
    }

    /// The answer of a remote store to one command.
    fn answer(&self, command: Command) -> Answer {
        match self {
            Backend::SharedData(_) => panic!("shared data takes no commands: it answers at once"),
            Backend::MemoryRemote(model) => model.answer(command),
            Backend::Etcd(driver) => driver.execute(command),
        }
    }

    /// Runs `a` and `b` interleaved one store command at a time (A, B, A, B, ...;
    /// once one has ended, the other alone), and what each command got.
    fn interleave<A, B, FA, FB, FutA, FutB>(&self, a: FA, b: FB) -> (A, B, Trace)
    where
        A: 'static,
        B: 'static,
        FA: FnOnce(Kv<'static>) -> FutA,
        FB: FnOnce(Kv<'static>) -> FutB,
        FutA: Future<Output = A> + 'static,
        FutB: Future<Output = B> + 'static,
    {
        assert!(
            !matches!(self, Backend::SharedData(_)),
            "shared data answers at once: nothing to interleave"
        );
        let mut ra = Racer::start(a);
        let mut rb = Racer::start(b);
        let mut trace = Trace::default();
        let mut a_turn = true;
        loop {
            let stepped = if a_turn {
                ra.step(self, 'A', &mut trace) || rb.step(self, 'B', &mut trace)
            } else {
                rb.step(self, 'B', &mut trace) || ra.step(self, 'A', &mut trace)
            };
            if !stepped {
                break;
            }
            a_turn = !a_turn;
        }
        (ra.done.expect("A ended"), rb.done.expect("B ended"), trace)
    }
}

/// One suspended operation of an interleaving.
struct Racer<T> {
    op: Suspended<T>,
    waiting: Option<Command>,
    done: Option<T>,
}

impl<T: 'static> Racer<T> {
    /// Builds the operation over a fresh remote link and runs it to its first command.
    fn start<F, Fut>(make: F) -> Self
    where
        F: FnOnce(Kv<'static>) -> Fut,
        Fut: Future<Output = T> + 'static,
    {
        let link = Rc::new(RemoteLink::default());
        let (op, progress) = Suspended::start(link.clone(), make(Kv::Remote(link)));
        let mut r = Racer {
            op,
            waiting: None,
            done: None,
        };
        r.settle(progress);
        r
    }

    fn settle(&mut self, progress: Progress<T>) {
        match progress {
            Progress::Done(v) => self.done = Some(v),
            Progress::Waiting(c) => self.waiting = Some(c),
            Progress::Stuck => panic!("the operation waits on no command (Progress::Stuck)"),
        }
    }

    /// Answers the command it waits on; false if it has ended.
    fn step(&mut self, backend: &Backend, who: char, trace: &mut Trace) -> bool {
        let Some(command) = self.waiting.take() else {
            return false;
        };
        assert!(trace.0.len() < 10_000, "no end in sight:\n{trace}");
        let answer = backend.answer(command.clone());
        trace.0.push((who, command, answer.clone()));
        let progress = self.op.resume(answer);
        self.settle(progress);
        true
    }
}

/// The commands of an interleaving, in order, with their answers.
#[derive(Default)]
struct Trace(Vec<(char, Command, Answer)>);

impl Trace {
    /// Conditional writes of `key` that lost their compare.
    fn conflicts_on(&self, key: &str) -> usize {
        self.0
            .iter()
            .filter(|(_, c, a)| matches!(c, Command::Put { key: k, .. } if k == key) && lost(a))
            .count()
    }
}

/// A conditional write that lost its compare (etcd also says what the key holds).
fn lost(a: &Answer) -> bool {
    matches!(
        a,
        Answer::Lost(_) | Answer::Put(Err(WriteError::CasMismatch))
    )
}

impl fmt::Display for Trace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (who, c, a) in &self.0 {
            let c = match c {
                Command::Put { key, expect, .. } => format!("put {key} expecting {expect:?}"),
                other => format!("{other:?}"),
            };
            let a = match a {
                Answer::Got(Ok(s)) => format!("version {:?}", s.version),
                other => format!("{other:?}"),
            };
            writeln!(f, "  {who}: {c} -> {a}")?;
        }
        Ok(())
    }
}

// ------------------------------------------------------------- operations

fn store(kv: Kv<'static>, layout: StoreLayout) -> GrantStore<'static> {
    GrantStore::over(kv, &RNG, layout)
}

fn user_grant(client: &str) -> GrantRequest {
    GrantRequest {
        client_id: client.into(),
        user: Some(USER.into()),
        scope: "default PRODUCTION".into(),
        lifetimes: LIFE,
    }
}

fn parsed(text: &str) -> ParsedToken {
    token::parse(text).expect("a token of this store")
}

fn refresh_of(t: &IssuedTokens) -> ParsedToken {
    parsed(t.refresh_token.as_deref().expect("a refresh token"))
}

async fn issue_op(
    kv: Kv<'static>,
    layout: StoreLayout,
    req: GrantRequest,
    now: u64,
) -> Result<IssuedTokens, StoreError> {
    store(kv, layout).issue(&req, now).await
}

async fn refresh_op(
    kv: Kv<'static>,
    presented: ParsedToken,
    grace_seconds: u64,
    now: u64,
) -> (Result<IssuedTokens, RefreshError>, TxnReport) {
    let mut s = store(kv, LAYOUT);
    let r = s
        .refresh(&presented, C1, None, LIFE, grace_seconds, now)
        .await;
    (r, s.report)
}

fn issue(b: &Backend, req: &GrantRequest, now: u64) -> IssuedTokens {
    issue_in(b, LAYOUT, req, now)
}

fn issue_in(b: &Backend, layout: StoreLayout, req: &GrantRequest, now: u64) -> IssuedTokens {
    let req = req.clone();
    b.run(move |kv| issue_op(kv, layout, req, now))
        .expect("issue a grant")
}

/// The live grant `t` names at `now`, if any.
fn lookup(b: &Backend, t: &ParsedToken, now: u64) -> Option<Grant> {
    let t = t.clone();
    b.run(move |kv| async move { store(kv, LAYOUT).lookup(&t, now).await })
        .expect("the store answers a lookup")
}

fn refresh(
    b: &Backend,
    t: &ParsedToken,
    now: u64,
) -> (Result<IssuedTokens, RefreshError>, TxnReport) {
    let t = t.clone();
    b.run(move |kv| refresh_op(kv, t, 0, now))
}

fn load_key(b: &Backend) -> ServerKey {
    b.run(|kv| async move { server_key::load(&kv, &RNG).await })
        .expect("the server key")
}

// ------------------------------------------------------------------ cases

fn issue_then_lookup(b: Backend) {
    let now = now();
    let t = issue(&b, &user_grant(C1), now);
    let access = parsed(&t.access_token);
    let g = lookup(&b, &access, now + 1).expect("the issued access token is found");
    assert_eq!(
        (g.client_id.as_str(), g.user.as_deref(), g.scope.as_str()),
        (C1, Some(USER), "default PRODUCTION")
    );
    assert!(lookup(&b, &refresh_of(&t), now + 1).is_some());
    // Unknown: another grant id in the same bucket, a bucket nobody wrote (beyond the
    // layout), and the right grant with a forged secret.
    let other_id = token::new_grant_id(&RNG).unwrap();
    for (bucket, id) in [
        (access.bucket, other_id),
        (12_345, other_id),
        (access.bucket, access.grant_id),
    ] {
        let unknown = token::mint_access(bucket, &id, &RNG).unwrap();
        assert!(
            lookup(&b, &parsed(&unknown.text), now + 1).is_none(),
            "bucket {bucket}: an unknown token was found"
        );
    }
}

fn refresh_rotates(b: Backend) {
    let now = now();
    let t = issue(&b, &user_grant(C1), now);
    let (r, report) = refresh(&b, &refresh_of(&t), now + 10);
    let n = r.expect("the first refresh rotates");
    assert_eq!(report.refresh_reuse_revoked, 0);
    assert_eq!(n.scope, "default PRODUCTION");
    // The old access token died with the rotation; the new pair works.
    assert!(lookup(&b, &parsed(&t.access_token), now + 11).is_none());
    assert!(lookup(&b, &parsed(&n.access_token), now + 11).is_some());
    assert!(lookup(&b, &refresh_of(&n), now + 11).is_some());
    assert!(lookup(&b, &refresh_of(&t), now + 11).is_none());
    let (r, _) = refresh(&b, &refresh_of(&n), now + 20);
    let n2 = r.expect("the new refresh token rotates in turn");
    assert!(lookup(&b, &parsed(&n2.access_token), now + 21).is_some());
    // Another client cannot use it.
    let theirs = refresh_of(&n2);
    let r = b.run(move |kv| async move {
        store(kv, LAYOUT)
            .refresh(&theirs, C2, None, LIFE, 0, now + 22)
            .await
            .err()
    });
    assert_eq!(r, Some(RefreshError::InvalidGrant));
    assert!(lookup(&b, &parsed(&n2.access_token), now + 22).is_some());
}

fn refresh_reuse_revokes_the_family(b: Backend) {
    let now = now();
    let t = issue(&b, &user_grant(C1), now);
    let first = refresh_of(&t);
    let n1 = refresh(&b, &first, now + 10).0.expect("rotation 1");
    let n2 = refresh(&b, &refresh_of(&n1), now + 20)
        .0
        .expect("rotation 2");
    // The first refresh token, two rotations old, comes back: reuse.
    let (r, report) = refresh(&b, &first, now + 30);
    assert_eq!(r.err(), Some(RefreshError::InvalidGrant));
    assert_eq!(report.refresh_reuse_revoked, 1, "reported as reuse");
    // The whole grant is revoked: the newest pair too.
    assert!(lookup(&b, &parsed(&n2.access_token), now + 31).is_none());
    assert!(lookup(&b, &refresh_of(&n2), now + 31).is_none());
    let (r, report) = refresh(&b, &refresh_of(&n2), now + 32);
    assert_eq!(r.err(), Some(RefreshError::InvalidGrant));
    assert_eq!(report.refresh_reuse_revoked, 0, "revoked once, not again");
}

fn revoke_ends_the_grant(b: Backend) {
    let now = now();
    let t = issue(&b, &user_grant(C1), now);
    let access = parsed(&t.access_token);
    let refresh_token = refresh_of(&t);
    let revoke = |token: &ParsedToken, client: &'static str, at: u64| {
        let token = token.clone();
        b.run(move |kv| async move { store(kv, LAYOUT).revoke(&token, client, at).await })
            .expect("the store answers a revocation")
    };
    // Another client's revocation does nothing.
    assert_eq!(revoke(&refresh_token, C2, now + 1), None);
    assert!(lookup(&b, &access, now + 1).is_some());
    let r = revoke(&refresh_token, C1, now + 2).expect("the owner revokes");
    assert_eq!(r.access_fingerprint, access.hash.fingerprint());
    assert_eq!(r.user.as_deref(), Some(USER));
    assert!(lookup(&b, &access, now + 3).is_none());
    assert!(lookup(&b, &refresh_token, now + 3).is_none());
    assert_eq!(
        refresh(&b, &refresh_token, now + 4).0.err(),
        Some(RefreshError::InvalidGrant)
    );
    assert_eq!(revoke(&access, C1, now + 5), None, "already revoked");
}

fn revoke_clients_removes_only_the_listed_clients(b: Backend) {
    let now = now();
    // Over a wide layout, as a remote store's, most buckets are never written.
    b.configure(WIDE);
    let gone: Vec<ParsedToken> = (0..12)
        .map(|_| parsed(&issue_in(&b, WIDE, &user_grant("leaked"), now).access_token))
        .collect();
    // More bucket keys than one page of a remote scan (128): the sweep pages on.
    let kept: Vec<ParsedToken> = (0..150)
        .map(|_| parsed(&issue_in(&b, WIDE, &user_grant("fine"), now).access_token))
        .collect();
    let revoked = b
        .run(move |kv| async move {
            let listed = vec!["leaked".to_string()];
            store(kv, WIDE).revoke_clients(&listed, now + 1).await
        })
        .expect("the sweep ends");
    assert_eq!(revoked, 12, "every grant of the listed client, no other");
    for t in &gone {
        assert!(lookup(&b, t, now + 2).is_none(), "a leaked grant survived");
    }
    for t in &kept {
        assert!(lookup(&b, t, now + 2).is_some(), "an unlisted grant died");
    }
}

fn binding() -> CodeBinding {
    CodeBinding {
        client_id: C1.into(),
        user: USER.into(),
        scope: "default".into(),
        redirect_uri: REDIRECT.into(),
        redirect_given: true,
        challenge: Some((pkce::Method::S256, pkce::s256_challenge(VERIFIER))),
    }
}

async fn redeem_op(
    kv: Kv<'static>,
    code: ParsedToken,
    now: u64,
) -> (Result<IssuedTokens, RedeemError>, TxnReport) {
    redeem_as(kv, code, now, C1, Some(VERIFIER)).await
}

async fn redeem_as(
    kv: Kv<'static>,
    code: ParsedToken,
    now: u64,
    client_id: &'static str,
    verifier: Option<&'static str>,
) -> (Result<IssuedTokens, RedeemError>, TxnReport) {
    let mut s = store(kv, LAYOUT);
    let r = CodeRedemption {
        client_id,
        redirect_uri: Some(REDIRECT),
        verifier,
        lifetimes: LIFE,
    };
    let out = s.redeem_code(&code, &r, now).await;
    (out, s.report)
}

fn issue_code(b: &Backend, now: u64) -> ParsedToken {
    let text = b
        .run(move |kv| async move { store(kv, LAYOUT).issue_code(&binding(), 60, now).await })
        .expect("issue a code");
    assert!(token::parse(&text).is_none(), "a code is no bearer token");
    token::parse_handle(&text, HandleKind::Code).expect("a code of this store")
}

fn authorization_code_redeems_once(b: Backend) {
    let now = now();
    let code = issue_code(&b, now);
    let redeem = |at: u64| {
        let code = code.clone();
        b.run(move |kv| redeem_op(kv, code, at))
    };
    let (r, _) = redeem(now + 1);
    let t = r.expect("the first redemption gives tokens");
    assert_eq!(t.scope, "default");
    let g = lookup(&b, &parsed(&t.access_token), now + 2).expect("a live grant");
    assert_eq!(g.user.as_deref(), Some(USER));
    // Again: a replay, and what the code produced dies.
    let (r, report) = redeem(now + 3);
    assert_eq!(r.err(), Some(RedeemError::Replayed));
    assert_eq!(report.code_replay_revoked, 1);
    assert!(lookup(&b, &parsed(&t.access_token), now + 4).is_none());
    assert!(lookup(&b, &refresh_of(&t), now + 4).is_none());
    // A third time it is simply invalid.
    assert_eq!(
        redeem(now + 5).0.err(),
        Some(RedeemError::Invalid(CODE_INVALID))
    );
}

/// The record keeps the code's binding after redemption, on every backend, so
/// a replay without the verifier or from another client is refused and
/// revokes nothing; the code's client with its verifier still revokes.
fn a_replay_without_proof_revokes_nothing(b: Backend) {
    let now = now();
    let code = issue_code(&b, now);
    let c = code.clone();
    let t = b
        .run(move |kv| redeem_op(kv, c, now + 1))
        .0
        .expect("the first redemption gives tokens");
    for (client, verifier) in [(C1, None), (C1, Some(OTHER_VERIFIER)), (C2, Some(VERIFIER))] {
        let c = code.clone();
        let (r, report) = b.run(move |kv| redeem_as(kv, c, now + 2, client, verifier));
        assert_eq!(r.err(), Some(RedeemError::Invalid(CODE_INVALID)));
        assert_eq!(report.code_replay_revoked, 0);
        if !matches!(b, Backend::SharedData(_)) {
            assert!(
                events(&b).is_empty(),
                "a refused replay announced a revocation"
            );
        }
        assert!(lookup(&b, &parsed(&t.access_token), now + 2).is_some());
    }
    let (r, report) = b.run(move |kv| redeem_op(kv, code, now + 3));
    assert_eq!(r.err(), Some(RedeemError::Replayed));
    assert_eq!(report.code_replay_revoked, 1);
    assert!(lookup(&b, &parsed(&t.access_token), now + 4).is_none());
}

fn server_key_is_created_once(b: Backend) {
    let first = load_key(&b);
    assert_ne!(first, [0u8; 32]);
    assert_eq!(load_key(&b), first, "a second load finds the same key");
    let stored = b.run(|kv| async move { kv.get(server_key::KEY_NAME).await });
    assert_eq!(
        stored.expect("the store answers").value.as_deref(),
        Some(&first[..]),
        "the key is in the store"
    );
}

fn expired_grants_are_not_found(b: Backend) {
    let now = now();
    let req = GrantRequest {
        lifetimes: Lifetimes {
            access: 60,
            refresh: Some(120),
        },
        ..user_grant(C1)
    };
    let t = issue(&b, &req, now);
    let access = parsed(&t.access_token);
    let refresh_token = refresh_of(&t);
    assert!(lookup(&b, &access, now + 59).is_some());
    assert!(lookup(&b, &access, now + 60).is_none(), "access expired");
    assert!(lookup(&b, &refresh_token, now + 119).is_some());
    assert!(
        lookup(&b, &refresh_token, now + 120).is_none(),
        "refresh expired"
    );
    let far = now + 10 * 365 * 86_400;
    assert!(lookup(&b, &access, far).is_none());
    assert!(lookup(&b, &refresh_token, far).is_none());
    // An expired refresh token is refused, and that is no reuse.
    let (r, report) = refresh(&b, &refresh_token, far);
    assert_eq!(r.err(), Some(RefreshError::InvalidGrant));
    assert_eq!(report.refresh_reuse_revoked, 0);
}

// ------------------------------------------- races (interleavable backends)

fn interleaved_refreshes_have_one_winner(b: Backend) {
    let now = now();
    let t = issue(&b, &user_grant(C1), now);
    let presented = refresh_of(&t);
    let p2 = presented.clone();
    let ((ra, _), (rb, report_b), trace) = b.interleave(
        move |kv| refresh_op(kv, presented, 0, now + 10),
        move |kv| refresh_op(kv, p2, 0, now + 10),
    );
    let bucket = bucket_key(refresh_of(&t).bucket);
    assert_eq!(trace.conflicts_on(&bucket), 1, "no race happened:\n{trace}");
    let winner = ra.unwrap_or_else(|e| panic!("A wrote first and lost ({e:?}):\n{trace}"));
    // B read the grant before A rotated it, lost the compare, read it again and
    // found its token rotated away: the reuse of a used refresh token. Without a
    // grace period that revokes the grant, the winner's new pair included.
    assert_eq!(rb.err(), Some(RefreshError::InvalidGrant), "{trace}");
    assert_eq!(report_b.refresh_reuse_revoked, 1, "{trace}");
    assert!(lookup(&b, &parsed(&winner.access_token), now + 11).is_none());
}

fn interleaved_refreshes_within_the_grace_period_get_one_pair(b: Backend) {
    let now = now();
    let t = issue(&b, &user_grant(C1), now);
    let presented = refresh_of(&t);
    let p2 = presented.clone();
    let ((ra, _), (rb, _), trace) = b.interleave(
        move |kv| refresh_op(kv, presented, 30, now + 10),
        move |kv| refresh_op(kv, p2, 30, now + 10),
    );
    let bucket = bucket_key(refresh_of(&t).bucket);
    assert_eq!(trace.conflicts_on(&bucket), 1, "no race happened:\n{trace}");
    // The loser's retry is the grace period's retry: the same new pair, which stays valid.
    let a = ra.unwrap_or_else(|e| panic!("A: {e:?}\n{trace}"));
    let b_ = rb.unwrap_or_else(|e| panic!("B: {e:?}\n{trace}"));
    assert_eq!(a.access_token, b_.access_token);
    assert_eq!(a.refresh_token, b_.refresh_token);
    assert!(lookup(&b, &parsed(&a.access_token), now + 11).is_some());
}

fn interleaved_issuances_into_one_bucket_both_survive(b: Backend) {
    let now = now();
    // The server key exists already (another request made it), so both issuances
    // reach bucket 0 in step.
    let key = load_key(&b);
    let (ra, rb, trace) = b.interleave(
        move |kv| issue_op(kv, ONE_BUCKET, user_grant(C1), now),
        move |kv| issue_op(kv, ONE_BUCKET, user_grant(C2), now),
    );
    assert_eq!(
        trace.conflicts_on(&bucket_key(0)),
        1,
        "no race happened:\n{trace}"
    );
    for (who, r, client) in [("A", ra, C1), ("B", rb, C2)] {
        let t = r.unwrap_or_else(|e| panic!("{who}: {e:?}\n{trace}"));
        let g = lookup(&b, &parsed(&t.access_token), now + 1)
            .unwrap_or_else(|| panic!("{who}'s grant was lost:\n{trace}"));
        assert_eq!(g.client_id, client);
        assert!(lookup(&b, &refresh_of(&t), now + 1).is_some());
    }
    assert_eq!(load_key(&b), key);
}

fn interleaved_first_loads_of_the_server_key_agree(b: Backend) {
    let (ka, kb, trace) = b.interleave(
        |kv| async move { server_key::load(&kv, &RNG).await },
        |kv| async move { server_key::load(&kv, &RNG).await },
    );
    assert_eq!(
        trace.conflicts_on(server_key::KEY_NAME),
        1,
        "both found it absent, one created it:\n{trace}"
    );
    let (ka, kb) = (ka.expect("A's key"), kb.expect("B's key"));
    assert_eq!(ka, kb, "two nodes, two keys:\n{trace}");
    assert_eq!(load_key(&b), ka);
}

fn interleaved_redemptions_of_one_code_have_one_winner(b: Backend) {
    let now = now();
    let code = issue_code(&b, now);
    let c2 = code.clone();
    let ((ra, _), (rb, _), trace) = b.interleave(
        move |kv| redeem_op(kv, code, now + 1),
        move |kv| redeem_op(kv, c2, now + 1),
    );
    let t = ra.unwrap_or_else(|e| panic!("A: {e:?}\n{trace}"));
    // B lost the compare and then saw the code redeemed: a replay, which revokes.
    assert_eq!(rb.err(), Some(RedeemError::Replayed), "{trace}");
    assert!(trace.0.iter().any(|(_, _, a)| lost(a)));
    assert!(lookup(&b, &parsed(&t.access_token), now + 2).is_none());
}

/// etcd applied a write whose answer was lost: issuance, rotation and code
/// redemption read the bucket again and recognise their own write (their fresh
/// random tokens), so the client gets its answer, and nothing is applied twice
/// (a second rotation would look like reuse and revoke the grant).
fn a_write_whose_answer_was_lost_is_recognised_not_repeated(b: Backend) {
    let Backend::MemoryRemote(model) = &b else {
        panic!("the model loses answers on request")
    };
    let now = now();
    model.lose_put_answers.set(1);
    let t = issue(&b, &user_grant(C1), now);
    let grants: usize = model
        .keys
        .borrow()
        .iter()
        .filter(|(k, _)| k.starts_with("oauth2/g/"))
        .map(|(_, (v, _))| Bucket::decode(v).unwrap().grants.len())
        .sum();
    assert_eq!(grants, 1, "the issuance stored one grant");
    assert!(lookup(&b, &parsed(&t.access_token), now + 1).is_some());
    model.lose_put_answers.set(1);
    let (r, report) = refresh(&b, &refresh_of(&t), now + 10);
    let n = r.expect("the rotation is recognised, not taken for reuse");
    assert_eq!(report.refresh_reuse_revoked, 0);
    assert!(lookup(&b, &parsed(&n.access_token), now + 11).is_some());
    assert!(lookup(&b, &parsed(&t.access_token), now + 11).is_none());
    let code = issue_code(&b, now);
    model.lose_put_answers.set(1);
    let code2 = code.clone();
    let (r, report) = b.run(move |kv| redeem_op(kv, code2, now + 1));
    let tokens = r.expect("the redemption is recognised, not taken for a replay");
    assert_eq!(report.code_replay_revoked, 0);
    assert!(lookup(&b, &parsed(&tokens.access_token), now + 2).is_some());
    // A revocation: idempotent, so recognised as well (and its event still published).
    model.lose_put_answers.set(1);
    let token = parsed(&tokens.access_token);
    let r = b.run(move |kv| async move { store(kv, LAYOUT).revoke(&token, C1, now + 3).await });
    let revoked = r
        .expect("the revocation is recognised")
        .expect("it revoked the grant");
    assert_eq!(revoked.user.as_deref(), Some(USER));
    assert!(lookup(&b, &parsed(&tokens.access_token), now + 4).is_none());
    // The first load of the server key (create-if-absent) too: whatever key is there is the key.
    let fresh = Backend::memory_remote("lost-key");
    let Backend::MemoryRemote(m) = &fresh else {
        unreachable!()
    };
    m.lose_put_answers.set(1);
    let key = load_key(&fresh);
    assert_eq!(load_key(&fresh), key);
}

/// The revocation-log events in the store: the bucket each one names.
fn events(b: &Backend) -> Vec<u32> {
    b.run(|kv| async move {
        let page = kv
            .scan(REVLOG_PREFIX, "oauth2/revlog0", 1000)
            .await
            .expect("the store answers a scan");
        page.entries
            .into_iter()
            .map(|(_, s)| u32::from_be_bytes(s.value.unwrap().try_into().unwrap()))
            .collect()
    })
}

/// Over a remote store a revocation and the event that tells other nodes are one
/// write: a rotation and a revocation each leave exactly one event naming their
/// bucket, an issuance none.
fn a_revocation_and_its_event_are_one_write(b: Backend) {
    let now = now();
    let t = issue(&b, &user_grant(C1), now);
    assert!(events(&b).is_empty(), "an issuance announces nothing");
    let bucket = parsed(&t.access_token).bucket;
    let n = refresh(&b, &refresh_of(&t), now + 1).0.expect("a rotation");
    assert_eq!(
        events(&b),
        vec![bucket],
        "the rotation killed the old access token"
    );
    let token = parsed(&n.access_token);
    b.run(move |kv| async move { store(kv, LAYOUT).revoke(&token, C1, now + 2).await })
        .expect("the store answers")
        .expect("revoked");
    assert_eq!(events(&b), vec![bucket, bucket]);
}

// ------------------------------------------------------------- the matrix

/// One `#[test]` per (case, backend), named `<case>::<backend>`; a backend may carry
/// `#[ignore = "why"]`.
macro_rules! suite {
    ($( $case:ident : $( $backend:ident $( #[ignore = $why:literal] )? ),+ ; )+) => {
        $(
            mod $case {
                $(
                    #[test]
                    $( #[ignore = $why] )?
                    fn $backend() {
                        super::$case(super::Backend::$backend(concat!(
                            stringify!($case), "/", stringify!($backend)
                        )));
                    }
                )+
            }
        )+
    };
}

suite! {
    issue_then_lookup: shared_data, memory_remote, etcd;
    refresh_rotates: shared_data, memory_remote, etcd;
    refresh_reuse_revokes_the_family: shared_data, memory_remote, etcd;
    revoke_ends_the_grant: shared_data, memory_remote, etcd;
    revoke_clients_removes_only_the_listed_clients:
        shared_data,
        memory_remote,
        etcd;
    authorization_code_redeems_once: shared_data, memory_remote, etcd;
    a_replay_without_proof_revokes_nothing: shared_data, memory_remote, etcd;
    server_key_is_created_once: shared_data, memory_remote, etcd;
    expired_grants_are_not_found: shared_data, memory_remote, etcd;
    interleaved_refreshes_have_one_winner: memory_remote, etcd;
    interleaved_refreshes_within_the_grace_period_get_one_pair: memory_remote, etcd;
    interleaved_issuances_into_one_bucket_both_survive: memory_remote, etcd;
    interleaved_first_loads_of_the_server_key_agree: memory_remote, etcd;
    interleaved_redemptions_of_one_code_have_one_winner: memory_remote, etcd;
    a_write_whose_answer_was_lost_is_recognised_not_repeated: memory_remote;
    a_revocation_and_its_event_are_one_write: memory_remote, etcd;
}
