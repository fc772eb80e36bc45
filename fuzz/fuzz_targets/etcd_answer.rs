//! Answers of etcd's JSON gateway (fleet mode): every decoder, and the
//! Exchange that turns them into a store command's answer, on arbitrary
//! (status, body). The first two bytes pick the status.
#![no_main]
use envoy_oauth2::store::etcd::exchange::{EtcdSettings, Exchange, Session, Step};
use envoy_oauth2::store::etcd::gateway;
use envoy_oauth2::store::kv::{Also, Command};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let status = u32::from(u16::from_be_bytes([data[0], data[1]])) % 600;
    let body = &data[2..];
    let _ = gateway::decode_range(status, body);
    let _ = gateway::decode_txn(status, body);
    let _ = gateway::decode_lease_grant(status, body);
    let _ = gateway::decode_authenticate(status, body);
    let settings = EtcdSettings {
        prefix: "/f/".into(),
        credentials: None,
    };
    let mut session = Session::default();
    for command in [
        Command::Get { key: "k".into() },
        Command::Put {
            key: "k".into(),
            value: b"v".to_vec(),
            expect: Some(3),
            expires_at: 1_000,
            also: Some(Also {
                key: "e".into(),
                value: b"1".to_vec(),
                expires_at: 180,
            }),
        },
        Command::Scan {
            from: "g/".into(),
            to: "g0".into(),
            limit: 8,
        },
    ] {
        let (mut x, _) = Exchange::start(command, &settings, &session);
        // The same answer again and again: the exchange must end, bounded.
        let mut steps = 0;
        while let Step::Send(_) = x.on_response(status, body, &settings, &mut session, 0) {
            steps += 1;
            assert!(steps < 16, "an exchange that never ends");
        }
    }
});
