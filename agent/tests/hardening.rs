//! End-to-end: another process of the agent's user (an app sharing the Pod's PID namespace)
//! cannot read the agent's environment or, through `/proc/<pid>/root`, its token file.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Output};
use std::time::Duration;

use common::{Harness, config, wait_log};
use serde_json::json;
use vaultlet_testkit::{Process, free_port, random_hex};

/// The user both processes run as: an unprivileged one when the tests run as root (root
/// could read anything), else the current user.
fn user() -> (u32, u32) {
    let uid = nix::unistd::geteuid().as_raw();
    if uid == 0 {
        (65532, 65532)
    } else {
        (uid, nix::unistd::getegid().as_raw())
    }
}

fn cat_as(path: &str) -> Output {
    let (uid, gid) = user();
    Command::new("cat")
        .arg(path)
        .uid(uid)
        .gid(gid)
        .output()
        .expect("run cat")
}

#[test]
fn a_process_of_the_same_user_cannot_read_the_agents_environment_or_token_file() {
    let (uid, gid) = user();
    let h = Harness::new();
    let canary = random_hex(12);
    let token = random_hex(16);
    // The agent (another user when we are root) must reach its files and write its dirs.
    std::fs::set_permissions(h.dir.path(), std::fs::Permissions::from_mode(0o777))
        .expect("chmod temp dir");
    let auth = h.token_auth(&token);
    let token_file = auth["tokenFile"].as_str().expect("path").to_owned();
    // No Vault: the agent keeps retrying its login, holding the token file's content.
    let cfg = config(
        &format!("http://127.0.0.1:{}", free_port()),
        auth,
        json!([{ "name": "app", "path": "secret/data/app", "file": "app" }]),
    );
    let mut cmd = h.command("run", &cfg);
    cmd.env("VAULTLET_TEST_CANARY", &canary).uid(uid).gid(gid);
    let mut agent = Process::spawn("vaultlet-agent run", cmd, &h.dir.path().join("agent.log"));
    wait_log(&mut agent, "login failed", Duration::from_secs(10));

    // Control: a dumpable process of the same user can be read both ways.
    let mut control = Command::new("sleep")
        .arg("30")
        .env("VAULTLET_TEST_CANARY", &canary)
        .uid(uid)
        .gid(gid)
        .spawn()
        .expect("spawn control process");
    let environ = cat_as(&format!("/proc/{}/environ", control.id()));
    let via_root = cat_as(&format!("/proc/{}/root{token_file}", control.id()));
    let _ = control.kill();
    let _ = control.wait();
    assert!(
        environ.status.success()
            && String::from_utf8_lossy(&environ.stdout)
                .contains(&format!("VAULTLET_TEST_CANARY={canary}")),
        "the control process's environment must be readable: {environ:?}"
    );
    assert_eq!(via_root.stdout, token.as_bytes(), "{via_root:?}");

    for path in [
        format!("/proc/{}/environ", agent.pid()),
        format!("/proc/{}/root{token_file}", agent.pid()),
        format!("/proc/{}/mem", agent.pid()),
    ] {
        let out = cat_as(&path);
        assert!(!out.status.success(), "{path} must not be readable");
        assert!(out.stdout.is_empty(), "{path} gave bytes");
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            format!("cat: {path}: Permission denied\n")
        );
    }
    agent.assert_running();
}
