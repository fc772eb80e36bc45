//! Every key the token service writes, named in one place. The number of keys
//! is fixed by configuration, whatever the traffic: shared data has no delete.

pub fn bucket_key(bucket: u32) -> String {
    format!("oauth2/g/{bucket}")
}

pub fn revocation_key(bucket: u32) -> String {
    format!("oauth2/rev/{}", bucket % super::REVOCATION_SHARDS)
}

/// An event of the revocation log (remote stores only): one key per event,
/// under the time slice it was written in, so a poll reads the recent slices.
pub fn revlog_key(now: u64, id: &[u8; 8]) -> String {
    let slice = crate::store::revocation_feed::slice_of(now);
    let mut hex = String::with_capacity(16);
    for b in id {
        hex.push_str(&format!("{b:02x}"));
    }
    format!("{}{slice:012}/{hex}", REVLOG_PREFIX)
}

pub const REVLOG_PREFIX: &str = "oauth2/revlog/";
pub const SERVER_KEY: &str = "oauth2/key";
