//! Every key the token service writes, named in one place. The number of keys
//! is fixed by configuration, whatever the traffic: shared data has no delete.

pub const BUCKET_PREFIX: &str = "oauth2/g/";
/// Just past every bucket key (`/` + 1), for a scan of all of them.
pub const BUCKET_RANGE_END: &str = "oauth2/g0";

pub fn bucket_key(bucket: u32) -> String {
    format!("{BUCKET_PREFIX}{bucket}")
}

/// The bucket a key found by a scan names, if it is a bucket key.
pub fn bucket_of_key(key: &str) -> Option<u32> {
    let n = key.strip_prefix(BUCKET_PREFIX)?;
    // Only the canonical form `bucket_key` writes.
    if n.is_empty() || (n.len() > 1 && n.starts_with('0')) || !n.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    n.parse().ok()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scanned_key_names_a_bucket_only_in_the_form_bucket_key_writes() {
        for b in [0, 7, 1 << 19, u32::MAX] {
            assert_eq!(bucket_of_key(&bucket_key(b)), Some(b));
        }
        for k in [
            "oauth2/g/",
            "oauth2/g/07",
            "oauth2/g/+7",
            "oauth2/g/7x",
            "oauth2/rev/7",
            "oauth2/g/99999999999",
        ] {
            assert_eq!(bucket_of_key(k), None, "{k}");
        }
        assert!(bucket_key(u32::MAX).as_str() < BUCKET_RANGE_END);
        assert!(bucket_key(0).starts_with(BUCKET_PREFIX));
    }
}
