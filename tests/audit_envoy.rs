//! The audit trail on the shipped demo configuration: every answer of the
//! token endpoint and every decision of the guard is one JSON line in the
//! access log (`.run/access.log` under `make run`) with the filters' facts,
//! and never a token, a secret or a password.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const C1: &str = "IZsIi6HDbB5e8VKdZAnUi_fZ3f8a";
const S1: &str = "Gm0bJ6oWV8fC5OQLLlC6jslACW8a";

/// The access log's lines, once at least `n` are there (Envoy flushes the file
/// on a timer).
fn access_log(e: &Envoy, n: usize) -> Vec<Value> {
    let path = e.dir().join("access.log");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|err| panic!("not JSON ({err}): {l}")))
            .collect();
        if lines.len() >= n || Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn fingerprint(token: &str) -> String {
    envoy_oauth2::token::parse_any(token)
        .expect("one of our tokens")
        .hash
        .fingerprint()
}

#[test]
fn every_answer_and_decision_is_one_json_line_with_its_facts_and_no_secret() {
    let e = Envoy::from_demo_config();
    let http = e.base_url("http");
    let basic = basic_auth(C1, S1);
    let auth = [("authorization", basic.as_str())];
    let token_url = format!("{http}/token");
    // 1. A password grant.
    let r = post_form(
        &token_url,
        &[
            ("grant_type", "password"),
            ("username", "admin"),
            ("password", "admin"),
            ("scope", "PRODUCTION"),
        ],
        &auth,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let first_at = r.json()["access_token"].as_str().unwrap().to_string();
    let rt = r.json()["refresh_token"].as_str().unwrap().to_string();
    // 2. A refresh.
    let r = post_form(
        &token_url,
        &[("grant_type", "refresh_token"), ("refresh_token", &rt)],
        &auth,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let at2 = r.json()["access_token"].as_str().unwrap().to_string();
    // 3. A guarded call, and 4. one without a token.
    let bearer = format!("Bearer {at2}");
    assert_eq!(
        get(&format!("{http}/api/hello"), &[("authorization", &bearer)]).status,
        200
    );
    assert_eq!(get(&format!("{http}/api/hello"), &[]).status, 401);
    // 5. A revocation.
    let r = post_form(&format!("{http}/revoke"), &[("token", &at2)], &auth);
    assert_eq!(r.status, 200);
    // 6. A wrong password typed with a token as the username, 7. a wrong secret.
    let r = post_form(
        &token_url,
        &[
            ("grant_type", "password"),
            ("username", &first_at),
            ("password", "hunter2-not-logged"),
        ],
        &auth,
    );
    assert_eq!(r.status, 400, "{}", r.body);
    let wrong = basic_auth(C1, "wrong-secret-not-logged");
    let r = post_form(
        &token_url,
        &[("grant_type", "client_credentials")],
        &[("authorization", &wrong)],
    );
    assert_eq!(r.status, 401);

    let lines = access_log(&e, 7);
    let events: Vec<&str> = lines.iter().filter_map(|l| l["event"].as_str()).collect();
    assert_eq!(
        events,
        [
            "token.issued",
            "token.refreshed",
            "guard.allowed",
            "guard.denied",
            "token.revoked",
            "login.failed",
            "client.auth_failed"
        ],
        "{lines:#?}"
    );
    let at = |i: usize| &lines[i];
    // The usual fields are there too.
    for l in &lines {
        for f in [
            "time",
            "method",
            "path",
            "status",
            "duration_ms",
            "peer",
            "request_id",
        ] {
            assert!(!l[f].is_null(), "no {f} in {l}");
        }
    }
    assert_eq!(at(0)["user"], "admin@carbon.super");
    assert_eq!(at(0)["client_id"], C1);
    assert_eq!(at(0)["grant_type"], "password");
    assert_eq!(at(0)["scope"], "PRODUCTION");
    assert_eq!(at(0)["token"], fingerprint(&first_at).as_str());
    assert_eq!(at(1)["grant_type"], "refresh_token");
    assert_eq!(at(1)["token"], fingerprint(&at2).as_str());
    // A guarded call names its token; who and what are in the record that issued it.
    assert_eq!(at(2)["path"], "/api/hello");
    assert_eq!(at(2)["token"], fingerprint(&at2).as_str());
    assert_eq!(at(3)["error"], "missing_token");
    assert_eq!(at(4)["token"], fingerprint(&at2).as_str());
    assert_eq!(at(5)["error"], "invalid_grant");
    assert!(at(5)["user"].is_null(), "an unknown username is not logged");
    assert_eq!(at(6)["error"], "invalid_client");
    assert_eq!(at(6)["client_id"], C1);
    // Never a token, a secret or a password.
    let text = std::fs::read_to_string(e.dir().join("access.log")).unwrap();
    for secret in [
        first_at.as_str(),
        at2.as_str(),
        rt.as_str(),
        S1,
        "hunter2-not-logged",
        "wrong-secret-not-logged",
    ] {
        assert!(!text.contains(secret), "the log holds {secret}");
    }
}
