//! The token store's own 256-bit key, from the host CSPRNG, kept in shared data
//! (`oauth2/key`) so every worker of the VM uses the same one. It never leaves
//! the store: it signs the family tag of refresh tokens (reuse detection over a
//! whole rotation chain, see `token`), seals the authorization request a login
//! form carries (see `pending_authorization`), and derives the pair of a
//! rotation when a grace period is on (see `refresh_grace`).

use crate::host::{KvStore, Randomness, WriteError};
use crate::store::kv::Kv;
use crate::store::txn::StoreError;

pub const KEY_NAME: &str = crate::store::keys::SERVER_KEY;

pub use crate::token::keyed_tag::{tag, ServerKey};

/// Creates the key once (at configuration, on Envoy's main thread first, like
/// every other key). Returns whether it created it.
pub fn ensure_key(kv: &dyn KvStore, rng: &dyn Randomness) -> Result<bool, WriteError> {
    if read_key(kv).is_some() {
        return Ok(false);
    }
    let mut key = [0u8; 32];
    rng.fill(&mut key).map_err(|_| WriteError::Failed)?;
    kv.set(KEY_NAME, &key, None)?;
    Ok(true)
}

pub fn read_key(kv: &dyn KvStore) -> Option<ServerKey> {
    kv.get(KEY_NAME).value.and_then(|v| v.try_into().ok())
}

/// The key, for a request. Shared data: made at configuration. A remote
/// store: made by the first node that needs it (create-if-absent, so every
/// node ends up with the same one), never expiring.
pub async fn load(kv: &Kv<'_>, rng: &dyn Randomness) -> Result<ServerKey, StoreError> {
    // It never changes once made: a worker that knows it asks no more.
    if let Some(key) = kv.known_server_key() {
        return Ok(key);
    }
    for _ in 0..3 {
        let current = kv.get(KEY_NAME).await?;
        if let Some(key) = current.value.and_then(|v| ServerKey::try_from(v).ok()) {
            kv.remember_server_key(key);
            return Ok(key);
        }
        if !kv.is_remote() {
            break;
        }
        let mut key = [0u8; 32];
        rng.fill(&mut key)?;
        match kv.put(KEY_NAME, key.to_vec(), None, u64::MAX).await {
            Ok(()) => {
                kv.remember_server_key(key);
                return Ok(key);
            }
            // Another node made it first: read theirs. Or the answer was lost
            // (etcd may have applied it): read what is there, ours or not.
            Err(WriteError::CasMismatch) | Err(WriteError::Failed) => continue,
        }
    }
    Err(StoreError::Unavailable)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::memory::MemoryKv;
    use crate::host::HostRandomness;

    #[test]
    fn a_worker_that_knows_the_remote_key_asks_the_store_no_more() {
        use crate::store::kv::{Answer, Command, Progress, RemoteLink, Stored, Suspended};
        use std::cell::Cell;
        use std::rc::Rc;
        let cache: Rc<Cell<Option<ServerKey>>> = Rc::default();
        let link = || Rc::new(RemoteLink::default().with_server_key_cache(cache.clone()));
        let op =
            |link: Rc<RemoteLink>| async move { load(&Kv::Remote(link), &HostRandomness).await };
        // First: read (absent), create, and keep it.
        let l = link();
        let (mut s, p) = Suspended::start(l.clone(), op(l));
        assert!(matches!(p, Progress::Waiting(Command::Get { .. })));
        let p = s.resume(Answer::Got(Ok(Stored::default())));
        let Progress::Waiting(Command::Put { value, .. }) = p else {
            panic!("expected the create")
        };
        let Progress::Done(Ok(made)) = s.resume(Answer::Put(Ok(()))) else {
            panic!("expected the key")
        };
        assert_eq!(made.to_vec(), value);
        // Later requests of the worker: no store command at all.
        let l = link();
        let (_, p) = Suspended::start(l.clone(), op(l));
        assert!(matches!(p, Progress::Done(Ok(k)) if k == made));
        // A link without the worker's copy (another worker) reads the store.
        let l = Rc::new(RemoteLink::default());
        let (_, p) = Suspended::start(l.clone(), op(l));
        assert!(matches!(p, Progress::Waiting(Command::Get { .. })));
    }

    #[test]
    fn the_key_is_made_once() {
        let kv = MemoryKv::default();
        assert!(read_key(&kv).is_none());
        assert!(ensure_key(&kv, &HostRandomness).unwrap());
        let key = read_key(&kv).unwrap();
        assert!(!ensure_key(&kv, &HostRandomness).unwrap());
        assert_eq!(read_key(&kv), Some(key));
        assert_ne!(key, [0u8; 32]);
    }
}
