//! Request bodies of /token and /revoke: `Form::parse` and `decode_component`.
#![no_main]
use envoy_oauth2::oauth::form::{decode_component, Form};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(form) = Form::parse(data) {
        for name in ["grant_type", "scope", "token", "refresh_token", "username"] {
            let _ = form.one(name);
            let _ = form.has(name);
        }
    }
    if let Ok(s) = decode_component(data) {
        // Decoding is a function of the bytes: no '+' or '%' left means nothing to decode.
        if !data.contains(&b'+') && !data.contains(&b'%') {
            assert_eq!(s.as_bytes(), data);
        }
    }
});
