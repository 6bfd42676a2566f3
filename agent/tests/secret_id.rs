//! End-to-end: the AppRole secret-id file is read at each login, so a secret-id rotated by
//! the operator (the kubelet updates the Secret volume) is used by the next login.

mod common;

use std::time::Duration;

use common::{Harness, assert_no_leak, config, kv_policy, read};
use serde_json::json;
use vaultlet_testkit::{OpenBao, wait_until};

#[test]
fn a_rotated_secret_id_is_used_by_the_next_login() {
    let bao = OpenBao::dev();
    bao.write_kv("secret/app", &[("password", "pw1")]);
    kv_policy(&bao, "app", &["app"]);
    let (role_id, secret_id1) = bao.enable_approle("app", &["app"]);
    // Tokens live 2 s at most: the agent logs in again every ~2 s.
    bao.write(
        "auth/approle/role/app",
        json!({ "token_policies": ["app"], "token_ttl": "2s", "token_max_ttl": "2s" }),
    );
    let h = Harness::new();
    let cfg = config(
        &bao.addr(),
        h.approle_auth(&role_id, &secret_id1, false),
        json!([{ "name": "app", "path": "secret/data/app", "file": "app.env" }]),
    );
    let mut agent = h.run(&cfg);
    h.wait_ready(&mut agent, Duration::from_secs(10));

    // The operator rotates: a new secret-id in the file, the old one destroyed.
    let secret_id2 = bao.approle_secret_id("app");
    h.put("secret-id", &secret_id2);
    bao.write(
        "auth/approle/role/app/secret-id/destroy",
        json!({ "secret_id": secret_id1 }),
    );
    let logins_before = agent.log().matches("logged in").count();
    wait_until(
        Duration::from_secs(10),
        "two logins after the rotation",
        || {
            agent.assert_running();
            agent.log().matches("logged in").count() >= logins_before + 2
        },
    );
    bao.write_kv("secret/app", &[("password", "pw2")]);
    wait_until(Duration::from_secs(5), "file updated", || {
        read(&h.file("app.env")) == "password=pw2\n"
    });
    let log = agent.log();
    assert_eq!(log.matches("login failed").count(), 0, "{log}");
    assert_no_leak(&log, &[&secret_id1, &secret_id2]);
}
