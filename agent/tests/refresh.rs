//! End-to-end: `run` follows KV v2 changes, notifies only on changed bytes (signal by process
//! name, HTTP), and keeps the last good file on template errors and deleted secrets.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Harness, app_env, assert_no_leak, config, kv_policy, read, wait_log};
use serde_json::json;
use vaultlet_testkit::{HttpRecorder, OpenBao, random_hex, wait_until};

/// A child whose argv[0] is `name` (comm stays `sleep`): SIGHUP ends it, so its exit status
/// proves the signal arrived.
fn mk_app(name: &str) -> std::process::Child {
    Command::new("bash")
        .args(["-c", &format!("exec -a {name} sleep 120")])
        .spawn()
        .expect("spawn the fake app")
}

#[test]
fn kv_update_rewrites_and_notifies_once_and_unchanged_data_notifies_nobody() {
    let bao = OpenBao::dev();
    let pw1 = random_hex(10);
    bao.write_kv("secret/app", &[("user", "u"), ("password", &pw1)]);
    bao.write_kv("secret/other", &[("host", "db.local")]);
    kv_policy(&bao, "app", &["app", "other"]);
    let token = bao.create_token(&["app"], None);

    let app_name = format!("vaultlet-app-{}", random_hex(3));
    let mut app = mk_app(&app_name);
    let recorder = HttpRecorder::start();

    let h = Harness::new();
    let mut cfg = config(
        &bao.addr(),
        h.token_auth(&token),
        json!([
            { "name": "app", "path": "secret/data/app", "file": "app.env",
              "notify": [{ "kind": "signal", "signal": "SIGHUP", "process": app_name }] },
            { "name": "other", "path": "secret/data/other", "file": "other.env" },
            { "name": "url", "path": "secret/data/app", "file": "url",
              "template": "{{user}}:{{password}}@{{secrets.other.host}}" }
        ]),
    );
    let exec_log = h.dir.path().join("exec-notified");
    cfg["notify"] = json!([
        { "kind": "http", "url": format!("{}/reload", recorder.url()) },
        { "kind": "exec", "command": ["/bin/sh", "-c", format!("echo hit >> {}", exec_log.display())] }
    ]);
    cfg["metricsAddr"] = json!(format!("127.0.0.1:{}", vaultlet_testkit::free_port()));
    let mut agent = h.run(&cfg);
    h.wait_ready(&mut agent, Duration::from_secs(10));
    assert_eq!(read(&h.file("url")), format!("u:{pw1}@db.local"));

    // Same data, new version: fetched, compared, nothing written, nobody notified.
    bao.write_kv("secret/app", &[("user", "u"), ("password", &pw1)]);
    wait_log(
        &mut agent,
        "new KV version secret=\"app\" version=2",
        Duration::from_secs(5),
    );

    // New data: both files using it are rewritten in one round -> one notification per target.
    let pw2 = random_hex(10);
    let changed_at = Instant::now();
    bao.write_kv("secret/app", &[("user", "u"), ("password", &pw2)]);
    wait_until(Duration::from_secs(5), "url file rewritten", || {
        read(&h.file("url")) == format!("u:{pw2}@db.local")
    });
    let latency = changed_at.elapsed();
    let status = wait_exit(&mut app, Duration::from_secs(5));
    assert_eq!(
        status.signal(),
        Some(nix_sighup()),
        "the app must get SIGHUP: {status:?}"
    );
    let reqs = recorder.wait_for(1, Duration::from_secs(5));
    assert_eq!(reqs[0].method, "POST");
    assert_eq!(reqs[0].path, "/reload");
    wait_log(&mut agent, "notified target=POST", Duration::from_secs(5));
    wait_log(
        &mut agent,
        "notified target=signal SIGHUP",
        Duration::from_secs(5),
    );
    let log = agent.log();
    assert_eq!(log.matches("notified target=POST").count(), 1, "{log}");
    assert_eq!(recorder.count(), 1);
    wait_until(Duration::from_secs(5), "exec notification ran", || {
        read(&exec_log) == "hit\n"
    });
    assert!(read(&h.file("app.env")).contains(&pw2));
    // Refresh interval (300 ms) + 100 ms, with slack for a loaded 2-core test machine.
    assert!(
        latency < Duration::from_millis(1500),
        "change took {latency:?}"
    );
    eprintln!("KV change -> file rewritten in {latency:?}");

    let metrics = vaultlet_testkit::http::request(
        cfg["metricsAddr"].as_str().expect("addr"),
        "GET",
        "/metrics",
        &[],
        None,
    )
    .expect("metrics answer")
    .text();
    assert!(
        metrics.contains("vaultlet_agent_renders_total{secret=\"url\"} 2"),
        "{metrics}"
    );
    assert_no_leak(&log, &[&pw1, &pw2, &token]);
    assert_no_leak(&metrics, &[&pw1, &pw2, &token]);
}

