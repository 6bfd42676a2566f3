//! `vaultlet-injector preview` as a user runs it: files, stdin, `--patch`, settings flags,
//! and denials with the webhook's message.

use std::io::Write;
use std::process::{Command, Output, Stdio};

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web, vaultlet.io/inject: "true"}
      annotations:
        vaultlet.io/role: web
        vaultlet.io/secret-db: database/creds/web
    spec:
      containers:
        - name: web
          image: nginx:1.27
"#;

fn preview(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vaultlet-injector"))
        .arg("preview")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn preview");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("preview output")
}

fn stdout(o: &Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout.clone()).expect("utf-8")
}

#[test]
fn deployment_from_stdin_and_file() {
    let out = stdout(&preview(&[], DEPLOYMENT));
    assert!(out.contains("kind: Deployment"), "{out}");
    assert!(out.contains("name: vaultlet-agent"), "{out}");
    assert!(out.contains("restartPolicy: Always"), "{out}");

    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("deploy.yaml");
    std::fs::write(&file, DEPLOYMENT).expect("write");
    let path = file.to_str().expect("path");
    let classic = stdout(&preview(&["-f", path, "--native-sidecars", "false"], ""));
    assert!(classic.contains("name: vaultlet-agent-init"), "{classic}");

    let patch = stdout(&preview(&["-f", path, "--patch"], ""));
    let ops: serde_json::Value = serde_json::from_str(&patch).expect("patch is JSON");
    let paths: Vec<&str> = ops
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|op| op["path"].as_str())
        .collect();
    assert!(
        paths.contains(&"/spec/template/metadata/annotations/vaultlet.io~1status"),
        "{paths:?}"
    );
}

#[test]
fn denial_matches_the_webhook_message() {
    let bad = DEPLOYMENT.replace(
        "vaultlet.io/role: web",
        "vaultlet.io/role: web\n        vaultlet.io/vault-addr: https://elsewhere.example:8200",
    );
    let out = preview(&[], &bad);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("vaultlet: annotation vaultlet.io/vault-addr: value \"https://elsewhere.example:8200\" is invalid"),
        "{stderr}"
    );
    // Allowed once the operator lists it.
    let ok = preview(
        &["--allowed-vault-addrs", "https://elsewhere.example:8200"],
        &bad,
    );
    assert!(stdout(&ok).contains("elsewhere.example"));
}
