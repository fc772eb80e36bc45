//! RFC 6749 §5.2 error answers: a JSON object with `error` and
//! `error_description`, and the status code that goes with the error.

use crate::oauth::response::Response;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    InvalidScope,
    ServerError,
    TemporarilyUnavailable,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidClient => "invalid_client",
            ErrorCode::InvalidGrant => "invalid_grant",
            ErrorCode::UnauthorizedClient => "unauthorized_client",
            ErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            ErrorCode::InvalidScope => "invalid_scope",
            ErrorCode::ServerError => "server_error",
            ErrorCode::TemporarilyUnavailable => "temporarily_unavailable",
        }
    }

    pub const ALL: [ErrorCode; 8] = [
        ErrorCode::InvalidRequest,
        ErrorCode::InvalidClient,
        ErrorCode::InvalidGrant,
        ErrorCode::UnauthorizedClient,
        ErrorCode::UnsupportedGrantType,
        ErrorCode::InvalidScope,
        ErrorCode::ServerError,
        ErrorCode::TemporarilyUnavailable,
    ];

    fn default_status(self) -> u16 {
        match self {
            ErrorCode::InvalidClient => 401,
            ErrorCode::ServerError => 500,
            ErrorCode::TemporarilyUnavailable => 503,
            _ => 400,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    pub code: ErrorCode,
    pub description: String,
    pub status: u16,
    /// `WWW-Authenticate: Basic realm=...` (the client tried Basic and failed).
    pub basic_realm: Option<String>,
    pub extra_headers: Vec<(&'static str, String)>,
}

impl OAuthError {
    pub fn new(code: ErrorCode, description: impl Into<String>) -> Self {
        OAuthError {
            code,
            description: description.into(),
            status: code.default_status(),
            basic_realm: None,
            extra_headers: Vec::new(),
        }
    }

    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.extra_headers.push((name, value.into()));
        self
    }

    pub fn to_response(&self) -> Response {
        let body = serde_json::json!({
            "error": self.code.as_str(),
            "error_description": self.description,
        });
        let mut r = Response::json(self.status, body.to_string()).no_store();
        if let Some(realm) = &self.basic_realm {
            r = r.header("www-authenticate", format!("Basic realm=\"{realm}\""));
        }
        for (n, v) in &self.extra_headers {
            r = r.header(n, v.clone());
        }
        r
    }
}

/// Too many failed authentications for a client or user: 429 with `Retry-After`.
pub fn throttled(retry_after: u64) -> OAuthError {
    OAuthError::new(
        ErrorCode::TemporarilyUnavailable,
        "too many failed attempts; retry later",
    )
    .with_status(429)
    .with_header("retry-after", retry_after.to_string())
}

/// This worker's ration of slow hash work is spent: 429 with `Retry-After`.
/// Only requests that need a slow hash (a password, a human-chosen secret)
/// get this; the rest are served.
pub fn busy(retry_after: u64) -> OAuthError {
    OAuthError::new(
        ErrorCode::TemporarilyUnavailable,
        "too many credential checks at this moment; retry later",
    )
    .with_status(429)
    .with_header("retry-after", retry_after.to_string())
}

pub fn invalid_request(description: impl Into<String>) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidRequest, description)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape_status_and_headers() {
        let mut e = OAuthError::new(ErrorCode::InvalidClient, "client \"x\" failed");
        e.basic_realm = Some("r".into());
        let r = e.to_response();
        assert_eq!(r.status, 401);
        assert_eq!(
            r.header_value("www-authenticate"),
            Some("Basic realm=\"r\"")
        );
        assert_eq!(r.header_value("cache-control"), Some("no-store"));
        assert_eq!(r.header_value("pragma"), Some("no-cache"));
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["error"], "invalid_client");
        assert_eq!(v["error_description"], "client \"x\" failed");
    }
}
