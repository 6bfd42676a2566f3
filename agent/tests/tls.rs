//! End-to-end: the agent against a real OpenBao TLS listener that requires client certificates
//! (`tls_require_and_verify_client_cert`): TLS certificate auth, mutual TLS with another login
//! method, and the errors for a wrong CA, a missing or untrusted client certificate, and a
//! certificate the cert role does not accept. No log holds a token, key or secret.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Harness, assert_no_leak, config, kv_policy, read};
use serde_json::{Value, json};
use vaultlet_testkit::{CertFiles, OpenBao, TestPki, random_hex};

/// OpenBao with an mTLS listener (server certificate from `vault_ca`) trusting client
/// certificates of `trusted` CAs, a KV secret and cert role `web` bound to `role_ca`.
struct Setup {
    bao: OpenBao,
    vault_ca: TestPki,
    clients: TestPki,
    /// A CA the listener trusts but the cert role does not.
    outsiders: TestPki,
    password: String,
    _bundle: vaultlet_testkit::TempDir,
}

fn mk_setup() -> Setup {
    let vault_ca = TestPki::new("vault-ca");
    let server = vault_ca.issue("server", "openbao", &["IP:127.0.0.1", "DNS:openbao"]);
    let clients = TestPki::new("client-ca");
    let outsiders = TestPki::new("outsider-ca");
    let bundle = vaultlet_testkit::TempDir::with_prefix("vaultlet-ca-bundle-").expect("temp");
    let bundle_file = bundle.path().join("clients.pem");
    std::fs::write(&bundle_file, clients.ca_pem() + &outsiders.ca_pem()).expect("write bundle");
    let bao = OpenBao::dev_mtls(&server, &bundle_file);
    let password = format!("pw-{}", random_hex(10));
    bao.write_kv(
        "secret/app",
        &[("username", "web"), ("password", &password)],
    );
    kv_policy(&bao, "app", &["app"]);
    bao.enable_cert("web", &clients, &["app"]);
    Setup {
        bao,
        vault_ca,
        clients,
        outsiders,
        password,
        _bundle: bundle,
    }
}

fn secrets() -> Value {
    json!([{ "name": "app", "path": "secret/data/app", "file": "app.env" }])
}

/// The TLS section the injector writes for Secrets mounted at the contract's paths.
fn vault(addr: &str, ca: &Path, client: Option<&CertFiles>) -> Value {
    let mut v = json!({
        "address": addr,
        "caCert": ca,
        "tlsOrigin": {"caCert": "annotation vaultlet.io/tls-ca-secret: Secret vault-ca, key ca.crt"},
    });
    if let Some(c) = client {
        v["clientCert"] = json!(c.cert);
        v["clientKey"] = json!(c.key);
        v["tlsOrigin"]["clientCert"] = json!(
            "annotation vaultlet.io/tls-client-secret: Secret web-vault-client, keys tls.crt and tls.key"
        );
    }
    v
}

fn cert_auth() -> Value {
    json!({ "method": "cert", "role": "web" })
}

/// The base64 lines of a PEM private key: none may appear in a log.
fn key_lines(key: &Path) -> Vec<String> {
    read(key)
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() > 20)
        .map(String::from)
        .collect()
}

fn init(s: &Setup, vault: Value, auth: Value) -> (bool, String, Harness) {
    let h = Harness::new();
    let mut cfg = config(&s.bao.addr(), auth, secrets());
    cfg["vault"] = vault;
    cfg["initDeadline"] = json!("2s");
    let (status, log, _) = h.init(&cfg, Duration::from_secs(20));
    (status.success(), log, h)
}

