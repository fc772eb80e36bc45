//! How a bad configuration is reported: one [`ConfigError`] naming the field,
//! and the checks several sections share.

use serde::Deserialize;

use crate::oauth::scope;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "invalid plugin configuration: field `{}`: {}",
            self.field, self.message
        )
    }
}

pub fn err(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.into(),
        message: message.into(),
    }
}

/// Parses JSON with serde, reporting the path of the field that failed.
pub fn parse_json<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, ConfigError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        // serde_json appends " at line L column C"; keep it, it helps in YAML blocks.
        err(
            if path == "." {
                "(root)".to_string()
            } else {
                path
            },
            inner.to_string(),
        )
    })
}

pub fn check_scopes(field: &str, scopes: &[String]) -> Result<(), ConfigError> {
    for (j, s) in scopes.iter().enumerate() {
        if !scope::is_valid_token(s) {
            return Err(err(
                format!("{field}[{j}]"),
                format!("`{s}` is not a valid scope token"),
            ));
        }
    }
    Ok(())
}

/// Identifiers: non-empty, at most 255 bytes, visible ASCII without `"` or `\`
/// (they end up in headers and quoted strings).
pub fn check_name(field: &str, v: &str) -> Result<(), ConfigError> {
    if v.is_empty() || v.len() > 255 {
        return Err(err(field, "must be 1 to 255 characters"));
    }
    if !v
        .bytes()
        .all(|b| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\')
    {
        return Err(err(
            field,
            "must be visible ASCII without spaces, `\"` or `\\`",
        ));
    }
    Ok(())
}

/// Text that goes into a header or a quoted-string: printable ASCII, no `"` or `\`.
pub fn check_header_text(field: &str, v: &str) -> Result<(), ConfigError> {
    if v.is_empty()
        || v.len() > 255
        || !v
            .bytes()
            .all(|b| (0x20..=0x7e).contains(&b) && b != b'"' && b != b'\\')
    {
        return Err(err(
            field,
            "must be 1 to 255 printable ASCII characters without `\"` or `\\`",
        ));
    }
    Ok(())
}
