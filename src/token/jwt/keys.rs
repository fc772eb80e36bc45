//! ES256 keys: the configured private key that signs access tokens, the public
//! keys still accepted (rotation), and how they are read from configuration.
//!
//! A configured key is a [`KeyEntry`]: `{"kid": "…", "pem": "-----BEGIN PRIVATE KEY-----…"}`
//! (PKCS#8 or SEC1 `EC PRIVATE KEY`) or `{"kid": "…", "jwk": {"kty":"EC","crv":"P-256","x":…,"y":…,"d":…}}`.
//! `kid` is optional: without it the JWK's own `kid`, else the RFC 7638 thumbprint.
//! In a [`KeySet`] the first entry signs; the others are only published and
//! accepted, and may be public (a JWK without `d`, or a `BEGIN PUBLIC KEY` PEM).
//!
//! Errors name the field (`jwt.keys[1].pem: not a P-256 private key`) and never
//! quote key material; neither does any `Debug` output here.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use p256::ecdsa::{SigningKey as EcdsaSigningKey, VerifyingKey};
use p256::elliptic_curve::sec1::{FromEncodedPoint, ToEncodedPoint};
use p256::elliptic_curve::zeroize::Zeroizing;
use p256::pkcs8::der::pem;
use p256::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, LineEnding, ObjectIdentifier,
};
use p256::{EncodedPoint, FieldBytes, PublicKey as EcPublicKey, SecretKey};
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::host::{RandomUnavailable, Randomness};

/// Longest `kid` accepted (configured or in a token header).
pub const MAX_KID_LEN: usize = 128;

/// The named curve P-256 (secp256r1, prime256v1).
const P256_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");

/// A configuration problem with a key: `field` is the path of the value at
/// fault (`jwt.keys[1].jwk.d`), `message` says what is wrong without quoting it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError {
    pub field: String,
    pub message: String,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for KeyError {}

fn key_err(field: &str, sub: &str, message: impl Into<String>) -> KeyError {
    KeyError {
        field: format!("{field}{sub}"),
        message: message.into(),
    }
}

/// One configured key, as it appears in the plugin configuration. Exactly one
/// of `pem` and `jwk` is given. `jwk` is an object, or a string holding one (so
/// YAML can paste the output of `make keygen`).
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    #[serde(default)]
    pub kid: Option<String>,
    #[serde(default)]
    pub pem: Option<String>,
    // A `Value`, not a typed JWK: a typed field's serde errors quote what they
    // got (`invalid type: string "{…d…}"`), and a private key must never be quoted.
    #[serde(default)]
    pub jwk: Option<Value>,
}

impl fmt::Debug for KeyEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyEntry")
            .field("kid", &self.kid)
            .field("pem", &self.pem.as_ref().map(|_| "<redacted>"))
            .field("jwk", &self.jwk.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// A public ES256 key and its `kid`: what verifies tokens and what the JWKS lists.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    kid: String,
    key: VerifyingKey,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey").field("kid", &self.kid).finish()
    }
}

impl PublicKey {
    pub fn kid(&self) -> &str {
        &self.kid
    }
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.key
    }
    /// The affine coordinates, big-endian, 32 bytes each (JWK `x`, `y`).
    pub fn coordinates(&self) -> ([u8; 32], [u8; 32]) {
        coordinates(&EcPublicKey::from(&self.key))
    }
    /// The RFC 7638 JWK thumbprint (SHA-256, base64url).
    pub fn thumbprint(&self) -> String {
        thumbprint(&EcPublicKey::from(&self.key))
    }
    /// Reads a public key (or the public half of a private one) from `entry`.
    pub fn from_entry(entry: &KeyEntry, field: &str) -> Result<PublicKey, KeyError> {
        let (material, jwk_kid) = read_entry(entry, field, false)?;
        let public = match &material {
            Material::Private(secret) => secret.public_key(),
            Material::Public(public) => *public,
        };
        Ok(PublicKey {
            kid: choose_kid(entry, jwk_kid, &public, field)?,
            key: VerifyingKey::from(&public),
        })
    }
}

