//! Proves each testkit piece against the real binaries (`source scripts/tools.sh` first).

use std::time::Duration;

use serde_json::json;
use vaultlet_testkit::cluster::Cluster;
use vaultlet_testkit::{OpenBao, Postgres, wait_until};

const READ_APP: &str = r#"path "secret/data/app" { capabilities = ["read"] }"#;

/// A CLI `-field=...` output without its trailing newline.
fn field(bao: &OpenBao, token: &str, args: &[&str]) -> String {
    let out = bao.bao_with_token(token, args);
    assert!(
        out.status.success(),
        "bao {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn dev_server_writes_and_reads_kv() {
    let bao = OpenBao::dev();
    assert!(bao.addr().starts_with("http://127.0.0.1:"));
    let written = bao.write_kv("secret/app", &[("password", "s3cret"), ("user", "app")]);
    assert_eq!(written["data"]["version"], 1);
    assert_eq!(bao.read_kv("secret/app")["password"], "s3cret");
    // The CLI sees the same data.
    let cli = bao.bao_ok(&["kv", "get", "-field=user", "secret/app"]);
    assert_eq!(cli.trim(), "app");

    bao.enable_kv("kv1", 1);
    bao.write_kv("kv1/app", &[("k", "v")]);
    assert_eq!(bao.read_kv("kv1/app")["k"], "v");
    bao.delete_kv("secret/app");
    let gone = bao.try_api(Some(bao.root_token()), "GET", "secret/data/app", None);
    assert_eq!(gone.status, 404);
}

#[test]
fn dev_server_comes_up_on_a_chosen_port() {
    let port = vaultlet_testkit::free_port_pair();
    let before =
        vaultlet_testkit::http::request(&format!("127.0.0.1:{port}"), "GET", "/", &[], None);
    assert!(before.is_err(), "nothing listens before the server starts");
    let bao = OpenBao::dev_on(port);
    assert_eq!(bao.addr(), format!("http://127.0.0.1:{port}"));
    assert_eq!(bao.read("sys/health")["sealed"], false);
}

#[test]
fn approle_login_with_plain_and_wrapped_secret_id() {
    let bao = OpenBao::dev();
    bao.write_kv("secret/app", &[("password", "s3cret")]);
    bao.policy("app", READ_APP);
    let (role_id, secret_id) = bao.enable_approle("app", &["app"]);

    let login = ["write", "-field=token", "auth/approle/login"];
    let token = field(
        &bao,
        "",
        &[
            &login[..],
            &[
                &format!("role_id={role_id}"),
                &format!("secret_id={secret_id}"),
            ],
        ]
        .concat(),
    );
    let password = field(
        &bao,
        &token,
        &["kv", "get", "-field=password", "secret/app"],
    );
    assert_eq!(password, "s3cret");

    let wrapping = bao.wrapped_secret_id("app");
    let unwrapped = field(&bao, &wrapping, &["unwrap", "-field=secret_id"]);
    assert_ne!(unwrapped, secret_id);
    let token2 = bao.approle_login(&role_id, &unwrapped);
    let denied = bao.try_api(Some(&token2), "GET", "secret/data/other", None);
    assert_eq!(denied.status, 403, "policy must limit the AppRole token");
    // A wrapping token works once.
    let again = bao.bao_with_token(&wrapping, &["unwrap"]);
    assert!(!again.status.success());
}

#[test]
fn kubernetes_login_is_reviewed_by_the_api_server() {
    let bao = OpenBao::dev();
    bao.policy("app", READ_APP);
    let k8s = Cluster::running();
    let ns = "vaultlet-e2e";
    bao.enable_kubernetes(k8s, "app", "app-sa", ns, &["app"]);
    let (pod, uid) = k8s.placeholder_pod(ns, "app-sa");
    let jwt = k8s.token(ns, "app-sa", "vault", 600, Some((&pod, &uid)));

    let login = |jwt: &str| {
        bao.bao_with_token(
            "",
            &[
                "write",
                "-field=token",
                "auth/kubernetes/login",
                "role=app",
                &format!("jwt={jwt}"),
            ],
        )
    };
    let ok = login(&jwt);
    assert!(
        ok.status.success(),
        "login failed: {}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(!String::from_utf8_lossy(&ok.stdout).trim().is_empty());

    k8s.ensure_service_account(ns, "other-sa");
    let wrong_sa = k8s.token(ns, "other-sa", "vault", 600, None);
    assert_eq!(bao.kubernetes_login("app", &wrong_sa).status, 403);
    let wrong_audience = k8s.token(ns, "app-sa", "not-vault", 600, None);
    assert_eq!(bao.kubernetes_login("app", &wrong_audience).status, 403);

    // The API server caches a token's review for about 10 s.
    k8s.delete(ns, "pod", &pod);
    wait_until(
        Duration::from_secs(30),
        "a token bound to a deleted Pod is refused",
        || !login(&jwt).status.success(),
    );
}

#[test]
fn postgres_dynamic_credentials_can_log_in() {
    let mut pg = Postgres::start();
    assert_eq!(pg.psql("SELECT 40 + 2"), "42");
    let bao = OpenBao::dev();
    bao.enable_database_postgres(&pg, "app", "1m", "5m");
    let creds = bao.read("database/creds/app");
    let user = creds["data"]["username"].as_str().expect("username");
    let password = creds["data"]["password"].as_str().expect("password");
    assert!(
        creds["lease_duration"]
            .as_u64()
            .is_some_and(|ttl| ttl > 0 && ttl <= 60)
    );
    assert!(pg.can_login(user, password));
    assert!(!pg.can_login(user, "wrong-password"));
    pg.stop();
    assert!(
        !pg.can_login(user, password),
        "no login while PostgreSQL is down"
    );
    pg.start_again();
    assert!(pg.can_login(user, password), "data survives a restart");

    let lease = creds["lease_id"].as_str().expect("lease_id");
    bao.write("sys/leases/revoke", json!({ "lease_id": lease }));
    wait_until(
        Duration::from_secs(10),
        "revoked role cannot log in",
        || !pg.can_login(user, password),
    );
}

#[test]
fn pki_issues_a_certificate() {
    let bao = OpenBao::dev();
    let ca = bao.enable_pki("web", "example.test");
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"));
    let issued = bao.write(
        "pki/issue/web",
        json!({ "common_name": "app.example.test", "ttl": "1h" }),
    );
    assert!(
        issued["data"]["certificate"]
            .as_str()
            .is_some_and(|c| c.contains("BEGIN CERTIFICATE"))
    );
    assert_eq!(issued["data"]["issuing_ca"].as_str(), Some(ca.trim()));
    let denied = bao.try_api(
        Some(bao.root_token()),
        "POST",
        "pki/issue/web",
        Some(&json!({ "common_name": "evil.invalid" })),
    );
    assert_eq!(denied.status, 400);
}

#[test]
fn persistent_server_keeps_kv_across_restart() {
    let mut bao = OpenBao::persistent_temp();
    bao.write_kv("secret/app", &[("password", "v1")]);
    let port = bao.port();
    bao.stop();
    assert!(!bao.is_running());
    let down = std::net::TcpStream::connect(("127.0.0.1", port));
    assert!(down.is_err(), "the port must be closed while stopped");
    bao.start();
    assert_eq!(bao.port(), port);
    assert_eq!(bao.read_kv("secret/app")["password"], "v1");
}
