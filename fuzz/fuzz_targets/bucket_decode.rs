//! Stored records (shared-data values): `Bucket::decode` and `Bucket::decode_one`.
//! The first 11 bytes are the grant id to look up, the rest the stored value.
#![no_main]
use envoy_oauth2::store::bucket::Bucket;
use envoy_oauth2::token::GRANT_ID_BYTES;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < GRANT_ID_BYTES {
        return;
    }
    let (id, value) = data.split_at(GRANT_ID_BYTES);
    let id: [u8; GRANT_ID_BYTES] = id.try_into().unwrap();
    let one = Bucket::decode_one(value, &id);
    if let Ok(bucket) = Bucket::decode(value) {
        // Whatever decodes re-encodes to the same bucket, and the one-grant read agrees.
        assert_eq!(Bucket::decode(&bucket.encode()), Ok(bucket.clone()));
        assert_eq!(one, Ok(bucket.find(&id).cloned()));
    }
});