/// The private key that signs tokens, with its `kid`.
#[derive(Clone)]
pub struct SigningKey {
    secret: EcdsaSigningKey,
    public: PublicKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.public.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    pub fn kid(&self) -> &str {
        &self.public.kid
    }
    pub fn public(&self) -> &PublicKey {
        &self.public
    }
    pub(crate) fn ecdsa(&self) -> &EcdsaSigningKey {
        &self.secret
    }
    /// Reads a private key from `entry` (a public-only entry is an error).
    pub fn from_entry(entry: &KeyEntry, field: &str) -> Result<SigningKey, KeyError> {
        let (material, jwk_kid) = read_entry(entry, field, true)?;
        let Material::Private(secret) = material else {
            return Err(key_err(
                field,
                if entry.pem.is_some() {
                    ".pem"
                } else {
                    ".jwk.d"
                },
                "the signing key must be a private key",
            ));
        };
        let kid = choose_kid(entry, jwk_kid, &secret.public_key(), field)?;
        Ok(SigningKey::from_secret(&secret, kid))
    }
    /// A fresh key from `rng`, its `kid` the thumbprint.
    pub fn generate(rng: &dyn Randomness) -> Result<SigningKey, RandomUnavailable> {
        // A uniformly random scalar: 32 random bytes, drawn again in the
        // (~2^-32) case that they are zero or not below the group order.
        loop {
            let mut bytes = Zeroizing::new([0u8; 32]);
            rng.fill(bytes.as_mut())?;
            if let Ok(secret) = SecretKey::from_bytes(&FieldBytes::from(*bytes)) {
                let kid = thumbprint(&secret.public_key());
                return Ok(SigningKey::from_secret(&secret, kid));
            }
        }
    }
    /// The private key as PKCS#8 PEM (`BEGIN PRIVATE KEY`), for `make keygen`.
    pub fn to_pkcs8_pem(&self) -> Option<Zeroizing<String>> {
        SecretKey::from(&self.secret)
            .to_pkcs8_pem(LineEnding::LF)
            .ok()
    }
    /// The private scalar `d`, base64url: for a private JWK (`make keygen`).
    pub fn private_d(&self) -> Zeroizing<String> {
        Zeroizing::new(URL_SAFE_NO_PAD.encode(self.secret.to_bytes()))
    }
    fn from_secret(secret: &SecretKey, kid: String) -> SigningKey {
        let ecdsa = EcdsaSigningKey::from(secret);
        let public = PublicKey {
            kid,
            key: *ecdsa.verifying_key(),
        };
        SigningKey {
            secret: ecdsa,
            public,
        }
    }
}

/// The public keys tokens are accepted from, found by `kid`.
#[derive(Debug, Clone, Default)]
pub struct PublicKeySet {
    keys: Vec<PublicKey>,
}

impl PublicKeySet {
    /// Every entry's public key (private entries give their public half), so a
    /// verifier never needs to hold a private key. Empty is an error.
    pub fn from_entries(entries: &[KeyEntry], field: &str) -> Result<PublicKeySet, KeyError> {
        if entries.is_empty() {
            return Err(key_err(field, "", "at least one key is required"));
        }
        let mut set = PublicKeySet::default();
        for (i, entry) in entries.iter().enumerate() {
            let at = format!("{field}[{i}]");
            set.add(PublicKey::from_entry(entry, &at)?, &at)?;
        }
        Ok(set)
    }
    pub fn find(&self, kid: &str) -> Option<&PublicKey> {
        self.keys.iter().find(|k| k.kid == kid)
    }
    pub fn keys(&self) -> &[PublicKey] {
        &self.keys
    }
    fn add(&mut self, key: PublicKey, at: &str) -> Result<(), KeyError> {
        if self.find(&key.kid).is_some() {
            return Err(key_err(
                at,
                ".kid",
                format!("kid \"{}\" is already used by another key", key.kid),
            ));
        }
        self.keys.push(key);
        Ok(())
    }
}

/// The token signer's keys: the active signing key (the first entry) and every
/// key tokens are still accepted from, the active one included.
#[derive(Debug, Clone)]
pub struct KeySet {
    signing: SigningKey,
    public: PublicKeySet,
}

