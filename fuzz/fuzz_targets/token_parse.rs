//! Presented tokens: arbitrary text, and arbitrary bytes in the token layouts (64
//! and 80 characters) so the fuzzer gets past base64 to the kind and family tag.
#![no_main]
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use envoy_oauth2::token::{self, HandleKind, TokenKind};
use libfuzzer_sys::fuzz_target;

const KEY: [u8; 32] = [7; 32];

fn check(text: &str) {
    if let Some(p) = token::parse(text) {
        // Only refresh tokens come in the long form, and only they carry a tag;
        // a tag nobody signed with KEY never verifies.
        assert_eq!(p.family.is_some(), text.len() == token::REFRESH_CHARS);
        if let Some(f) = p.family {
            assert_eq!(p.kind, TokenKind::Refresh);
            assert!(!f.verifies(&KEY));
        }
    }
    if let Some(p) = token::parse_handle(text, HandleKind::Code) {
        assert!(token::parse(text).is_none() && p.family.is_none());
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        check(text);
    }
    for len in [token::TOKEN_BYTES, token::REFRESH_BYTES] {
        let mut raw = vec![0u8; len];
        let n = data.len().min(len);
        raw[..n].copy_from_slice(&data[..n]);
        check(&URL_SAFE_NO_PAD.encode(&raw));
    }
});
