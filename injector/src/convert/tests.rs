//! Unit tests of the vault-k8s -> vaultlet mapping, one annotation family each.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::*;

fn mk(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut m: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (format!("vault.hashicorp.com/{k}"), (*v).to_owned()))
        .collect();
    m.insert("vault.hashicorp.com/agent-inject".into(), "true".into());
    m
}

fn converted(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    conv_spec(pairs, &Value::Null)
}

fn conv_spec(pairs: &[(&str, &str)], spec: &Value) -> BTreeMap<String, String> {
    match pod_template(&mk(pairs), &BTreeMap::new(), spec) {
        Outcome::Converted(c) => c.annotations,
        other => panic!("expected a conversion, got {other:?}"),
    }
}

fn refused(pairs: &[(&str, &str)]) -> String {
    match pod_template(&mk(pairs), &BTreeMap::new(), &Value::Null) {
        Outcome::Refused(r) => r
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n"),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn a(m: &BTreeMap<String, String>, k: &str) -> Option<String> {
    m.get(&format!("vaultlet.io/{k}")).cloned()
}

#[test]
fn default_map_template_lowercases_the_name_and_keeps_consul_templates_mode() {
    let m = converted(&[
        ("role", "app"),
        ("agent-inject-secret-DB", "secret/data/db"),
    ]);
    assert_eq!(
        a(&m, "template-language").as_deref(),
        Some("consul-template")
    );
    assert_eq!(
        a(&m, "template-db").as_deref(),
        Some(
            "{{ with secret \"secret/data/db\" }}{{ range $k, $v := .Data }}{{ $k }}: {{ $v }}\n{{ end }}{{ end }}"
        )
    );
    assert_eq!(a(&m, "perms-db").as_deref(), Some("0644"));
    assert_eq!(a(&m, "file-db"), None);
    assert_eq!(a(&m, "role").as_deref(), Some("app"));
    assert!(!m.keys().any(|k| k.starts_with("vault.hashicorp.com/")));
}

#[test]
fn json_default_template() {
    let m = converted(&[
        ("agent-inject-secret-cfg", "secret/data/cfg"),
        ("agent-inject-default-template", "json"),
    ]);
    assert_eq!(
        a(&m, "template-cfg").as_deref(),
        Some("{{ with secret \"secret/data/cfg\" }}{{ .Data | toJSON }}\n{{ end }}")
    );
}

#[test]
fn preserved_case_and_dots_keep_the_file_name() {
    let m = converted(&[
        ("agent-inject-secret-App.Properties", "secret/data/app"),
        ("preserve-secret-case", "true"),
    ]);
    assert_eq!(
        a(&m, "file-app-properties").as_deref(),
        Some("App.Properties")
    );
}

#[test]
fn a_template_alone_declares_a_secret() {
    let t = "{{ with secret \"database/creds/app\" }}{{ .Data.username }}{{ end }}";
    let m = converted(&[("agent-inject-template-db.env", t)]);
    assert_eq!(a(&m, "template-db-env").as_deref(), Some(t));
    assert_eq!(a(&m, "file-db-env").as_deref(), Some("db.env"));
}

#[test]
fn file_paths_join_the_volume_path() {
    let m = converted(&[
        ("agent-inject-secret-a", "secret/data/a"),
        ("agent-inject-file-a", "/conf/app.conf"),
        ("secret-volume-path", "/etc/secrets/"),
        ("agent-inject-perms-a", "0400"),
    ]);
    assert_eq!(a(&m, "file-a").as_deref(), Some("conf/app.conf"));
    assert_eq!(a(&m, "secrets-dir").as_deref(), Some("/etc/secrets"));
    assert_eq!(a(&m, "perms-a").as_deref(), Some("0400"));
}

#[test]
fn two_volume_paths_are_refused() {
    assert_eq!(
        refused(&[
            ("agent-inject-secret-a", "secret/data/a"),
            ("agent-inject-secret-b", "secret/data/b"),
            ("secret-volume-path-b", "/other"),
        ]),
        "vault.hashicorp.com/secret-volume-path-b \"/other\": a second mount path for secrets (another secret uses \"/vault/secrets\") cannot be converted faithfully; vaultlet mounts all secrets in one directory: use agent-inject-file-<name> with subdirectories under one secret-volume-path"
    );
}

#[test]
fn commands_become_signals_or_are_refused() {
    let m = converted(&[
        ("agent-inject-secret-tls", "pki/issue/web common_name=a"),
        ("agent-inject-command-tls", "kill -HUP $(pidof nginx)"),
    ]);
    assert_eq!(a(&m, "notify-tls").as_deref(), Some("signal:SIGHUP:nginx"));
    assert_eq!(
        rules::signal_command("pkill -USR1 app").as_deref(),
        Some("signal:SIGUSR1:app")
    );
    assert_eq!(rules::signal_command("sh -c 'reload'"), None);
    assert_eq!(
        rules::signal_command("kill -s TERM $(pidof gunicorn)").as_deref(),
        Some("signal:SIGTERM:gunicorn")
    );
    assert_eq!(rules::signal_command("kill -9 $(pidof app)"), None);
    assert_eq!(
        rules::signal_command("kill -HUP $(pidof nginx) && echo ok"),
        None
    );
    assert!(
        refused(&[
            ("agent-inject-secret-a", "secret/data/a"),
            ("agent-inject-command-a", "/bin/reload.sh"),
        ])
        .starts_with("vault.hashicorp.com/agent-inject-command-a \"/bin/reload.sh\": a shell command run after rendering cannot be converted faithfully;")
    );
}

#[test]
fn modes_and_init_order() {
    let m = converted(&[("agent-pre-populate-only", "true")]);
    assert_eq!(a(&m, "mode").as_deref(), Some("init-only"));
    let m = converted(&[("agent-pre-populate", "false")]);
    assert_eq!(a(&m, "mode").as_deref(), Some("sidecar"));
    let spec = json!({"initContainers": [{"name": "migrate", "image": "x"}]});
    assert_eq!(
        a(&conv_spec(&[], &spec), "init-position").as_deref(),
        Some("last")
    );
    let m = conv_spec(&[("agent-init-first", "true")], &spec);
    assert_eq!(a(&m, "init-position").as_deref(), Some("first"));
}

#[test]
fn auth_vault_and_resources() {
    let m = converted(&[
        ("auth-type", "kubernetes"),
        ("auth-path", "auth/k8s-east"),
        ("namespace", "team-a"),
        ("service", "https://vault.vault.svc:8200"),
        ("agent-limits-cpu", "250m"),
        ("agent-requests-mem", "32Mi"),
        ("log-format", "standard"),
        ("agent-image", "hashicorp/vault:1.18"),
    ]);
    assert_eq!(a(&m, "auth").as_deref(), Some("kubernetes"));
    assert_eq!(a(&m, "auth-path").as_deref(), Some("k8s-east"));
    assert_eq!(a(&m, "vault-namespace").as_deref(), Some("team-a"));
    assert_eq!(
        a(&m, "vault-addr").as_deref(),
        Some("https://vault.vault.svc:8200")
    );
    assert_eq!(a(&m, "cpu-limit").as_deref(), Some("250m"));
    assert_eq!(a(&m, "memory-request").as_deref(), Some("32Mi"));
    assert_eq!(a(&m, "log-format").as_deref(), Some("text"));
}

#[test]
fn tls_secret_files() {
    let m = converted(&[
        ("tls-secret", "vault-tls"),
        ("ca-cert", "/vault/tls/ca.crt"),
        ("service", "https://vault.vault.svc:8200"),
    ]);
    assert_eq!(a(&m, "tls-ca-secret").as_deref(), Some("vault-tls"));
    assert_eq!(
        refused(&[("ca-cert", "/etc/ssl/vault.pem")]),
        "vault.hashicorp.com/ca-cert \"/etc/ssl/vault.pem\": a file of the agent container image cannot be converted faithfully; put the certificate in a Secret: vaultlet.io/tls-ca-secret (key ca.crt) or tls-client-secret (a kubernetes.io/tls Secret)"
    );
}

#[test]
fn refusals_name_annotation_construct_and_fix() {
    assert_eq!(
        refused(&[("agent-inject-token", "true")]),
        "vault.hashicorp.com/agent-inject-token \"true\": the agent's token written into the app's volume cannot be converted faithfully; vaultlet keeps its token out of the app's volume: give the app its own Vault login, or render what it needs with a template"
    );
    assert_eq!(
        refused(&[("agent-inject-status", "injected")]),
        "vault.hashicorp.com/agent-inject-status \"injected\": a Pod vault-k8s already injected cannot be converted faithfully; convert the workload's manifest (its pod template), not a running Pod"
    );
    for (k, v) in [
        ("agent-configmap", "cfg"),
        ("agent-cache-enable", "true"),
        ("tls-skip-verify", "true"),
        ("auth-config-role-id-file-path", "/x"),
        ("agent-json-patch", "[]"),
        ("agent-run-as-user", "100"),
        ("auth-type", "gcp"),
    ] {
        assert!(
            refused(&[(k, v)]).starts_with(&format!("vault.hashicorp.com/{k} ")),
            "{k}"
        );
    }
}

#[test]
fn refused_functions_are_refused_by_vaultlets_parser() {
    let r = refused(&[("agent-inject-template-x", "{{ env \"HOME\" }}")]);
    assert!(
        r.contains("function \"env\" is not supported by vaultlet"),
        "{r}"
    );
    assert!(
        r.starts_with("vault.hashicorp.com/agent-inject-template-x"),
        "{r}"
    );
}

#[test]
fn unknown_keys_pass_through_and_not_opted_in_is_untouched() {
    let m = converted(&[("agent-inject-secrt-typo", "x")]);
    assert_eq!(
        m.get("vault.hashicorp.com/agent-inject-secrt-typo")
            .map(String::as_str),
        Some("x")
    );
    let mut off = mk(&[]);
    off.insert("vault.hashicorp.com/agent-inject".into(), "false".into());
    assert_eq!(
        pod_template(&off, &BTreeMap::new(), &Value::Null),
        Outcome::NotOptedIn
    );
    let none = BTreeMap::from([("app".to_owned(), "x".to_owned())]);
    assert_eq!(
        pod_template(&none, &BTreeMap::new(), &Value::Null),
        Outcome::Untouched
    );
}

#[test]
fn openbao_prefix_is_accepted() {
    let m: BTreeMap<String, String> = [
        ("openbao.org/agent-inject", "true"),
        ("openbao.org/role", "app"),
        ("openbao.org/agent-inject-secret-db", "secret/data/db"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    let Outcome::Converted(c) = pod_template(&m, &BTreeMap::new(), &Value::Null) else {
        panic!("not converted");
    };
    assert_eq!(
        c.annotations.get("vaultlet.io/role").map(String::as_str),
        Some("app")
    );
    assert_eq!(
        c.labels.get("vaultlet.io/inject").map(String::as_str),
        Some("true")
    );
}

#[test]
fn both_prefixes_for_one_key_are_refused() {
    let mut m = mk(&[("role", "a")]);
    m.insert("openbao.org/role".into(), "b".into());
    match pod_template(&m, &BTreeMap::new(), &Value::Null) {
        Outcome::Refused(r) => assert_eq!(
            r[0].to_string(),
            "vault.hashicorp.com/role \"\": the same annotation under both vault.hashicorp.com/ and openbao.org/ cannot be converted faithfully; keep one of the two"
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn per_secret_volume_path_and_case_and_missing_key() {
    let m = converted(&[
        ("agent-inject-secret-A", "secret/data/a"),
        ("preserve-secret-case-A", "true"),
        ("secret-volume-path-A", "/srv/conf"),
        ("error-on-missing-key-A", "false"),
    ]);
    assert_eq!(a(&m, "file-a").as_deref(), Some("A"));
    assert_eq!(a(&m, "secrets-dir").as_deref(), Some("/srv/conf"));
    assert!(
        refused(&[
            ("agent-inject-secret-a", "secret/data/a"),
            ("error-on-missing-key-a", "true"),
        ])
        .starts_with("vault.hashicorp.com/error-on-missing-key-a \"true\": error_on_missing_key cannot be converted faithfully;")
    );
}

#[test]
fn dropped_keys_are_reported_not_kept() {
    let mut m = mk(&[("agent-revoke-grace", "5"), ("go-max-procs", "2")]);
    m.insert("team".into(), "x".into());
    let Outcome::Converted(c) = pod_template(&m, &BTreeMap::new(), &Value::Null) else {
        panic!("not converted");
    };
    assert_eq!(c.annotations.get("team").map(String::as_str), Some("x"));
    assert!(
        !c.annotations
            .keys()
            .any(|k| k.starts_with("vault.hashicorp.com/"))
    );
    assert!(
        c.report
            .iter()
            .any(|l| l.from == "vault.hashicorp.com/go-max-procs"
                && l.to == "dropped: Go runtime setting of Vault Agent")
    );
}
