//! `vaultlet-injector convert` as a user runs it: samples to their expected output, plain
//! objects unchanged, refusals by message and exit status, `--check`, and every converted
//! workload admitted by `preview`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::run_cli;

use serde_json::Value;

fn run(sub: &str, args: &[&str], stdin: &str) -> Output {
    run_cli(sub, args, stdin)
}

fn text(b: &[u8]) -> String {
    String::from_utf8(b.to_vec()).expect("utf-8")
}

fn docs(yaml: &str) -> Vec<Value> {
    let all: Vec<Value> = serde_saphyr::from_multiple(yaml).expect("YAML");
    all.into_iter().filter(|d| !d.is_null()).collect()
}

fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/from-vault-k8s")
}

fn sample_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(samples())
        .expect("samples dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

/// Every workload of an object (a List's items).
fn workloads(v: &Value) -> Vec<Value> {
    match v.get("items").and_then(Value::as_array) {
        Some(items) if v["kind"].as_str().is_some_and(|k| k.ends_with("List")) => items.clone(),
        _ => vec![v.clone()],
    }
}

#[test]
fn samples_convert_to_their_expected_output_and_are_admitted() {
    let files = sample_files();
    assert!(files.len() >= 15, "{files:?}");
    for f in files {
        let name = f.file_name().expect("name").to_string_lossy().into_owned();
        let o = run("convert", &["-f", f.to_str().expect("path")], "");
        assert!(o.status.success(), "{name}: {}", text(&o.stderr));
        let expected = std::fs::read_to_string(samples().join("expected").join(&name))
            .expect("expected output");
        let got = docs(&text(&o.stdout));
        assert_eq!(got, docs(&expected), "{name}");
        let has_template = |w: &Value| w["kind"] != "Service";
        for w in got.iter().flat_map(workloads).filter(has_template) {
            let p = run("preview", &[], &serde_json::to_string(&w).expect("json"));
            assert!(p.status.success(), "{name}: preview: {}", text(&p.stderr));
        }
    }
}

#[test]
fn a_directory_and_stdin_give_the_same_documents() {
    let dir = run("convert", &["-f", samples().to_str().expect("path")], "");
    assert!(dir.status.success(), "{}", text(&dir.stderr));
    let mut all = String::new();
    for f in sample_files() {
        all.push_str("---\n");
        all.push_str(&std::fs::read_to_string(f).expect("read"));
    }
    let stdin = run("convert", &[], &all);
    assert!(stdin.status.success(), "{}", text(&stdin.stderr));
    assert_eq!(docs(&text(&dir.stdout)), docs(&text(&stdin.stdout)));
    // Multi-document input: the documents of every expected output, in order.
    let mut expected = Vec::new();
    for f in sample_files() {
        let name = f.file_name().expect("name").to_owned();
        let e = std::fs::read_to_string(samples().join("expected").join(name)).expect("read");
        expected.extend(docs(&e));
    }
    assert_eq!(docs(&text(&stdin.stdout)), expected);
    let stderr = text(&dir.stderr);
    assert!(
        stderr.ends_with("15 workload(s) converted, 0 refused\n"),
        "{stderr}"
    );
}

const PLAIN: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {a: "1", b: "yes"}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata:
      labels: {app: web}
      annotations: {prometheus.io/scrape: "true"}
    spec:
      containers: [{name: web, image: "nginx:1.27"}]
"#;

#[test]
fn objects_without_vault_k8s_annotations_are_unchanged() {
    let o = run("convert", &[], PLAIN);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(docs(&text(&o.stdout)), docs(PLAIN));
    assert_eq!(text(&o.stderr), "0 workload(s) converted, 0 refused\n");
}

const REFUSED: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: cached, namespace: shop}
spec:
  selector: {matchLabels: {app: cached}}
  template:
    metadata:
      labels: {app: cached}
      annotations:
        vault.hashicorp.com/agent-inject: "true"
        vault.hashicorp.com/role: cached
        vault.hashicorp.com/agent-cache-enable: "true"
        vault.hashicorp.com/agent-inject-secret-a: secret/data/a
        vault.hashicorp.com/agent-inject-command-a: /usr/local/bin/reload.sh
    spec:
      containers: [{name: app, image: "app:1"}]
---
apiVersion: batch/v1
kind: Job
metadata: {name: token}
spec:
  template:
    metadata:
      annotations:
        vault.hashicorp.com/agent-inject: "true"
        vault.hashicorp.com/agent-inject-token: "true"
        vault.hashicorp.com/agent-configmap: agent-config
        vault.hashicorp.com/agent-inject-template-x: '{{ env "HOME" }}'
    spec:
      restartPolicy: Never
      containers: [{name: app, image: "app:1"}]
"#;

