//! End-to-end: `init` with AppRole (plain and response-wrapped) and Kubernetes auth against a
//! real OpenBao renders the right content with the right modes, and logs no secret.

mod common;

use std::time::Duration;

use common::{Harness, assert_no_leak, config, kv_policy, mode, read};
use serde_json::json;
use vaultlet_testkit::cluster::Cluster;
use vaultlet_testkit::{OpenBao, random_hex, wait_until};

fn mk_secrets() -> serde_json::Value {
    json!([
        { "name": "app", "path": "secret/data/app", "file": "app.env" },
        {
            "name": "url", "path": "secret/data/app", "file": "conf/db.url", "mode": 0o400,
            "template": "postgres://{{username}}:{{password}}@db/app?user={{secrets.app.username}}"
        }
    ])
}

fn mk_bao(password: &str) -> OpenBao {
    let bao = OpenBao::dev();
    bao.write_kv(
        "secret/app",
        &[("username", "app-user"), ("password", password)],
    );
    kv_policy(&bao, "app", &["app"]);
    bao
}

#[test]
fn approle_plain_and_wrapped_render_content_and_modes() {
    let password = format!("p@ss&<{}>", random_hex(8));
    let bao = mk_bao(&password);
    let (role_id, secret_id) = bao.enable_approle("app", &["app"]);

    let h = Harness::new();
    let mut cfg = config(
        &bao.addr(),
        h.approle_auth(&role_id, &secret_id, false),
        mk_secrets(),
    );
    cfg["paths"] = json!({ "tokenSink": h.sink() });
    assert!(!h.probe(), "probe must fail before anything was rendered");
    let (status, log, took) = h.init(&cfg, Duration::from_secs(20));
    assert!(status.success(), "init failed: {log}");
    assert_eq!(
        read(&h.file("app.env")),
        format!("password='{password}'\nusername=app-user\n")
    );
    assert_eq!(
        read(&h.file("conf/db.url")),
        format!("postgres://app-user:{password}@db/app?user=app-user")
    );
    assert_eq!(mode(&h.file("app.env")), 0o440);
    assert_eq!(mode(&h.file("conf/db.url")), 0o400);
    assert!(h.probe(), "probe must pass once init rendered everything");
    let token = read(&h.sink());
    assert!(
        token.starts_with("s.") || token.len() > 20,
        "token sink holds a token"
    );
    assert_no_leak(&log, &[&password, &secret_id, &role_id, &token]);
    eprintln!("approle init took {took:?}");

    // A response-wrapped secret-id is unwrapped by the agent (and is then used up).
    let wrapped = bao.wrapped_secret_id("app");
    let h2 = Harness::new();
    let cfg = config(
        &bao.addr(),
        h2.approle_auth(&role_id, &wrapped, true),
        mk_secrets(),
    );
    let (status, log, _) = h2.init(&cfg, Duration::from_secs(20));
    assert!(
        status.success(),
        "init with a wrapped secret-id failed: {log}"
    );
    assert_eq!(read(&h2.file("app.env")), read(&h.file("app.env")));
    let again = bao.try_api(
        Some(&wrapped),
        "POST",
        "sys/wrapping/unwrap",
        Some(&json!({})),
    );
    assert!(
        !again.is_success(),
        "the wrapping token must have been used by the agent"
    );
    assert_no_leak(&log, &[&password, &wrapped]);
}

