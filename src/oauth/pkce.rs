//! Proof Key for Code Exchange (RFC 7636): the challenge an authorization
//! request carries and the verifier the token request must match.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    S256,
    Plain,
}

impl Method {
    /// RFC 7636 §4.3: an absent method means `plain`.
    pub fn from_param(p: Option<&str>) -> Option<Method> {
        match p {
            Some("S256") => Some(Method::S256),
            Some("plain") | None => Some(Method::Plain),
            Some(_) => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Method::S256 => "S256",
            Method::Plain => "plain",
        }
    }
}

/// RFC 7636 §4.1 / §4.2: 43 to 128 characters of `[A-Z] [a-z] [0-9] - . _ ~`.
/// Challenges and verifiers share this syntax.
pub fn is_valid(s: &str) -> bool {
    (43..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// Does `verifier` match `challenge` under `method`? Constant-time comparison.
pub fn verify(method: Method, challenge: &str, verifier: &str) -> bool {
    if !is_valid(verifier) {
        return false;
    }
    let expected = match method {
        Method::S256 => URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())),
        Method::Plain => verifier.to_string(),
    };
    expected.len() == challenge.len() && bool::from(expected.as_bytes().ct_eq(challenge.as_bytes()))
}

/// The S256 challenge of a verifier (clients and tests).
pub fn s256_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7636_appendix_b_example() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert_eq!(s256_challenge(verifier), challenge);
        assert!(verify(Method::S256, challenge, verifier));
        assert!(!verify(
            Method::S256,
            challenge,
            &verifier.replace('d', "e")
        ));
        assert!(!verify(Method::Plain, challenge, verifier));
        assert!(verify(Method::Plain, verifier, verifier));
    }

    #[test]
    fn syntax_and_methods() {
        assert!(!is_valid(&"a".repeat(42)));
        assert!(is_valid(&"a".repeat(43)));
        assert!(is_valid(&"a".repeat(128)));
        assert!(!is_valid(&"a".repeat(129)));
        assert!(!is_valid(&format!("{}+", "a".repeat(43))));
        assert_eq!(Method::from_param(None), Some(Method::Plain));
        assert_eq!(Method::from_param(Some("S256")), Some(Method::S256));
        assert_eq!(Method::from_param(Some("s256")), None);
        // A verifier with bad syntax never matches, even as its own plain challenge.
        assert!(!verify(Method::Plain, "short", "short"));
    }
}