#[test]
fn cert_auth_over_mutual_tls_renders_and_logs_no_key() {
    let s = mk_setup();
    let client = s.clients.issue("web", "web", &[]);
    let h = Harness::new();
    let mut cfg = config(&s.bao.addr(), cert_auth(), secrets());
    cfg["vault"] = vault(&s.bao.tls_addr(), s.vault_ca.ca_cert(), Some(&client));
    cfg["paths"] = json!({ "tokenSink": h.sink() });
    let (status, log, _) = h.init(&cfg, Duration::from_secs(20));
    assert!(status.success(), "init failed: {log}");
    assert_eq!(
        read(&h.file("app.env")),
        format!("password={}\nusername=web\n", s.password)
    );
    let token = read(&h.sink());
    let mut secrets: Vec<String> = key_lines(&client.key);
    secrets.extend([s.password.clone(), token]);
    assert_no_leak(
        &log,
        &secrets.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert!(!log.contains("PRIVATE KEY"), "{log}");
}

#[test]
fn token_auth_over_mutual_tls_with_a_per_pod_ca_and_client_certificate() {
    let s = mk_setup();
    let client = s.clients.issue("web", "web", &[]);
    let token = s.bao.create_token(&["app"], None);
    let h = Harness::new();
    let (ok, log, h2) = init(
        &s,
        vault(&s.bao.tls_addr(), s.vault_ca.ca_cert(), Some(&client)),
        h.token_auth(&token),
    );
    assert!(ok, "init failed: {log}");
    assert!(read(&h2.file("app.env")).contains(&s.password));
    assert_no_leak(&log, &[&token, &s.password]);
}

#[test]
fn a_certificate_the_cert_role_does_not_trust_is_refused_by_the_login() {
    let s = mk_setup();
    // The listener accepts it (its CA is in the bundle), the role `web` does not.
    let outsider = s.outsiders.issue("outsider", "outsider", &[]);
    let (ok, log, h) = init(
        &s,
        vault(&s.bao.tls_addr(), s.vault_ca.ca_cert(), Some(&outsider)),
        cert_auth(),
    );
    assert!(!ok, "the login must fail: {log}");
    assert!(log.contains("cert login (auth/cert/login) failed"), "{log}");
    assert!(!h.file("app.env").exists());
    assert_no_leak(&log, &[&s.password]);
}

#[test]
fn a_wrong_ca_names_the_annotation_and_the_file() {
    let s = mk_setup();
    let client = s.clients.issue("web", "web", &[]);
    let wrong = TestPki::new("not-vaults-ca");
    let (ok, log, _) = init(
        &s,
        vault(&s.bao.tls_addr(), wrong.ca_cert(), Some(&client)),
        cert_auth(),
    );
    assert!(!ok, "init must fail: {log}");
    let want = format!(
        "the CA file {} (from annotation vaultlet.io/tls-ca-secret: Secret vault-ca, key ca.crt) \
         did not verify Vault's certificate",
        wrong.ca_cert().display()
    );
    assert!(log.contains(&want), "want {want:?} in:\n{log}");
}

#[test]
fn a_missing_client_certificate_says_which_annotation_to_set() {
    let s = mk_setup();
    let token = s.bao.create_token(&["app"], None);
    let h = Harness::new();
    let (ok, log, _) = init(
        &s,
        vault(&s.bao.tls_addr(), s.vault_ca.ca_cert(), None),
        h.token_auth(&token),
    );
    assert!(!ok, "init must fail: {log}");
    assert!(
        log.contains(
            "Vault requires a client certificate and none is configured; name a \
             kubernetes.io/tls Secret with vaultlet.io/tls-client-secret"
        ),
        "{log}"
    );
    assert_no_leak(&log, &[&token]);
}

#[test]
fn a_client_certificate_from_an_untrusted_ca_names_the_secret() {
    let s = mk_setup();
    let rogue_ca = TestPki::new("rogue-ca");
    let rogue = rogue_ca.issue("rogue", "web", &[]);
    let (ok, log, _) = init(
        &s,
        vault(&s.bao.tls_addr(), s.vault_ca.ca_cert(), Some(&rogue)),
        cert_auth(),
    );
    assert!(!ok, "init must fail: {log}");
    let want = format!(
        "Vault refused the client certificate {} (from annotation vaultlet.io/tls-client-secret: \
         Secret web-vault-client, keys tls.crt and tls.key)",
        rogue.cert.display()
    );
    assert!(log.contains(&want), "want {want:?} in:\n{log}");
    let lines = key_lines(&rogue.key);
    assert_no_leak(&log, &lines.iter().map(String::as_str).collect::<Vec<_>>());
}

/// The common name of the certificate the token's cert login used (cert auth's metadata).
fn login_common_name(bao: &OpenBao, token: &str) -> String {
    let resp = bao.try_api(Some(token), "GET", "auth/token/lookup-self", None);
    resp.body["data"]["meta"]["common_name"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_renewed_client_certificate_is_used_from_the_next_login() {
    let s = mk_setup();
    // Short tokens: the agent logs in again every few seconds.
    s.bao.write(
        "auth/cert/certs/web",
        json!({
            "certificate": s.clients.ca_pem(),
            "token_policies": ["app"],
            "token_ttl": "2s",
            "token_max_ttl": "3s",
        }),
    );
    let first = s.clients.issue("web-1", "web-1", &[]);
    let h = Harness::new();
    let (cert, key) = (h.dir.path().join("tls.crt"), h.dir.path().join("tls.key"));
    std::fs::copy(&first.cert, &cert).expect("copy cert");
    std::fs::copy(&first.key, &key).expect("copy key");
    let client = CertFiles {
        cert: cert.clone(),
        key: key.clone(),
    };
    let mut cfg = config(&s.bao.addr(), cert_auth(), secrets());
    cfg["vault"] = vault(&s.bao.tls_addr(), s.vault_ca.ca_cert(), Some(&client));
    cfg["paths"] = json!({ "tokenSink": h.sink() });
    let mut agent = h.run(&cfg);
    h.wait_ready(&mut agent, Duration::from_secs(15));
    assert_eq!(login_common_name(&s.bao, &read(&h.sink())), "web-1");

    // The Secret is renewed: both files replaced at once, as the kubelet swaps a Secret volume.
    let second = s.clients.issue("web-2", "web-2", &[]);
    let (tmp_cert, tmp_key) = (h.dir.path().join(".tls.crt"), h.dir.path().join(".tls.key"));
    std::fs::copy(&second.cert, &tmp_cert).expect("copy cert");
    std::fs::copy(&second.key, &tmp_key).expect("copy key");
    std::fs::rename(&tmp_key, &key).expect("rename key");
    std::fs::rename(&tmp_cert, &cert).expect("rename cert");
    vaultlet_testkit::wait_until(
        Duration::from_secs(20),
        "a login with the renewed certificate",
        || {
            agent.assert_running();
            login_common_name(&s.bao, &read(&h.sink())) == "web-2"
        },
    );
    let log = agent.log();
    assert!(
        log.contains("Vault TLS files changed; new connections use them"),
        "{log}"
    );
    let mut secrets = key_lines(&first.key);
    secrets.extend(key_lines(&second.key));
    secrets.push(s.password.clone());
    assert_no_leak(
        &log,
        &secrets.iter().map(String::as_str).collect::<Vec<_>>(),
    );
}
