//! End-to-end: TLS to OpenBao (custom CA, TLS server name) and Vault namespaces.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Harness, config, read};
use serde_json::json;
use vaultlet_testkit::{OpenBao, Process, TempDir, bao_bin, free_port_pair, wait_until};

/// `bao server -dev -dev-tls` (the testkit serves plain HTTP): its CA lands in `vault-ca.pem`.
struct TlsBao {
    _proc: Process,
    dir: TempDir,
    port: u16,
    token: String,
}

impl TlsBao {
    fn start() -> TlsBao {
        let dir = TempDir::with_prefix("vaultlet-bao-tls-").expect("temp dir");
        let port = free_port_pair();
        let token = format!("root-{}", vaultlet_testkit::random_hex(8));
        let mut cmd = Command::new(bao_bin());
        cmd.args(["server", "-dev", "-dev-tls"])
            .arg(format!("-dev-tls-cert-dir={}", dir.path().display()))
            .arg(format!("-dev-root-token-id={token}"))
            .arg(format!("-dev-listen-address=127.0.0.1:{port}"));
        let proc = Process::spawn("bao -dev-tls", cmd, &dir.path().join("bao.log"));
        let bao = TlsBao {
            _proc: proc,
            dir,
            port,
            token,
        };
        wait_until(Duration::from_secs(20), "TLS OpenBao answering", || {
            bao.cli(&["status"]).status.success()
        });
        bao
    }

    fn ca(&self) -> std::path::PathBuf {
        self.dir.path().join("vault-ca.pem")
    }

    fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(bao_bin())
            .args(args)
            .env("BAO_ADDR", format!("https://127.0.0.1:{}", self.port))
            .env("BAO_CACERT", self.ca())
            .env("BAO_TOKEN", &self.token)
            .output()
            .expect("run bao")
    }
}

#[test]
fn tls_with_custom_ca_and_server_name() {
    let bao = TlsBao::start();
    let put = bao.cli(&["kv", "put", "secret/app", "password=tls-pw"]);
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );
    let addr = format!("https://127.0.0.1:{}", bao.port);
    let h = Harness::new();
    let secrets = json!([{ "name": "app", "path": "secret/data/app", "file": "app.env" }]);
    let mk = |vault: serde_json::Value| {
        let mut cfg = config(&addr, h.token_auth(&bao.token), secrets.clone());
        cfg["vault"] = vault;
        cfg["initDeadline"] = json!("1s");
        cfg
    };

    let (status, log, _) = h.init(
        &mk(json!({ "address": addr, "caCert": bao.ca() })),
        Duration::from_secs(10),
    );
    assert!(status.success(), "{log}");
    assert_eq!(read(&h.file("app.env")), "password=tls-pw\n");

    // System roots do not know the dev CA.
    let (status, log, _) = h.init(&mk(json!({ "address": addr })), Duration::from_secs(10));
    assert!(!status.success() && log.contains("UnknownIssuer"), "{log}");

    // The certificate is checked against tlsServerName, not the address host.
    let (status, log, _) = h.init(
        &mk(json!({ "address": addr, "caCert": bao.ca(), "tlsServerName": "wrong.example" })),
        Duration::from_secs(10),
    );
    assert!(
        !status.success() && log.contains("not valid for name \"wrong.example\""),
        "{log}"
    );
    let (status, log, _) = h.init(
        &mk(json!({ "address": addr, "caCert": bao.ca(), "tlsServerName": "localhost" })),
        Duration::from_secs(10),
    );
    assert!(status.success(), "{log}");

    // A CA file that is not PEM is a clear start-up error.
    let bad = h.put("bad-ca.pem", "not a certificate");
    let (status, log, took) = h.init(
        &mk(json!({ "address": addr, "caCert": bad })),
        Duration::from_secs(10),
    );
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(log.contains("vault.caCert"), "{log}");
    assert!(
        took < Duration::from_secs(1),
        "a config error is not retried: {took:?}"
    );
}

#[test]
fn namespace_header_reaches_the_namespace() {
    let bao = OpenBao::dev();
    bao.write("sys/namespaces/team", json!({}));
    write_kv_in_namespace(&bao);
    let h = Harness::new();
    let mut cfg = config(
        &bao.addr(),
        h.token_auth(bao.root_token()),
        json!([{ "name": "app", "path": "kv/data/app", "file": "app.env" }]),
    );
    cfg["vault"]["namespace"] = json!("team");
    let (status, log, _) = h.init(&cfg, Duration::from_secs(10));
    assert!(status.success(), "{log}");
    assert_eq!(read(&h.file("app.env")), "where=team\n");
}

/// Mounts KV v2 at `kv/` inside namespace `team` and writes `kv/app`.
fn write_kv_in_namespace(bao: &OpenBao) {
    let ns = [("X-Vault-Namespace", "team")];
    let mount = bao.try_api_headers(
        Some(bao.root_token()),
        "POST",
        "sys/mounts/kv",
        &ns,
        Some(&json!({ "type": "kv", "options": { "version": "2" } })),
    );
    assert!(
        mount.is_success(),
        "mount in namespace: {} {}",
        mount.status,
        mount.body
    );
    let put = bao.try_api_headers(
        Some(bao.root_token()),
        "POST",
        "kv/data/app",
        &ns,
        Some(&json!({ "data": { "where": "team" } })),
    );
    assert!(
        put.is_success(),
        "write in namespace: {} {}",
        put.status,
        put.body
    );
}
