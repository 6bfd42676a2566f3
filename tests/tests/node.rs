//! Injected Pods run by the local cluster's real node: kubelet, containerd and runc, images built
//! here (`scripts/images.sh`), Pod network on a bridge of the test run. The kubelet starts the
//! native sidecar and waits for its postStart hook before the app, mounts the projected token and the
//! memory-backed volume, and the Job controller decides when a Job is complete.
//!
//! The helpers are in `vaultlet_e2e::node`; the tests take turns for the Vault address for
//! Pods.

use std::sync::Mutex;

use serde_json::json;
use vaultlet_e2e::node::{
    NodeSample, WAIT, logs, node_sample, node_sample_with, pod_of, prepare, report_first_read,
    wait_log_line, wait_logs,
};
use vaultlet_e2e::sample::SampleOptions;
use vaultlet_testkit::cluster::Cluster;
use vaultlet_testkit::wait_until;

#[path = "node/env.rs"]
mod env;
#[path = "node/startup.rs"]
mod startup;

/// One test at a time owns the Vault address for Pods.
static VAULT_FOR_PODS: Mutex<()> = Mutex::new(());

#[test]
fn nginx_runs_with_its_secret_and_reloads_on_change() {
    let _turn = VAULT_FOR_PODS.lock().unwrap_or_else(|e| e.into_inner());
    let cluster = Cluster::running();
    let sample = node_sample("nginx");
    let file = "/vault/secrets/site.conf";
    // The kubelet starts the app only once the agent's startupProbe passed: the app's first
    // line says whether the file was there.
    let name = &sample.deploy(
        "nginx-",
        "nginx",
        file,
        &["/usr/local/bin/nginx", "watch", file],
        &[("vaultlet.io/refresh-interval", "1s")],
    );
    wait_logs(
        cluster,
        &sample.ns.name,
        name,
        "nginx",
        &format!("app: {file}: location = /greeting {{"),
    );
    // A change in OpenBao reaches the file and the app gets SIGHUP.
    sample.env.bao(&[
        "kv",
        "put",
        "-mount=secret",
        "nginx/site",
        "greeting=hello again",
        "api_key=k2",
    ]);
    wait_logs(cluster, &sample.ns.name, name, "nginx", "app: got SIGHUP");
    let agent_log = logs(cluster, &sample.ns.name, name, "vaultlet-agent");
    assert!(
        !agent_log.contains("hello again"),
        "secret value in the agent's log"
    );
}

