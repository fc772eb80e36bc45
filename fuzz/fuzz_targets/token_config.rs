//! The token filter's plugin configuration (JSON), as Envoy hands it over.
#![no_main]
use envoy_oauth2::config::TokenConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(cfg) = TokenConfig::parse(data) {
        assert!(cfg.store.buckets >= 1 && cfg.store.grants_per_bucket >= 1);
        assert!(!cfg.clients.is_empty());
        for c in &cfg.clients {
            let _ = cfg.client(&c.client_id);
        }
        for u in &cfg.users {
            assert!(cfg.user(&u.id).is_some());
        }
    }
});
