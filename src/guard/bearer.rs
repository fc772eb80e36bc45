//! The bearer guard's decision for one request (RFC 6750): which rule applies,
//! whether the token is valid (from the per-worker cache or the store), and
//! the answer when it is not.

use std::rc::Rc;

use crate::config::guard::{DefaultAction, GuardConfig, RevocationMode};
use crate::guard::cache::{Identity, ValidationCache};
use crate::host::KvStore;
use crate::oauth::response::Response;
use crate::store::GrantStore;
use crate::token::{self, TokenKind};

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
}

impl Reason {
    /// Every reason, in discriminant order (`reason as usize` indexes this).
    pub const ALL: [Reason; 5] = [
        Reason::MissingToken,
        Reason::InvalidToken,
        Reason::InsufficientScope,
        Reason::InvalidRequest,
        Reason::NoRule,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::MissingToken => "missing_token",
            Reason::InvalidToken => "invalid_token",
            Reason::InsufficientScope => "insufficient_scope",
            Reason::InvalidRequest => "invalid_request",
            Reason::NoRule => "no_rule",
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

pub struct Guard {
    pub cfg: GuardConfig,
    cache: ValidationCache,
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
            missing_token: Response::new(401),
            invalid_token: Response::new(401),
        };
        g.missing_token = g.unauthorized(None);
        g.invalid_token = g.unauthorized(Some(INVALID));
        g
    }

    pub fn cached_entries(&self) -> usize {
        self.cache.len()
    }

    pub fn check(&mut self, kv: &dyn KvStore, now: u64, req: &GuardRequest) -> Decision {
        let (path, query) = split_path(req.path);
        let requirement = self.requirement(req.method, path);
        let mut decision = Decision {
            verdict: Verdict::Allow(None),
            cache: CacheUse::NotNeeded,
            token_in_query: false,
        };
        let rule = match requirement {
            Requirement::None => return decision,
            Requirement::Deny => {
                decision.verdict = Verdict::Deny(Reason::NoRule, self.forbidden());
                return decision;
            }
            Requirement::Token(rule) => rule,
        };
        let presented = match self.presented_token(req.authorization, query) {
            Ok(Some((t, in_query))) => {
                decision.token_in_query = in_query;
                t
            }
            Ok(None) => {
                decision.verdict = Verdict::Deny(Reason::MissingToken, self.missing_token.clone());
                return decision;
            }
            Err(()) => {
                decision.verdict = Verdict::Deny(Reason::InvalidRequest, self.bad_request());
                return decision;
            }
        };
        let (identity, cache_use) = self.validate(kv, now, &presented);
        decision.cache = cache_use;
        let required: &[String] = rule.map_or(&[], |i| &self.cfg.rules[i].scopes);
        decision.verdict = match identity {
            None => Verdict::Deny(Reason::InvalidToken, self.invalid_token.clone()),
            Some(id) if !id.has_scopes(required) => {
                Verdict::Deny(Reason::InsufficientScope, self.insufficient_scope(required))
            }
            Some(id) => Verdict::Allow(Some(id)),
        };
        decision
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

    /// The token's identity if valid. Immediate mode reads the shard's revocation
    /// generation before the store, so a revocation racing with this check is
    /// seen by the next request at the latest.
    fn validate(
        &mut self,
        kv: &dyn KvStore,
        now: u64,
        text: &str,
    ) -> (Option<Rc<Identity>>, CacheUse) {
        let Some(parsed) = token::parse(text).filter(|t| t.kind == TokenKind::Access) else {
            return (None, CacheUse::NotNeeded);
        };
        // The generation only stamps cache entries: without a cache, no read.
        let immediate =
            self.cfg.revocation_mode == RevocationMode::Immediate && self.cfg.cache.max_entries > 0;
        let generation = if immediate {
            GrantStore::revocation_generation(kv, parsed.bucket)
        } else {
            0
        };
        let mut cache_use = CacheUse::Miss;
        if let Some(entry) = self.cache.get(&parsed.hash, now) {
            // Entries never outlive their token (valid_until <= expiry).
            if entry.generation == generation {
                return (entry.identity.clone(), CacheUse::Hit);
            }
            cache_use = CacheUse::Revalidated;
        }
        let identity = GrantStore::lookup_in(kv, &parsed, now)
            .ok()
            .flatten()
            .map(|g| {
                Rc::new(Identity {
                    client_id: g.client_id,
                    user: g.user,
                    scope: g.scope,
                    expires_at: g.access_expires_at,
                    expires_header: g.access_expires_at.to_string(),
                })
            });
        match &identity {
            Some(i) => {
                let until = now
                    .saturating_add(self.cfg.cache.ttl_seconds)
                    .min(i.expires_at);
                self.cache
                    .insert(parsed.hash, identity.clone(), until, generation);
            }
            None if self.cfg.cache.negative_ttl_seconds > 0 => {
                self.cache.insert(
                    parsed.hash,
                    None,
                    now + self.cfg.cache.negative_ttl_seconds,
                    generation,
                );
            }
            None => self.cache.remove(&parsed.hash),
        }
        (identity, cache_use)
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
