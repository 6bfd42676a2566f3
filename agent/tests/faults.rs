//! End-to-end fault paths: token revoked from outside, OpenBao down mid-run and at `init`,
//! SIGTERM (with token revocation).

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Harness, app_env, assert_no_leak, config, kv_policy, read, wait_log};
use serde_json::json;
use vaultlet_testkit::cluster::Cluster;
use vaultlet_testkit::{OpenBao, Signal, free_port, random_hex, wait_until};

#[test]
fn revoked_token_leads_to_a_new_login_with_the_rotated_sa_token() {
    let bao = OpenBao::dev();
    let pw1 = random_hex(10);
    bao.write_kv("secret/app", &[("password", &pw1)]);
    kv_policy(&bao, "app", &["app"]);
    let k8s = Cluster::running();
    let ns = "vaultlet-e2e";
    bao.enable_kubernetes(k8s, "app", "app-sa", ns, &["app"]);
    let (pod1, uid1) = k8s.placeholder_pod(ns, "app-sa");
    let jwt1 = k8s.token(ns, "app-sa", "vault", 600, Some((&pod1, &uid1)));

    let h = Harness::new();
    let sa = h.put("sa-token", &jwt1);
    let mut cfg = config(
        &bao.addr(),
        json!({ "method": "kubernetes", "role": "app", "tokenPath": sa }),
        json!([{ "name": "app", "path": "secret/data/app", "file": "app.env" }]),
    );
    cfg["paths"] = json!({ "tokenSink": h.sink() });
    let mut agent = h.run(&cfg);
    h.wait_ready(&mut agent, Duration::from_secs(10));
    let token1 = read(&h.sink());

    // A new token in the file; the old one stops being valid (its Pod is deleted).
    let (pod2, uid2) = k8s.placeholder_pod(ns, "app-sa");
    let jwt2 = k8s.token(ns, "app-sa", "vault", 600, Some((&pod2, &uid2)));
    h.put("sa-token", &jwt2);
    k8s.delete(ns, "pod", &pod1);
    // Someone revokes the agent's Vault token.
    bao.write("auth/token/revoke", json!({ "token": token1 }));
    let pw2 = random_hex(10);
    bao.write_kv("secret/app", &[("password", &pw2)]);

    wait_until(
        Duration::from_secs(10),
        "file updated after re-login",
        || {
            agent.assert_running();
            read(&h.file("app.env")).contains(&pw2)
        },
    );
    let token2 = read(&h.sink());
    assert_ne!(token1, token2, "a new token must have been obtained");
    let log = agent.log();
    assert!(log.contains("logging in again"), "{log}");
    assert_no_leak(&log, &[&pw1, &pw2, &jwt1, &jwt2, &token1, &token2]);
}

#[test]
fn openbao_down_mid_run_keeps_files_and_recovers() {
    let mut bao = OpenBao::persistent_temp();
    let pw1 = random_hex(10);
    let h = Harness::new();
    let (token, cfg) = app_env(&bao, &h, &[("password", &pw1)]);
    let mut agent = h.run(&cfg);
    h.wait_ready(&mut agent, Duration::from_secs(10));
    let good = read(&h.file("app.env"));
    assert!(good.contains(&pw1));

    bao.stop();
    wait_log(&mut agent, "Vault is unreachable", Duration::from_secs(10));
    assert_eq!(
        read(&h.file("app.env")),
        good,
        "the last good file must stay"
    );
    agent.assert_running();

    bao.start();
    let pw2 = random_hex(10);
    bao.write_kv("secret/app", &[("password", &pw2)]);
    wait_until(
        Duration::from_secs(15),
        "file updated after OpenBao returned",
        || {
            agent.assert_running();
            read(&h.file("app.env")).contains(&pw2)
        },
    );
    let log = agent.log();
    assert!(
        log.contains("secret refreshed again after failures"),
        "{log}"
    );
    assert_no_leak(&log, &[&pw1, &pw2, &token]);
}

/// The `retry_in_ms` of every retry the agent logged.
fn retry_delays(log: &str) -> Vec<u64> {
    log.split("retry_in_ms=")
        .skip(1)
        .map(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().expect("retry_in_ms value")
        })
        .collect()
}