#[test]
fn approle_with_a_wrong_secret_id_fails_init_with_the_cause() {
    let bao = mk_bao("pw");
    let (role_id, _) = bao.enable_approle("app", &["app"]);
    let h = Harness::new();
    let mut cfg = config(
        &bao.addr(),
        h.approle_auth(&role_id, "not-a-secret-id", false),
        mk_secrets(),
    );
    cfg["initDeadline"] = json!("1s");
    let (status, log, took) = h.init(&cfg, Duration::from_secs(10));
    assert!(!status.success(), "init must fail: {log}");
    assert!(
        log.contains("init deadline") && log.contains("approle login"),
        "{log}"
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(!h.file("app.env").exists());
    assert!(!h.probe());
}

#[test]
fn kubernetes_auth_with_a_pod_bound_token_from_the_api_server() {
    let password = random_hex(12);
    let bao = mk_bao(&password);
    let k8s = Cluster::running();
    let ns = "vaultlet-e2e";
    let (pod, uid) = k8s.placeholder_pod(ns, "app-sa");
    bao.enable_kubernetes(k8s, "app", "app-sa", ns, &["app"]);
    // What the kubelet mounts: TokenRequest, audience vault, bound to the Pod.
    let jwt = k8s.token(ns, "app-sa", "vault", 600, Some((&pod, &uid)));

    let h = Harness::new();
    let sa = h.put("sa-token", &jwt);
    let auth = json!({ "method": "kubernetes", "role": "app", "tokenPath": sa });
    let (status, log, _) = h.init(
        &config(&bao.addr(), auth, mk_secrets()),
        Duration::from_secs(20),
    );
    assert!(status.success(), "init failed: {log}");
    assert!(read(&h.file("app.env")).contains(&password));
    assert_no_leak(&log, &[&password, &jwt]);

    // OpenBao asks the API server each time: once the Pod is gone (and the API server's
    // ~10 s review cache has passed), its token is not valid.
    assert!(bao.kubernetes_login("app", &jwt).is_success());
    k8s.delete(ns, "pod", &pod);
    wait_until(
        Duration::from_secs(30),
        "a token bound to a deleted Pod is refused",
        || bao.kubernetes_login("app", &jwt).status == 403,
    );
}

#[test]
fn jwt_auth_verified_through_the_api_servers_oidc_discovery() {
    let password = random_hex(12);
    let bao = mk_bao(&password);
    let k8s = Cluster::running();
    let ns = "vaultlet-e2e";
    let (pod, uid) = k8s.placeholder_pod(ns, "jwt-sa");
    bao.enable_jwt(k8s, "app", (ns, "jwt-sa"), "vault", &["app"]);
    // What the kubelet mounts for jwt auth: the same projected token as kubernetes auth.
    let jwt = k8s.token(ns, "jwt-sa", "vault", 600, Some((&pod, &uid)));

    let h = Harness::new();
    let sa = h.put("sa-token", &jwt);
    let auth = json!({ "method": "jwt", "role": "app", "tokenPath": sa });
    let mut cfg = config(&bao.addr(), auth, mk_secrets());
    cfg["paths"] = json!({ "tokenSink": h.sink() });
    let (status, log, _) = h.init(&cfg, Duration::from_secs(20));
    assert!(status.success(), "init failed: {log}");
    assert_eq!(
        read(&h.file("app.env")),
        format!("password={password}\nusername=app-user\n")
    );
    assert_no_leak(&log, &[&password, &jwt, &read(&h.sink())]);

    // The wrong credential: a token for another audience, or of another service account.
    let other_audience = k8s.token(ns, "jwt-sa", "not-vault", 600, None);
    k8s.ensure_service_account(ns, "intruder");
    let other_account = k8s.token(ns, "intruder", "vault", 600, None);
    for (what, wrong) in [("audience", &other_audience), ("account", &other_account)] {
        let h = Harness::new();
        let sa = h.put("sa-token", wrong);
        let auth = json!({ "method": "jwt", "role": "app", "tokenPath": sa });
        let mut cfg = config(&bao.addr(), auth, mk_secrets());
        cfg["initDeadline"] = json!("1s");
        let (status, log, _) = h.init(&cfg, Duration::from_secs(20));
        assert!(
            !status.success(),
            "a token of another {what} must not log in: {log}"
        );
        assert!(
            log.contains("jwt login (auth/jwt/login) failed"),
            "{what}: {log}"
        );
        assert!(!h.file("app.env").exists());
        assert_no_leak(&log, &[&password, wrong]);
    }
}

#[test]
fn approle_token_is_renewed_then_replaced_near_its_max_ttl() {
    let bao = mk_bao("pw");
    let (role_id, secret_id) = bao.enable_approle("app", &["app"]);
    bao.write(
        "auth/approle/role/app",
        json!({ "token_policies": ["app"], "token_ttl": "3s", "token_max_ttl": "7s" }),
    );
    let h = Harness::new();
    let mut cfg = config(
        &bao.addr(),
        h.approle_auth(&role_id, &secret_id, false),
        mk_secrets(),
    );
    cfg["paths"] = json!({ "tokenSink": h.sink() });
    let mut agent = h.run(&cfg);
    h.wait_ready(&mut agent, Duration::from_secs(10));
    let token1 = read(&h.sink());
    common::wait_log(&mut agent, "token renewed", Duration::from_secs(5));
    common::wait_log(
        &mut agent,
        "near its max TTL or not renewable; logging in again",
        Duration::from_secs(10),
    );
    vaultlet_testkit::wait_until(Duration::from_secs(5), "a new token in the sink", || {
        let t = read(&h.sink());
        !t.is_empty() && t != token1
    });
    // The new token works: a change is picked up.
    bao.write_kv(
        "secret/app",
        &[("username", "app-user"), ("password", "pw2")],
    );
    vaultlet_testkit::wait_until(
        Duration::from_secs(5),
        "file updated with the new token",
        || {
            agent.assert_running();
            read(&h.file("app.env")).contains("pw2")
        },
    );
    let log = agent.log();
    assert!(
        !log.contains("refresh failed"),
        "no refresh may fail around the re-login: {log}"
    );
    assert_no_leak(&log, &[&secret_id, &token1, &read(&h.sink())]);
}

#[test]
fn unreadable_sa_token_is_a_clear_init_failure() {
    let bao = mk_bao("pw");
    let h = Harness::new();
    let missing = h.dir.path().join("no-such-token");
    let mut cfg = config(
        &bao.addr(),
        json!({ "method": "kubernetes", "role": "app", "tokenPath": missing }),
        mk_secrets(),
    );
    cfg["initDeadline"] = json!("1s");
    let (status, log, _) = h.init(&cfg, Duration::from_secs(10));
    assert!(!status.success());
    assert!(
        log.contains("login failed: cannot read service-account token")
            && log.contains("no-such-token")
            && log.contains("check the volume is mounted"),
        "{log}"
    );
}
