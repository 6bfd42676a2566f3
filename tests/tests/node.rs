//! Injected Pods run by the local cluster's real node: kubelet, containerd and runc, images built
//! here (`scripts/images.sh`), Pod network on a bridge of the test run. The kubelet starts the
//! native sidecar and runs its startupProbe before the app, mounts the projected token and the
//! memory-backed volume, and the Job controller decides when a Job is complete.
//!
//! OpenBao of each test is reached by the Pods at the cluster's fixed Vault address for Pods
//! (`http://<bridge host address>:8200`, allowed by the installed injector), forwarded to the
//! test's own loopback server; the tests take turns for it.

use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Value, json};
use vaultlet_e2e::bins;
use vaultlet_e2e::injector::parse_yaml;
use vaultlet_e2e::sample::{SampleEnv, SampleOptions};
use vaultlet_testkit::cluster::{Cluster, Namespace};
use vaultlet_testkit::{Forward, wait_until};

const WAIT: Duration = Duration::from_secs(90);
const VAULT_PORT_FOR_PODS: u16 = 8200;
const RESTRICTED: &[(&str, &str)] = &[("pod-security.kubernetes.io/enforce", "restricted")];

/// One test at a time owns the Vault address for Pods.
static VAULT_FOR_PODS: Mutex<()> = Mutex::new(());

/// A sample's OpenBao set up for service accounts of `ns`, reachable by the node's Pods.
struct NodeSample {
    env: SampleEnv,
    ns: Namespace,
    vault_addr: String,
    _forward: Forward,
}

fn node_sample(name: &str) -> NodeSample {
    node_sample_with(name, SampleOptions::default())
}

fn node_sample_with(name: &str, mut opts: SampleOptions) -> NodeSample {
    let cluster = Cluster::running();
    let host = cluster
        .host_for_pods()
        .expect("the cluster has no node: scripts/cluster.sh install with VAULTLET_CLUSTER_NODE=1");
    let ns = cluster.namespace(&format!("e2e-node-{name}"), RESTRICTED);
    opts.env.push(("NAMESPACE".into(), ns.name.clone()));
    let env = SampleEnv::start(name, &opts);
    let target = format!("127.0.0.1:{}", env.bao.port())
        .parse()
        .expect("socket address");
    let forward = Forward::start(host, VAULT_PORT_FOR_PODS, target);
    for file in ["serviceaccount.yaml", "configmap.yaml"] {
        let path = env.dir.join(file);
        if path.is_file() {
            let mut object = read_yaml(&path);
            object["metadata"]["namespace"] = json!(ns.name);
            cluster
                .create(&ns.name, &object)
                .unwrap_or_else(|e| panic!("{name}/{file}: {e}"));
        }
    }
    // The Secrets setup.sh wrote for the sample (an AppRole secret-id, say), as real Secrets.
    for (secret, data) in env.written_secrets() {
        let object = json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": secret, "namespace": ns.name},
            "stringData": data,
        });
        cluster
            .create(&ns.name, &object)
            .unwrap_or_else(|e| panic!("{name}: Secret {secret}: {e}"));
    }
    NodeSample {
        env,
        ns,
        vault_addr: format!("http://{host}:{VAULT_PORT_FOR_PODS}"),
        _forward: forward,
    }
}

fn read_yaml(path: &std::path::Path) -> Value {
    let text = std::fs::read_to_string(path).expect("read sample");
    parse_yaml(&text).expect("sample is YAML")
}

/// The workload's pod template with the test's Vault address and a stand-in app image.
fn prepare(
    sample: &NodeSample,
    file: &str,
    app_command: &[&str],
    annotations: &[(&str, &str)],
) -> Value {
    let mut workload = read_yaml(&sample.env.dir.join(file));
    workload["metadata"]["namespace"] = json!(sample.ns.name);
    let template = match workload["kind"].as_str() {
        Some("CronJob") => &mut workload["spec"]["jobTemplate"]["spec"]["template"],
        _ => &mut workload["spec"]["template"],
    };
    template["metadata"]["annotations"]["vaultlet.io/vault-addr"] = json!(sample.vault_addr);
    for (k, v) in annotations {
        template["metadata"]["annotations"][*k] = json!(v);
    }
    let app = &mut template["spec"]["containers"][0];
    app["image"] = json!("vaultlet/testapp:0.1.0");
    app["imagePullPolicy"] = json!("Never");
    app["command"] = json!(app_command);
    if let Some(map) = app.as_object_mut() {
        map.remove("args");
        map.remove("readinessProbe");
        map.remove("livenessProbe");
    }
    workload
}

fn pod_of(cluster: &Cluster, ns: &str, prefix: &str) -> Value {
    cluster.wait_for(ns, "pods", WAIT, &format!("a Pod {prefix}*"), |pods| {
        pods.iter()
            .find(|p| {
                p["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with(prefix))
            })
            .cloned()
    })
}

fn logs(cluster: &Cluster, ns: &str, pod: &str, container: &str) -> String {
    cluster
        .kubectl(&["logs", "-n", ns, pod, "-c", container], None)
        .unwrap_or_default()
}

fn wait_logs(cluster: &Cluster, ns: &str, pod: &str, container: &str, line: &str) -> String {
    let mut last = String::new();
    let found = (0..(WAIT.as_millis() / 250)).any(|_| {
        last = logs(cluster, ns, pod, container);
        if last.lines().any(|l| l == line) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(250));
        false
    });
    assert!(
        found,
        "{ns}/{pod} {container}: no line {line:?} within {WAIT:?}; logs:\n{last}\nagent:\n{}",
        logs(cluster, ns, pod, "vaultlet-agent")
    );
    last
}

