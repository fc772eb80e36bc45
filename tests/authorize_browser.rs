//! The login page in a real headless browser (Debian's `chromium` and
//! `chromium-driver`, installed by `make setup`), driven over the WebDriver
//! HTTP protocol: open /authorize, sign in, approve, land on the redirect URI
//! with a code, exchange it for tokens, call the API with them.
//!
//! `AUTHORIZE_SCREENSHOT=<file.png>` saves a screenshot of the login page.

mod common;

use common::*;
use envoy_oauth2::config::secret_hash::hash_secret;
use envoy_oauth2::oauth::pkce::s256_challenge;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
const VERIFIER: &str = "M25iVXpKU3puUjFaYWg3T1NDTDQtcW1ROUY5YXlwalNoc0hhakxifmZHag";

/// A chromedriver process on a port it picked itself (`--port=0`).
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start() -> Driver {
        for bin in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                std::path::Path::new(bin).exists(),
                "{bin} not found: run `make setup` (installs chromium and chromium-driver)"
            );
        }
        let mut child = Command::new(CHROMEDRIVER)
            .arg("--port=0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn chromedriver");
        let stdout = child.stdout.take().expect("chromedriver stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // "ChromeDriver was started successfully on port 39959."
                if let Some(rest) = line.split("successfully on port ").nth(1) {
                    let port: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
                    let _ = tx.send(port);
                }
            }
        });
        let port = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(p) => p,
            Err(_) => {
                let _ = child.kill();
                panic!("chromedriver did not report its port");
            }
        };
        Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One WebDriver session (one Chromium with a fresh profile).
struct Browser<'d> {
    driver: &'d Driver,
    session: String,
    profile: PathBuf,
}

fn wd(method: &str, url: &str, body: Option<Value>) -> Value {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(60))
        .build();
    let req = agent.request(method, url);
    let res = match body {
        Some(b) => req
            .set("content-type", "application/json")
            .send_string(&b.to_string()),
        None => req.call(),
    };
    let text = match res {
        Ok(r) => r.into_string().unwrap_or_default(),
        Err(ureq::Error::Status(code, r)) => {
            panic!(
                "WebDriver {method} {url}: {code} {}",
                r.into_string().unwrap_or_default()
            )
        }
        Err(e) => panic!("WebDriver {method} {url}: {e}"),
    };
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    v["value"].clone()
}

