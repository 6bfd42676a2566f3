//! End-to-end: the token, the login body and the secret-id go only to Vault. A redirect to
//! another origin is refused (naming its host), one to a listed Vault node is followed, and
//! an answer without end is cut off with a clear error.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Harness, app_env, config, read};
use serde_json::json;
use vaultlet_testkit::{Answer, HostileServer, OpenBao, RawHandler, Request};

/// A server that answers every request with a 307 to the same path on `target`.
fn redirector(target: String) -> HostileServer {
    let handler: Arc<RawHandler> =
        Arc::new(move |req: &Request| Answer::redirect(307, &format!("{target}{}", req.path)));
    HostileServer::start("redirector", handler)
}

/// A server that pretends to be Vault and would accept any login or read.
fn thief() -> HostileServer {
    let handler: Arc<RawHandler> = Arc::new(|_: &Request| {
        Answer::json(
            200,
            r#"{"auth":{"client_token":"stolen","lease_duration":3600,"renewable":true},"data":{"data":{"k":"v"},"metadata":{"version":1,"created_time":"x"}}}"#,
        )
    });
    HostileServer::start("thief", handler)
}

/// Panics when any request at `thief` carried a token or `needle` in its body.
fn assert_nothing_reached(thief: &HostileServer, needle: &str) {
    for req in thief.requests() {
        assert!(
            req.header("x-vault-token").is_none(),
            "the token reached another host: {} {}",
            req.method,
            req.path
        );
        assert!(
            !String::from_utf8_lossy(&req.body).contains(needle),
            "the credential reached another host: {} {}",
            req.method,
            req.path
        );
    }
}

#[test]
fn login_is_not_redirected_to_another_host() {
    let h = Harness::new();
    let thief = thief();
    let front = redirector(thief.url());
    let cfg = json!({
        "version": 1,
        "vault": { "address": front.url() },
        "auth": h.approle_auth("role-canary-1", "secret-id-canary-2", false),
        "secrets": [{ "name": "app", "path": "secret/data/app", "file": "app.env" }],
        "initDeadline": "2s",
    });
    let (status, log, _) = h.init(&cfg, Duration::from_secs(30));
    assert_nothing_reached(&thief, "secret-id-canary-2");
    assert_eq!(status.code(), Some(1), "{log}");
    let refused = format!(
        "Vault redirected to {:?}, which is not vault.address nor one of vault.redirectAddresses",
        thief.addr().to_string()
    );
    assert!(log.contains(&refused), "{log}");
    assert!(!log.contains("secret-id-canary-2"), "{log}");
}

#[test]
fn token_is_not_redirected_to_another_host() {
    let h = Harness::new();
    let thief = thief();
    let front = redirector(thief.url());
    let cfg = config(
        &front.url(),
        h.token_auth("hvs.token-canary-3"),
        json!([{ "name": "app", "path": "secret/data/app", "file": "app.env" }]),
    );
    let mut cfg = cfg;
    cfg["initDeadline"] = json!("2s");
    let (status, log, _) = h.init(&cfg, Duration::from_secs(30));
    assert_nothing_reached(&thief, "token-canary-3");
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(!log.contains("token-canary-3"), "{log}");
    assert!(!h.file("app.env").exists());
}

#[test]
fn redirect_to_a_listed_vault_node_is_followed() {
    let bao = OpenBao::dev();
    let h = Harness::new();
    let (_, mut cfg) = app_env(&bao, &h, &[("user", "app")]);
    // The front node redirects to the active node, as a Vault standby does.
    let front = redirector(bao.addr());
    cfg["vault"] = json!({ "address": front.url(), "redirectAddresses": [bao.addr()] });
    let (status, log, _) = h.init(&cfg, Duration::from_secs(30));
    assert!(status.success(), "{log}");
    assert_eq!(read(&h.file("app.env")), "user=app\n");
    assert!(!front.requests().is_empty());

    // Without the listing the same redirect is an error naming the node's host.
    let h = Harness::new();
    let (_, mut cfg) = app_env(&bao, &h, &[("user", "app")]);
    cfg["vault"] = json!({ "address": front.url() });
    cfg["initDeadline"] = json!("2s");
    let (status, log, _) = h.init(&cfg, Duration::from_secs(30));
    assert_eq!(status.code(), Some(1), "{log}");
    let host = bao.addr().trim_start_matches("http://").to_owned();
    assert!(
        log.contains(&format!("Vault redirected to {host:?}")),
        "{log}"
    );
}

#[test]
fn an_endless_answer_is_cut_off() {
    for content_length in [None, Some(10u64 << 30)] {
        let handler: Arc<RawHandler> =
            Arc::new(move |_: &Request| Answer::Endless { content_length });
        let endless = HostileServer::start("endless", handler);
        let h = Harness::new();
        let mut cfg = config(
            &endless.url(),
            h.token_auth("hvs.whatever"),
            json!([{ "name": "app", "path": "secret/data/app", "file": "app.env" }]),
        );
        cfg["initDeadline"] = json!("1s");
        let (status, log, took) = h.init(&cfg, Duration::from_secs(30));
        assert_eq!(status.code(), Some(1), "{log}");
        assert!(
            log.contains("Vault's answer is larger than 4 MiB"),
            "{content_length:?}: {log}"
        );
        assert!(took < Duration::from_secs(8), "{took:?}");
    }
}
