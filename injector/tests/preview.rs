//! `vaultlet-injector preview` as a user runs it: files, stdin, `--patch`, settings flags,
//! and denials with the webhook's message.

mod common;

use std::process::Output;

use common::run_cli;

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
    run_cli("preview", args, stdin)
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

/// The message the webhook denies the Deployment's Pod with, from a real AdmissionReview.
fn webhook_denial(workload_yaml: &str) -> String {
    let workload: serde_json::Value = serde_saphyr::from_str(workload_yaml).expect("yaml");
    let review = serde_json::json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "1", "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "default", "operation": "CREATE", "userInfo": {},
            "object": workload["spec"]["template"], "dryRun": false
        }
    });
    let body = serde_json::to_vec(&review).expect("json");
    let settings = vaultlet_injector::settings::Settings::defaults();
    let reviewed = vaultlet_injector::review::review(&body, &settings).expect("reviewed");
    let resp: serde_json::Value = serde_json::from_slice(&reviewed.body).expect("response");
    assert_eq!(resp["response"]["allowed"], false, "{resp}");
    resp["response"]["status"]["message"]
        .as_str()
        .expect("message")
        .to_owned()
}

fn stderr_of(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).expect("utf-8")
}

#[test]
fn denials_are_printed_once_exactly_as_the_webhook_denies() {
    let cases = [
        "vaultlet.io/vault-addr: https://elsewhere.example:8200",
        "vaultlet.io/secrt-db: kv/data/x",
        "vaultlet.io/perms-db: \"999\"",
        "vaultlet.io/template-nope: \"{{x}}\"",
    ];
    for line in cases {
        let bad = DEPLOYMENT.replace(
            "vaultlet.io/role: web",
            &format!("vaultlet.io/role: web\n        {line}"),
        );
        let out = preview(&[], &bad);
        assert_eq!(out.status.code(), Some(1), "{line}");
        assert!(out.stdout.is_empty(), "{line}");
        let want = webhook_denial(&bad);
        assert!(want.starts_with("vaultlet: "), "{want}");
        assert_eq!(stderr_of(&out), format!("error: {want}\n"), "{line}");
    }
    // The typo gets a suggestion.
    let bad = DEPLOYMENT.replace(
        "vaultlet.io/role: web",
        "vaultlet.io/role: web\n        vaultlet.io/secrt-db: kv/data/x",
    );
    assert_eq!(
        stderr_of(&preview(&[], &bad)),
        "error: vaultlet: annotation vaultlet.io/secrt-db is not a known vaultlet.io annotation; \
         did you mean vaultlet.io/secret-db? See docs/annotations.md for the list\n"
    );
}

#[test]
fn unchanged_pods_say_why_and_empty_input_says_so() {
    let annotation_only = DEPLOYMENT
        .replace(", vaultlet.io/inject: \"true\"", "")
        .replace(
            "vaultlet.io/role: web",
            "vaultlet.io/role: web\n        vaultlet.io/inject: \"true\"",
        );
    let opted_out = DEPLOYMENT.replace(
        "vaultlet.io/role: web",
        "vaultlet.io/role: web\n        vaultlet.io/inject: \"false\"",
    );
    let no_label = DEPLOYMENT.replace(", vaultlet.io/inject: \"true\"", "");
    let injected = stdout(&preview(&[], DEPLOYMENT));
    for (what, input, why) in [
        (
            "annotation only",
            annotation_only.as_str(),
            "vaultlet.io/inject is an annotation, not a label; the webhook only sees Pods \
             labelled vaultlet.io/inject: \"true\", so move it to metadata.labels",
        ),
        (
            "opted out",
            opted_out.as_str(),
            "the annotation vaultlet.io/inject: \"false\" opts it out",
        ),
        (
            "no label",
            no_label.as_str(),
            "the Pod (or pod template) has no label vaultlet.io/inject: \"true\"; only labelled Pods are injected",
        ),
        (
            "already injected",
            injected.as_str(),
            "it is already injected (annotation vaultlet.io/status)",
        ),
    ] {
        let out = preview(&[], input);
        assert!(out.status.success(), "{what}: {}", stderr_of(&out));
        assert_eq!(
            stderr_of(&out),
            format!("note: left unchanged: {why}\n"),
            "{what}"
        );
        assert!(!stdout(&out).contains("vaultlet-agent") || what == "already injected");
    }
    for empty in ["", "\n\n", "---\n"] {
        let out = preview(&[], empty);
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(
            stderr_of(&out),
            "error: the input is empty; give one Pod, Deployment, StatefulSet, DaemonSet, \
             ReplicaSet, Job or CronJob as YAML or JSON (-f FILE, or on stdin)\n"
        );
    }
}

