//! Binds a login form to the browser that opened it (login CSRF, RFC 6749
//! §10.12): the first `GET /authorize` gives the browser a random id in an
//! `HttpOnly; SameSite=Lax` cookie, the sealed form carries a hash of it, and the
//! form's POST must come with the same cookie. A form posted from another site,
//! or an attacker's own form pushed into a victim's browser, has no matching
//! cookie and is refused.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::host::{RandomUnavailable, Randomness};

pub const COOKIE_NAME: &str = "oauth2_browser";
const ID_BYTES: usize = 16;

/// What a sealed form carries: a hash of the browser id, never the id itself.
pub type Binding = [u8; 16];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrowserId([u8; ID_BYTES]);

impl BrowserId {
    pub fn new(rng: &dyn Randomness) -> Result<Self, RandomUnavailable> {
        let mut id = [0u8; ID_BYTES];
        rng.fill(&mut id)?;
        Ok(BrowserId(id))
    }

    /// The id in a `Cookie` header, if one is there and well-formed.
    pub fn from_cookie_header(header: Option<&str>) -> Option<Self> {
        header?
            .split(';')
            .filter_map(|pair| pair.trim().split_once('='))
            .filter(|(name, _)| *name == COOKIE_NAME)
            .find_map(|(_, value)| {
                let mut id = [0u8; ID_BYTES];
                (URL_SAFE_NO_PAD.decode_slice(value, &mut id).ok()? == ID_BYTES
                    && value.len() == 22)
                    .then_some(BrowserId(id))
            })
    }

    pub fn binding(&self) -> Binding {
        let digest = Sha256::digest(self.0);
        let mut b = [0u8; 16];
        b.copy_from_slice(&digest[..16]);
        b
    }

    /// The `Set-Cookie` value: only for the authorization path, never readable by
    /// scripts, not sent with cross-site POSTs, `Secure` over HTTPS.
    pub fn set_cookie(&self, path: &str, https: bool) -> String {
        format!(
            "{COOKIE_NAME}={}; Path={path}; HttpOnly; SameSite=Lax{}",
            URL_SAFE_NO_PAD.encode(self.0),
            if https { "; Secure" } else { "" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::HostRandomness;

    #[test]
    fn the_cookie_round_trips_and_garbage_is_no_id() {
        let id = BrowserId::new(&HostRandomness).unwrap();
        let set = id.set_cookie("/authorize", true);
        assert!(set.ends_with("; Path=/authorize; HttpOnly; SameSite=Lax; Secure"));
        let pair = set.split(';').next().unwrap();
        let header = format!("theme=dark; {pair}; other=1");
        assert_eq!(BrowserId::from_cookie_header(Some(&header)), Some(id));
        assert_ne!(
            id.binding(),
            BrowserId::new(&HostRandomness).unwrap().binding()
        );
        for bad in [
            "",
            "oauth2_browser=",
            "oauth2_browser=short",
            "oauth2_browser=!!!!!!!!!!!!!!!!!!!!!!",
            "xoauth2_browser=AAAAAAAAAAAAAAAAAAAAAA",
        ] {
            assert_eq!(BrowserId::from_cookie_header(Some(bad)), None, "{bad}");
        }
        assert!(!id.set_cookie("/authorize", false).contains("Secure"));
    }
}