#[test]
fn template_errors_and_deleted_secrets_keep_the_last_good_file() {
    let bao = OpenBao::dev();
    let pw1 = random_hex(10);
    bao.write_kv("secret/app", &[("user", "u"), ("password", &pw1)]);
    kv_policy(&bao, "app", &["app"]);
    let token = bao.create_token(&["app"], None);
    let h = Harness::new();
    let cfg = config(
        &bao.addr(),
        h.token_auth(&token),
        json!([{ "name": "app", "path": "secret/data/app", "file": "app",
                 "template": "{{user}}:{{password}}" }]),
    );
    let mut agent = h.run(&cfg);
    h.wait_ready(&mut agent, Duration::from_secs(10));
    let good = format!("u:{pw1}");
    assert_eq!(read(&h.file("app")), good);

    // A key the template needs disappears: clear error naming the key, file kept.
    bao.write_kv("secret/app", &[("user", "u2")]);
    wait_log(&mut agent, "render failed", Duration::from_secs(5));
    let log = agent.log();
    assert!(
        log.contains("\"password\"") && log.contains("secret \"app\": cannot render"),
        "{log}"
    );
    assert_eq!(read(&h.file("app")), good);

    // Fixed again: rendered again.
    let pw2 = random_hex(10);
    bao.write_kv("secret/app", &[("user", "u"), ("password", &pw2)]);
    wait_until(Duration::from_secs(5), "file re-rendered", || {
        read(&h.file("app")) == format!("u:{pw2}")
    });

    // Latest version soft-deleted, then the whole secret: errors, file kept.
    bao.delete("secret/data/app");
    wait_log(
        &mut agent,
        "is deleted; keeping the last good file",
        Duration::from_secs(5),
    );
    bao.delete_kv("secret/app");
    wait_log(
        &mut agent,
        "nothing at \"secret/metadata/app\"",
        Duration::from_secs(5),
    );
    assert_eq!(read(&h.file("app")), format!("u:{pw2}"));
    agent.assert_running();
    assert_no_leak(&agent.log(), &[&pw1, &pw2, &token]);
}

#[test]
fn bad_templates_fail_fast_and_missing_keys_fail_init_naming_the_secret() {
    let bao = OpenBao::dev();
    bao.write_kv("secret/app", &[("user", "u")]);
    kv_policy(&bao, "app", &["app"]);
    let token = bao.create_token(&["app"], None);
    let h = Harness::new();
    let cfg = config(
        &bao.addr(),
        h.token_auth(&token),
        json!([{ "name": "web", "path": "secret/data/app", "file": "web", "template": "{{#if user}}x" }]),
    );
    let (status, log, took) = h.init(&cfg, Duration::from_secs(10));
    assert_eq!(status.code(), Some(2), "a config error exits 2");
    assert!(
        log.contains("secret \"web\": template does not parse"),
        "{log}"
    );
    assert!(
        took < Duration::from_secs(2),
        "a config error must not be retried: {took:?}"
    );

    let mut cfg = config(
        &bao.addr(),
        h.token_auth(&token),
        json!([{ "name": "web", "path": "secret/data/app", "file": "web", "template": "{{passwd}}" }]),
    );
    cfg["initDeadline"] = json!("1s");
    let (status, log, _) = h.init(&cfg, Duration::from_secs(10));
    assert_eq!(status.code(), Some(1), "a missed init deadline exits 1");
    assert!(
        log.contains("init deadline") && log.contains("secret \"web\"") && log.contains("passwd"),
        "{log}"
    );
    assert!(!h.file("web").exists());
}

fn nix_sighup() -> i32 {
    vaultlet_testkit::Signal::SIGHUP as i32
}

