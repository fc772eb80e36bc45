//! Resource-owner authentication (password grant and the login page), shaped so
//! that timing does not reveal which usernames exist, throttled per username
//! and client address, and rationed per worker (see `slow_check`).

use crate::authn::env::ServiceEnv;
use crate::authn::slow_check::{check_secret, Refused};
use crate::authn::throttle::Subject;
use crate::config::secret_hash::SecretHash;
use crate::config::{TokenConfig, User};

/// The configured user with this name and password. An unknown name costs
/// one slow hash too, at the highest work factor configured: exactly a wrong
/// password when every user's hash has the same work factor (as `hash-secret`
/// makes them), never less than any user's wrong password.
pub async fn authenticate_user<'c>(
    cfg: &'c TokenConfig,
    env: &ServiceEnv<'_>,
    username: &str,
    password: &str,
) -> Result<&'c User, Refused> {
    let qualified = cfg.qualified_username(username);
    let user = cfg.user(username);
    let decoy = costliest(cfg.users.iter().map(|u| &u.password));
    check_secret(
        &cfg.throttle,
        env,
        Subject::User(&qualified),
        user.map(|u| &u.password),
        decoy,
        password.as_bytes(),
    )
    .await?;
    user.ok_or(Refused::Wrong)
}

/// The hash whose verification takes longest: the decoy for unknown names.
pub fn costliest<'h>(hashes: impl Iterator<Item = &'h SecretHash>) -> Option<&'h SecretHash> {
    hashes.max_by_key(|h| h.iterations())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authn::credential_cache::CredentialCache;
    use crate::authn::hash_budget::{HashBudget, HashBudgetPolicy};
    use crate::config::secret_hash::hash_secret;
    use crate::host::memory::ManualClock;
    use crate::host::memory::MemoryKv;
    use crate::host::HostRandomness;
    use crate::store::kv::{Kv, Sync_};

    #[test]
    fn the_decoy_is_the_costliest_hash() {
        let cheap = SecretHash::parse(&hash_secret(b"a", b"0123456789abcdef", 10_000)).unwrap();
        let dear = SecretHash::parse(&hash_secret(b"b", b"0123456789abcdef", 20_000)).unwrap();
        let both = [cheap.clone(), dear.clone(), cheap];
        assert_eq!(costliest(both.iter()).map(|h| h.iterations()), Some(20_000));
        assert!(costliest(std::iter::empty()).is_none());
    }

    #[test]
    fn only_the_right_password_of_a_known_user_passes_and_the_ration_holds() {
        let json = format!(
            r#"{{ "issuer": "https://auth.example.com", "clients": [ {{ "client_id": "app", "public": true, "grant_types": ["implicit"], "redirect_uris": ["https://app.example/cb"], "scopes": ["default"] }} ], "users": [ {{ "username": "admin", "password_hash": "{}", "scopes": ["default"] }} ],
                 "throttle": {{ "max_failures": 100 }} }}"#,
            hash_secret(b"admin", b"0123456789abcdef", 10_000)
        );
        let cfg = TokenConfig::parse(json.as_bytes()).unwrap();
        let kv = MemoryKv::default();
        let creds = CredentialCache::new([0; 32], 8);
        let budget = HashBudget::new(HashBudgetPolicy {
            per_second: 10_000,
            burst: 30_000,
        });
        let clock = ManualClock::at(1_000_000);
        let env = ServiceEnv {
            kv: Kv::Local(&kv),
            clock: &clock,
            rng: &HostRandomness,
            credentials: &creds,
            hash_budget: &budget,
            client_address: &|| "192.0.2.1".to_string(),
        };
        let auth = |u: &str, p: &str| authenticate_user(&cfg, &env, u, p).sync().map(|u| &u.id);
        assert_eq!(
            auth("admin", "admin").map(String::as_str),
            Ok("admin@carbon.super")
        );
        assert_eq!(auth("admin", "wrong"), Err(Refused::Wrong));
        assert_eq!(auth("nobody", "admin"), Err(Refused::Wrong));
        // Three slow hashes spent the burst: the next unknown name or wrong
        // password waits, but the verified password still passes (no hash).
        assert_eq!(auth("nobody", "x"), Err(Refused::Busy(1)));
        assert_eq!(auth("admin", "wrong"), Err(Refused::Busy(1)));
        assert!(auth("admin", "admin").is_ok());
        clock.advance(1);
        assert_eq!(auth("admin", "wrong"), Err(Refused::Wrong));
    }
}
