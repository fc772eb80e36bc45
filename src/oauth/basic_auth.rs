//! `Authorization: Basic` client credentials (RFC 7617, RFC 6749 §2.3.1: each
//! part form-urlencoded before base64).

use base64::alphabet::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;

use crate::oauth::form::decode_component;

const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasicCredentials {
    pub id: String,
    pub secret: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BasicError {
    /// Another scheme (e.g. Bearer): not client authentication by Basic.
    NotBasic,
    Malformed,
}

/// Parses an Authorization header value. Trailing commas and whitespace after
/// the credentials are ignored (the reference product's examples have one).
pub fn parse(header: &str) -> Result<BasicCredentials, BasicError> {
    let header = header.trim();
    let (scheme, rest) = header.split_once([' ', '\t']).unwrap_or((header, ""));
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(BasicError::NotBasic);
    }
    let encoded = rest
        .trim()
        .trim_end_matches(|c: char| c == ',' || c.is_ascii_whitespace());
    let decoded = LENIENT.decode(encoded).map_err(|_| BasicError::Malformed)?;
    let colon = decoded
        .iter()
        .position(|b| *b == b':')
        .ok_or(BasicError::Malformed)?;
    let id = decode_component(&decoded[..colon]).map_err(|_| BasicError::Malformed)?;
    let secret = decode_component(&decoded[colon + 1..]).map_err(|_| BasicError::Malformed)?;
    if id.is_empty() {
        return Err(BasicError::Malformed);
    }
    Ok(BasicCredentials { id, secret })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_page_header_with_trailing_comma() {
        let c = parse(
            "Basic SVpzSWk2SERiQjVlOFZLZFpBblVpX2ZaM2Y4YTpHbTBiSjZvV1Y4ZkM1T1FMTGxDNmpzbEFDVzhh,",
        )
        .unwrap();
        assert_eq!(c.id, "IZsIi6HDbB5e8VKdZAnUi_fZ3f8a");
        assert_eq!(c.secret, "Gm0bJ6oWV8fC5OQLLlC6jslACW8a");
    }

    #[test]
    fn scheme_is_case_insensitive_and_parts_are_form_decoded() {
        // "a%3Ab:p+w%25" -> id "a:b", secret "p w%"
        let c = parse("bAsIc YSUzQWI6cCt3JTI1").unwrap();
        assert_eq!(c.id, "a:b");
        assert_eq!(c.secret, "p w%");
    }

    #[test]
    fn other_schemes_and_garbage() {
        assert_eq!(parse("Bearer abc"), Err(BasicError::NotBasic));
        assert_eq!(parse("Basic !!!"), Err(BasicError::Malformed));
        assert_eq!(parse("Basic bm9jb2xvbg"), Err(BasicError::Malformed)); // "nocolon"
        assert_eq!(parse("Basic"), Err(BasicError::Malformed));
        assert_eq!(parse("Basic OnNlY3JldA=="), Err(BasicError::Malformed)); // ":secret"
    }
}
