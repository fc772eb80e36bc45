//! Prints a fresh ES256 (P-256) signing key for JWT access tokens: the private
//! key as PKCS#8 PEM, its public JWK, and a configuration snippet.
//!
//! `make keygen` or `cargo run --release --bin keygen [-- --kid NAME]`
//! Keep the output secret (it holds the private key); the public JWK alone is safe to share.

use envoy_oauth2::host::HostRandomness;
use envoy_oauth2::token::jwt::keys::{valid_kid, KeyEntry, MAX_KID_LEN};
use envoy_oauth2::token::jwt::{KeySet, PublicJwk, SigningKey};

fn main() {
    let mut kid = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
            ("--kid", Some(k)) if valid_kid(&k) => kid = Some(k),
            _ => {
                eprintln!(
                    "usage: keygen [--kid NAME]   (NAME: 1 to {MAX_KID_LEN} printable ASCII characters, no spaces;\n\
                     default: the RFC 7638 thumbprint of the key)"
                );
                std::process::exit(2);
            }
        }
    }
    let Ok(generated) = SigningKey::generate(&HostRandomness) else {
        eprintln!("no randomness available");
        std::process::exit(1);
    };
    let Some(pem) = generated.to_pkcs8_pem() else {
        eprintln!("could not encode the key");
        std::process::exit(1);
    };
    // Read the key back the way the configuration will, so what is printed is known to load.
    let entry = KeyEntry {
        kid: Some(kid.unwrap_or_else(|| generated.kid().to_owned())),
        pem: Some(pem.to_string()),
        jwk: None,
    };
    let set = match KeySet::from_entries(std::slice::from_ref(&entry), "jwt.keys") {
        Ok(set) => set,
        Err(e) => {
            eprintln!("the generated key does not load: {e}");
            std::process::exit(1);
        }
    };
    let key = set.signing();
    let snippet = serde_json::json!({ "jwt": { "keys": [ { "kid": key.kid(), "pem": &*pem } ] } });
    println!("# ES256 signing key, kid {}", key.kid());
    println!("# Private key (PKCS#8 PEM): keep it secret.");
    print!("{}", &*pem);
    println!();
    println!("# Public JWK (what the JWKS endpoint will publish):");
    println!("{}", PublicJwk::of(key.public()).to_json());
    println!();
    println!("# Configuration snippet (holds the private key). To rotate, put the new key");
    println!("# first in jwt.keys and keep the old one after it until its tokens expire.");
    println!(
        "{}",
        serde_json::to_string_pretty(&snippet).unwrap_or_default()
    );
}
