//! End-to-end: in classic mode the init agent hands its token, lease and data to the
//! sidecar, which renews them instead of logging in and fetching again.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::{Harness, assert_no_leak, config, read, wait_log};
use serde_json::json;
use vaultlet_testkit::{OpenBao, Postgres};

/// Leases issued under `prefix`.
fn lease_count(bao: &OpenBao, prefix: &str) -> usize {
    let list = bao.try_api(
        Some(bao.root_token()),
        "LIST",
        &format!("sys/leases/lookup/{prefix}"),
        None,
    );
    list.body["data"]["keys"].as_array().map_or(0, Vec::len)
}

#[test]
fn the_sidecar_adopts_the_init_agents_token_and_lease() {
    let pg = Postgres::start();
    let bao = OpenBao::dev();
    common::db_and_kv(&bao, &pg, "4s", "app");
    let (role_id, secret_id) = bao.enable_approle("app", &["app"]);
    let h = Harness::new();
    let notified = h.dir.path().join("notified");
    let mut cfg = config(
        &bao.addr(),
        h.approle_auth(&role_id, &secret_id, false),
        json!([
            { "name": "db", "path": "database/creds/app", "file": "db",
              "template": "{{username}}\n{{password}}\n" },
            { "name": "app", "path": "secret/data/app", "file": "app.env" }
        ]),
    );
    cfg["handoff"] = json!(true);
    cfg["notify"] = json!([{ "kind": "exec",
        "command": ["/bin/sh", "-c", format!("echo hit >> {}", notified.display())] }]);

    let (status, init_log, _) = h.init(&cfg, Duration::from_secs(20));
    assert!(status.success(), "{init_log}");
    let handoff = h.state.join("handoff.json");
    let mode = std::fs::metadata(&handoff)
        .expect("handoff file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let creds = read(&h.file("db"));
    assert_eq!(lease_count(&bao, "database/creds/app/"), 1);

    let mut agent = h.run(&cfg);
    wait_log(
        &mut agent,
        "adopted the init agent's leases and data secrets=2",
        Duration::from_secs(10),
    );
    // The 4 s lease is renewed by the sidecar, under the init agent's token.
    wait_log(&mut agent, "lease renewed", Duration::from_secs(10));
    let log = agent.log();
    assert_eq!(log.matches("logged in").count(), 0, "{log}");
    assert_eq!(log.matches("file written").count(), 0, "{log}");
    assert_eq!(read(&h.file("db")), creds, "the same credentials");
    assert_eq!(
        lease_count(&bao, "database/creds/app/"),
        1,
        "one database user"
    );
    assert!(!handoff.exists(), "adopted once, then removed");
    assert!(!notified.exists(), "no notification at sidecar start");
    agent.assert_running();
    let (user, password) = creds.split_once('\n').expect("two lines");
    assert_no_leak(&log, &[user, password.trim_end(), &secret_id]);
    assert_no_leak(&init_log, &[user, password.trim_end(), &secret_id]);
}
