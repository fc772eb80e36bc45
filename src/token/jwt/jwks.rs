//! The JWK Set of the public keys (RFC 7517 §5), for a `jwks_uri` (RFC 8414).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Serialize;

use super::keys::{PublicKey, PublicKeySet};
use super::ALG;

/// A public EC JWK. There is no field for `d`: a private key cannot be rendered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PublicJwk {
    pub kty: &'static str,
    pub crv: &'static str,
    pub x: String,
    pub y: String,
    pub kid: String,
    #[serde(rename = "use")]
    pub use_: &'static str,
    pub alg: &'static str,
}

impl PublicJwk {
    pub fn of(key: &PublicKey) -> PublicJwk {
        let (x, y) = key.coordinates();
        PublicJwk {
            kty: "EC",
            crv: "P-256",
            x: URL_SAFE_NO_PAD.encode(x),
            y: URL_SAFE_NO_PAD.encode(y),
            kid: key.kid().to_owned(),
            use_: "sig",
            alg: ALG,
        }
    }
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[derive(Serialize)]
struct Jwks {
    keys: Vec<PublicJwk>,
}

/// `{"keys":[{"kty":"EC","crv":"P-256","x":…,"y":…,"kid":…,"use":"sig","alg":"ES256"},…]}`,
/// the signing key first.
pub fn jwks_json(keys: &PublicKeySet) -> String {
    let jwks = Jwks {
        keys: keys.keys().iter().map(PublicJwk::of).collect(),
    };
    // Serializing strings into a String cannot fail.
    serde_json::to_string(&jwks).unwrap_or_else(|_| String::from(r#"{"keys":[]}"#))
}
