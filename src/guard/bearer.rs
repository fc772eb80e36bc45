//! The bearer guard's decision for one request (RFC 6750): which rule applies,
//! whether the token is valid (from the per-worker cache or the store), and
//! the answer when it is not.

use std::rc::Rc;

use crate::config::guard::{DefaultAction, GuardConfig, RevocationMode};
use crate::guard::cache::{Identity, ValidationCache};
use crate::host::KvStore;
use crate::oauth::response::Response;
use crate::store::grant::Grant;
use crate::store::kv::{run_now, Kv};
use crate::store::{GrantStore, LookupFailed};
use crate::token::jwt::{self, Validation, MAX_TOKEN_LEN};
use crate::token::{self, ParsedToken, TokenHash, TokenKind};

pub struct GuardRequest<'a> {
    pub method: &'a str,
    /// `:path` as received, query included.
    pub path: &'a [u8],
    pub authorization: Option<&'a [u8]>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    MissingToken,
    InvalidToken,
    InsufficientScope,
    InvalidRequest,
    NoRule,
    /// The store could not be asked (fleet mode): 503, never a pass.
    StoreUnavailable,
}

impl Reason {
    /// Every reason, in discriminant order (`reason as usize` indexes this).
    pub const ALL: [Reason; 6] = [
        Reason::MissingToken,
        Reason::InvalidToken,
        Reason::InsufficientScope,
        Reason::InvalidRequest,
        Reason::NoRule,
        Reason::StoreUnavailable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::MissingToken => "missing_token",
            Reason::InvalidToken => "invalid_token",
            Reason::InsufficientScope => "insufficient_scope",
            Reason::InvalidRequest => "invalid_request",
            Reason::NoRule => "no_rule",
            Reason::StoreUnavailable => "store_unavailable",
        }
    }
}

#[derive(Debug)]
pub enum Verdict {
    /// Pass upstream; with the identity of the token when one was checked.
    Allow(Option<Rc<Identity>>),
    Deny(Reason, Response),
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CacheUse {
    #[default]
    NotNeeded,
    Hit,
    /// Cached, but the revocation generation moved: checked again in the store.
    Revalidated,
    Miss,
}

#[derive(Debug)]
pub struct Decision {
    pub verdict: Verdict,
    pub cache: CacheUse,
    /// The bearer token came in the query (so the glue may strip it when hiding credentials).
    pub token_in_query: bool,
}

/// Where [`Guard::begin`] left a request.
pub enum Check {
    Decided(Decision),
    /// The token must be read from the store; then [`Guard::finish`].
    Lookup(PendingLookup),
}

pub struct PendingLookup {
    pub token: ParsedToken,
    rule: Option<usize>,
    generation: u64,
    cache_use: CacheUse,
    token_in_query: bool,
}

pub struct Guard {
    pub cfg: GuardConfig,
    cache: ValidationCache,
    /// JWT signature checks done (a cache hit does none).
    jwt_verifications: u64,
    /// The two 401 answers, built once (they depend only on the realm).
    missing_token: Response,
    invalid_token: Response,
}

enum Requirement {
    None,
    /// A valid token with the scopes of rule N (`None`: any scope).
    Token(Option<usize>),
    Deny,
}

const INVALID: &str = "the access token is invalid, expired or revoked";

impl Guard {
    pub fn new(cfg: GuardConfig) -> Self {
        let cache = ValidationCache::new(cfg.cache.max_entries);
        let mut g = Guard {
            cfg,
            cache,
            jwt_verifications: 0,
            missing_token: Response::new(401),
            invalid_token: Response::new(401),
        };
        g.missing_token = g.unauthorized(None);
        g.invalid_token = g.unauthorized(Some(INVALID));
        g
    }

    pub fn jwt_verifications(&self) -> u64 {
        self.jwt_verifications
    }

    pub fn cached_entries(&self) -> usize {
        self.cache.len()
    }

    /// The whole decision over a store that answers at once (shared data).
    pub fn check(&mut self, kv: &dyn KvStore, now: u64, req: &GuardRequest) -> Decision {
        match self.begin(kv, true, now, req) {
            Check::Decided(d) => d,
            Check::Lookup(pending) => {
                let found = run_now(GrantStore::lookup_in(&Kv::Local(kv), &pending.token, now))
                    .unwrap_or(Err(LookupFailed::Unavailable));
                self.finish(pending, found, now)
            }
        }
    }