impl KeySet {
    /// Rotation: put the new key first (it signs from then on) and keep the old
    /// one after it until the tokens it signed have expired. To publish a new key
    /// before it signs, list it second first, then swap.
    pub fn from_entries(entries: &[KeyEntry], field: &str) -> Result<KeySet, KeyError> {
        let Some(first) = entries.first() else {
            return Err(key_err(field, "", "at least one key is required"));
        };
        let signing = SigningKey::from_entry(first, &format!("{field}[0]"))?;
        let mut public = PublicKeySet::default();
        public.add(signing.public.clone(), &format!("{field}[0]"))?;
        for (i, entry) in entries.iter().enumerate().skip(1) {
            let at = format!("{field}[{i}]");
            public.add(PublicKey::from_entry(entry, &at)?, &at)?;
        }
        Ok(KeySet { signing, public })
    }
    /// One key that signs and is the only one accepted.
    pub fn single(signing: SigningKey) -> KeySet {
        let public = PublicKeySet {
            keys: vec![signing.public.clone()],
        };
        KeySet { signing, public }
    }
    pub fn signing(&self) -> &SigningKey {
        &self.signing
    }
    pub fn public(&self) -> &PublicKeySet {
        &self.public
    }
}

enum Material {
    Private(SecretKey),
    Public(EcPublicKey),
}

/// The key of an entry, and the `kid` inside its JWK if any.
fn read_entry(
    entry: &KeyEntry,
    field: &str,
    private_wanted: bool,
) -> Result<(Material, Option<String>), KeyError> {
    match (&entry.pem, &entry.jwk) {
        (Some(_), Some(_)) => Err(key_err(field, "", "give either `pem` or `jwk`, not both")),
        (None, None) => Err(key_err(field, "", "a key needs `pem` or `jwk`")),
        (Some(text), None) => read_pem(text, private_wanted)
            .map(|m| (m, None))
            .map_err(|m| key_err(field, ".pem", m)),
        (None, Some(jwk)) => read_jwk(jwk, field),
    }
}

fn read_pem(text: &str, private_wanted: bool) -> Result<Material, &'static str> {
    let text = text.trim();
    let label = text
        .strip_prefix("-----BEGIN ")
        .and_then(|rest| rest.split_once("-----"))
        .map(|(label, _)| label);
    match label {
        Some("PRIVATE KEY") => SecretKey::from_pkcs8_pem(text)
            .map(Material::Private)
            .map_err(|_| "not a P-256 private key (PKCS#8 PEM)"),
        Some("EC PRIVATE KEY") => read_sec1_pem(text).map(Material::Private),
        Some("PUBLIC KEY") if !private_wanted => EcPublicKey::from_public_key_pem(text)
            .map(Material::Public)
            .map_err(|_| "not a P-256 public key (SubjectPublicKeyInfo PEM)"),
        Some("PUBLIC KEY") => Err("a public key cannot sign: give the private key"),
        Some("ENCRYPTED PRIVATE KEY") => {
            Err("encrypted private keys are not supported: give an unencrypted PKCS#8 or SEC1 key")
        }
        _ => Err("expected a PEM block `BEGIN PRIVATE KEY` or `BEGIN EC PRIVATE KEY`"),
    }
}

/// SEC1 `EC PRIVATE KEY`. `SecretKey::from_sec1_pem` does not check the curve
/// parameters, so a 32-byte key of another curve (secp256k1) would be taken for a
/// P-256 one: they must name P-256, or else the embedded public key must be the
/// P-256 point of the scalar (checked by `from_sec1_der`).
fn read_sec1_pem(text: &str) -> Result<SecretKey, &'static str> {
    const BAD: &str = "not a P-256 private key (SEC1 PEM)";
    let (label, der) = pem::decode_vec(text.as_bytes()).map_err(|_| BAD)?;
    let der = Zeroizing::new(der);
    if label != "EC PRIVATE KEY" {
        return Err(BAD);
    }
    let parsed = sec1::EcPrivateKey::try_from(der.as_slice()).map_err(|_| BAD)?;
    match parsed.parameters.and_then(|p| p.named_curve()) {
        Some(oid) if oid != P256_OID => return Err("the key is not on curve P-256"),
        None if parsed.public_key.is_none() => {
            return Err("the SEC1 key names no curve and carries no public key")
        }
        _ => {}
    }
    SecretKey::from_sec1_der(&der).map_err(|_| BAD)
}