#[test]
fn after_an_outage_the_agent_is_back_within_about_one_refresh_interval() {
    let port = free_port();
    let h = Harness::new();
    let mut cfg = config(
        &format!("http://127.0.0.1:{port}"),
        h.token_auth("no-server-yet"),
        json!([{ "name": "app", "path": "secret/data/app", "file": "app.env" }]),
    );
    cfg["refreshInterval"] = json!("1s");
    let mut agent = h.run(&cfg);
    wait_until(Duration::from_secs(30), "six failed logins", || {
        agent.assert_running();
        agent.log().matches("login failed").count() >= 6
    });
    let delays = retry_delays(&agent.log());
    assert!(delays.len() >= 6, "{delays:?}");
    assert!(
        delays.iter().all(|&d| d <= 1000),
        "the backoff must stop at the 1s refresh interval: {delays:?}"
    );

    let bao = OpenBao::dev_on(port);
    let pw = random_hex(10);
    bao.write_kv("secret/app", &[("password", &pw)]);
    kv_policy(&bao, "app", &["app"]);
    let token = bao.create_token(&["app"], None);
    h.put("vault-token", &token);
    let back = Instant::now();
    wait_until(
        Duration::from_secs(10),
        "file rendered after the outage",
        || {
            agent.assert_running();
            read(&h.file("app.env")) == format!("password={pw}\n")
        },
    );
    // One interval (1 s) plus slack for a loaded machine.
    assert!(
        back.elapsed() < Duration::from_millis(2500),
        "{:?}",
        back.elapsed()
    );
    assert_no_leak(&agent.log(), &[&pw, &token]);
}

#[test]
fn unreachable_at_init_retries_then_fails_at_the_deadline() {
    let h = Harness::new();
    let addr = format!("http://127.0.0.1:{}", free_port());
    let mut cfg = config(
        &addr,
        h.token_auth("unused-token"),
        json!([{ "name": "app", "path": "secret/data/app", "file": "app.env" }]),
    );
    cfg["initDeadline"] = json!("2s");
    let (status, log, took) = h.init(&cfg, Duration::from_secs(10));
    assert!(!status.success(), "{log}");
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(4),
        "took {took:?}"
    );
    assert!(
        log.matches("login failed").count() >= 3,
        "must retry: {log}"
    );
    assert!(
        log.contains("not rendered within the init deadline of 2s")
            && log.contains("Vault is unreachable"),
        "{log}"
    );
    assert!(!h.file("app.env").exists());
}

#[test]
fn sigterm_exits_zero_within_a_second_and_revokes_the_token() {
    let bao = OpenBao::dev();
    let h = Harness::new();
    let (token, mut cfg) = app_env(&bao, &h, &[("password", "pw")]);
    cfg["revokeOnShutdown"] = json!(true);
    cfg["log"] = json!({ "format": "json", "level": "debug" });
    let mut agent = h.run(&cfg);
    h.wait_ready(&mut agent, Duration::from_secs(10));

    let start = Instant::now();
    agent.signal(Signal::SIGTERM);
    let status = agent.wait_exit(Duration::from_secs(5));
    let took = start.elapsed();
    assert!(status.success(), "exit status {status:?}");
    assert!(took < Duration::from_secs(1), "took {took:?}");
    let lookup = bao.try_api(Some(&token), "GET", "auth/token/lookup-self", None);
    assert_eq!(lookup.status, 403, "the token must be revoked");
    assert!(
        read(&h.file("app.env")).contains("pw"),
        "files stay after shutdown"
    );
    let log = agent.log();
    for line in log.lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(v["message"].is_string() && v["level"].is_string(), "{line}");
    }
    assert!(
        log.contains("\"message\":\"token and its leases revoked; stopping\""),
        "{log}"
    );
    common::assert_no_leak(&log, &[&token]);
}

