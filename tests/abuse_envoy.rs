//! Unauthenticated requests cannot starve the workers or lock out a
//! legitimate client or user (issue 17, threats 1 and 2), on a real Envoy:
//! - an unknown client id costs no slow hash;
//! - wrong passwords and unknown usernames beyond the worker's ration of slow
//!   hashes get 429 with `Retry-After`, while a credential the worker already
//!   verified keeps passing;
//! - an attacker guessing a client's secret or a user's password from another
//!   address locks out only himself, even when he writes the victim's address
//!   into `x-forwarded-for`.
//! Two clients are two loopback source addresses (curl `--interface`).

mod common;

use common::authorize::{form_token, CB};
use common::*;
use envoy_oauth2::config::secret_hash::{hash_generated_secret, hash_secret};

const ATTACKER: &str = "127.0.0.2";
const VICTIM: &str = "127.0.0.1";
/// A human-chosen secret: PBKDF2, throttled.
const HUMAN_SECRET: &str = "orders-2024!";
/// A generated (256-bit) secret: the fast keyed hash, never throttled.
const GENERATED_SECRET: &str = "q0hX2b7cJ3k3c1m9Qm8yV7u0pR5tW2zN4aL6eD8fG1s";
const GUARD: &str = r#"{"realm":"t","rules":[{"prefix":"/api/"}],"public":[{"path":"/callback"}],"default_action":"allow"}"#;

fn token_config(extra: &str) -> String {
    let h = |s: &str| hash_secret(s.as_bytes(), b"fedcba9876543210", 10_000);
    format!(
        r#"{{"realm":"t","issuer":"http://127.0.0.1","store":{{"buckets":64,"grants_per_bucket":64}}{extra},
"clients":[
 {{"client_id":"spa","public":true,"grant_types":["authorization_code"],"redirect_uris":["{CB}"],"scopes":["default"]}},
 {{"client_id":"human","secret_hash":"{}","grant_types":["client_credentials","password"],"scopes":["default"]}},
 {{"client_id":"generated","secret_hash":"{}","grant_types":["client_credentials"],"scopes":["default"]}}],
"users":[{{"username":"admin","password_hash":"{}","scopes":["default"]}}]}}"#,
        h(HUMAN_SECRET),
        hash_generated_secret(GENERATED_SECRET.as_bytes(), b"0123456789abcdef"),
        h("admin")
    )
}

/// Envoy at the edge (`use_remote_address: true`): the peer is the client.
fn start(extra: &str, concurrency: u32) -> Envoy {
    let yaml = fill_all(
        &template("authorize.yaml"),
        &[
            ("TOKEN_CONFIG", &token_config(extra)),
            ("GUARD_CONFIG", GUARD),
            ("LISTEN_PORT", "0"),
        ],
    );
    let edge = "stat_prefix: http\n          use_remote_address: true\n";
    assert!(yaml.contains("stat_prefix: http\n"));
    Envoy::start(&yaml.replacen("stat_prefix: http\n", edge, 1), concurrency)
}

const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

fn token_from(source: &str, base: &str, basic: &str, body: &str, extra: &[(&str, &str)]) -> Resp {
    let mut headers = vec![FORM, ("authorization", basic)];
    headers.extend_from_slice(extra);
    curl_from(
        source,
        "POST",
        &format!("{base}/token"),
        &headers,
        Some(body.as_bytes()),
    )
}

fn slow_hashes(e: &Envoy) -> u64 {
    e.stat("wasmcustom.oauth2.authn.slow_hashes")
        .expect("the slow-hash counter is defined once a slow hash ran")
}

/// Waits until the tick has flushed counters that moved (one tick is 200 ms).
fn settle() {
    std::thread::sleep(std::time::Duration::from_millis(600));
}