/// Waits for a log line that `pick` accepts (and turns into a value).
fn wait_log_line<T>(
    cluster: &Cluster,
    ns: &str,
    pod: &str,
    container: &str,
    what: &str,
    mut pick: impl FnMut(&str) -> Option<T>,
) -> T {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let text = logs(cluster, ns, pod, container);
        if let Some(found) = text.lines().find_map(&mut pick) {
            return found;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{ns}/{pod} {container}: no {what} within {WAIT:?}; logs:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Seconds since the Unix epoch of an RFC 3339 UTC timestamp as `kubectl logs --timestamps`
/// prints it (`2026-11-30T15:07:41.645403558Z`).
fn unix_seconds(stamp: &str) -> Option<f64> {
    let (date, time) = stamp.trim_end_matches('Z').split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut t = time.split(':');
    let (h, min) = (
        t.next()?.parse::<i64>().ok()?,
        t.next()?.parse::<i64>().ok()?,
    );
    let sec = t.next()?.parse::<f64>().ok()?;
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + h * 3_600 + min * 60) as f64 + sec)
}

/// Prints (for docs/benchmarks.md) the time from `applied` to the app's log line `line`, by the
/// runtime's own timestamp of that line.
fn report_first_read(
    cluster: &Cluster,
    ns: &str,
    pod: &str,
    container: &str,
    line: &str,
    applied: std::time::SystemTime,
) {
    let logs = cluster
        .kubectl(
            &["logs", "--timestamps", "-n", ns, pod, "-c", container],
            None,
        )
        .unwrap_or_default();
    let applied = applied
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default();
    if let Some(at) = logs
        .lines()
        .filter_map(|l| l.split_once(' '))
        .find(|(_, text)| *text == line)
        .and_then(|(stamp, _)| unix_seconds(stamp))
    {
        eprintln!(
            "timing: {ns}: kubectl apply -> app's first read {:.0} ms",
            (at - applied) * 1000.0
        );
    }
}