#[test]
fn sigint_while_openbao_is_unreachable_still_exits_promptly() {
    let h = Harness::new();
    let addr = format!("http://127.0.0.1:{}", free_port());
    let cfg = config(
        &addr,
        h.token_auth("unused-token"),
        json!([{ "name": "app", "path": "secret/data/app", "file": "app.env" }]),
    );
    let mut agent = h.run(&cfg);
    wait_log(&mut agent, "login failed", Duration::from_secs(5));
    let start = Instant::now();
    agent.signal(Signal::SIGINT);
    let status = agent.wait_exit(Duration::from_secs(5));
    assert!(status.success(), "exit status {status:?}");
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "took {:?}",
        start.elapsed()
    );
}

/// A stand-in Vault for one fault: the first token lookup (the login) works, later ones
/// answer 500; reading the secret is refused with 403. Returns its address and the number
/// of lookups it answered.
fn vault_with_failing_lookups() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = format!("http://{}", listener.local_addr().expect("addr"));
    let lookups = Arc::new(AtomicUsize::new(0));
    let count = lookups.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&head);
            let (status, body) = if head.contains("/v1/auth/token/lookup-self ") {
                if count.fetch_add(1, Ordering::SeqCst) == 0 {
                    ("200 OK", r#"{"data":{"ttl":3600,"renewable":false}}"#)
                } else {
                    (
                        "500 Internal Server Error",
                        r#"{"errors":["storage unavailable"]}"#,
                    )
                }
            } else {
                ("403 Forbidden", r#"{"errors":["permission denied"]}"#)
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (addr, lookups)
}

#[test]
fn only_a_403_from_lookup_self_means_the_token_is_gone() {
    let (addr, lookups) = vault_with_failing_lookups();
    let h = Harness::new();
    let cfg = config(
        &addr,
        h.token_auth("a-token"),
        json!([{ "name": "app", "path": "secret/data/app", "file": "app.env" }]),
    );
    let mut agent = h.run(&cfg);
    // Each 403 on the secret makes the agent look the token up; those lookups fail (500).
    wait_until(Duration::from_secs(15), "three checks after a 403", || {
        agent.assert_running();
        lookups.load(Ordering::SeqCst) >= 4
    });
    let log = agent.log();
    assert_eq!(log.matches("logged in").count(), 1, "{log}");
    assert_eq!(log.matches("logging in again").count(), 0, "{log}");
}

#[test]
fn init_as_pid_1_exits_promptly_on_sigterm() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: a new PID namespace (unshare --pid) needs root");
        return;
    }
    let h = Harness::new();
    // Nothing listens: init keeps retrying its login until the 10 s deadline.
    let cfg = config(
        &format!("http://127.0.0.1:{}", free_port()),
        h.token_auth("unused"),
        json!([{ "name": "app", "path": "secret/data/app", "file": "app.env" }]),
    );
    let agent_cmd = h.command("init", &cfg);
    let mut cmd = std::process::Command::new("unshare");
    cmd.args(["--pid", "--fork", "--kill-child"])
        .arg(agent_cmd.get_program())
        .args(agent_cmd.get_args())
        .env_remove("VAULTLET_AGENT_CONFIG");
    let mut ns = vaultlet_testkit::Process::spawn(
        "unshare vaultlet-agent init",
        cmd,
        &h.dir.path().join("init.log"),
    );
    wait_log(&mut ns, "login failed", Duration::from_secs(10));
    // The agent: PID 1 of the new namespace, the only child of unshare.
    let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", ns.pid()))
        .expect("children of unshare");
    let agent: i32 = children.trim().parse().expect("one child pid");
    let status = std::fs::read_to_string(format!("/proc/{agent}/status")).expect("status");
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("NSpid:") && l.trim_end().ends_with("\t1")),
        "the agent must be PID 1 in its namespace: {status}"
    );
    let sent = Instant::now();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(agent), Signal::SIGTERM).expect("kill");
    let exit = ns.wait_exit(Duration::from_secs(5));
    assert!(
        sent.elapsed() < Duration::from_secs(1),
        "took {:?}",
        sent.elapsed()
    );
    assert_eq!(exit.code(), Some(1), "{}", ns.log());
    assert!(
        ns.log()
            .contains("stopped by a signal before every secret was rendered"),
        "{}",
        ns.log()
    );
}