    /// Everything that needs no store read: the rule, the token, the cache.
    /// `generations` is the local shared data holding the revocation
    /// generations; `cache_trusted` is false when this node cannot be sure it
    /// heard of every revocation (fleet mode, see `revocation_feed`): then even
    /// a cached token is checked in the store.
    pub fn begin(
        &mut self,
        generations: &dyn KvStore,
        cache_trusted: bool,
        now: u64,
        req: &GuardRequest,
    ) -> Check {
        let (path, query) = split_path(req.path);
        let requirement = self.requirement(req.method, path);
        let mut decision = Decision {
            verdict: Verdict::Allow(None),
            cache: CacheUse::NotNeeded,
            token_in_query: false,
        };
        let rule = match requirement {
            Requirement::None => return Check::Decided(decision),
            Requirement::Deny => {
                decision.verdict = Verdict::Deny(Reason::NoRule, self.forbidden());
                return Check::Decided(decision);
            }
            Requirement::Token(rule) => rule,
        };
        let (presented, token_in_query) = match self.presented_token(req.authorization, query) {
            Ok(Some(t)) => t,
            Ok(None) => {
                decision.verdict = Verdict::Deny(Reason::MissingToken, self.missing_token.clone());
                return Check::Decided(decision);
            }
            Err(()) => {
                decision.verdict = Verdict::Deny(Reason::InvalidRequest, self.bad_request());
                return Check::Decided(decision);
            }
        };
        decision.token_in_query = token_in_query;
        // The generation only stamps cache entries: without a cache, no read.
        let immediate =
            self.cfg.revocation_mode == RevocationMode::Immediate && self.cfg.cache.max_entries > 0;
        // Immediate mode reads the shard's revocation generation before the
        // store, so a revocation racing with this check is seen by the next
        // request at the latest.
        let generation_of = |bucket| {
            if immediate {
                GrantStore::revocation_generation(generations, bucket)
            } else {
                0
            }
        };
        // A JWT is looked up in the cache by the hash of its text first: a hit
        // skips the signature check.
        let is_jwt = jwt::looks_like_jwt(&presented);
        let (hash, known) = if is_jwt {
            // Without a `jwt` section, JWT-shaped tokens are simply invalid.
            if self.cfg.jwt.is_none() || presented.len() > MAX_TOKEN_LEN {
                decision.verdict = self.verdict(rule, None);
                return Check::Decided(decision);
            }
            (TokenHash::of_text(&presented), None)
        } else {
            match token::parse(&presented).filter(|t| t.kind == TokenKind::Access) {
                Some(p) => (p.hash, Some(p)),
                None => {
                    decision.verdict = self.verdict(rule, None);
                    return Check::Decided(decision);
                }
            }
        };
        let mut cache_use = CacheUse::Miss;
        if let Some(entry) = self.cache.get(&hash, now) {
            // Entries never outlive their token (valid_until <= expiry).
            let bucket = entry.bucket;
            let identity = entry.identity.clone();
            if cache_trusted && entry.generation == generation_of(bucket) {
                decision.cache = CacheUse::Hit;
                decision.verdict = self.verdict(rule, identity);
                return Check::Decided(decision);
            }
            cache_use = CacheUse::Revalidated;
        }
        let parsed = match known {
            Some(p) => p,
            // Revalidating a JWT this worker verified before (same text, same
            // hash): only its grant needs checking again.
            None if cache_use == CacheUse::Revalidated => match jwt::parse_unverified(&presented) {
                Some(p) => p,
                None => {
                    decision.cache = cache_use;
                    decision.verdict = self.verdict(rule, None);
                    return Check::Decided(decision);
                }
            },
            None => match self.verify_jwt(&presented, now) {
                Some(p) => p,
                None => {
                    self.cache.remove(&hash);
                    decision.cache = cache_use;
                    decision.verdict = self.verdict(rule, None);
                    return Check::Decided(decision);
                }
            },
        };
        let generation = generation_of(parsed.bucket);
        Check::Lookup(PendingLookup {
            token: parsed,
            rule,
            generation,
            cache_use,
            token_in_query,
        })
    }

