//! JWT helpers for tests: a fresh ES256 key as configuration entries, and
//! tokens signed (or forged) with it outside the code under test.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use envoy_oauth2::token::jwt::{PublicJwk, SigningKey};
use hmac::{Hmac, Mac};
use p256::ecdsa::signature::Signer;
use p256::pkcs8::DecodePrivateKey;

pub struct TestKey {
    pub kid: String,
    /// PKCS#8 PEM of the private key.
    pub pem: String,
    /// The public JWK, as JSON.
    pub jwk: String,
}

impl TestKey {
    pub fn new(kid: &str) -> TestKey {
        let mut k = SigningKey::generate(&envoy_oauth2::host::HostRandomness).unwrap();
        let pem = k.to_pkcs8_pem().unwrap().to_string();
        // Re-read with the kid wanted.
        let entry = envoy_oauth2::token::jwt::KeyEntry {
            kid: Some(kid.to_string()),
            pem: Some(pem.clone()),
            jwk: None,
        };
        k = SigningKey::from_entry(&entry, "k").unwrap();
        TestKey {
            kid: kid.to_string(),
            jwk: PublicJwk::of(k.public()).to_json(),
            pem,
        }
    }

    /// `{"kid":…,"pem":…}` for a token endpoint's `jwt.keys`.
    pub fn private_entry(&self) -> String {
        serde_json::json!({ "kid": self.kid, "pem": self.pem }).to_string()
    }

    /// `{"jwk":{…}}` for a guard's `jwt.keys`.
    pub fn public_entry(&self) -> String {
        format!(r#"{{"jwk":{}}}"#, self.jwk)
    }

    /// `header.payload.signature` with this key's ES256 signature over any text.
    pub fn sign_raw(&self, header: &str, payload: &str) -> String {
        let key = p256::ecdsa::SigningKey::from_pkcs8_pem(&self.pem).unwrap();
        let input = format!("{}.{}", b64(header), b64(payload));
        let sig: p256::ecdsa::Signature = key.sign(input.as_bytes());
        format!("{input}.{}", b64(sig.to_bytes()))
    }

    /// The usual header for this key.
    pub fn header(&self) -> String {
        format!(r#"{{"alg":"ES256","typ":"at+jwt","kid":"{}"}}"#, self.kid)
    }
}

pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn b64_decode(text: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(text).unwrap()
}

/// The header and claims of a compact JWT, as JSON.
pub fn parts(token: &str) -> (serde_json::Value, serde_json::Value) {
    let mut it = token.split('.');
    let h = serde_json::from_slice(&b64_decode(it.next().unwrap())).unwrap();
    let c = serde_json::from_slice(&b64_decode(it.next().unwrap())).unwrap();
    (h, c)
}

/// HS256 over `header.payload` with `secret` (the alg-confusion attack).
pub fn hs256(header: &str, payload: &str, secret: &[u8]) -> String {
    let input = format!("{}.{}", b64(header), b64(payload));
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
    mac.update(input.as_bytes());
    format!("{input}.{}", b64(mac.finalize().into_bytes()))
}

/// `token` with its claims replaced by `edit(claims)` and signed again by `key`
/// (a token this server never issued, signed with a trusted key).
pub fn resigned(key: &TestKey, token: &str, edit: impl FnOnce(&mut serde_json::Value)) -> String {
    let (_, mut claims) = parts(token);
    edit(&mut claims);
    key.sign_raw(&key.header(), &claims.to_string())
}