#[test]
fn unknown_client_ids_cost_no_slow_hash_and_slow_hashes_beyond_the_ration_get_429() {
    // One worker, so the ration is one: 2 checks a second at 10,000 iterations,
    // 4 back to back.
    let e = start(
        r#","slow_hash_budget":{"iterations_per_second":20000,"burst_iterations":40000}"#,
        1,
    );
    let base = e.base_url("http");
    let cc = "grant_type=client_credentials";
    // The user signs in once: one slow hash, and the worker remembers it.
    let password = "grant_type=password&username=admin&password=admin";
    let r = token_from(
        VICTIM,
        &base,
        &basic_auth("human", HUMAN_SECRET),
        password,
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    settle();
    let before = slow_hashes(&e);
    assert!(
        before >= 2,
        "the client's secret and the password: {before}"
    );
    // A flood of random client ids: 401, and not one slow hash.
    for i in 0..40 {
        let basic = basic_auth(&format!("random-{i}-{}", i * 7919), "whatever-secret");
        let r = token_from(ATTACKER, &base, &basic, cc, &[]);
        assert_eq!(r.status, 401, "{}", r.body);
        assert_eq!(r.json()["error"], "invalid_client");
    }
    settle();
    assert_eq!(
        slow_hashes(&e),
        before,
        "an unknown client id ran a slow hash"
    );
    // A flood of unknown usernames (each a decoy slow hash): beyond the ration, 429.
    let human = basic_auth("human", HUMAN_SECRET);
    let started = std::time::Instant::now();
    let (mut wrong, mut rationed) = (0, 0);
    for i in 0..30 {
        let body = format!("grant_type=password&username=nobody-{i}&password=guess");
        let r = token_from(ATTACKER, &base, &human, &body, &[]);
        match r.status {
            400 => {
                assert_eq!(r.json()["error"], "invalid_grant");
                wrong += 1
            }
            429 => {
                assert_eq!(r.json()["error"], "temporarily_unavailable", "{}", r.body);
                assert!(r.header("retry-after").is_some());
                rationed += 1
            }
            s => panic!("unexpected {s}: {}", r.body),
        }
        // Meanwhile the user already verified on this worker keeps getting tokens.
        if i % 5 == 0 {
            let r = token_from(VICTIM, &base, &human, password, &[]);
            assert_eq!(r.status, 200, "{}", r.body);
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    assert!(rationed > 0, "no request was refused for the ration");
    // At most the burst plus the refill (plus the client's own secret check,
    // remembered after its first pass).
    let allowed = 4.0 + 2.0 * seconds + 1.0;
    assert!(
        (wrong as f64) <= allowed,
        "{wrong} slow hashes in {seconds:.1} s, allowed {allowed:.1}"
    );
    settle();
    assert!(e.counter("wasmcustom.oauth2.authn.slow_hash_rationed") >= rationed);
    assert!(slow_hashes(&e) - before <= wrong + 1);
}

#[test]
fn a_client_attacked_from_another_address_keeps_getting_tokens() {
    let e = start("", 2);
    let base = e.base_url("http");
    let cc = "grant_type=client_credentials";
    let (mut refused, mut served) = (0, 0);
    for i in 0..25 {
        // The attacker also claims to be the victim: Envoy at the edge ignores that.
        let r = token_from(
            ATTACKER,
            &base,
            &basic_auth("human", &format!("guess-{i}")),
            cc,
            &[("x-forwarded-for", VICTIM)],
        );
        match r.status {
            401 => assert_eq!(r.json()["error"], "invalid_client"),
            429 => refused += 1,
            s => panic!("unexpected {s}: {}", r.body),
        }
        let r = token_from(VICTIM, &base, &basic_auth("human", HUMAN_SECRET), cc, &[]);
        assert_eq!(r.status, 200, "attempt {i}: {}", r.body);
        served += 1;
        // A generated secret is never throttled: 256 bits cannot be guessed.
        let r = token_from(ATTACKER, &base, &basic_auth("generated", "guess"), cc, &[]);
        assert_eq!(r.status, 401, "{}", r.body);
    }
    assert_eq!(
        refused, 15,
        "the attacker's address is throttled after 10 failures"
    );
    assert_eq!(served, 25);
    let r = token_from(
        VICTIM,
        &base,
        &basic_auth("generated", GENERATED_SECRET),
        cc,
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.body);
}

/// One wrong sign-in through the login page, from `source`; the page's status.
fn login_page_attempt(base: &str, source: &str, password: &str) -> u16 {
    let query = form_encode(&[
        ("response_type", "code"),
        ("client_id", "spa"),
        ("redirect_uri", CB),
        ("scope", "default"),
        ("state", "s"),
        (
            "code_challenge",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        ),
        ("code_challenge_method", "S256"),
    ]);
    let page = curl_from(
        source,
        "GET",
        &format!("{base}/authorize?{query}"),
        &[],
        None,
    );
    assert_eq!(page.status, 200, "{}", page.body);
    let cookie = page
        .header("set-cookie")
        .and_then(|c| c.split(';').next())
        .unwrap_or_default()
        .to_string();
    let body = form_encode(&[
        ("form_token", &form_token(&page)),
        ("username", "admin"),
        ("password", password),
        ("action", "approve"),
    ]);
    curl_from(
        source,
        "POST",
        &format!("{base}/authorize"),
        &[FORM, ("cookie", &cookie)],
        Some(body.as_bytes()),
    )
    .status
}

#[test]
fn a_user_attacked_through_the_login_page_keeps_signing_in() {
    let e = start("", 2);
    let base = e.base_url("http");
    let mut throttled = 0;
    for i in 0..14 {
        match login_page_attempt(&base, ATTACKER, &format!("guess-{i}")) {
            200 => {}
            429 => throttled += 1,
            s => panic!("unexpected {s}"),
        }
    }
    assert_eq!(
        throttled, 4,
        "the attacker's address is throttled after 10 failures"
    );
    // The user signs in from her own address: redirected with a code.
    assert_eq!(login_page_attempt(&base, VICTIM, "admin"), 303);
}