fn wait_exit(child: &mut std::process::Child, timeout: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            return s;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("the fake app did not exit within {timeout:?} (no SIGHUP?)");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn kv1_pinned_versions_and_reading_data_when_metadata_is_denied() {
    let bao = OpenBao::dev();
    bao.enable_kv("kv1", 1);
    bao.write_kv("kv1/app", &[("a", "1")]);
    bao.write_kv("secret/app", &[("x", "1")]);
    bao.write_kv("secret/app", &[("x", "2")]);
    // Data only: no metadata capability, so the agent must fall back to re-reading the data.
    bao.policy(
        "app",
        r#"path "kv1/app" { capabilities = ["read"] }
           path "secret/data/app" { capabilities = ["read"] }"#,
    );
    let token = bao.create_token(&["app"], None);
    let h = Harness::new();
    let cfg = config(
        &bao.addr(),
        h.token_auth(&token),
        json!([
            { "name": "v1", "path": "kv1/app", "file": "v1.env" },
            { "name": "pinned", "path": "secret/data/app", "version": 1, "file": "pinned.env" },
            { "name": "latest", "path": "secret/data/app", "file": "latest.json", "format": "json" }
        ]),
    );
    let mut agent = h.run(&cfg);
    h.wait_ready(&mut agent, Duration::from_secs(10));
    assert_eq!(read(&h.file("v1.env")), "a=1\n");
    assert_eq!(read(&h.file("pinned.env")), "x=1\n");
    assert_eq!(read(&h.file("latest.json")), "{\n  \"x\": \"2\"\n}\n");

    bao.write_kv("kv1/app", &[("a", "2")]);
    bao.write_kv("secret/app", &[("x", "3")]);
    wait_until(
        Duration::from_secs(5),
        "KV v1 and latest KV v2 re-read",
        || {
            agent.assert_running();
            read(&h.file("v1.env")) == "a=2\n" && read(&h.file("latest.json")).contains("\"3\"")
        },
    );
    assert_eq!(
        read(&h.file("pinned.env")),
        "x=1\n",
        "a pinned version never moves"
    );
    assert!(
        agent
            .log()
            .contains("policy does not allow reading KV metadata"),
        "{}",
        agent.log()
    );
}

#[test]
fn failing_http_notify_is_retried_and_reported() {
    let bao = OpenBao::dev();
    bao.write_kv("secret/app", &[("v", "1")]);
    kv_policy(&bao, "app", &["app"]);
    let token = bao.create_token(&["app"], None);
    let recorder = HttpRecorder::start();
    recorder.set_status(500);
    let h = Harness::new();
    let cfg = config(
        &bao.addr(),
        h.token_auth(&token),
        json!([{ "name": "app", "path": "secret/data/app", "file": "app.env",
                 "notify": [{ "kind": "http", "url": format!("{}/reload", recorder.url()), "method": "PUT" }] }]),
    );
    let mut agent = h.run(&cfg);
    h.wait_ready(&mut agent, Duration::from_secs(10));
    bao.write_kv("secret/app", &[("v", "2")]);
    let reqs = recorder.wait_for(3, Duration::from_secs(10));
    assert!(reqs.iter().all(|r| r.method == "PUT"));
    wait_log(
        &mut agent,
        "failed after 3 attempts: answered 500",
        Duration::from_secs(5),
    );
    assert_eq!(
        read(&h.file("app.env")),
        "v=2\n",
        "a failed notification does not undo the file"
    );
    agent.assert_running();
}

#[test]
fn kv_secret_deleted_and_written_again_is_picked_up() {
    let bao = OpenBao::dev();
    let pw1 = random_hex(10);
    let h = Harness::new();
    let (token, cfg) = app_env(&bao, &h, &[("password", &pw1)]);
    let mut agent = h.run(&cfg);
    h.wait_ready(&mut agent, Duration::from_secs(10));
    assert_eq!(read(&h.file("app.env")), format!("password={pw1}\n"));

    // Metadata deleted, secret written again: KV v2 numbers it version 1 again.
    bao.delete_kv("secret/app");
    let pw2 = random_hex(10);
    bao.write_kv("secret/app", &[("password", &pw2)]);
    assert_eq!(
        bao.read("secret/metadata/app")["data"]["current_version"],
        1
    );
    wait_until(Duration::from_secs(5), "recreated secret rendered", || {
        agent.assert_running();
        read(&h.file("app.env")) == format!("password={pw2}\n")
    });
    assert_no_leak(&agent.log(), &[&pw1, &pw2, &token]);
}

#[test]
fn a_failed_file_write_is_retried_with_backoff_until_it_works() {
    let bao = OpenBao::dev();
    let h = Harness::new();
    let pw1 = random_hex(10);
    let (token, mut cfg) = app_env(&bao, &h, &[("password", &pw1)]);
    cfg["secrets"][0]["file"] = json!("sub/app.env");
    let mut agent = h.run(&cfg);
    h.wait_ready(&mut agent, Duration::from_secs(10));
    assert_eq!(read(&h.file("sub/app.env")), format!("password={pw1}\n"));

    // A file takes the directory's place: the write fails (for root too, unlike a mode).
    let sub = h.secrets.join("sub");
    std::fs::remove_dir_all(&sub).expect("remove dir");
    std::fs::write(&sub, "in the way").expect("write blocker");
    let pw2 = random_hex(10);
    bao.write_kv("secret/app", &[("password", &pw2)]);
    wait_until(Duration::from_secs(10), "the write retried", || {
        agent.assert_running();
        agent
            .log()
            .matches("refresh failed; keeping the last good file")
            .count()
            >= 3
    });
    std::fs::remove_file(&sub).expect("remove blocker");
    wait_until(
        Duration::from_secs(5),
        "file written after the fault",
        || {
            agent.assert_running();
            read(&h.file("sub/app.env")) == format!("password={pw2}\n")
        },
    );
    wait_log(
        &mut agent,
        "file written again after failures secret=\"app\"",
        Duration::from_secs(5),
    );
    assert_no_leak(&agent.log(), &[&pw1, &pw2, &token]);
}
