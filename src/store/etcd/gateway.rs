//! etcd's HTTP/JSON gateway (`/v3/...`), sans-IO: request bodies to send and
//! typed answers decoded from what came back. Keys and values travel base64;
//! 64-bit numbers come back as JSON strings; proto3 JSON leaves out false and
//! empty fields (a lost compare has no `succeeded`, a missing key no `kvs`).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};

/// A request for the gateway: POST `path` with a JSON `body`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayRequest {
    pub path: &'static str,
    pub body: Vec<u8>,
}

/// What a conditional write expects of the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// The key does not exist (create only).
    Absent,
    /// The key was last written at this revision.
    ModRevision(i64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub mod_revision: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeAnswer {
    pub kvs: Vec<KeyValue>,
    /// The store's revision the answer was read at.
    pub revision: i64,
    /// A `limit` cut the answer short: more keys follow in the range.
    pub more: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnAnswer {
    pub succeeded: bool,
    /// On a lost compare: the key as it is now (`None`: absent).
    pub current: Option<KeyValue>,
    pub revision: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayError {
    /// No answer, a timeout, 5xx, or no leader: try later.
    Unavailable,
    /// The write named a lease that does not exist (expired, or never granted).
    LeaseNotFound,
    /// Granting a lease ID that exists already (someone else granted it).
    LeaseExists,
    /// Authentication missing, expired or refused.
    Unauthenticated,
    /// An answer that is not what the gateway sends: never trusted.
    Malformed,
}

fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

pub fn range(key: &[u8]) -> GatewayRequest {
    request("/v3/kv/range", json!({ "key": b64(key) }))
}

/// Keys in `[from, to)` modified after `after_revision`, at most `limit` (0: all).
pub fn range_since(from: &[u8], to: &[u8], after_revision: i64, limit: u32) -> GatewayRequest {
    let mut body = json!({
        "key": b64(from),
        "range_end": b64(to),
        "min_mod_revision": after_revision.saturating_add(1).to_string(),
    });
    if limit > 0 {
        body["limit"] = Value::String(limit.to_string());
    }
    request("/v3/kv/range", body)
}

/// Keys in `[from, to)` with their values, at most `limit`, in key order.
pub fn range_page(from: &[u8], to: &[u8], limit: u32) -> GatewayRequest {
    request(
        "/v3/kv/range",
        json!({ "key": b64(from), "range_end": b64(to), "limit": limit.max(1).to_string() }),
    )
}

/// An unconditional put riding on [`put_if`]'s success branch.
pub struct AlsoPut<'a> {
    pub key: &'a [u8],
    pub value: &'a [u8],
    pub lease: i64,
}

/// Writes `value` (and `also`) if the key is as expected; a lost compare
/// returns the key as it is.
pub fn put_if(
    key: &[u8],
    value: &[u8],
    expect: Expect,
    lease: i64,
    also: Option<AlsoPut>,
) -> GatewayRequest {
    let compare = match expect {
        Expect::Absent => json!({ "key": b64(key), "target": "CREATE", "result": "EQUAL",
                                  "create_revision": "0" }),
        Expect::ModRevision(r) => json!({ "key": b64(key), "target": "MOD", "result": "EQUAL",
                                          "mod_revision": r.to_string() }),
    };
    let put = |key: &[u8], value: &[u8], lease: i64| {
        let mut p = json!({ "key": b64(key), "value": b64(value) });
        if lease != 0 {
            p["lease"] = Value::String(lease.to_string());
        }
        json!({ "requestPut": p })
    };
    let mut success = vec![put(key, value, lease)];
    if let Some(a) = also {
        success.push(put(a.key, a.value, a.lease));
    }
    request(
        "/v3/kv/txn",
        json!({
            "compare": [compare],
            "success": success,
            "failure": [{ "requestRange": { "key": b64(key) } }],
        }),
    )
}

pub fn lease_grant(id: i64, ttl_secs: u64) -> GatewayRequest {
    request(
        "/v3/lease/grant",
        json!({ "ID": id.to_string(), "TTL": ttl_secs.to_string() }),
    )
}

pub fn authenticate(name: &str, password: &str) -> GatewayRequest {
    request(
        "/v3/auth/authenticate",
        json!({ "name": name, "password": password }),
    )
}

fn request(path: &'static str, body: Value) -> GatewayRequest {
    GatewayRequest {
        path,
        body: body.to_string().into_bytes(),
    }
}

// Answers. Statuses seen on etcd 3.4: 200 with a body; 404 `requested lease
// not found` (code 5); 412 `lease already exists` (code 9); 400 bad request;
// 401 / code 16 unauthenticated; 503 no leader / unavailable; Envoy's own 503
// or 504 when the member is down or slow, and status 0 when the callout failed.

#[derive(Deserialize)]
struct Header {
    #[serde(default, deserialize_with = "int64")]
    revision: i64,
}

#[derive(Deserialize)]
struct RawKv {
    #[serde(default)]
    key: String,
    #[serde(default)]
    value: String,
    #[serde(default, deserialize_with = "int64")]
    mod_revision: i64,
}

#[derive(Deserialize)]
struct RawRange {
    header: Header,
    #[serde(default)]
    kvs: Vec<RawKv>,
    #[serde(default)]
    more: bool,
}

#[derive(Deserialize)]
struct RawTxn {
    header: Header,
    #[serde(default)]
    succeeded: bool,
    #[serde(default)]
    responses: Vec<Value>,
}

#[derive(Deserialize)]
struct RawError {
    #[serde(default)]
    message: String,
}

/// A 64-bit number as proto3 JSON writes it (a string), or as a plain number.
fn int64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    match Value::deserialize(d)? {
        Value::String(s) => s.parse().map_err(serde::de::Error::custom),
        Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| serde::de::Error::custom("not an int64")),
        _ => Err(serde::de::Error::custom("not an int64")),
    }
}

