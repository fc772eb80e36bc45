//! Tests across the module: keys from configuration, sign → verify, and every
//! refusal of `verify`. (Test-only keys below, generated with openssl for these tests.)

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use p256::ecdsa::signature::Signer;
use serde_json::json;
use sha2::Sha256;

use super::*;
use crate::host::HostRandomness;

const PKCS8: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgzk9Mratny1Q3ZKlP
8LnETQhY4+vtiPdT5amV4QUDAVShRANCAARrMCPlrS8fl6jN14Ok/WnQqOQ3YdYi
7nzFRvf6csjYdak6aoo90IWBess5NE9fSdMgIz/H+lO09s4qoikicotw
-----END PRIVATE KEY-----
";
/// The same key as SEC1.
const SEC1: &str = "-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIM5PTK2rZ8tUN2SpT/C5xE0IWOPr7Yj3U+WpleEFAwFUoAoGCCqGSM49
AwEHoUQDQgAEazAj5a0vH5eozdeDpP1p0KjkN2HWIu58xUb3+nLI2HWpOmqKPdCF
gXrLOTRPX0nTICM/x/pTtPbOKqIpInKLcA==
-----END EC PRIVATE KEY-----
";
/// The same key as SEC1 with the curve named but no public key.
const SEC1_NO_PUBLIC: &str = "-----BEGIN EC PRIVATE KEY-----
MDECAQEEIM5PTK2rZ8tUN2SpT/C5xE0IWOPr7Yj3U+WpleEFAwFUoAoGCCqGSM49
AwEH
-----END EC PRIVATE KEY-----
";
/// Its public key (SubjectPublicKeyInfo).
const SPKI: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEazAj5a0vH5eozdeDpP1p0KjkN2HW
Iu58xUb3+nLI2HWpOmqKPdCFgXrLOTRPX0nTICM/x/pTtPbOKqIpInKLcA==
-----END PUBLIC KEY-----
";
/// secp256k1, SEC1 with the curve named and no public key: a 32-byte scalar
/// that `SecretKey::from_sec1_pem` alone would take for a P-256 key.
const K1_SEC1_NO_PUBLIC: &str = "-----BEGIN EC PRIVATE KEY-----
MC4CAQEEIJJDl4hwOEp+VbSE4IKBDrVznnwluYPBCsHPl/wcMqvFoAcGBSuBBAAK
-----END EC PRIVATE KEY-----
";
const K1_SEC1: &str = "-----BEGIN EC PRIVATE KEY-----
MHQCAQEEIJJDl4hwOEp+VbSE4IKBDrVznnwluYPBCsHPl/wcMqvFoAcGBSuBBAAK
oUQDQgAEeNLI5nTGEpwHdkgAtRGcHjDg1KQY9vBTmhZvDgkEUwxhnS8n0iYfGu6I
fVGOgNyy0IuQ9FWVJS2rq+9w1l2dKg==
-----END EC PRIVATE KEY-----
";
const K1_PKCS8: &str = "-----BEGIN PRIVATE KEY-----
MIGEAgEAMBAGByqGSM49AgEGBSuBBAAKBG0wawIBAQQgkkOXiHA4Sn5VtITggoEO
tXOefCW5g8EKwc+X/Bwyq8WhRANCAAR40sjmdMYSnAd2SAC1EZweMODUpBj28FOa
Fm8OCQRTDGGdLyfSJh8a7oh9UY6A3LLQi5D0VZUlLaur73DWXZ0q
-----END PRIVATE KEY-----
";
const ED25519: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIP0iYGWQQ8xCg1DV/vZveuO8ZeEkFLrinAmhsUMOAdre
-----END PRIVATE KEY-----
";

/// RFC 7515 Appendix A.3: the ES256 example key and signed JWS.
const A3_JWK: &str = r#"{"kty":"EC","crv":"P-256",
 "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
 "y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
 "d":"jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI"}"#;
const A3_JWS: &str = "eyJhbGciOiJFUzI1NiJ9\
.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ\
.DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q";

const NOW: u64 = 1_750_000_000;
const ISS: &str = "https://auth.example";

fn pem_entry(kid: Option<&str>, pem: &str) -> KeyEntry {
    KeyEntry {
        kid: kid.map(str::to_owned),
        pem: Some(pem.to_owned()),
        jwk: None,
    }
}

fn jwk_entry(kid: Option<&str>, jwk: serde_json::Value) -> KeyEntry {
    KeyEntry {
        kid: kid.map(str::to_owned),
        pem: None,
        jwk: Some(jwk),
    }
}

fn key(kid: &str) -> SigningKey {
    SigningKey::from_entry(&pem_entry(Some(kid), PKCS8), "k").unwrap()
}

fn other_key(kid: &str) -> SigningKey {
    let k = SigningKey::generate(&HostRandomness).unwrap();
    let pem = k.to_pkcs8_pem().unwrap();
    SigningKey::from_entry(&pem_entry(Some(kid), &pem), "k").unwrap()
}