#[test]
fn durations_take_one_syntax() {
    let out = stdout(&preview(&["--sa-token-expiration", "2h"], DEPLOYMENT));
    assert!(out.contains("expirationSeconds: 7200"), "{out}");
    let out = preview(&["--sa-token-expiration", "5m"], DEPLOYMENT);
    assert_eq!(
        stderr_of(&out),
        "error: --sa-token-expiration: must be at least 10m (Kubernetes needs 600 seconds)\n"
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

#[test]
fn the_openshift_sample_leaves_ids_to_the_platform() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../samples/openshift/deployment.yaml"
    );
    let out = preview(&["-f", path], "");
    assert_eq!(stderr_of(&out), "", "no warning, no note");
    let mutated: serde_json::Value =
        serde_saphyr::from_str(&stdout(&out)).expect("preview is YAML");
    let spec = &mutated["spec"]["template"]["spec"];
    let agent = &spec["initContainers"][0];
    assert_eq!(agent["name"], "vaultlet-agent");
    let sc = &agent["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true, "{sc}");
    assert!(
        sc.get("runAsUser").is_none() && sc.get("runAsGroup").is_none(),
        "{sc}"
    );
}

#[test]
fn the_readme_preview_examples_run_the_built_binary() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).expect("README.md");
    // `cargo run -p` resolves features for one package and rebuilds after scripts/test.sh.
    assert!(
        !readme.lines().any(|l| l.starts_with("cargo run")),
        "README.md shows `cargo run`; point at target/debug/vaultlet-injector instead"
    );
    let examples: Vec<&str> = readme
        .lines()
        .filter_map(|l| l.strip_prefix("target/debug/vaultlet-injector preview "))
        .collect();
    assert!(examples.len() >= 2, "{examples:?}");
    for example in examples {
        let args: Vec<String> = example
            .split('#')
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .map(|a| {
                if a.starts_with("samples/") {
                    format!("{root}/{a}")
                } else {
                    a.to_owned()
                }
            })
            .collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = preview(&args, "");
        assert!(stdout(&out).contains("vaultlet"), "{example}");
    }
}

/// Every sample as `scripts/validate-samples.sh` previews it (default flags, no injector.args
/// in any sample today) and as the node tests run it in the local cluster: the Pod picks the
/// bridge address of the tests' OpenBao, plain HTTP, or https with its own CA for cert-auth,
/// which the chart install allows with `injector.allowedVaultAddrs` and
/// `injector.podTlsVaultAddrs` (`VAULTLET_POD_TLS_VAULT_ADDRS`).
#[test]
fn every_sample_is_admitted_by_default_and_as_the_cluster_runs_it() {
    let gw = "10.88.0.1";
    let (http, https) = (format!("http://{gw}:8200"), format!("https://{gw}:8200"));
    let allowed = format!("{http},{https}");
    let samples = concat!(env!("CARGO_MANIFEST_DIR"), "/../samples");
    let mut seen = 0;
    for entry in std::fs::read_dir(samples).expect("samples/") {
        let pod = entry.expect("entry").path().join("pod.yaml");
        let Ok(text) = std::fs::read_to_string(&pod) else {
            continue;
        };
        seen += 1;
        stdout(&preview(&["-f", "-"], &text));
        let addr = if text.contains("vaultlet.io/tls-") {
            &https
        } else {
            &http
        };
        let annotated = text.replacen(
            "\n  annotations:\n",
            &format!("\n  annotations:\n    vaultlet.io/vault-addr: {addr}\n"),
            1,
        );
        assert_ne!(annotated, text, "{}", pod.display());
        let out = preview(
            &[
                "-f",
                "-",
                "--allowed-vault-addrs",
                &allowed,
                "--pod-tls-vault-addrs",
                &https,
            ],
            &annotated,
        );
        assert!(
            out.status.success(),
            "{}: {}",
            pod.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(seen >= 10, "only {seen} samples found");
}
