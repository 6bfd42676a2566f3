//! End-to-end: consul-template secrets in classic mode: the sidecar adopts the init agent's
//! requests (no new issuance, no file rewritten), one database lease shared by two templates
//! is renewed, and a short-lived certificate is re-issued before expiry, key and certificate
//! together.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{Harness, assert_no_leak, config, read, wait_log};
use serde_json::{Value, json};
use vaultlet_testkit::{OpenBao, Postgres, wait_until};

const DB_USER: &str = "{{ with secret \"database/creds/app\" }}{{ .Data.username }}{{ end }}";
const DB_PASS: &str = "{{ with secret \"database/creds/app\" }}{{ .Data.password }}{{ end }}";
const CRT: &str = "{{ with pkiCert \"pki/issue/web\" \"common_name=app.example.test\" \"ttl=6s\" }}{{ .Cert }}{{ .CA }}{{ end }}";
/// A write whose path is computed at render time (adopted in classic mode all the same).
const COMPUTED: &str = "{{ with secret (printf \"pki/issue/%s\" \"web\") \"common_name=c.example.test\" }}{{ .Data.certificate }}{{ end }}";
const KEY: &str = "{{ with pkiCert \"pki/issue/web\" \"common_name=app.example.test\" \"ttl=6s\" }}{{ .Key }}{{ end }}";

fn lease_count(bao: &OpenBao, prefix: &str) -> usize {
    let list = bao.try_api(
        Some(bao.root_token()),
        "LIST",
        &format!("sys/leases/lookup/{prefix}"),
        None,
    );
    list.body["data"]["keys"].as_array().map_or(0, Vec::len)
}

fn issued(bao: &OpenBao) -> usize {
    bao.api("LIST", "pki/certs", None)
        .pointer("/data/keys")
        .and_then(Value::as_array)
        .map_or(0, Vec::len)
}

fn pubkey(args: &[&str], file: &Path) -> String {
    let out = Command::new("openssl")
        .args(args)
        .arg("-in")
        .arg(file)
        .output()
        .expect("run openssl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// True when the key file belongs to the (first) certificate of the certificate file.
fn pair_matches(crt: &Path, key: &Path) -> bool {
    let c = pubkey(&["x509", "-noout", "-pubkey"], crt);
    !c.is_empty() && c == pubkey(&["pkey", "-pubout"], key)
}

#[test]
fn classic_mode_shares_adopts_renews_and_reissues_together() {
    let pg = Postgres::start();
    let bao = OpenBao::dev();
    bao.enable_database_postgres(&pg, "app", "4s", "60s");
    bao.enable_pki("web", "example.test");
    let h = Harness::new();
    let secrets: Vec<Value> = [
        ("db-user", DB_USER),
        ("db-pass", DB_PASS),
        ("tls-crt", CRT),
        ("tls-key", KEY),
        ("computed", COMPUTED),
    ]
    .iter()
    .map(|(name, src)| {
        json!({ "name": name, "language": "consul-template", "template": src, "file": name })
    })
    .chain(["certificate", "private_key"].iter().map(|field| {
        // Handlebars secrets of the same write share one issuance as well.
        json!({ "name": format!("hb-{}", &field[..3]), "path": "pki/issue/web",
                "params": { "common_name": "hb.example.test", "ttl": "6s" },
                "template": format!("{{{{{field}}}}}"), "file": format!("hb-{}", &field[..3]) })
    }))
    .collect();
    let mut cfg = config(&bao.addr(), h.token_auth(bao.root_token()), json!(secrets));
    cfg["handoff"] = json!(true);
    let certs_before = issued(&bao);

    let (status, init_log, _) = h.init(&cfg, Duration::from_secs(20));
    assert!(status.success(), "{init_log}");
    let (user, pass) = (read(&h.file("db-user")), read(&h.file("db-pass")));
    assert!(
        user.starts_with("v-") && pass.len() >= 20,
        "shape of the creds"
    );
    assert!(pg.can_login(&user, &pass), "both files come from one lease");
    assert_eq!(lease_count(&bao, "database/creds/app/"), 1, "one lease");
    assert_eq!(
        issued(&bao) - certs_before,
        3,
        "one certificate per distinct request"
    );
    assert!(pair_matches(&h.file("tls-crt"), &h.file("tls-key")));
    assert!(pair_matches(&h.file("hb-cer"), &h.file("hb-pri")));
    let crt = read(&h.file("tls-crt"));
    let hb_crt = read(&h.file("hb-cer"));

    let mut agent = h.run(&cfg);
    wait_log(
        &mut agent,
        "adopted the init agent's leases and data",
        Duration::from_secs(10),
    );
    wait_log(&mut agent, "lease renewed", Duration::from_secs(10));
    let log = agent.log();
    assert_eq!(log.matches("file written").count(), 0, "{log}");
    assert_eq!(
        lease_count(&bao, "database/creds/app/"),
        1,
        "still one lease"
    );
    assert_eq!(read(&h.file("db-user")), user, "renewed, not fetched anew");

    // The 6 s certificate is re-issued at about 2/3 of its life: once, both files.
    wait_until(Duration::from_secs(10), "certificate re-issued", || {
        agent.assert_running();
        read(&h.file("tls-crt")) != crt && read(&h.file("hb-cer")) != hb_crt
    });
    wait_until(Duration::from_secs(2), "key and certificate match", || {
        pair_matches(&h.file("tls-crt"), &h.file("tls-key"))
            && pair_matches(&h.file("hb-cer"), &h.file("hb-pri"))
    });
    assert_eq!(
        issued(&bao) - certs_before,
        5,
        "one issuance per renewal, not per render or interval; the computed one adopted"
    );
    let log = agent.log();
    assert_no_leak(&log, &[user.as_str(), pass.as_str()]);
    assert_no_leak(&init_log, &[user.as_str(), pass.as_str()]);
}