#[test]
fn nginx_runs_with_its_secret_and_reloads_on_change() {
    let _turn = VAULT_FOR_PODS.lock().unwrap_or_else(|e| e.into_inner());
    let cluster = Cluster::running();
    let sample = node_sample("nginx");
    let file = "/vault/secrets/site.conf";
    let deployment = prepare(
        &sample,
        "deployment.yaml",
        &["/usr/local/bin/nginx", "watch", file],
        &[("vaultlet.io/refresh-interval", "1s")],
    );
    let applied = std::time::SystemTime::now();
    cluster
        .create(&sample.ns.name, &deployment)
        .unwrap_or_else(|e| panic!("deployment refused: {e}"));
    let pod = pod_of(cluster, &sample.ns.name, "nginx-");
    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
    // The kubelet started the app only once the agent's startupProbe passed.
    wait_logs(
        cluster,
        &sample.ns.name,
        name,
        "nginx",
        &format!("app: started with {file} present"),
    );
    report_first_read(
        cluster,
        &sample.ns.name,
        name,
        "nginx",
        &format!("app: started with {file} present"),
        applied,
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
    let deployment = prepare(
        &sample,
        "deployment.yaml",
        &["/usr/local/bin/nginx", "watch", file],
        &[("vaultlet.io/refresh-interval", "1s")],
    );
    cluster
        .create(&sample.ns.name, &deployment)
        .unwrap_or_else(|e| panic!("deployment refused: {e}"));
    let pod = pod_of(cluster, &sample.ns.name, "nginx-");
    let name = pod["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let ns = sample.ns.name.clone();
    wait_logs(
        cluster,
        &ns,
        &name,
        "nginx",
        &format!("app: started with {file} present"),
    );
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
    let deployment = prepare(
        &sample,
        "deployment.yaml",
        &["/usr/local/bin/app", "watch", file],
        &[],
    );
    let applied = std::time::SystemTime::now();
    cluster
        .create(&sample.ns.name, &deployment)
        .unwrap_or_else(|e| panic!("deployment refused: {e}"));
    let pod = pod_of(cluster, &sample.ns.name, "legacy-");
    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
    wait_logs(
        cluster,
        &sample.ns.name,
        name,
        "app",
        &format!("app: started with {file} present"),
    );
    report_first_read(
        cluster,
        &sample.ns.name,
        name,
        "app",
        &format!("app: started with {file} present"),
        applied,
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
    let deployment = prepare(
        &sample,
        "deployment.yaml",
        &["/usr/local/bin/app", "serve", "9090", file],
        &[("vaultlet.io/refresh-interval", "1s")],
    );
    let applied = std::time::SystemTime::now();
    cluster
        .create(&sample.ns.name, &deployment)
        .unwrap_or_else(|e| panic!("deployment refused: {e}"));
    let pod = pod_of(cluster, &sample.ns.name, "prometheus-");
    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
    wait_logs(
        cluster,
        &sample.ns.name,
        name,
        "prometheus",
        &format!("app: started with {file} present"),
    );
    report_first_read(
        cluster,
        &sample.ns.name,
        name,
        "prometheus",
        &format!("app: started with {file} present"),
        applied,
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
    let deployment = prepare(
        &sample,
        "deployment.yaml",
        &["/usr/local/bin/app", "serve", "8080", file],
        &[],
    );
    let applied = std::time::SystemTime::now();
    cluster
        .create(&sample.ns.name, &deployment)
        .unwrap_or_else(|e| panic!("deployment refused: {e}"));
    let pod = pod_of(cluster, &sample.ns.name, "orders-");
    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
    let ns = &sample.ns.name;
    wait_logs(
        cluster,
        ns,
        name,
        "app",
        &format!("app: started with {file} present"),
    );
    report_first_read(
        cluster,
        ns,
        name,
        "app",
        &format!("app: started with {file} present"),
        applied,
    );
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
    let deployment = prepare(
        &sample,
        "deployment.yaml",
        &["/usr/local/bin/nginx", "watch", file],
        &[],
    );
    let applied = std::time::SystemTime::now();
    cluster
        .create(&sample.ns.name, &deployment)
        .unwrap_or_else(|e| panic!("deployment refused: {e}"));
    let pod = pod_of(cluster, &sample.ns.name, "web-");
    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
    let ns = &sample.ns.name;
    wait_logs(
        cluster,
        ns,
        name,
        "nginx",
        &format!("app: started with {file} present"),
    );
    report_first_read(
        cluster,
        ns,
        name,
        "nginx",
        &format!("app: started with {file} present"),
        applied,
    );
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
    let deployment = prepare(
        &sample,
        "deployment.yaml",
        &["/usr/local/bin/app", "watch", file],
        &[],
    );
    let applied = std::time::SystemTime::now();
    cluster
        .create(&sample.ns.name, &deployment)
        .unwrap_or_else(|e| panic!("deployment refused: {e}"));
    let pod = pod_of(cluster, &sample.ns.name, "billing-");
    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
    wait_logs(
        cluster,
        &sample.ns.name,
        name,
        "app",
        &format!("app: started with {file} present"),
    );
    report_first_read(
        cluster,
        &sample.ns.name,
        name,
        "app",
        &format!("app: started with {file} present"),
        applied,
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
fn images_match_their_dockerfiles() {
    let images = Cluster::running().script_output(&["images-dir"]);
    for (image, dockerfile) in [
        ("agent", "agent/Dockerfile"),
        ("injector", "injector/Dockerfile"),
    ] {
        let archive = format!("{}/{image}.tar", images.trim());
        let described = std::process::Command::new("python3")
            .arg(bins::workspace_root().join("scripts/oci-image.py"))
            .args(["--describe", &archive])
            .output()
            .expect("run oci-image.py");
        assert!(described.status.success(), "{archive}");
        let described: Value =
            serde_json::from_slice(&described.stdout).expect("oci-image.py prints JSON");
        let expected = final_stage(&bins::workspace_root().join(dockerfile));
        assert_eq!(described["config"]["User"], expected.user, "{image} user");
        assert_eq!(
            described["config"]["Entrypoint"], expected.entrypoint,
            "{image} entrypoint"
        );
        assert_eq!(described["config"]["Cmd"], expected.cmd, "{image} cmd");
        assert_eq!(
            described["config"]["Env"],
            json!(expected.env),
            "{image} env"
        );
        let mut files: Vec<String> = described["files"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter(|(_, f)| f["type"] == "file")
                    .map(|(k, _)| k.clone())
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        let mut copied = expected.copied.clone();
        copied.sort();
        assert_eq!(files, copied, "{image} files");
    }
}

/// What the last stage of a Dockerfile says of the image.
struct Stage {
    user: Value,
    entrypoint: Value,
    cmd: Value,
    env: Vec<String>,
    copied: Vec<String>,
}

fn final_stage(path: &std::path::Path) -> Stage {
    let text = std::fs::read_to_string(path).expect("read Dockerfile");
    let last = text.rsplit("\nFROM ").next().unwrap_or_default();
    let mut stage = Stage {
        user: Value::Null,
        entrypoint: Value::Null,
        cmd: Value::Null,
        env: Vec::new(),
        copied: Vec::new(),
    };
    for line in last.lines() {
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        match word {
            "USER" => stage.user = json!(rest.trim()),
            "ENTRYPOINT" => stage.entrypoint = serde_json::from_str(rest).expect("exec form"),
            "CMD" => stage.cmd = serde_json::from_str(rest).expect("exec form"),
            "ENV" => stage.env.push(rest.trim().to_string()),
            "COPY" => {
                let dest = rest.split_whitespace().last().unwrap_or_default();
                stage.copied.push(dest.to_string());
            }
            _ => {}
        }
    }
    stage
}
