//! The bearer guard's plugin configuration (JSON).
#![no_main]
use envoy_oauth2::config::guard::GuardConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(cfg) = GuardConfig::parse(data) {
        for r in &cfg.rules {
            let _ = r.matches("GET", "/api/x");
        }
        for p in &cfg.public {
            let _ = p.matches("/public/x");
        }
    }
});