    /// The decision once the store answered a [`PendingLookup`]. A store that
    /// did not answer is a 503, never a pass.
    pub fn finish(
        &mut self,
        pending: PendingLookup,
        found: Result<Option<Grant>, LookupFailed>,
        now: u64,
    ) -> Decision {
        let mut decision = Decision {
            verdict: Verdict::Allow(None),
            cache: pending.cache_use,
            token_in_query: pending.token_in_query,
        };
        let grant = match found {
            Ok(g) => g,
            // Unreadable data is never trusted: an invalid token.
            Err(LookupFailed::Corrupt) => None,
            Err(LookupFailed::Unavailable) => {
                decision.verdict = Verdict::Deny(Reason::StoreUnavailable, self.unavailable());
                return decision;
            }
        };
        let identity = grant.map(|g| {
            Rc::new(Identity {
                fingerprint: pending.token.hash.fingerprint(),
                expires_header: g.access_expires_at.to_string(),
                client_id: g.client_id,
                user: g.user,
                scope: g.scope,
                expires_at: g.access_expires_at,
            })
        });
        let hash = pending.token.hash;
        match &identity {
            Some(i) => {
                let until = now
                    .saturating_add(self.cfg.cache.ttl_seconds)
                    .min(i.expires_at);
                self.cache.insert(
                    hash,
                    identity.clone(),
                    until,
                    pending.generation,
                    pending.token.bucket,
                );
            }
            None if self.cfg.cache.negative_ttl_seconds > 0 => {
                self.cache.insert(
                    hash,
                    None,
                    now + self.cfg.cache.negative_ttl_seconds,
                    pending.generation,
                    pending.token.bucket,
                );
            }
            None => self.cache.remove(&hash),
        }
        decision.verdict = self.verdict(pending.rule, identity);
        decision
    }

    /// Allowed with the identity if it has the rule's scopes; refused otherwise.
    fn verdict(&self, rule: Option<usize>, identity: Option<Rc<Identity>>) -> Verdict {
        let required: &[String] = rule
            .and_then(|i| self.cfg.rules.get(i))
            .map_or(&[], |r| &r.scopes);
        match identity {
            None => Verdict::Deny(Reason::InvalidToken, self.invalid_token.clone()),
            Some(id) if !id.has_scopes(required) => {
                Verdict::Deny(Reason::InsufficientScope, self.insufficient_scope(required))
            }
            Some(id) => Verdict::Allow(Some(id)),
        }
    }

    fn requirement(&self, method: &str, path: &str) -> Requirement {
        if self.cfg.token_endpoint_paths.iter().any(|p| p == path)
            || self.cfg.public.iter().any(|p| p.matches(path))
        {
            return Requirement::None;
        }
        if let Some(i) = self.cfg.rules.iter().position(|r| r.matches(method, path)) {
            return Requirement::Token(Some(i));
        }
        match self.cfg.default_action {
            DefaultAction::Allow => Requirement::None,
            DefaultAction::Authenticate => Requirement::Token(None),
            DefaultAction::Deny => Requirement::Deny,
        }
    }

    /// The bearer token from the header, or (when enabled) the query; both at
    /// once is a bad request (RFC 6750 §2).
    fn presented_token(
        &self,
        authorization: Option<&[u8]>,
        query: &[u8],
    ) -> Result<Option<(String, bool)>, ()> {
        let from_header = authorization.and_then(bearer_credentials);
        let from_query = if self.cfg.allow_query_token {
            query_token(query)?
        } else {
            None
        };
        match (from_header, from_query) {
            (Some(_), Some(_)) => Err(()),
            (Some(t), None) => Ok(Some((t, false))),
            (None, Some(t)) => Ok(Some((t, true))),
            (None, None) => Ok(None),
        }
    }

    /// A JWT's signature, `typ`, `iss`, `aud`, `exp`/`nbf`/`iat` (with leeway),
    /// then the grant its `jti` names. Any failure is `invalid_token`.
    fn verify_jwt(&mut self, text: &str, now: u64) -> Option<ParsedToken> {
        let cfg = self.cfg.jwt.as_ref()?;
        self.jwt_verifications += 1;
        let v = Validation {
            issuer: &cfg.issuer,
            audiences: &cfg.audiences,
            now,
            leeway: cfg.leeway,
        };
        jwt::parse_verified(text, &cfg.keys, &v)
            .ok()
            .map(|(p, _)| p)
    }

