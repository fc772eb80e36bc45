//! Token formats, no storage: what a token's text says (bucket, grant, kind)
//! and how its hash is stored. Today's format is `opaque`.

pub mod opaque;

pub use opaque::*;
