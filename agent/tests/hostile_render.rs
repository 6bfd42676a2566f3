//! End-to-end: a render the agent refuses (a code-loading key from Vault data, output larger
//! than `paths.maxFileSize`) is an error for that secret naming it, and the last good file
//! stays.

mod common;

use std::time::Duration;

use common::{Harness, assert_no_leak, config, kv_policy, read, wait_log};
use serde_json::json;
use vaultlet_testkit::OpenBao;

#[test]
fn refused_renders_keep_the_last_good_file() {
    let bao = OpenBao::dev();
    bao.write_kv("secret/env", &[("user", "app")]);
    bao.write_kv("secret/big", &[("v", "small")]);
    kv_policy(&bao, "app", &["env", "big"]);
    let token = bao.create_token(&["app"], None);
    let h = Harness::new();
    let mut cfg = config(
        &bao.addr(),
        h.token_auth(&token),
        json!([
            { "name": "env", "path": "secret/data/env", "file": "env", "env": true },
            { "name": "big", "path": "secret/data/big", "file": "big", "template": "v={{v}}\n" },
        ]),
    );
    cfg["paths"] = json!({ "maxFileSize": 64 });
    let mut agent = h.run(&cfg);
    h.wait_ready(&mut agent, Duration::from_secs(10));
    assert_eq!(read(&h.file("env")), "user=app\n");
    assert_eq!(read(&h.file("big")), "v=small\n");

    bao.write_kv(
        "secret/env",
        &[("user", "app"), ("LD_PRELOAD", "/vault/secrets/x.so")],
    );
    wait_log(
        &mut agent,
        "secret \"env\": key \"LD_PRELOAD\" of the secret's data would change how the app loads code",
        Duration::from_secs(5),
    );
    let huge = "x".repeat(100);
    bao.write_kv("secret/big", &[("v", huge.as_str())]);
    wait_log(
        &mut agent,
        "secret \"big\": the rendered file would be larger than 64 bytes (paths.maxFileSize",
        Duration::from_secs(5),
    );
    assert_eq!(read(&h.file("env")), "user=app\n");
    assert_eq!(read(&h.file("big")), "v=small\n");
    agent.assert_running();
    assert_no_leak(&agent.log(), &["/vault/secrets/x.so", &huge]);
}
