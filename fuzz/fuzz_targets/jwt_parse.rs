//! Presented JWT access tokens: arbitrary text, and arbitrary bytes placed in the
//! header / claims / signature of an otherwise well-formed token (so the fuzzer
//! gets past base64 into the strict JSON parser and the ES256 check). Nothing
//! may panic, and nothing unsigned by KEY may verify.
#![no_main]
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use envoy_oauth2::token::jwt::{self, KeyEntry, KeySet, Validation};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

// A test-only key (the one of src/jwt/tests.rs).
const PKCS8: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgzk9Mratny1Q3ZKlP
8LnETQhY4+vtiPdT5amV4QUDAVShRANCAARrMCPlrS8fl6jN14Ok/WnQqOQ3YdYi
7nzFRvf6csjYdak6aoo90IWBess5NE9fSdMgIz/H+lO09s4qoikicotw
-----END PRIVATE KEY-----
";

fn keys() -> &'static KeySet {
    static KEYS: OnceLock<KeySet> = OnceLock::new();
    KEYS.get_or_init(|| {
        let entry = KeyEntry {
            kid: Some("k1".into()),
            pem: Some(PKCS8.into()),
            jwk: None,
        };
        KeySet::from_entries(&[entry], "jwt.keys").expect("test key")
    })
}

fn check(text: &str) {
    let aud = ["api".to_string()];
    let v = Validation {
        issuer: "https://auth.example",
        audiences: &aud,
        now: 1_750_000_000,
        leeway: 30,
    };
    // Only a token whose signing input we signed can verify.
    if jwt::verify(text, keys().public(), &v).is_ok() {
        let (input, _) = text.rsplit_once('.').expect("three segments");
        assert!(input.starts_with("eyJhbGciOiJFUzI1NiIsInR5cCI6ImF0K2p3dCIsImtpZCI6ImsxIn0."));
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        check(text);
    }
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"ES256","typ":"at+jwt","kid":"k1"}"#);
    let body = URL_SAFE_NO_PAD.encode(data);
    check(&format!("{}.{header}.{}", body, URL_SAFE_NO_PAD.encode([1u8; 64])));
    check(&format!("{header}.{body}.{}", URL_SAFE_NO_PAD.encode([1u8; 64])));
    check(&format!("{header}.{header}.{body}"));
    // Arbitrary claims under a real signature: the strict JSON and claim checks.
    let input = format!("{header}.{body}");
    if let Ok(sig) = sign_input(&input) {
        check(&format!("{input}.{sig}"));
    }
});

/// ES256 over arbitrary input with KEY (the crate's `sign` only signs claims it
/// serializes itself, so the fuzzer signs with p256 directly).
fn sign_input(input: &str) -> Result<String, ()> {
    static SIGNER: OnceLock<p256::ecdsa::SigningKey> = OnceLock::new();
    let signer = SIGNER.get_or_init(|| {
        use p256::pkcs8::DecodePrivateKey;
        p256::ecdsa::SigningKey::from_pkcs8_pem(PKCS8).expect("test key")
    });
    use p256::ecdsa::signature::Signer;
    let sig: p256::ecdsa::Signature = signer.try_sign(input.as_bytes()).map_err(|_| ())?;
    Ok(URL_SAFE_NO_PAD.encode(sig.to_bytes()))
}
