//! What the core needs from its host, as small traits: a key-value store with
//! compare-and-swap (Envoy shared data in production), a clock and a CSPRNG.
//! The protocol and store logic depend only on these, so they run natively in tests.

/// A value read from the store together with its CAS version.
/// `cas == None` means the key has never been written.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Versioned {
    pub value: Option<Vec<u8>>,
    pub cas: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteError {
    /// Someone wrote the key since it was read: read again and retry.
    CasMismatch,
    /// The host refused the write for another reason.
    Failed,
}

/// Envoy shared data semantics: there is no delete, every successful write gets
/// a new CAS, and a write with `cas == None` is unconditional.
pub trait KvStore {
    fn get(&self, key: &str) -> Versioned;
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), WriteError>;
}

pub trait Clock {
    /// Seconds since the Unix epoch.
    fn now_secs(&self) -> u64;
    /// Milliseconds since the Unix epoch (rate limits); a clock that only
    /// knows seconds answers whole seconds.
    fn now_millis(&self) -> u64 {
        self.now_secs().saturating_mul(1000)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RandomUnavailable;

pub trait Randomness {
    /// Fills `buf` from a cryptographically secure source.
    fn fill(&self, buf: &mut [u8]) -> Result<(), RandomUnavailable>;
}

/// The host CSPRNG through getrandom (WASI `random_get` inside Envoy, served by
/// BoringSSL `RAND_bytes`; the OS natively).
pub struct HostRandomness;

impl Randomness for HostRandomness {
    fn fill(&self, buf: &mut [u8]) -> Result<(), RandomUnavailable> {
        getrandom::getrandom(buf).map_err(|_| RandomUnavailable)
    }
}

/// In-memory stand-ins with the same semantics as Envoy's, for native tests.
#[cfg(not(target_arch = "wasm32"))]
pub mod memory {
    use super::*;
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Mutex;

    /// Key -> (value, CAS), and the last CAS handed out.
    type Entries = (HashMap<String, (Vec<u8>, u32)>, u32);

    #[derive(Default)]
    pub struct MemoryKv {
        inner: Mutex<Entries>,
    }

    impl MemoryKv {
        pub fn key_count(&self) -> usize {
            self.inner.lock().map(|g| g.0.len()).unwrap_or(0)
        }
        pub fn total_value_bytes(&self) -> usize {
            self.inner
                .lock()
                .map(|g| g.0.values().map(|(v, _)| v.len()).sum())
                .unwrap_or(0)
        }
    }

    impl KvStore for MemoryKv {
        fn get(&self, key: &str) -> Versioned {
            let guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            match guard.0.get(key) {
                Some((v, cas)) => Versioned {
                    value: Some(v.clone()),
                    cas: Some(*cas),
                },
                None => Versioned::default(),
            }
        }
        fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), WriteError> {
            let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            let (map, next) = &mut *guard;
            *next += 1;
            let new_cas = *next;
            match map.get_mut(key) {
                Some(entry) => {
                    if let Some(c) = cas {
                        if c != entry.1 {
                            return Err(WriteError::CasMismatch);
                        }
                    }
                    *entry = (value.to_vec(), new_cas);
                }
                // Like Envoy: a missing key accepts any write.
                None => {
                    map.insert(key.to_string(), (value.to_vec(), new_cas));
                }
            }
            Ok(())
        }
    }

    /// A clock tests can move.
    pub struct ManualClock(pub AtomicU64);

    impl ManualClock {
        pub fn at(secs: u64) -> Self {
            ManualClock(AtomicU64::new(secs))
        }
        pub fn advance(&self, secs: u64) {
            self.0.fetch_add(secs, Ordering::SeqCst);
        }
    }

    impl Clock for ManualClock {
        fn now_secs(&self) -> u64 {
            self.0.load(Ordering::SeqCst)
        }
    }
}