/// Maps a non-200 answer (or an error body) to what it means for the caller.
fn failure(status: u32, body: &[u8]) -> GatewayError {
    let message = serde_json::from_slice::<RawError>(body)
        .map(|e| e.message)
        .unwrap_or_default();
    match status {
        404 if message.contains("lease not found") => GatewayError::LeaseNotFound,
        412 if message.contains("lease already exists") => GatewayError::LeaseExists,
        401 | 403 => GatewayError::Unauthenticated,
        // Auth on and no token: 400 `user name is empty`; a lapsed token: 401.
        _ if message.contains("token")
            || message.contains("authentication")
            || message.contains("user name is empty") =>
        {
            GatewayError::Unauthenticated
        }
        400..=499 => GatewayError::Malformed,
        _ => GatewayError::Unavailable,
    }
}

fn parse<'a, T: Deserialize<'a>>(status: u32, body: &'a [u8]) -> Result<T, GatewayError> {
    if status != 200 {
        return Err(failure(status, body));
    }
    serde_json::from_slice(body).map_err(|_| GatewayError::Malformed)
}

fn kv_of(raw: RawKv) -> Result<KeyValue, GatewayError> {
    Ok(KeyValue {
        key: B64.decode(raw.key).map_err(|_| GatewayError::Malformed)?,
        value: B64.decode(raw.value).map_err(|_| GatewayError::Malformed)?,
        mod_revision: raw.mod_revision,
    })
}

pub fn decode_range(status: u32, body: &[u8]) -> Result<RangeAnswer, GatewayError> {
    let raw: RawRange = parse(status, body)?;
    if raw.header.revision <= 0 {
        return Err(GatewayError::Malformed);
    }
    Ok(RangeAnswer {
        kvs: raw.kvs.into_iter().map(kv_of).collect::<Result<_, _>>()?,
        revision: raw.header.revision,
        more: raw.more,
    })
}

pub fn decode_txn(status: u32, body: &[u8]) -> Result<TxnAnswer, GatewayError> {
    let raw: RawTxn = parse(status, body)?;
    if raw.header.revision <= 0 {
        return Err(GatewayError::Malformed);
    }
    let mut current = None;
    if !raw.succeeded {
        // The failure branch is one range of the key: its kvs (none if absent).
        let range = raw
            .responses
            .into_iter()
            .next()
            .and_then(|mut r| r.get_mut("response_range").map(Value::take))
            .ok_or(GatewayError::Malformed)?;
        #[derive(Deserialize)]
        struct Kvs {
            #[serde(default)]
            kvs: Vec<RawKv>,
        }
        let kvs: Kvs = serde_json::from_value(range).map_err(|_| GatewayError::Malformed)?;
        current = kvs.kvs.into_iter().next().map(kv_of).transpose()?;
    }
    Ok(TxnAnswer {
        succeeded: raw.succeeded,
        current,
        revision: raw.header.revision,
    })
}

/// `Ok(())`: the lease exists now (granted here, or by someone else just before).
pub fn decode_lease_grant(status: u32, body: &[u8]) -> Result<(), GatewayError> {
    match parse::<Value>(status, body) {
        Ok(_) | Err(GatewayError::LeaseExists) => Ok(()),
        Err(e) => Err(e),
    }
}

pub fn decode_authenticate(status: u32, body: &[u8]) -> Result<String, GatewayError> {
    #[derive(Deserialize)]
    struct Token {
        #[serde(default)]
        token: String,
    }
    let t: Token = parse(status, body)?;
    if t.token.is_empty() || !t.token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(GatewayError::Malformed);
    }
    Ok(t.token)
}