#[test]
fn openbao_restarted_under_a_running_pod_keeps_files_and_recovers() {
    let _turn = VAULT_FOR_PODS.lock().unwrap_or_else(|e| e.into_inner());
    let cluster = Cluster::running();
    let mut sample = node_sample_with(
        "nginx",
        SampleOptions {
            persistent: true,
            ..SampleOptions::default()
        },
    );
    let file = "/vault/secrets/site.conf";
    let name = sample.deploy(
        "nginx-",
        "nginx",
        file,
        &["/usr/local/bin/nginx", "watch", file],
        &[("vaultlet.io/refresh-interval", "1s")],
    );
    let ns = sample.ns.name.clone();
    let read = || cluster.kubectl_ok(&["exec", "-n", &ns, &name, "-c", "nginx", "--", "cat", file]);
    let before = read();

    sample.env.bao.stop();
    wait_log_line(
        cluster,
        &ns,
        &name,
        "vaultlet-agent",
        "a failed refresh",
        |l| l.contains("unreachable").then_some(()),
    );
    assert_eq!(read(), before, "the file is kept while OpenBao is down");

    sample.env.bao.start();
    sample.env.bao(&[
        "kv",
        "put",
        "-mount=secret",
        "nginx/site",
        "greeting=after the restart",
        "api_key=k3",
    ]);
    wait_logs(cluster, &ns, &name, "nginx", "app: got SIGHUP");
    assert!(read().contains("after the restart"));
    let pod = cluster.get(&ns, "pod", &name).expect("pod");
    let restarts: Vec<i64> = pod["status"]["containerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["restartCount"].as_i64())
        .collect();
    assert_eq!(restarts, [0], "the app was not restarted");
}

fn job_status(cluster: &Cluster, ns: &str, job: &str) -> Option<String> {
    let job = cluster.get(ns, "job", job)?;
    job["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["status"] == "True" && (c["type"] == "Complete" || c["type"] == "Failed"))
        .and_then(|c| c["type"].as_str())
        .map(String::from)
}

fn run_job(mode: &[(&str, &str)], exit: &str, expected: &str) {
    let _turn = VAULT_FOR_PODS.lock().unwrap_or_else(|e| e.into_inner());
    let cluster = Cluster::running();
    let sample = node_sample("job");
    let file = "/vault/secrets/report.env";
    let mut job = prepare(
        &sample,
        "job.yaml",
        &["/usr/local/bin/report", "watch", file, "--exit", exit],
        mode,
    );
    job["spec"]["backoffLimit"] = json!(0);
    let applied = std::time::SystemTime::now();
    cluster
        .create(&sample.ns.name, &job)
        .unwrap_or_else(|e| panic!("job refused: {e}"));
    let mut status = None;
    wait_until(WAIT, &format!("Job report {expected}"), || {
        status = job_status(cluster, &sample.ns.name, "report");
        status.is_some()
    });
    let pod = pod_of(cluster, &sample.ns.name, "report-");
    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
    report_first_read(
        cluster,
        &sample.ns.name,
        name,
        "report",
        &format!("app: started with {file} present"),
        applied,
    );
    let app = logs(cluster, &sample.ns.name, name, "report");
    assert_eq!(
        status.as_deref(),
        Some(expected),
        "app:\n{app}\nagent:\n{}",
        logs(cluster, &sample.ns.name, name, "vaultlet-agent")
    );
    assert!(
        app.lines()
            .any(|l| l == format!("app: started with {file} present")),
        "{app}"
    );
}

#[test]
fn job_completes_with_the_native_sidecar() {
    run_job(&[], "0", "Complete");
}

#[test]
fn job_fails_when_its_app_fails() {
    run_job(&[], "3", "Failed");
}

#[test]
fn job_completes_in_classic_mode() {
    run_job(&[("vaultlet.io/native-sidecar", "false")], "0", "Complete");
}

#[test]
fn a_cronjobs_job_completes() {
    let _turn = VAULT_FOR_PODS.lock().unwrap_or_else(|e| e.into_inner());
    let cluster = Cluster::running();
    let sample = node_sample("cronjob");
    let file = "/vault/secrets/aws/credentials";
    let cronjob = prepare(
        &sample,
        "cronjob.yaml",
        &["/usr/local/bin/app", "watch", file, "--exit", "0"],
        &[],
    );
    let applied = std::time::SystemTime::now();
    cluster
        .create(&sample.ns.name, &cronjob)
        .unwrap_or_else(|e| panic!("cronjob refused: {e}"));
    // Not waiting for 03:00: a Job from the CronJob's template, as the CronJob controller
    // would make it, through the same Job controller and webhook.
    cluster.kubectl_ok(&[
        "create",
        "job",
        "-n",
        &sample.ns.name,
        "backup-now",
        "--from=cronjob/backup",
    ]);
    let mut status = None;
    wait_until(WAIT, "Job backup-now finished", || {
        status = job_status(cluster, &sample.ns.name, "backup-now");
        status.is_some()
    });
    let pod = pod_of(cluster, &sample.ns.name, "backup-now-");
    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
    report_first_read(
        cluster,
        &sample.ns.name,
        name,
        "backup",
        &format!("app: started with {file} present"),
        applied,
    );
    let app = logs(cluster, &sample.ns.name, name, "backup");
    assert_eq!(status.as_deref(), Some("Complete"), "app:\n{app}");
    assert_eq!(
        app.lines().next(),
        Some(format!("app: started with {file} present").as_str())
    );
}

#[test]
fn init_only_renders_once_and_leaves_nothing_running() {
    let _turn = VAULT_FOR_PODS.lock().unwrap_or_else(|e| e.into_inner());
    let cluster = Cluster::running();
    let sample = node_sample("init-only");
    let file = "/etc/legacy/secrets/config.yaml";
    let name = &sample.deploy(
        "legacy-",
        "app",
        file,
        &["/usr/local/bin/app", "watch", file],
        &[],
    );
    let pod = cluster
        .get(&sample.ns.name, "pod", name)
        .expect("pod exists");
    let running: Vec<&str> = pod["status"]["containerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["state"]["running"].is_object())
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(running, ["app"], "only the app keeps running");
    let init: Vec<(String, i64)> = pod["status"]["initContainerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or_default().to_string(),
                c["state"]["terminated"]["exitCode"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    assert_eq!(init, [("vaultlet-agent-init".to_string(), 0)]);
}

#[test]
fn classic_sidecar_reloads_the_app_over_http() {
    let _turn = VAULT_FOR_PODS.lock().unwrap_or_else(|e| e.into_inner());
    let cluster = Cluster::running();
    let sample = node_sample("classic-sidecar");
    let file = "/vault/secrets/prometheus.yml";
    let name = &sample.deploy(
        "prometheus-",
        "prometheus",
        file,
        &["/usr/local/bin/app", "serve", "9090", file],
        &[("vaultlet.io/refresh-interval", "1s")],
    );
    sample.env.bao(&[
        "kv",
        "patch",
        "-mount=secret",
        "prometheus/remote-write",
        "username=rotated",
    ]);
    wait_logs(
        cluster,
        &sample.ns.name,
        name,
        "prometheus",
        "app: got POST /-/reload",
    );
}

/// `(user, password)` from an app line `app: FILE: postgresql://USER:PASS@host...`.
fn db_creds(line: &str) -> Option<(String, String)> {
    let url = line.split_once(": postgresql://")?.1;
    let (userinfo, _) = url.split_once('@')?;
    let (user, pass) = userinfo.split_once(':')?;
    Some((user.to_string(), pass.to_string()))
}

#[test]
fn postgres_credentials_log_in_are_replaced_and_revoked() {
    let _turn = VAULT_FOR_PODS.lock().unwrap_or_else(|e| e.into_inner());
    let cluster = Cluster::running();
    let sample = node_sample_with(
        "postgres-dynamic",
        SampleOptions {
            postgres: true,
            env: vec![
                ("DB_DEFAULT_TTL".into(), "4s".into()),
                ("DB_MAX_TTL".into(), "8s".into()),
            ],
            ..SampleOptions::default()
        },
    );
    let pg = sample.env.pg.as_ref().expect("postgres");
    let file = "/vault/secrets/db.url";
    let name = &sample.deploy(
        "orders-",
        "app",
        file,
        &["/usr/local/bin/app", "serve", "8080", file],
        &[],
    );
    let ns = &sample.ns.name;
    let (user, pass) = wait_log_line(cluster, ns, name, "app", "credentials", db_creds);
    assert!(
        pg.can_login(&user, &pass),
        "the rendered credentials log in"
    );
    // Max TTL 8 s: new credentials before the old ones expire, and the app is told.
    let (user2, pass2) = wait_log_line(cluster, ns, name, "app", "new credentials", |l| {
        db_creds(l).filter(|(u, _)| *u != user)
    });
    assert!(pg.can_login(&user2, &pass2), "the new credentials log in");
    wait_logs(cluster, ns, name, "app", "app: got POST /-/reconnect");
    let agent_log = logs(cluster, ns, name, "vaultlet-agent");
    assert!(!agent_log.contains(&pass2), "a password in the agent's log");
    cluster.kubectl_ok(&["scale", "deployment", "orders", "-n", ns, "--replicas=0"]);
    wait_until(WAIT, "the credentials revoked when the Pod stops", || {
        !pg.can_login(&user2, &pass2)
    });
}

#[test]
fn pki_certificate_is_issued_for_the_pod() {
    let _turn = VAULT_FOR_PODS.lock().unwrap_or_else(|e| e.into_inner());
    let cluster = Cluster::running();
    let sample = node_sample("pki-tls");
    let file = "/vault/secrets/tls.pem";
    let name = &sample.deploy(
        "web-",
        "nginx",
        file,
        &["/usr/local/bin/nginx", "watch", file],
        &[],
    );
    let ns = &sample.ns.name;
    // The file starts with the issued private key (only its PEM header is printed).
    let header = wait_log_line(cluster, ns, name, "nginx", "the key's PEM header", |l| {
        l.strip_prefix(&format!("app: {file}: ")).map(String::from)
    });
    assert!(
        header.starts_with("-----BEGIN ") && header.ends_with("PRIVATE KEY-----"),
        "{header}"
    );
}

/// Tokens OpenBao has issued through AppRole logins and not revoked.
fn approle_tokens(sample: &NodeSample) -> usize {
    let accessors = sample
        .env
        .bao(&["list", "-format=json", "auth/token/accessors"]);
    let accessors: Vec<String> = serde_json::from_str(&accessors).unwrap_or_default();
    accessors
        .iter()
        .filter(|a| {
            // Some accessors (the root token's) cannot be looked up: not ours either.
            let info = sample.env.bao.bao(&[
                "write",
                "-format=json",
                "auth/token/lookup-accessor",
                &format!("accessor={a}"),
            ]);
            String::from_utf8_lossy(&info.stdout).contains("\"path\": \"auth/approle/login\"")
        })
        .count()
}

#[test]
fn approle_pod_reads_its_secret_and_revokes_its_token_when_deleted() {
    let _turn = VAULT_FOR_PODS.lock().unwrap_or_else(|e| e.into_inner());
    let cluster = Cluster::running();
    let sample = node_sample("approle");
    let file = "/vault/secrets/config.json";
    sample.deploy(
        "billing-",
        "app",
        file,
        &["/usr/local/bin/app", "watch", file],
        &[],
    );
    assert_eq!(approle_tokens(&sample), 1, "the agent's token");
    // Scale to zero: the kubelet stops the Pod (SIGTERM to the agent), which revokes its token.
    cluster.kubectl_ok(&[
        "scale",
        "deployment",
        "billing",
        "-n",
        &sample.ns.name,
        "--replicas=0",
    ]);
    wait_until(WAIT, "the agent's token revoked", || {
        approle_tokens(&sample) == 0
    });
}

#[test]
fn jwt_sample_logs_in_through_the_api_servers_oidc_discovery() {
    let _turn = VAULT_FOR_PODS.lock().unwrap_or_else(|e| e.into_inner());
    let cluster = Cluster::running();
    // OpenBao reads the issuer's discovery document and keys as an anonymous client.
    cluster.allow_anonymous_issuer_discovery();
    let sample = node_sample("jwt");
    let file = "/vault/secrets/inventory.env";
    let name = &sample.deploy(
        "inventory-",
        "app",
        file,
        &["/usr/local/bin/app", "watch", file],
        &[],
    );
    wait_logs(
        cluster,
        &sample.ns.name,
        name,
        "app",
        &format!("app: {file}: account=inventory-eu"),
    );
    // The agent's token came from auth/jwt, for the Pod's service account.
    let agent_log = logs(cluster, &sample.ns.name, name, "vaultlet-agent");
    assert!(
        agent_log
            .lines()
            .any(|l| l.contains("logged in") && l.contains("jwt")),
        "{agent_log}"
    );
    let role = sample
        .env
        .bao(&["read", "-field=bound_subject", "auth/jwt/role/inventory"]);
    assert_eq!(
        role.trim(),
        format!("system:serviceaccount:{}:inventory", sample.ns.name)
    );
}

#[test]
fn cert_auth_sample_logs_in_over_mutual_tls_with_its_secrets() {
    let _turn = VAULT_FOR_PODS.lock().unwrap_or_else(|e| e.into_inner());
    let cluster = Cluster::running();
    let sample = node_sample_with(
        "cert-auth",
        SampleOptions {
            mtls: true,
            ..SampleOptions::default()
        },
    );
    assert!(
        sample.vault_addr.starts_with("https://"),
        "{}",
        sample.vault_addr
    );
    let file = "/vault/secrets/payments.env";
    let name = &sample.deploy(
        "payments-",
        "app",
        file,
        &["/usr/local/bin/app", "watch", file],
        &[],
    );
    wait_logs(
        cluster,
        &sample.ns.name,
        name,
        "app",
        &format!("app: {file}: merchant_id=m-4711"),
    );
    // The client certificate and the CA reach the agent only.
    let pod = cluster
        .get(&sample.ns.name, "pod", name)
        .expect("pod exists");
    let mounts_of = |c: &serde_json::Value| -> Vec<String> {
        c["volumeMounts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["name"].as_str().map(String::from))
            .collect()
    };
    for c in pod["spec"]["containers"].as_array().into_iter().flatten() {
        let mounts = mounts_of(c);
        assert!(
            !mounts.iter().any(|m| m.starts_with("vaultlet-tls")),
            "{}: {mounts:?}",
            c["name"]
        );
    }
    let agent = pod["spec"]["initContainers"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == "vaultlet-agent")
        .expect("the agent");
    let mounts = mounts_of(agent);
    assert!(
        mounts.contains(&"vaultlet-tls-ca".to_string())
            && mounts.contains(&"vaultlet-tls-client".to_string()),
        "{mounts:?}"
    );
    let key = sample
        .env
        .written_secrets()
        .get("payments-vault-client")
        .and_then(|d| d.get("tls.key").cloned())
        .unwrap_or_default();
    let agent_log = logs(cluster, &sample.ns.name, name, "vaultlet-agent");
    for line in key.lines().filter(|l| !l.starts_with("-----")) {
        assert!(
            !agent_log.contains(line),
            "the client key in the agent's log"
        );
    }
}

#[test]
fn cert_auth_with_a_wrong_ca_says_which_annotation_and_file() {
    let _turn = VAULT_FOR_PODS.lock().unwrap_or_else(|e| e.into_inner());
    let cluster = Cluster::running();
    let sample = node_sample_with(
        "cert-auth",
        SampleOptions {
            mtls: true,
            ..SampleOptions::default()
        },
    );
    let ns = &sample.ns.name;
    // A CA that did not sign OpenBao's certificate, in its own Secret.
    let wrong = vaultlet_testkit::TestPki::new("not-openbaos-ca");
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "wrong-ca", "namespace": ns},
        "stringData": {"ca.crt": wrong.ca_pem()},
    });
    cluster
        .create(ns, &secret)
        .unwrap_or_else(|e| panic!("Secret wrong-ca: {e}"));
    let file = "/vault/secrets/payments.env";
    let deployment = prepare(
        &sample,
        "deployment.yaml",
        &["/usr/local/bin/app", "watch", file],
        // The postStart hook holds the kubelet's sync of the Pod until the deadline, and the
        // agent's log is served only after that (the restarted agent's previous container).
        &[
            ("vaultlet.io/tls-ca-secret", "wrong-ca"),
            ("vaultlet.io/init-deadline", "10s"),
        ],
    );
    cluster
        .create(ns, &deployment)
        .unwrap_or_else(|e| panic!("deployment refused: {e}"));
    let pod = pod_of(cluster, ns, "payments-");
    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
    let want = "the CA file /vault/tls/ca/ca.crt (from annotation vaultlet.io/tls-ca-secret: \
                Secret wrong-ca, key ca.crt) did not verify Vault's certificate";
    let line = wait_log_line(cluster, ns, name, "vaultlet-agent", want, |l| {
        l.contains(want).then(|| l.to_string())
    });
    eprintln!("agent: {line}");
    // The postStart hook never returned success, so the app never started.
    assert_eq!(logs(cluster, ns, name, "app"), "");
}
