//! Resource-owner authentication (password grant and the login page), shaped so
//! that timing does not reveal which usernames exist.

use crate::authn::credential_cache::CredentialCache;
use crate::config::secret_hash::SecretHash;
use crate::config::{TokenConfig, User};

/// The configured user with this name and password, if any. An unknown name
/// costs one slow hash too, at the highest work factor configured: exactly a
/// wrong password when every user's hash has the same work factor (as
/// `hash-secret` makes them), never less than any user's wrong password.
pub fn authenticate_user<'c>(
    cfg: &'c TokenConfig,
    credentials: &CredentialCache,
    username: &str,
    password: &str,
) -> Option<&'c User> {
    match cfg.user(username) {
        Some(user) => credentials
            .verify(&user.password, password.as_bytes())
            .then_some(user),
        None => {
            if let Some(costliest) = costliest(cfg.users.iter().map(|u| &u.password)) {
                let _ = costliest.verify(b"\x00not-a-password");
            }
            None
        }
    }
}

/// The hash whose verification takes longest: the decoy for unknown names.
pub fn costliest<'h>(hashes: impl Iterator<Item = &'h SecretHash>) -> Option<&'h SecretHash> {
    hashes.max_by_key(|h| h.iterations())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::secret_hash::hash_secret;

    #[test]
    fn the_decoy_is_the_costliest_hash() {
        let cheap = SecretHash::parse(&hash_secret(b"a", b"0123456789abcdef", 10_000)).unwrap();
        let dear = SecretHash::parse(&hash_secret(b"b", b"0123456789abcdef", 20_000)).unwrap();
        let both = [cheap.clone(), dear.clone(), cheap];
        assert_eq!(costliest(both.iter()).map(|h| h.iterations()), Some(20_000));
        assert!(costliest(std::iter::empty()).is_none());
    }

    #[test]
    fn only_the_right_password_of_a_known_user_passes() {
        let json = format!(
            r#"{{ "issuer": "https://auth.example.com", "clients": [ {{ "client_id": "app", "public": true, "grant_types": ["implicit"], "redirect_uris": ["https://app.example/cb"], "scopes": ["default"] }} ], "users": [ {{ "username": "admin", "password_hash": "{}", "scopes": ["default"] }} ] }}"#,
            hash_secret(b"admin", b"0123456789abcdef", 10_000)
        );
        let cfg = TokenConfig::parse(json.as_bytes()).unwrap();
        let mut creds = CredentialCache::new([0; 32], 8);
        assert!(authenticate_user(&cfg, &mut creds, "admin", "admin").is_some());
        assert!(authenticate_user(&cfg, &mut creds, "admin", "wrong").is_none());
        assert!(authenticate_user(&cfg, &mut creds, "nobody", "admin").is_none());
    }
}
