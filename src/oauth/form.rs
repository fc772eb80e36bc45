//! Strict `application/x-www-form-urlencoded` parsing (RFC 6749 Appendix B):
//! `+` is a space, `%XX` a byte, the result must be UTF-8. Anything else is
//! malformed rather than guessed at.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormError {
    Malformed(&'static str),
    /// RFC 6749 §3.1: a parameter must not appear more than once.
    Repeated(String),
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Form {
    pairs: Vec<(String, String)>,
}

impl Form {
    pub fn parse(body: &[u8]) -> Result<Form, FormError> {
        let mut pairs = Vec::new();
        for piece in body.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
            let eq = piece
                .iter()
                .position(|b| *b == b'=')
                .ok_or(FormError::Malformed("a parameter without '='"))?;
            let name = decode_component(&piece[..eq])?;
            let value = decode_component(&piece[eq + 1..])?;
            if name.is_empty() {
                return Err(FormError::Malformed("a parameter without a name"));
            }
            pairs.push((name, value));
        }
        Ok(Form { pairs })
    }

    /// The single value of `name`. Empty values count as omitted (RFC 6749 §3.1);
    /// a repeated parameter is an error.
    pub fn one(&self, name: &str) -> Result<Option<&str>, FormError> {
        let mut found: Option<&str> = None;
        for (n, v) in &self.pairs {
            if n == name {
                if found.is_some() {
                    return Err(FormError::Repeated(name.to_string()));
                }
                found = Some(v);
            }
        }
        Ok(found.filter(|v| !v.is_empty()))
    }

    pub fn has(&self, name: &str) -> bool {
        self.pairs.iter().any(|(n, v)| n == name && !v.is_empty())
    }
}

/// Decodes one form-urlencoded component.
pub fn decode_component(raw: &[u8]) -> Result<String, FormError> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = raw.get(i + 1).and_then(|c| hex(*c));
                let lo = raw.get(i + 2).and_then(|c| hex(*c));
                match (hi, lo) {
                    (Some(h), Some(l)) => out.push(h << 4 | l),
                    _ => return Err(FormError::Malformed("a bad percent-escape")),
                }
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| FormError::Malformed("text that is not UTF-8"))
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_plus_and_percent() {
        let f =
            Form::parse(b"grant_type=password&username=a%40b&scope=PRODUCTION+SANDBOX").unwrap();
        assert_eq!(f.one("username").unwrap(), Some("a@b"));
        assert_eq!(f.one("scope").unwrap(), Some("PRODUCTION SANDBOX"));
        assert_eq!(f.one("missing").unwrap(), None);
    }

    #[test]
    fn empty_values_count_as_omitted_and_repeats_are_errors() {
        let f = Form::parse(b"scope=&a=1&a=2&&").unwrap();
        assert_eq!(f.one("scope").unwrap(), None);
        assert_eq!(f.one("a"), Err(FormError::Repeated("a".into())));
    }

    #[test]
    fn malformed_bodies_are_refused() {
        for bad in [
            &b"novalue"[..],
            b"a=%4",
            b"a=%zz",
            b"=x",
            b"a=%ff%fe",
            b"a=1&b",
        ] {
            assert!(
                matches!(Form::parse(bad), Err(FormError::Malformed(_))),
                "{:?}",
                bad
            );
        }
    }

    #[test]
    fn empty_body_is_an_empty_form() {
        assert_eq!(Form::parse(b"").unwrap(), Form::default());
    }
}