    fn challenge(&self, error: Option<(&str, &str)>, scope: Option<&str>) -> String {
        let mut h = format!("Bearer realm=\"{}\"", self.cfg.realm);
        if let Some((code, description)) = error {
            h.push_str(&format!(
                ", error=\"{code}\", error_description=\"{description}\""
            ));
        }
        if let Some(s) = scope {
            h.push_str(&format!(", scope=\"{s}\""));
        }
        h
    }

    fn json(status: u16, code: &str, description: &str, challenge: Option<String>) -> Response {
        let body =
            serde_json::json!({ "error": code, "error_description": description }).to_string();
        let mut r = Response::json(status, body).header("cache-control", "no-store");
        if let Some(c) = challenge {
            r = r.header("www-authenticate", c);
        }
        r
    }

    fn unauthorized(&self, invalid: Option<&str>) -> Response {
        match invalid {
            // RFC 6750 §3.1: no error attribute when no credentials were sent.
            None => Self::json(
                401,
                "invalid_request",
                "an access token is required",
                Some(self.challenge(None, None)),
            ),
            Some(d) => Self::json(
                401,
                "invalid_token",
                d,
                Some(self.challenge(Some(("invalid_token", d)), None)),
            ),
        }
    }

    fn insufficient_scope(&self, required: &[String]) -> Response {
        let scope = required.join(" ");
        let d = "the access token lacks a required scope";
        Self::json(
            403,
            "insufficient_scope",
            d,
            Some(self.challenge(Some(("insufficient_scope", d)), Some(&scope))),
        )
    }

    fn bad_request(&self) -> Response {
        let d = "send the access token once: in the Authorization header or the query, not both";
        Self::json(
            400,
            "invalid_request",
            d,
            Some(self.challenge(Some(("invalid_request", d)), None)),
        )
    }

    fn unavailable(&self) -> Response {
        Self::json(
            503,
            "temporarily_unavailable",
            "the token store cannot be reached; retry",
            None,
        )
        .header("retry-after", "1")
    }

    fn forbidden(&self) -> Response {
        Self::json(403, "access_denied", "no rule allows this path", None)
    }
}

fn split_path(raw: &[u8]) -> (&str, &[u8]) {
    let cut = raw.iter().position(|b| *b == b'?').unwrap_or(raw.len());
    let path = std::str::from_utf8(&raw[..cut]).unwrap_or("");
    let query = raw.get(cut + 1..).unwrap_or(&[]);
    (path, query)
}

/// `Bearer <b64token>` (scheme case-insensitive). Another scheme is not a bearer
/// credential; a malformed value is kept so it is refused as an invalid token.
fn bearer_credentials(header: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(header).ok()?.trim();
    let (scheme, rest) = text.split_once(' ').unwrap_or((text, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    Some(rest.trim().to_string())
}

/// `:path` without its `access_token` query parameters (for `hide_credentials`).
pub fn path_without_query_token(raw: &[u8]) -> Vec<u8> {
    let cut = raw.iter().position(|b| *b == b'?').unwrap_or(raw.len());
    let kept: Vec<&[u8]> = raw
        .get(cut + 1..)
        .unwrap_or(&[])
        .split(|b| *b == b'&')
        .filter(|p| !p.is_empty() && !p.starts_with(b"access_token="))
        .collect();
    let mut out = raw[..cut].to_vec();
    if !kept.is_empty() {
        out.push(b'?');
        out.extend_from_slice(&kept.join(&b'&'));
    }
    out
}

fn query_token(query: &[u8]) -> Result<Option<String>, ()> {
    let mut found = None;
    for pair in query.split(|b| *b == b'&') {
        if let Some(v) = pair.strip_prefix(b"access_token=") {
            if found.is_some() {
                return Err(());
            }
            found = Some(crate::oauth::form::decode_component(v).map_err(|_| ())?);
        }
    }
    Ok(found.filter(|t| !t.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::path_without_query_token as strip;

    #[test]
    fn strips_only_the_access_token_parameter() {
        assert_eq!(strip(b"/a?access_token=x"), b"/a");
        assert_eq!(strip(b"/a?b=1&access_token=x&c=2"), b"/a?b=1&c=2");
        assert_eq!(strip(b"/a?my_access_token=x"), b"/a?my_access_token=x");
        assert_eq!(strip(b"/a"), b"/a");
    }
}
