//! Keyed tags: proof that this service made a piece of data, under the
//! store's own 256-bit key (kept by `crate::store::server_key`).

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub type ServerKey = [u8; 32];

/// The first `N` bytes of HMAC-SHA256 under `key` of `label | body`: proof that
/// this store made `body`. Each use has its own label, so a tag of one kind never
/// stands for another.
pub fn tag<const N: usize>(key: &ServerKey, label: &[u8], body: &[u8]) -> Option<[u8; N]> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).ok()?;
    mac.update(label);
    mac.update(body);
    mac.finalize().into_bytes().get(..N)?.try_into().ok()
}