fn claims() -> AccessClaims {
    AccessClaims {
        iss: ISS.into(),
        sub: "admin@carbon.super".into(),
        aud: Audience::one("api"),
        client_id: "billing".into(),
        scope: Some("default PRODUCTION".into()),
        iat: NOW - 10,
        exp: NOW + 3600,
        nbf: None,
        jti: "4963ffbca84ebe052bc2b46125f2840c".into(),
        auth_time: None,
    }
}

fn audiences() -> Vec<String> {
    vec!["api".to_string()]
}

fn check(token: &str, keys: &PublicKeySet) -> Result<AccessClaims, VerifyError> {
    let aud = audiences();
    verify(
        token,
        keys,
        &Validation {
            issuer: ISS,
            audiences: &aud,
            now: NOW,
            leeway: 30,
        },
    )
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A token with this header and payload JSON, ES256-signed by `key` whatever the header says.
fn forge(key: &SigningKey, header: &str, payload: &str) -> String {
    let input = format!("{}.{}", b64(header), b64(payload));
    let sig: p256::ecdsa::Signature = key.ecdsa().sign(input.as_bytes());
    format!("{input}.{}", b64(sig.to_bytes()))
}

fn claims_json() -> String {
    serde_json::to_string(&claims()).unwrap()
}

// ---- keys ----------------------------------------------------------------

#[test]
fn pkcs8_sec1_and_jwk_give_the_same_key() {
    let a = SigningKey::from_entry(&pem_entry(None, PKCS8), "jwt.keys[0]").unwrap();
    let b = SigningKey::from_entry(&pem_entry(None, SEC1), "jwt.keys[0]").unwrap();
    let c = SigningKey::from_entry(&pem_entry(None, SEC1_NO_PUBLIC), "jwt.keys[0]").unwrap();
    assert_eq!(a.public(), b.public());
    assert_eq!(a.public(), c.public());
    // Without a configured kid, the kid is the RFC 7638 thumbprint.
    assert_eq!(a.kid(), a.public().thumbprint());
    assert_eq!(a.kid().len(), 43);

    let jwk = PublicJwk::of(a.public());
    let private = jwk_entry(
        None,
        json!({"kty":"EC","crv":"P-256","x":jwk.x,"y":jwk.y,"d":&*a.private_d()}),
    );
    let d = SigningKey::from_entry(&private, "jwt.keys[0]").unwrap();
    assert_eq!(d.public(), a.public());
    let p = PublicKey::from_entry(&pem_entry(Some("p"), SPKI), "jwt.keys[1]").unwrap();
    assert_eq!(p.coordinates(), a.public().coordinates());
}

#[test]
fn the_rfc7638_thumbprint_is_sha256_of_the_canonical_jwk() {
    // The RFC 7515 A.3 key, whose thumbprint other JOSE libraries agree on:
    // SHA-256 of {"crv":"P-256","kty":"EC","x":"f83…","y":"x_F…"}.
    let a3: serde_json::Value = serde_json::from_str(A3_JWK).unwrap();
    let k = PublicKey::from_entry(&jwk_entry(None, a3), "k").unwrap();
    use sha2::Digest;
    let canonical = r#"{"crv":"P-256","kty":"EC","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#;
    assert_eq!(k.kid(), b64(Sha256::digest(canonical)));
}

#[test]
fn kid_comes_from_the_entry_or_the_jwk() {
    let a = key("x");
    let jwk = PublicJwk::of(a.public());
    let mut j = serde_json::to_value(&jwk).unwrap();
    // The JWK's own kid is used when the entry gives none…
    let p = PublicKey::from_entry(&jwk_entry(None, j.clone()), "k").unwrap();
    assert_eq!(p.kid(), "x");
    // …the same kid twice is fine, two different ones are not.
    assert!(PublicKey::from_entry(&jwk_entry(Some("x"), j.clone()), "k").is_ok());
    let e = PublicKey::from_entry(&jwk_entry(Some("y"), j.clone()), "jwt.keys[2]").unwrap_err();
    assert_eq!(e.field, "jwt.keys[2].kid");
    j["kid"] = json!("has space");
    let e = PublicKey::from_entry(&jwk_entry(None, j), "k").unwrap_err();
    assert_eq!(e.field, "k.kid");
    for bad in ["", "a b", "é", &"k".repeat(129)] {
        assert!(
            SigningKey::from_entry(&pem_entry(Some(bad), PKCS8), "k").is_err(),
            "{bad:?}"
        );
    }
}

#[test]
fn a_jwk_may_come_as_a_string() {
    let jwk = PublicJwk::of(key("s").public()).to_json();
    let p = PublicKey::from_entry(&jwk_entry(None, json!(jwk)), "k").unwrap();
    assert_eq!(p.kid(), "s");
    let e = PublicKey::from_entry(&jwk_entry(None, json!("{\"kty\":1")), "k").unwrap_err();
    assert_eq!(e.field, "k.jwk");
}

/// Each bad entry: the field named in the error, and the error never quotes key material.
#[test]
fn key_errors_name_the_field_and_quote_no_key() {
    let a = key("a");
    let jwk = PublicJwk::of(a.public());
    let d = a.private_d().to_string();
    let priv_jwk = |change: &dyn Fn(&mut serde_json::Value)| {
        let mut v = json!({"kty":"EC","crv":"P-256","x":jwk.x,"y":jwk.y,"d":d});
        change(&mut v);
        jwk_entry(None, v)
    };
    let other_d = other_key("o").private_d().to_string();
    let cases: Vec<(KeyEntry, &str, &str)> = vec![
        (
            pem_entry(None, K1_SEC1_NO_PUBLIC),
            "jwt.keys[1].pem",
            "not on curve P-256",
        ),
        (
            pem_entry(None, K1_SEC1),
            "jwt.keys[1].pem",
            "not on curve P-256",
        ),
        (
            pem_entry(None, K1_PKCS8),
            "jwt.keys[1].pem",
            "not a P-256 private key",
        ),
        (
            pem_entry(None, ED25519),
            "jwt.keys[1].pem",
            "not a P-256 private key",
        ),
        (pem_entry(None, SPKI), "jwt.keys[1].pem", "cannot sign"),
        (
            pem_entry(None, "garbage"),
            "jwt.keys[1].pem",
            "expected a PEM block",
        ),
        (
            pem_entry(None, &PKCS8.replace("MIGH", "MIGX")),
            "jwt.keys[1].pem",
            "not a P-256 private key",
        ),
        (
            pem_entry(
                None,
                "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----",
            ),
            "jwt.keys[1].pem",
            "encrypted",
        ),
        (KeyEntry::default(), "jwt.keys[1]", "needs `pem` or `jwk`"),
        (
            KeyEntry {
                pem: Some(PKCS8.into()),
                ..priv_jwk(&|_| {})
            },
            "jwt.keys[1]",
            "not both",
        ),
        (
            priv_jwk(&|v| v["kty"] = json!("RSA")),
            "jwt.keys[1].jwk.kty",
            "EC",
        ),
        (
            priv_jwk(&|v| v["crv"] = json!("P-384")),
            "jwt.keys[1].jwk.crv",
            "P-256",
        ),
        (
            priv_jwk(&|v| v["alg"] = json!("HS256")),
            "jwt.keys[1].jwk.alg",
            "ES256",
        ),
        (
            priv_jwk(&|v| v["use"] = json!("enc")),
            "jwt.keys[1].jwk.use",
            "sig",
        ),
        (
            priv_jwk(&|v| v["x"] = json!(5)),
            "jwt.keys[1].jwk.x",
            "string",
        ),
        (
            priv_jwk(&|v| v["y"] = json!(&jwk.y[1..])),
            "jwt.keys[1].jwk.y",
            "32 bytes",
        ),
        (
            priv_jwk(&|v| v["x"] = json!(format!("{}=", jwk.x))),
            "jwt.keys[1].jwk.x",
            "32 bytes",
        ),
        (
            priv_jwk(&|v| v["x"] = json!(b64([1u8; 32]))),
            "jwt.keys[1].jwk",
            "not a point",
        ),
        (
            priv_jwk(&|v| v["d"] = json!(other_d)),
            "jwt.keys[1].jwk.d",
            "does not match",
        ),
        (
            priv_jwk(&|v| v["d"] = json!(b64([0u8; 32]))),
            "jwt.keys[1].jwk.d",
            "not a valid",
        ),
        (
            priv_jwk(&|v| v["d"] = json!(b64([0xffu8; 32]))),
            "jwt.keys[1].jwk.d",
            "not a valid",
        ),
        (
            priv_jwk(&|v| {
                v.as_object_mut().unwrap().remove("d");
            }),
            "jwt.keys[1].jwk.d",
            "must be a private key",
        ),
        (
            jwk_entry(None, json!([1])),
            "jwt.keys[1].jwk",
            "JSON object",
        ),
    ];
    for (entry, field, msg) in cases {
        let e = SigningKey::from_entry(&entry, "jwt.keys[1]").unwrap_err();
        assert_eq!(e.field, field, "{e}");
        assert!(e.message.contains(msg), "{e}");
        let text = format!("{e} {e:?} {entry:?}");
        for secret in [&d, "zk9Mratny1Q3ZKlP", "MHcCAQEEIM5P", "JJDl4hwOEp"] {
            assert!(!text.contains(secret), "{text}");
        }
    }
}

#[test]
fn debug_output_shows_no_key_material() {
    let set = KeySet::from_entries(&[pem_entry(Some("a"), PKCS8)], "jwt.keys").unwrap();
    let d = set.signing().private_d().to_string();
    let entry = jwk_entry(Some("a"), json!({"d": d}));
    let text = format!(
        "{set:?} {:?} {entry:?} {:?}",
        set.signing(),
        pem_entry(None, PKCS8)
    );
    assert!(text.contains("\"a\""), "{text}");
    for secret in [d.as_str(), "zk9Mratny1Q3ZKlP", "PRIVATE"] {
        assert!(!text.contains(secret), "{text}");
    }
}

#[test]
fn key_sets_sign_with_the_first_and_accept_all() {
    let old = other_key("old");
    let entries = [
        pem_entry(Some("new"), PKCS8),
        jwk_entry(
            None,
            serde_json::to_value(PublicJwk::of(old.public())).unwrap(),
        ),
        pem_entry(Some("spki"), SPKI),
    ];
    // (SPKI is the same key as "new" under another kid: allowed, it is only published.)
    let set = KeySet::from_entries(&entries, "jwt.keys").unwrap();
    assert_eq!(set.signing().kid(), "new");
    let kids: Vec<_> = set.public().keys().iter().map(|k| k.kid()).collect();
    assert_eq!(kids, ["new", "old", "spki"]);

    // A token from the previous key still verifies.
    let t = sign(&old, &claims()).unwrap();
    assert_eq!(check(&t, set.public()).unwrap(), claims());
    // The verifier's set can be built from the same entries without a private key in use.
    let public = PublicKeySet::from_entries(&entries, "jwt.keys").unwrap();
    assert_eq!(check(&t, &public).unwrap(), claims());

    // A public-only first entry cannot sign; duplicate kids and empty lists are refused.
    let e = KeySet::from_entries(&entries[1..], "jwt.keys").unwrap_err();
    assert_eq!(e.field, "jwt.keys[0].jwk.d");
    let e = KeySet::from_entries(
        &[pem_entry(Some("a"), PKCS8), pem_entry(Some("a"), SPKI)],
        "jwt.keys",
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "jwt.keys[1].kid: kid \"a\" is already used by another key"
    );
    assert_eq!(
        KeySet::from_entries(&[], "jwt.keys").unwrap_err().field,
        "jwt.keys"
    );
    assert!(PublicKeySet::from_entries(&[], "jwt.keys").is_err());
    // Field paths of later entries.
    let e = KeySet::from_entries(&[pem_entry(None, PKCS8), pem_entry(None, "x")], "jwt.keys")
        .unwrap_err();
    assert_eq!(e.field, "jwt.keys[1].pem");
}

#[test]
fn key_entries_deserialize_from_configuration() {
    let entries: Vec<KeyEntry> = serde_json::from_value(json!([
        {"kid": "a", "pem": PKCS8},
        {"jwk": {"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}}
    ]))
    .unwrap();
    let set = KeySet::from_entries(&entries, "jwt.keys").unwrap();
    assert_eq!(set.public().keys().len(), 2);
    assert!(serde_json::from_value::<KeyEntry>(json!({"pme": "x"})).is_err());
}

#[test]
fn generated_keys_round_trip_through_pem() {
    let k = SigningKey::generate(&HostRandomness).unwrap();
    let pem = k.to_pkcs8_pem().unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
    let back = SigningKey::from_entry(&pem_entry(None, &pem), "k").unwrap();
    assert_eq!(back.public(), k.public());
    assert_eq!(back.kid(), k.kid());
    assert_ne!(k.public(), other_key("x").public());
}

// ---- JWKS ----------------------------------------------------------------

#[test]
fn jwks_lists_public_keys_only() {
    let old = other_key("old");
    let set = KeySet::from_entries(
        &[
            pem_entry(Some("new"), PKCS8),
            pem_entry(Some("old"), &old.to_pkcs8_pem().unwrap()),
        ],
        "jwt.keys",
    )
    .unwrap();
    let text = jwks_json(set.public());
    assert!(!text.contains("\"d\""), "{text}");
    assert!(!text.contains(&*set.signing().private_d()));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let keys = v["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(
        keys[0].as_object().unwrap().keys().collect::<Vec<_>>(),
        ["alg", "crv", "kid", "kty", "use", "x", "y"]
    );
    assert_eq!(keys[0]["kid"], "new");
    assert_eq!(keys[0]["kty"], "EC");
    assert_eq!(keys[0]["crv"], "P-256");
    assert_eq!(keys[0]["use"], "sig");
    assert_eq!(keys[0]["alg"], "ES256");
    assert_eq!(keys[1]["kid"], "old");
    // What we publish, a verifier can load and use.
    let entries: Vec<KeyEntry> = keys.iter().map(|k| jwk_entry(None, k.clone())).collect();
    let loaded = PublicKeySet::from_entries(&entries, "jwks").unwrap();
    let t = sign(&old, &claims()).unwrap();
    assert!(check(&t, &loaded).is_ok());
    assert!(
        text.starts_with(r#"{"keys":[{"kty":"EC","crv":"P-256","x":""#),
        "{text}"
    );
}

// ---- sign and verify -----------------------------------------------------

#[test]
fn a_signed_token_verifies_and_says_what_was_signed() {
    let set = KeySet::single(key("k1"));
    let t = sign(set.signing(), &claims()).unwrap();
    assert!(looks_like_jwt(&t));
    let parts: Vec<_> = t.split('.').collect();
    assert_eq!(
        URL_SAFE_NO_PAD.decode(parts[0]).unwrap(),
        br#"{"alg":"ES256","typ":"at+jwt","kid":"k1"}"#
    );
    let payload: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    assert_eq!(payload["aud"], "api");
    assert_eq!(payload["client_id"], "billing");
    assert!(payload.get("nbf").is_none());
    assert_eq!(URL_SAFE_NO_PAD.decode(parts[2]).unwrap().len(), 64);
    assert_eq!(check(&t, set.public()).unwrap(), claims());
    // RFC 6979: signing is deterministic.
    assert_eq!(sign(set.signing(), &claims()).unwrap(), t);

    // Several audiences: an array, and any one of them is accepted.
    let mut c = claims();
    c.aud = Audience(vec!["other".into(), "api".into()]);
    let t = sign(set.signing(), &c).unwrap();
    assert!(t
        .split('.')
        .nth(1)
        .map(|p| String::from_utf8(URL_SAFE_NO_PAD.decode(p).unwrap())
            .unwrap()
            .contains(r#""aud":["other","api"]"#))
        .unwrap());
    assert_eq!(check(&t, set.public()).unwrap(), c);

    c.aud = Audience(vec![]);
    assert_eq!(sign(set.signing(), &c), Err(SignError::EmptyAudience));
    let mut big = claims();
    big.sub = "x".repeat(MAX_TOKEN_LEN);
    assert_eq!(sign(set.signing(), &big), Err(SignError::TooLarge));
}

#[test]
fn the_rfc7515_a3_example_verifies() {
    let a3: serde_json::Value = serde_json::from_str(A3_JWK).unwrap();
    let k = PublicKey::from_entry(&jwk_entry(Some("a3"), a3.clone()), "k").unwrap();
    // The private key of the example is consistent with its public key.
    assert!(SigningKey::from_entry(&jwk_entry(Some("a3"), a3), "k").is_ok());
    let (input, sig) = A3_JWS.rsplit_once('.').unwrap();
    let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
    assert_eq!(verify_es256(input.as_bytes(), &sig, &k), Ok(()));
    let mut tampered = input.as_bytes().to_vec();
    tampered[5] ^= 1;
    assert_eq!(
        verify_es256(&tampered, &sig, &k),
        Err(VerifyError::Signature)
    );
    // The example has no typ and no kid, so the access-token verifier refuses it.
    let set = PublicKeySet::from_entries(
        &[jwk_entry(Some("a3"), serde_json::from_str(A3_JWK).unwrap())],
        "k",
    )
    .unwrap();
    assert_eq!(check(A3_JWS, &set), Err(VerifyError::Type));
}

#[test]
fn alg_none_is_refused() {
    let set = KeySet::single(key("k1"));
    let body = b64(claims_json());
    for header in [
        r#"{"alg":"none","typ":"at+jwt","kid":"k1"}"#,
        r#"{"alg":"None","typ":"at+jwt","kid":"k1"}"#,
        r#"{"typ":"at+jwt","kid":"k1"}"#,
    ] {
        for sig in ["", "AAAA"] {
            let t = format!("{}.{body}.{sig}", b64(header));
            assert_eq!(
                check(&t, set.public()),
                Err(VerifyError::Algorithm),
                "{header}"
            );
        }
    }
}

#[test]
fn hs256_with_the_public_key_as_secret_is_refused() {
    let set = KeySet::single(key("k1"));
    let input = format!(
        "{}.{}",
        b64(r#"{"alg":"HS256","typ":"at+jwt","kid":"k1"}"#),
        b64(claims_json())
    );
    // The classic confusion: the public key (SPKI PEM, JWK, raw point) as HMAC key.
    let jwk = PublicJwk::of(set.signing().public()).to_json();
    let (x, y) = set.signing().public().coordinates();
    let point = [&[4u8][..], &x, &y].concat();
    for secret in [SPKI.as_bytes(), jwk.as_bytes(), &point] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap();
        mac.update(input.as_bytes());
        let t = format!("{input}.{}", b64(mac.finalize().into_bytes()));
        assert_eq!(check(&t, set.public()), Err(VerifyError::Algorithm));
    }
}

#[test]
fn any_other_alg_is_refused_even_with_a_valid_es256_signature() {
    let k = key("k1");
    let set = KeySet::single(k.clone());
    for alg in [
        "es256", "ES384", "ES512", "RS256", "PS256", "EdDSA", "ES256K", "ES256 ", "",
    ] {
        let h = format!(r#"{{"alg":"{alg}","typ":"at+jwt","kid":"k1"}}"#);
        let t = forge(&k, &h, &claims_json());
        assert_eq!(
            check(&t, set.public()),
            Err(VerifyError::Algorithm),
            "{alg}"
        );
    }
    let t = forge(
        &k,
        r#"{"alg":["ES256"],"typ":"at+jwt","kid":"k1"}"#,
        &claims_json(),
    );
    assert_eq!(check(&t, set.public()), Err(VerifyError::Algorithm));
}

#[test]
fn kid_must_name_a_key_of_the_set() {
    let k = key("k1");
    let set = KeySet::single(k.clone());
    let c = claims_json();
    let cases = [
        (r#"{"alg":"ES256","typ":"at+jwt"}"#, VerifyError::MissingKid),
        (
            r#"{"alg":"ES256","typ":"at+jwt","kid":null}"#,
            VerifyError::MissingKid,
        ),
        (
            r#"{"alg":"ES256","typ":"at+jwt","kid":1}"#,
            VerifyError::MissingKid,
        ),
        (
            r#"{"alg":"ES256","typ":"at+jwt","kid":"k2"}"#,
            VerifyError::UnknownKid,
        ),
        (
            r#"{"alg":"ES256","typ":"at+jwt","kid":"K1"}"#,
            VerifyError::UnknownKid,
        ),
        (
            r#"{"alg":"ES256","typ":"at+jwt","kid":""}"#,
            VerifyError::UnknownKid,
        ),
    ];
    for (h, want) in cases {
        assert_eq!(check(&forge(&k, h, &c), set.public()), Err(want), "{h}");
    }
    let long = format!(
        r#"{{"alg":"ES256","typ":"at+jwt","kid":"{}"}}"#,
        "k".repeat(200)
    );
    assert_eq!(
        check(&forge(&k, &long, &c), set.public()),
        Err(VerifyError::UnknownKid)
    );
}

#[test]
fn typ_must_be_at_jwt() {
    let k = key("k1");
    let set = KeySet::single(k.clone());
    let c = claims_json();
    for typ in [
        "at+jwt",
        "AT+JWT",
        "application/at+jwt",
        "Application/At+JWT",
    ] {
        let h = format!(r#"{{"alg":"ES256","typ":"{typ}","kid":"k1"}}"#);
        assert!(check(&forge(&k, &h, &c), set.public()).is_ok(), "{typ}");
    }
    for typ in [
        "\"JWT\"",
        "\"jwt\"",
        "\"at+jwt \"",
        "\"application/jwt\"",
        "\"\"",
        "null",
        "1",
    ] {
        let h = format!(r#"{{"alg":"ES256","typ":{typ},"kid":"k1"}}"#);
        assert_eq!(
            check(&forge(&k, &h, &c), set.public()),
            Err(VerifyError::Type),
            "{typ}"
        );
    }
    let h = r#"{"alg":"ES256","kid":"k1"}"#;
    assert_eq!(
        check(&forge(&k, h, &c), set.public()),
        Err(VerifyError::Type)
    );
    let h = r#"{"alg":"ES256","typ":"at+jwt","kid":"k1","crit":["exp"]}"#;
    assert_eq!(
        check(&forge(&k, h, &c), set.public()),
        Err(VerifyError::Critical)
    );
}

#[test]
fn issuer_and_audience_must_match() {
    let k = key("k1");
    let set = KeySet::single(k.clone());
    let mut c = claims();
    c.iss = format!("{ISS}/");
    assert_eq!(
        check(&sign(&k, &c).unwrap(), set.public()),
        Err(VerifyError::Issuer)
    );
    let mut c = claims();
    c.aud = Audience(vec!["API".into(), "other".into()]);
    assert_eq!(
        check(&sign(&k, &c).unwrap(), set.public()),
        Err(VerifyError::Audience)
    );
    // An empty aud array (signed by someone with our key) matches nothing.
    let h = r#"{"alg":"ES256","typ":"at+jwt","kid":"k1"}"#;
    let mut v = serde_json::to_value(claims()).unwrap();
    v["aud"] = json!([]);
    assert_eq!(
        check(&forge(&k, h, &v.to_string()), set.public()),
        Err(VerifyError::Audience)
    );
    // With no accepted audience, no token passes.
    let t = sign(&k, &claims()).unwrap();
    let v = Validation {
        issuer: ISS,
        audiences: &[],
        now: NOW,
        leeway: 30,
    };
    assert_eq!(verify(&t, set.public(), &v), Err(VerifyError::Audience));
}

#[test]
fn time_claims_are_checked_with_leeway() {
    let k = key("k1");
    let set = KeySet::single(k.clone());
    let aud = audiences();
    let at = |c: &AccessClaims, now: u64, leeway: u64| {
        let v = Validation {
            issuer: ISS,
            audiences: &aud,
            now,
            leeway,
        };
        verify(&sign(&k, c).unwrap(), set.public(), &v)
    };
    let c = claims(); // iat NOW-10, exp NOW+3600
    assert!(at(&c, NOW + 3599, 0).is_ok());
    assert_eq!(at(&c, NOW + 3600, 0), Err(VerifyError::Expired));
    assert!(at(&c, NOW + 3629, 30).is_ok());
    assert_eq!(at(&c, NOW + 3630, 30), Err(VerifyError::Expired));
    assert_eq!(at(&c, u64::MAX, u64::MAX), Err(VerifyError::Expired));
    // iat in the future
    assert!(at(&c, NOW - 10, 0).is_ok());
    assert_eq!(at(&c, NOW - 11, 0), Err(VerifyError::NotYetValid));
    assert!(at(&c, NOW - 40, 30).is_ok());
    assert_eq!(at(&c, NOW - 41, 30), Err(VerifyError::NotYetValid));
    // nbf in the future
    let mut n = claims();
    n.nbf = Some(NOW + 100);
    assert_eq!(at(&n, NOW, 30), Err(VerifyError::NotYetValid));
    assert!(at(&n, NOW + 70, 30).is_ok());
    assert!(at(&n, NOW + 100, 0).is_ok());
}

#[test]
fn required_claims_must_be_present_and_typed() {
    let k = key("k1");
    let set = KeySet::single(k.clone());
    let h = r#"{"alg":"ES256","typ":"at+jwt","kid":"k1"}"#;
    for name in ["iss", "sub", "aud", "client_id", "iat", "exp", "jti"] {
        let mut v = serde_json::to_value(claims()).unwrap();
        v.as_object_mut().unwrap().remove(name);
        assert_eq!(
            check(&forge(&k, h, &v.to_string()), set.public()),
            Err(VerifyError::Claims),
            "{name}"
        );
    }
    for (name, value) in [
        ("exp", json!("2000000000")),
        ("exp", json!(2e9 + 0.5)),
        ("exp", json!(-1)),
        ("iat", json!(null)),
        ("nbf", json!("0")),
        ("sub", json!(1)),
        ("scope", json!(["a"])),
    ] {
        let mut v = serde_json::to_value(claims()).unwrap();
        v[name] = value;
        assert_eq!(
            check(&forge(&k, h, &v.to_string()), set.public()),
            Err(VerifyError::Claims),
            "{name}"
        );
    }
    // Extra claims are ignored.
    let mut v = serde_json::to_value(claims()).unwrap();
    v["acr"] = json!("1");
    v["cnf"] = json!({"jkt": "x"});
    assert!(check(&forge(&k, h, &v.to_string()), set.public()).is_ok());
}

#[test]
fn malformed_tokens_are_refused() {
    let k = key("k1");
    let set = KeySet::single(k.clone());
    let good = sign(&k, &claims()).unwrap();
    let (h, rest) = good.split_once('.').unwrap();
    let (p, s) = rest.split_once('.').unwrap();
    let cases: Vec<(String, VerifyError)> = vec![
        (String::new(), VerifyError::Segments),
        (format!("{h}.{p}"), VerifyError::Segments),
        (format!("{h}.{p}.{s}."), VerifyError::Segments),
        (format!("{h}.{p}.{s}.{s}"), VerifyError::Segments),
        (format!("{h}{p}{s}"), VerifyError::Segments),
        ("..".into(), VerifyError::Json),
        (format!("{h}=.{p}.{s}"), VerifyError::Base64),
        (format!("{h}.{p}.{s}=="), VerifyError::Base64),
        (
            format!("{}.{p}.{s}", h.replace('e', "+")),
            VerifyError::Base64,
        ),
        (
            format!(
                "{h}.{p}.{}",
                s.replacen('A', "/", 1)
                    .replacen('B', "/", 1)
                    .replacen('a', "/", 1)
            ),
            VerifyError::Base64,
        ),
        (format!("{h} .{p}.{s}"), VerifyError::Base64),
        (format!("{h}.{p}.{s}\n"), VerifyError::Base64),
        (format!("{}.{p}.{s}", b64("{\"alg\":")), VerifyError::Json),
        (
            format!("{}.{p}.{s}", b64("[\"ES256\"]")),
            VerifyError::NotObject,
        ),
        (
            format!("{}.{p}.{s}", b64("\"ES256\"")),
            VerifyError::NotObject,
        ),
        (
            format!("{}.{p}.{s}", b64([0xffu8, 0xfe])),
            VerifyError::Json,
        ),
        // Duplicate names in the header: a parser keeping the first would see "none".
        (
            format!(
                "{}.{p}.{s}",
                b64(r#"{"alg":"none","alg":"ES256","typ":"at+jwt","kid":"k1"}"#)
            ),
            VerifyError::DuplicateMember,
        ),
        // Signatures of the wrong length, or r||s DER-encoded.
        (format!("{h}.{p}"), VerifyError::Segments),
        (
            format!("{h}.{p}.{}", b64([1u8; 63])),
            VerifyError::SignatureLength,
        ),
        (
            format!("{h}.{p}.{}", b64([1u8; 65])),
            VerifyError::SignatureLength,
        ),
        (
            format!("{h}.{p}.{}", b64([1u8; 72])),
            VerifyError::SignatureLength,
        ),
        (format!("{h}.{p}."), VerifyError::SignatureLength),
        (
            format!("{h}.{p}.{}", b64([0u8; 64])),
            VerifyError::Signature,
        ),
        (
            format!("{h}.{p}.{}", b64([0xffu8; 64])),
            VerifyError::Signature,
        ),
        (format!("{h}..{s}"), VerifyError::Signature),
    ];
    for (t, want) in cases {
        assert_eq!(check(&t, set.public()), Err(want), "{t:?}");
    }
    // The trailing bits of the last character must be zero (one encoding per value).
    let last = s.chars().last().unwrap();
    let mut sig = s.to_string();
    sig.pop();
    let bits = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let i = bits.find(last).unwrap();
    sig.push(bits.as_bytes()[i ^ 1] as char); // flip a bit beyond the 64 bytes
    assert_eq!(
        check(&format!("{h}.{p}.{sig}"), set.public()),
        Err(VerifyError::Base64)
    );
}

#[test]
fn signed_claims_that_are_not_a_strict_object_are_refused() {
    let k = key("k1");
    let set = KeySet::single(k.clone());
    let h = r#"{"alg":"ES256","typ":"at+jwt","kid":"k1"}"#;
    let dup = claims_json().replacen('{', r#"{"sub":"root","#, 1);
    assert_eq!(
        check(&forge(&k, h, &dup), set.public()),
        Err(VerifyError::DuplicateMember)
    );
    assert_eq!(
        check(&forge(&k, h, "[1]"), set.public()),
        Err(VerifyError::NotObject)
    );
    assert_eq!(
        check(&forge(&k, h, "{"), set.public()),
        Err(VerifyError::Json)
    );
    assert_eq!(
        check(&forge(&k, h, ""), set.public()),
        Err(VerifyError::Json)
    );
}

#[test]
fn oversized_tokens_are_refused_before_decoding() {
    let set = KeySet::single(key("k1"));
    // Not even base64 or segments: the size is checked first.
    assert_eq!(
        check(&"!".repeat(MAX_TOKEN_LEN + 1), set.public()),
        Err(VerifyError::TooLarge)
    );
    assert_eq!(
        check(&"!".repeat(MAX_TOKEN_LEN), set.public()),
        Err(VerifyError::Segments)
    );
    // A token at the limit that is otherwise valid passes; one byte more does not.
    let k = key("k1");
    let mut c = claims();
    let base = sign(&k, &c).unwrap().len();
    // Each 3 bytes of jti add 4 characters.
    let room = (MAX_TOKEN_LEN - base) / 4 * 3;
    c.jti.push_str(&"j".repeat(room));
    let t = sign(&k, &c).unwrap();
    assert!(
        t.len() <= MAX_TOKEN_LEN && t.len() > MAX_TOKEN_LEN - 4,
        "{}",
        t.len()
    );
    assert!(check(&t, set.public()).is_ok());
    let padded = format!("{t}{}", "A".repeat(MAX_TOKEN_LEN + 1 - t.len()));
    assert_eq!(check(&padded, set.public()), Err(VerifyError::TooLarge));
}

#[test]
fn a_signature_by_another_key_with_the_same_kid_is_refused() {
    let ours = key("k1");
    let theirs = other_key("k1");
    let set = KeySet::single(ours.clone());
    let t = sign(&theirs, &claims()).unwrap();
    assert_eq!(check(&t, set.public()), Err(VerifyError::Signature));
    // Our signature moved onto other claims does not verify either.
    let good = sign(&ours, &claims()).unwrap();
    let mut c = claims();
    c.sub = "root".into();
    let other = sign(&ours, &c).unwrap();
    let (gh, grest) = good.split_once('.').unwrap();
    let (_, gs) = grest.split_once('.').unwrap();
    let op = other.split('.').nth(1).unwrap();
    assert_eq!(
        check(&format!("{gh}.{op}.{gs}"), set.public()),
        Err(VerifyError::Signature)
    );
}

#[test]
fn the_signature_is_checked_before_the_claims() {
    // Expired, wrong issuer, and missing claims, all under a bad signature: the
    // answer is the signature, so nothing unsigned is ever interpreted.
    let set = KeySet::single(key("k1"));
    let theirs = other_key("k1");
    let mut c = claims();
    c.exp = 1;
    c.iss = "evil".into();
    assert_eq!(
        check(&sign(&theirs, &c).unwrap(), set.public()),
        Err(VerifyError::Signature)
    );
    let h = r#"{"alg":"ES256","typ":"at+jwt","kid":"k1"}"#;
    assert_eq!(
        check(&forge(&theirs, h, "[1]"), set.public()),
        Err(VerifyError::Signature)
    );
}

/// Native timing of sign and verify (release): `cargo test --release --lib jwt_timing -- --ignored --nocapture`.
#[test]
#[ignore]
fn jwt_timing() {
    let k = key("k1");
    let set = KeySet::single(k.clone());
    let c = claims();
    let n = 2000;
    let start = std::time::Instant::now();
    let mut t = String::new();
    for _ in 0..n {
        t = sign(&k, std::hint::black_box(&c)).unwrap();
    }
    let sign_us = start.elapsed().as_secs_f64() * 1e6 / n as f64;
    let start = std::time::Instant::now();
    for _ in 0..n {
        check(std::hint::black_box(&t), set.public()).unwrap();
    }
    let verify_us = start.elapsed().as_secs_f64() * 1e6 / n as f64;
    println!(
        "ES256 sign: {sign_us:.1} µs/op, verify: {verify_us:.1} µs/op ({} byte token)",
        t.len()
    );
}
