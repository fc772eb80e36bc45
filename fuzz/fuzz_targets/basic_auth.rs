//! The `Authorization` header: arbitrary header text and arbitrary decoded credentials.
#![no_main]
use base64::Engine;
use envoy_oauth2::oauth::basic_auth::{parse, BasicError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(header) = std::str::from_utf8(data) {
        let _ = parse(header);
    }
    // The same bytes as the decoded credentials, so the fuzzer reaches past base64.
    let header = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(data)
    );
    match parse(&header) {
        Ok(c) => assert!(!c.id.is_empty()),
        Err(e) => assert_eq!(e, BasicError::Malformed),
    }
});
