//! The claims of a JWT access token (RFC 9068 §2.2).

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// RFC 9068 §2.2: `iss`, `exp`, `aud`, `sub`, `client_id`, `iat` and `jti` are
/// required; `scope` is present when the grant has scopes. Claims a token
/// carries beyond these are ignored when it is verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    /// The resource owner, or the client itself for client_credentials.
    pub sub: String,
    pub aud: Audience,
    pub client_id: String,
    /// Space-separated scopes (RFC 6749 §3.3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    pub iat: u64,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    pub jti: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<u64>,
}

impl AccessClaims {
    /// The scopes as a list (none when `scope` is absent).
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope
            .as_deref()
            .unwrap_or("")
            .split(' ')
            .filter(|s| !s.is_empty())
    }
}

/// `aud`: one string on the wire when there is one audience, an array when there
/// are several (RFC 7519 §4.1.3). An empty list never matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audience(pub Vec<String>);

impl Audience {
    pub fn one(aud: impl Into<String>) -> Audience {
        Audience(vec![aud.into()])
    }
    pub fn values(&self) -> &[String] {
        &self.0
    }
    /// At least one of the token's audiences is one of `expected`.
    pub fn matches_any(&self, expected: &[String]) -> bool {
        self.0.iter().any(|a| expected.iter().any(|e| e == a))
    }
}

impl Serialize for Audience {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0.as_slice() {
            [one] => s.serialize_str(one),
            many => many.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Audience {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            One(String),
            Many(Vec<String>),
        }
        Ok(match OneOrMany::deserialize(d)? {
            OneOrMany::One(a) => Audience(vec![a]),
            OneOrMany::Many(v) => Audience(v),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audience_is_a_string_when_single_and_an_array_when_several() {
        assert_eq!(
            serde_json::to_string(&Audience::one("api")).unwrap(),
            r#""api""#
        );
        let two = Audience(vec!["a".into(), "b".into()]);
        assert_eq!(serde_json::to_string(&two).unwrap(), r#"["a","b"]"#);
        assert_eq!(
            serde_json::from_str::<Audience>(r#""api""#).unwrap(),
            Audience::one("api")
        );
        assert_eq!(
            serde_json::from_str::<Audience>(r#"["a","b"]"#).unwrap(),
            two
        );
        assert!(serde_json::from_str::<Audience>("5").is_err());
        assert!(serde_json::from_str::<Audience>("[1]").is_err());
        assert!(two.matches_any(&["x".into(), "b".into()]));
        assert!(!two.matches_any(&[]));
        assert!(!Audience(vec![]).matches_any(&["a".into()]));
    }

    #[test]
    fn scopes_split_on_spaces() {
        let c: AccessClaims = serde_json::from_str(
            r#"{"iss":"i","sub":"s","aud":"a","client_id":"c","iat":1,"exp":2,"jti":"j","scope":"a  b"}"#,
        )
        .unwrap();
        assert_eq!(c.scopes().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(c.nbf, None);
    }
}
