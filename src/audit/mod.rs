//! Audit events: what each answer of the token endpoint and each decision of
//! the guard leaves for Envoy's access log (the glue writes the fields as
//! filter state, `wasm.oauth2.<field>`, which `%FILTER_STATE(…:PLAIN)%`
//! prints). Never a token, a secret or a password: tokens appear only as
//! their fingerprint (the 32 hex digits `/revoke`'s headers carry), and names
//! presented by an unauthenticated caller only when they name a configured
//! client or user, so a token pasted into a username field never reaches the
//! log. Values are cut to a bounded length and stripped of control
//! characters, so a log line stays one line whatever the format.

/// What happened (the `event` field).
pub mod event {
    pub const TOKEN_ISSUED: &str = "token.issued";
    pub const TOKEN_REFRESHED: &str = "token.refreshed";
    pub const TOKEN_REVOKED: &str = "token.revoked";
    /// `/revoke` of a token the store does not know (RFC 7009 §2.2: still 200).
    pub const TOKEN_REVOKE_UNKNOWN: &str = "token.revoke_unknown";
    pub const TOKEN_INTROSPECTED: &str = "token.introspected";
    /// Any other refusal at the token endpoint (the `error` field says which).
    pub const TOKEN_REFUSED: &str = "token.refused";
    pub const CODE_ISSUED: &str = "code.issued";
    pub const LOGIN_FAILED: &str = "login.failed";
    pub const CLIENT_AUTH_FAILED: &str = "client.auth_failed";
    /// Refused before checking: throttled, or the slow-hash ration spent.
    pub const AUTH_THROTTLED: &str = "auth.throttled";
    pub const AUTHORIZE_PAGE: &str = "authorize.page";
    pub const AUTHORIZE_DENIED: &str = "authorize.denied";
    pub const AUTHORIZE_REFUSED: &str = "authorize.refused";
    pub const GUARD_ALLOWED: &str = "guard.allowed";
    pub const GUARD_DENIED: &str = "guard.denied";
    /// A grant revoked by no request (the `revoked_clients` sweep): a log line.
    pub const GRANTS_REVOKED_BY_CONFIGURATION: &str = "grants.revoked_by_configuration";
}

/// Filter state names (Envoy prefixes them with `wasm.`).
pub mod field {
    pub const EVENT: &str = "oauth2.event";
    pub const CLIENT_ID: &str = "oauth2.client_id";
    pub const USER: &str = "oauth2.user";
    pub const GRANT_TYPE: &str = "oauth2.grant_type";
    pub const SCOPE: &str = "oauth2.scope";
    pub const TOKEN: &str = "oauth2.token";
    pub const ERROR: &str = "oauth2.error";
}

/// Longest value written (a `client_id` may have 255 characters).
const MAX_VALUE_CHARS: usize = 256;

/// The facts of one request. `None` fields are not written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditRecord {
    pub event: &'static str,
    pub client_id: Option<String>,
    pub user: Option<String>,
    pub grant_type: Option<&'static str>,
    pub scope: Option<String>,
    /// The token's fingerprint (`TokenHash::fingerprint`), never the token.
    pub token: Option<String>,
    /// The OAuth error code, or the guard's denial reason.
    pub error: Option<&'static str>,
}

impl AuditRecord {
    pub fn new(event: &'static str) -> Self {
        AuditRecord {
            event,
            ..Default::default()
        }
    }

    /// (filter state name, value) of each field present, log-safe.
    pub fn fields(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![(field::EVENT, self.event.to_string())];
        let mut put = |name: &'static str, v: Option<&str>| {
            if let Some(v) = v {
                out.push((name, log_safe(v)));
            }
        };
        put(field::CLIENT_ID, self.client_id.as_deref());
        put(field::USER, self.user.as_deref());
        put(field::GRANT_TYPE, self.grant_type);
        put(field::SCOPE, self.scope.as_deref());
        put(field::TOKEN, self.token.as_deref());
        put(field::ERROR, self.error);
        out
    }
}

/// The value without control characters (replaced by `?`), at most
/// `MAX_VALUE_CHARS` characters.
pub fn log_safe(v: &str) -> String {
    v.chars()
        .take(MAX_VALUE_CHARS)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_log_safe_and_only_those_present() {
        let mut r = AuditRecord::new(event::LOGIN_FAILED);
        r.client_id = Some("app\"\n\x1b[31mred".into());
        r.error = Some("invalid_grant");
        let f = r.fields();
        assert_eq!(
            f,
            vec![
                ("oauth2.event", "login.failed".to_string()),
                ("oauth2.client_id", "app\"??[31mred".to_string()),
                ("oauth2.error", "invalid_grant".to_string()),
            ]
        );
        assert_eq!(log_safe(&"x".repeat(1000)).len(), MAX_VALUE_CHARS);
    }
}