impl<'d> Browser<'d> {
    fn open(driver: &'d Driver) -> Browser<'d> {
        let profile = std::env::temp_dir().join(format!(
            "envoy-oauth2-chromium-{}-{}",
            std::process::id(),
            Instant::now().elapsed().as_nanos()
        ));
        let _ = std::fs::remove_dir_all(&profile);
        std::fs::create_dir_all(&profile).expect("profile dir");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=900,900",
                    format!("--user-data-dir={}", profile.display()),
                ]
            }
        }}});
        let v = wd("POST", &format!("{}/session", driver.url), Some(caps));
        let session = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_string();
        Browser {
            driver,
            session,
            profile,
        }
    }

    fn at(&self, path: &str) -> String {
        format!("{}/session/{}{path}", self.driver.url, self.session)
    }

    fn goto(&self, url: &str) {
        wd("POST", &self.at("/url"), Some(json!({ "url": url })));
    }

    fn url(&self) -> String {
        wd("GET", &self.at("/url"), None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    fn title(&self) -> String {
        wd("GET", &self.at("/title"), None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    fn find(&self, css: &str) -> String {
        let v = wd(
            "POST",
            &self.at("/element"),
            Some(json!({"using": "css selector", "value": css})),
        );
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_string()
    }

    fn type_into(&self, css: &str, text: &str) {
        let el = self.find(css);
        wd(
            "POST",
            &self.at(&format!("/element/{el}/value")),
            Some(json!({ "text": text })),
        );
    }

    fn click(&self, css: &str) {
        let el = self.find(css);
        wd(
            "POST",
            &self.at(&format!("/element/{el}/click")),
            Some(json!({})),
        );
    }

    fn screenshot(&self) -> Vec<u8> {
        use base64::Engine;
        let v = wd("GET", &self.at("/screenshot"), None);
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or_default())
            .unwrap_or_default()
    }
}

impl Drop for Browser<'_> {
    fn drop(&mut self) {
        let _ = ureq::delete(&self.at("")).call();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

#[test]
fn sign_in_and_approve_in_headless_chromium() {
    // The redirect URI must name the listener's port, so it is chosen first.
    let port = free_port();
    let callback = format!("http://127.0.0.1:{port}/callback");
    let h = |s: &str| hash_secret(s.as_bytes(), b"fedcba9876543210", 10_000);
    let token_config = format!(
        r#"{{"issuer":"http://127.0.0.1","realm":"t","store":{{"buckets":16,"grants_per_bucket":64}},
"clients":[{{"client_id":"browser-app","public":true,"grant_types":["authorization_code"],
  "redirect_uris":["{callback}"],"scopes":["default","PRODUCTION","SANDBOX"]}}],
"users":[{{"username":"admin","password_hash":"{}","scopes":["default","PRODUCTION","SANDBOX"]}}]}}"#,
        h("admin")
    );
    let e = Envoy::start_template(
        "authorize.yaml",
        &[
            ("TOKEN_CONFIG", &token_config),
            (
                "GUARD_CONFIG",
                r#"{"realm":"t","rules":[{"prefix":"/api/","scopes":["PRODUCTION"]}],"default_action":"allow"}"#,
            ),
            ("LISTEN_PORT", &port.to_string()),
        ],
        2,
    );
    let base = e.base_url("http");
    let driver = Driver::start();
    let browser = Browser::open(&driver);
    let authorize = format!(
        "{base}/authorize?{}",
        form_encode(&[
            ("response_type", "code"),
            ("client_id", "browser-app"),
            ("redirect_uri", &callback),
            ("scope", "PRODUCTION SANDBOX"),
            ("state", "browser-state"),
            ("code_challenge", &s256_challenge(VERIFIER)),
            ("code_challenge_method", "S256"),
        ])
    );
    browser.goto(&authorize);
    assert!(
        browser.title().contains("Sign in"),
        "title {:?}",
        browser.title()
    );
    if let Some(path) = std::env::var_os("AUTHORIZE_SCREENSHOT") {
        std::fs::write(path, browser.screenshot()).expect("write screenshot");
    }
    // A wrong password first: the page comes back with a message.
    browser.type_into("#username", "admin");
    browser.type_into("#password", "not-the-password");
    browser.click("button[value=approve]");
    let alert = browser.find("[role=alert]");
    assert!(!alert.is_empty());
    // The username stays filled in; the password does not.
    browser.type_into("#password", "admin");
    browser.click("button[value=approve]");
    let deadline = Instant::now() + Duration::from_secs(15);
    let landed = loop {
        let u = browser.url();
        if u.starts_with(&callback) {
            break u;
        }
        assert!(Instant::now() < deadline, "never reached the callback: {u}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(browser.title(), "Callback");
    let query = landed.split_once('?').expect("a query").1;
    let params: std::collections::HashMap<String, String> = query
        .split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| {
            (
                k.to_string(),
                envoy_oauth2::oauth::form::decode_component(v.as_bytes()).unwrap(),
            )
        })
        .collect();
    assert_eq!(params["state"], "browser-state");
    let code = &params["code"];
    // The application exchanges the code (public client: id + PKCE verifier).
    let r = post_form(
        &format!("{base}/token"),
        &[
            ("grant_type", "authorization_code"),
            ("client_id", "browser-app"),
            ("code", code),
            ("code_verifier", VERIFIER),
            ("redirect_uri", &callback),
        ],
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["scope"], "PRODUCTION SANDBOX");
    let at = v["access_token"].as_str().unwrap();
    let api = get(
        &format!("{base}/api/hello"),
        &[("authorization", &format!("Bearer {at}"))],
    );
    assert_eq!((api.status, api.body.as_str()), (200, "upstream-ok"));
}
