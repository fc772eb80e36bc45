//! OAuth2 scopes (RFC 6749 §3.3): space-delimited, case-sensitive tokens of
//! printable ASCII except space, `"` and `\`.

/// Splits and validates a requested scope. Repeated tokens collapse; order is kept.
/// `Err` carries the offending token for the error description.
pub fn parse(raw: &str) -> Result<Vec<&str>, String> {
    let mut out: Vec<&str> = Vec::new();
    for token in raw.split(' ').filter(|t| !t.is_empty()) {
        if !token.bytes().all(is_scope_char) {
            return Err(token.chars().take(40).collect());
        }
        if !out.contains(&token) {
            out.push(token);
        }
    }
    Ok(out)
}

pub fn is_valid_token(token: &str) -> bool {
    !token.is_empty() && token.bytes().all(is_scope_char)
}

fn is_scope_char(b: u8) -> bool {
    b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b)
}

/// The first token of `requested` not in `allowed`, if any.
pub fn first_outside<'a>(requested: &[&'a str], allowed: &[String]) -> Option<&'a str> {
    requested
        .iter()
        .copied()
        .find(|r| !allowed.iter().any(|a| a == r))
}

/// Whether every token of `requested` is in the space-delimited `granted`.
pub fn is_subset(requested: &[&str], granted: &str) -> bool {
    requested
        .iter()
        .all(|r| granted.split(' ').any(|g| g == *r))
}

pub fn join(tokens: &[&str]) -> String {
    tokens.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_dedups_and_keeps_order() {
        assert_eq!(parse("b a  b").unwrap(), vec!["b", "a"]);
        assert_eq!(parse("").unwrap(), Vec::<&str>::new());
    }

    #[test]
    fn rejects_forbidden_characters() {
        assert!(parse("ok bad\"one").is_err());
        assert!(parse("back\\slash").is_err());
        assert!(parse("tab\there").is_err());
        assert!(parse("é").is_err());
    }

    #[test]
    fn subset_and_outside() {
        assert!(is_subset(&["a"], "a b"));
        assert!(!is_subset(&["c"], "a b"));
        assert!(!is_subset(&["a"], "ab"));
        let allowed = vec!["a".to_string(), "b".to_string()];
        assert_eq!(first_outside(&["a", "x"], &allowed), Some("x"));
        assert_eq!(first_outside(&["b"], &allowed), None);
    }
}