fn read_jwk(jwk: &Value, field: &str) -> Result<(Material, Option<String>), KeyError> {
    let at = |sub: &str, m: &str| key_err(field, &format!(".jwk{sub}"), m);
    let parsed;
    let obj: &Map<String, Value> = match jwk {
        Value::Object(o) => o,
        Value::String(s) => {
            parsed = super::json::parse_object(s.as_bytes())
                .map_err(|_| at("", "not a JSON object (duplicate names are refused)"))?;
            &parsed
        }
        _ => return Err(at("", "expected a JSON object (or a string holding one)")),
    };
    let text = |name: &str| -> Result<Option<&str>, KeyError> {
        match obj.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(at(&format!(".{name}"), "expected a string")),
        }
    };
    if text("kty")? != Some("EC") {
        return Err(at(".kty", "must be \"EC\""));
    }
    if text("crv")? != Some("P-256") {
        return Err(at(".crv", "must be \"P-256\""));
    }
    if text("use")?.is_some_and(|u| u != "sig") {
        return Err(at(".use", "must be \"sig\" when given"));
    }
    if text("alg")?.is_some_and(|a| a != "ES256") {
        return Err(at(".alg", "must be \"ES256\" when given"));
    }
    let coordinate = |name: &str| -> Result<Zeroizing<[u8; 32]>, KeyError> {
        let value = text(name)?.ok_or_else(|| at(&format!(".{name}"), "is required"))?;
        decode_32(value).ok_or_else(|| {
            at(
                &format!(".{name}"),
                "must be 32 bytes in base64url without padding",
            )
        })
    };
    let (x, y) = (coordinate("x")?, coordinate("y")?);
    let point =
        EncodedPoint::from_affine_coordinates(&FieldBytes::from(*x), &FieldBytes::from(*y), false);
    let public = Option::<EcPublicKey>::from(EcPublicKey::from_encoded_point(&point))
        .ok_or_else(|| at("", "x and y are not a point of P-256"))?;
    let kid = text("kid")?.map(str::to_owned);
    if obj.contains_key("d") {
        let d = coordinate("d")?;
        let secret = SecretKey::from_bytes(&FieldBytes::from(*d))
            .map_err(|_| at(".d", "not a valid P-256 private key"))?;
        if secret.public_key() != public {
            return Err(at(".d", "does not match x and y"));
        }
        return Ok((Material::Private(secret), kid));
    }
    Ok((Material::Public(public), kid))
}

fn decode_32(text: &str) -> Option<Zeroizing<[u8; 32]>> {
    let mut out = Zeroizing::new([0u8; 32]);
    // 43 characters are exactly 32 bytes; the buffer check refuses longer input.
    if text.len() != 43 {
        return None;
    }
    let n = URL_SAFE_NO_PAD.decode_slice(text, out.as_mut()).ok()?;
    (n == 32).then_some(out)
}

fn choose_kid(
    entry: &KeyEntry,
    jwk_kid: Option<String>,
    public: &EcPublicKey,
    field: &str,
) -> Result<String, KeyError> {
    let kid = match (&entry.kid, jwk_kid) {
        (Some(given), Some(inner)) if *given != inner => {
            return Err(key_err(
                field,
                ".kid",
                "differs from the `kid` inside the JWK",
            ))
        }
        (Some(given), _) => given.clone(),
        (None, Some(inner)) => inner,
        (None, None) => return Ok(thumbprint(public)),
    };
    if valid_kid(&kid) {
        Ok(kid)
    } else {
        Err(key_err(
            field,
            ".kid",
            format!("must be 1 to {MAX_KID_LEN} printable ASCII characters without spaces"),
        ))
    }
}

/// A `kid` we configure: printable ASCII, no spaces, at most [`MAX_KID_LEN`].
pub fn valid_kid(kid: &str) -> bool {
    (1..=MAX_KID_LEN).contains(&kid.len()) && kid.bytes().all(|b| b.is_ascii_graphic())
}

fn coordinates(public: &EcPublicKey) -> ([u8; 32], [u8; 32]) {
    let point = public.to_encoded_point(false);
    // An uncompressed point of a valid public key always has both coordinates.
    match (point.x(), point.y()) {
        (Some(x), Some(y)) => ((*x).into(), (*y).into()),
        _ => ([0u8; 32], [0u8; 32]),
    }
}

/// RFC 7638: SHA-256 over `{"crv","kty","x","y"}` in that order, no spaces.
fn thumbprint(public: &EcPublicKey) -> String {
    let (x, y) = coordinates(public);
    let canonical = format!(
        r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
        URL_SAFE_NO_PAD.encode(x),
        URL_SAFE_NO_PAD.encode(y)
    );
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}
