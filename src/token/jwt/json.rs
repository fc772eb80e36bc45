//! Strict JSON for JOSE headers and claims: an object at the top, and no member
//! name twice in any object. serde_json silently keeps the last of two equal
//! names, so a token whose signed bytes say `"sub":"alice"` then `"sub":"root"`
//! could be read differently here and by another parser (RFC 7515 §4, RFC 8725
//! §3.11): such JSON is refused instead.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonProblem {
    /// Not JSON (or not UTF-8, or trailing bytes, or nested too deep).
    Syntax,
    /// JSON, but not an object.
    NotObject,
    /// An object with the same member name twice.
    DuplicateKey,
}

const DUPLICATE: &str = "duplicate member name";

/// Parses `bytes` as one JSON object, refusing duplicate names at any depth.
pub fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, JsonProblem> {
    match serde_json::from_slice::<Strict>(bytes) {
        Ok(Strict(Value::Object(map))) => Ok(map),
        Ok(_) => Err(JsonProblem::NotObject),
        Err(e) if e.classify() == serde_json::error::Category::Data => {
            // The visitor below raises no other data error.
            if e.to_string().starts_with(DUPLICATE) {
                Err(JsonProblem::DuplicateKey)
            } else {
                Err(JsonProblem::Syntax)
            }
        }
        Err(_) => Err(JsonProblem::Syntax),
    }
}

/// A `serde_json::Value` that refuses duplicate member names. serde_json's own
/// recursion limit (128 levels) still applies, so deep nesting is an error, not
/// a stack overflow.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(name) = map.next_key::<String>()? {
            if out.contains_key(&name) {
                return Err(de::Error::custom(DUPLICATE));
            }
            let Strict(v) = map.next_value()?;
            out.insert(name, v);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_parse() {
        let m = parse_object(br#"{"a":1,"b":[true,null,"x",{"c":1.5}],"d":-2}"#).unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(m["b"][3]["c"], 1.5);
    }

    #[test]
    fn duplicates_are_refused_at_any_depth() {
        assert_eq!(
            parse_object(br#"{"sub":"alice","sub":"root"}"#),
            Err(JsonProblem::DuplicateKey)
        );
        assert_eq!(
            parse_object(br#"{"cnf":{"x":1,"x":2}}"#),
            Err(JsonProblem::DuplicateKey)
        );
        assert_eq!(
            parse_object(br#"{"a":[{"x":1,"x":2}]}"#),
            Err(JsonProblem::DuplicateKey)
        );
        // Escapes that decode to the same name are the same name.
        assert_eq!(
            parse_object(br#"{"sub":1,"s\u0075b":2}"#),
            Err(JsonProblem::DuplicateKey)
        );
    }

    #[test]
    fn non_objects_and_garbage_are_refused() {
        for (input, want) in [
            (&b"[1,2]"[..], JsonProblem::NotObject),
            (b"\"x\"", JsonProblem::NotObject),
            (b"null", JsonProblem::NotObject),
            (b"{", JsonProblem::Syntax),
            (b"{} {}", JsonProblem::Syntax),
            (b"", JsonProblem::Syntax),
            (b"{\"a\":\xff}", JsonProblem::Syntax),
        ] {
            assert_eq!(parse_object(input), Err(want), "{input:?}");
        }
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(parse_object(deep.as_bytes()), Err(JsonProblem::Syntax));
    }
}
