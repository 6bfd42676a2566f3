//! End-to-end: dynamic PostgreSQL credentials (lease renewed, replaced before max TTL) and PKI
//! certificates (re-issued before expiry).

mod common;

use std::time::{Duration, Instant, SystemTime};

use common::{Harness, assert_no_leak, config, read};
use serde_json::{Value, json};
use vaultlet_testkit::{OpenBao, Postgres, wait_until};

fn creds(text: &str) -> Option<(String, String)> {
    let mut lines = text.lines();
    Some((lines.next()?.to_owned(), lines.next()?.to_owned()))
}

/// `last_renewal` of every lease under `prefix` (via sys/leases/lookup).
fn renewals(bao: &OpenBao, prefix: &str) -> Vec<Value> {
    let list = bao.try_api(
        Some(bao.root_token()),
        "LIST",
        &format!("sys/leases/lookup/{prefix}"),
        None,
    );
    let keys = list.body["data"]["keys"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    keys.iter()
        .filter_map(Value::as_str)
        .map(|k| {
            let r = bao.write(
                "sys/leases/lookup",
                json!({ "lease_id": format!("{prefix}{k}") }),
            );
            r["data"]["last_renewal"].clone()
        })
        .collect()
}

#[test]
fn dynamic_postgres_creds_are_renewed_then_replaced_before_max_ttl() {
    let pg = Postgres::start();
    let bao = OpenBao::dev();
    bao.enable_database_postgres(&pg, "app", "3s", "10s");
    bao.policy(
        "db",
        r#"path "database/creds/app" { capabilities = ["read"] }
           path "sys/leases/renew" { capabilities = ["update"] }"#,
    );
    let token = bao.create_token(&["db"], None);
    let h = Harness::new();
    let cfg = config(
        &bao.addr(),
        h.token_auth(&token),
        json!([{ "name": "db", "path": "database/creds/app", "file": "db",
                 "template": "{{username}}\n{{password}}\n" }]),
    );
    let mut agent = h.run(&cfg);
    h.wait_ready(&mut agent, Duration::from_secs(15));
    let issued = Instant::now();
    let (u1, p1) = creds(&read(&h.file("db"))).expect("rendered creds");
    assert!(pg.can_login(&u1, &p1), "first credentials must log in");

    wait_until(
        Duration::from_secs(5),
        "the lease renewed (sys/leases/lookup)",
        || {
            renewals(&bao, "database/creds/app/")
                .iter()
                .any(|r| !r.is_null())
        },
    );

    let mut second = None;
    wait_until(
        Duration::from_secs(12),
        "new credentials before max TTL",
        || {
            agent.assert_running();
            second = creds(&read(&h.file("db"))).filter(|(u, _)| *u != u1);
            second.is_some()
        },
    );
    let replaced_after = issued.elapsed();
    assert!(
        replaced_after < Duration::from_secs(10),
        "replaced after {replaced_after:?}, past the max TTL"
    );
    let (u2, p2) = second.expect("second credentials");
    assert!(pg.can_login(&u2, &p2), "new credentials must log in");

    // Leases revoked from outside: the next renewal fails and new credentials are fetched.
    bao.write("sys/leases/revoke-prefix/database/creds/app", json!({}));
    assert!(!pg.can_login(&u2, &p2), "revoked credentials must be gone");
    let mut third = None;
    wait_until(
        Duration::from_secs(10),
        "credentials after revocation",
        || {
            agent.assert_running();
            third = creds(&read(&h.file("db"))).filter(|(u, _)| *u != u2);
            third.is_some()
        },
    );
    let (u3, p3) = third.expect("third credentials");
    assert!(
        pg.can_login(&u3, &p3),
        "credentials after revocation must log in"
    );
    let log = agent.log();
    assert!(
        log.contains("lease cannot be renewed; fetching a new secret"),
        "{log}"
    );
    assert!(log.contains("lease renewed"), "{log}");
    for line in log
        .lines()
        .filter(|l| l.contains("lease") || l.contains("fetched"))
    {
        eprintln!("{line}");
    }
    eprintln!("credentials replaced after {replaced_after:?}");
    assert_no_leak(&log, &[&p1, &p2, &p3, &token]);
}

#[test]
fn pki_certificate_is_reissued_before_expiry() {
    let bao = OpenBao::dev();
    bao.enable_pki("web", "example.test");
    bao.policy(
        "pki",
        r#"path "pki/issue/web" { capabilities = ["update"] }"#,
    );
    let token = bao.create_token(&["pki"], None);
    let h = Harness::new();
    let cfg = config(
        &bao.addr(),
        h.token_auth(&token),
        json!([{ "name": "cert", "path": "pki/issue/web", "file": "tls/cert.pem",
                 "params": { "common_name": "app.example.test", "ttl": "6s" },
                 "template": "{{serial_number}}\n{{expiration}}\n{{certificate}}\n{{private_key}}\n" }]),
    );
    let mut agent = h.run(&cfg);
    h.wait_ready(&mut agent, Duration::from_secs(10));
    let first = read(&h.file("tls/cert.pem"));
    let mut lines = first.lines();
    let serial1 = lines.next().expect("serial").to_owned();
    let expiry1: u64 = lines
        .next()
        .expect("expiration")
        .parse()
        .expect("unix time");
    assert!(first.contains("BEGIN CERTIFICATE") && first.contains("PRIVATE KEY"));

    wait_until(Duration::from_secs(10), "certificate re-issued", || {
        agent.assert_running();
        read(&h.file("tls/cert.pem"))
            .lines()
            .next()
            .is_some_and(|s| s != serial1)
    });
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    assert!(now < expiry1, "re-issued only after the first cert expired");
    let log = agent.log();
    // Issuing is a write: it happens on the cert's schedule, not on every refresh interval.
    assert!(log.matches("fetched secret=\"cert\"").count() <= 3, "{log}");
    let key = first
        .lines()
        .skip_while(|l| !l.contains("PRIVATE KEY"))
        .nth(1)
        .unwrap_or("x");
    assert_no_leak(&log, &[key, &token]);
}
