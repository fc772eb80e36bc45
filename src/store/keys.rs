//! Every key the token service writes, named in one place. The number of keys
//! is fixed by configuration, whatever the traffic: shared data has no delete.

pub fn bucket_key(bucket: u32) -> String {
    format!("oauth2/g/{bucket}")
}

pub fn revocation_key(bucket: u32) -> String {
    format!("oauth2/rev/{}", bucket % super::REVOCATION_SHARDS)
}