#[test]
fn refusals_leave_the_workload_unchanged_name_it_and_fail() {
    let o = run("convert", &[], REFUSED);
    assert!(!o.status.success());
    assert_eq!(docs(&text(&o.stdout)), docs(REFUSED));
    let stderr = text(&o.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines,
        [
            "Deployment/shop/cached: refused, left unchanged: vault.hashicorp.com/agent-inject-command-a \"/usr/local/bin/reload.sh\": a shell command run after rendering cannot be converted faithfully; vaultlet converts only `kill -<SIGNAL> $(pidof <process>)`, `pkill -<SIGNAL> <process>` and `killall -<SIGNAL> <process>`; use vaultlet.io/notify-<name> with signal:, http:// or exec: (exec needs --allow-exec-notify and an agent image holding the command)",
            "Deployment/shop/cached: refused, left unchanged: vault.hashicorp.com/agent-cache-enable \"true\": the agent cache (a Vault proxy for the app on localhost) cannot be converted faithfully; vaultlet has no Vault proxy: have the app read rendered files instead, then remove the annotation",
            "Job/token: refused, left unchanged: vault.hashicorp.com/agent-configmap \"agent-config\": a Vault Agent configuration from a ConfigMap cannot be converted faithfully; move each template into agent-inject-template-<name> annotations and auth settings into annotations, then convert again",
            "Job/token: refused, left unchanged: vault.hashicorp.com/agent-inject-token \"true\": the agent's token written into the app's volume cannot be converted faithfully; vaultlet keeps its token out of the app's volume: give the app its own Vault login, or render what it needs with a template",
            "0 workload(s) converted, 2 refused",
            "error: 2 workload(s) refused and left unchanged; fix what the report says and convert again",
        ]
    );
}

#[test]
fn a_refused_template_function_is_named() {
    let input = r#"
apiVersion: v1
kind: Pod
metadata:
  name: p
  annotations:
    vault.hashicorp.com/agent-inject: "true"
    vault.hashicorp.com/agent-inject-template-x: '{{ env "HOME" }}'
spec:
  containers: [{name: app, image: "app:1"}]
"#;
    let o = run("convert", &[], input);
    assert!(!o.status.success());
    let stderr = text(&o.stderr);
    assert!(
        stderr.starts_with("Pod/p: refused, left unchanged: vault.hashicorp.com/agent-inject-template-x \"{{ env \\\"HOME\\\" }}\": a value vaultlet does not accept (annotation vaultlet.io/template-x: value (template body not shown) is invalid: template:1:4: function \"env\" is not supported by vaultlet"),
        "{stderr}"
    );
}

#[test]
fn check_prints_the_report_and_no_manifests() {
    let f = samples().join("04-pki-cert.yaml");
    let o = run("convert", &["--check", "-f", f.to_str().expect("path")], "");
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(o.stdout.is_empty());
    let stderr = text(&o.stderr);
    assert!(
        stderr.starts_with("Deployment/edge: converted\n"),
        "{stderr}"
    );
    assert!(
        stderr.contains("  vault.hashicorp.com/agent-inject-command-tls.key -> vaultlet.io/notify-tls-key: \"signal:SIGHUP:nginx\"\n"),
        "{stderr}"
    );
    let o = run("convert", &["--check"], REFUSED);
    assert!(!o.status.success());
    assert!(o.stdout.is_empty());
}

#[test]
fn json_input_is_read() {
    let v = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "annotations": {
            "openbao.org/agent-inject": "true",
            "openbao.org/role": "app",
            "openbao.org/agent-inject-secret-db": "secret/data/db"}},
        "spec": {"containers": [{"name": "app", "image": "app:1"}]}
    });
    let o = run("convert", &[], &v.to_string());
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = docs(&text(&o.stdout));
    assert_eq!(out[0]["metadata"]["labels"]["vaultlet.io/inject"], "true");
    assert_eq!(out[0]["metadata"]["annotations"]["vaultlet.io/role"], "app");
}

#[test]
fn live_pods_of_a_controller_point_to_their_workload() {
    let input = r#"
apiVersion: v1
kind: Pod
metadata:
  name: web-7d9f-abcde
  namespace: shop
  ownerReferences:
    - {apiVersion: apps/v1, kind: ReplicaSet, name: web-7d9f, uid: "1", controller: true}
  annotations:
    vault.hashicorp.com/agent-inject: "true"
    vault.hashicorp.com/agent-inject-status: injected
spec:
  containers: [{name: app, image: "app:1"}]
"#;
    let o = run("convert", &["--check"], input);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(
        text(&o.stderr),
        "Pod/shop/web-7d9f-abcde: left unchanged: a Pod of ReplicaSet/web-7d9f; convert that workload instead\n0 workload(s) converted, 0 refused\n"
    );
}

#[test]
fn the_injector_wide_json_default_template() {
    let input = r#"
apiVersion: v1
kind: Pod
metadata:
  name: p
  annotations:
    vault.hashicorp.com/agent-inject: "true"
    vault.hashicorp.com/agent-inject-secret-cfg: secret/data/cfg
spec:
  containers: [{name: app, image: "app:1"}]
"#;
    let o = run("convert", &["--default-template", "json"], input);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = docs(&text(&o.stdout));
    assert_eq!(
        out[0]["metadata"]["annotations"]["vaultlet.io/template-cfg"],
        "{{ with secret \"secret/data/cfg\" }}{{ .Data | toJSON }}\n{{ end }}"
    );
}
