//! `samples/env` on the node: secrets in the app process's environment through the agent's
//! supervisor. The stand-in app (`vaultlet-testapp env`) prints a digest of each variable,
//! never the value, and the tests check that no log holds a secret value.

use serde_json::{Value, json};
use vaultlet_e2e::node::{NodeSample, WAIT, logs, node_sample, pod_of, prepare, wait_logs};
use vaultlet_testkit::cluster::Cluster;
use vaultlet_testkit::wait_until;

use super::{VAULT_FOR_PODS, job_status};

/// The digest `vaultlet-testapp env` prints (FNV-1a 64, hex).
fn digest(value: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in value.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

fn app_command(extra: &[&str]) -> Vec<String> {
    let mut cmd: Vec<String> = ["/usr/local/bin/app", "env", "DB_USER", "DB_PASSWORD"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    cmd.extend(extra.iter().map(|s| (*s).to_owned()));
    cmd
}

fn password(sample: &NodeSample) -> String {
    sample
        .env
        .bao(&[
            "kv",
            "get",
            "-mount=secret",
            "-field=password",
            "checkout/db",
        ])
        .trim()
        .to_owned()
}

/// The sample's Deployment with the stand-in app and `annotations`; `remove` drops
/// annotations of the sample.
fn deployment(
    sample: &NodeSample,
    extra: &[&str],
    annotations: &[(&str, &str)],
    remove: &[&str],
) -> Value {
    let cmd = app_command(extra);
    let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
    let mut d = prepare(sample, "deployment.yaml", &cmd, annotations);
    if let Some(a) = d["spec"]["template"]["metadata"]["annotations"].as_object_mut() {
        for key in remove {
            a.remove(*key);
        }
    }
    d
}

/// Creates `workload`, waits for the app's first report of the password; the Pod's name.
fn start(sample: &NodeSample, workload: &Value, pod_prefix: &str) -> String {
    let cluster = Cluster::running();
    cluster
        .create(&sample.ns.name, workload)
        .unwrap_or_else(|e| panic!("refused: {e}"));
    let pod = pod_of(cluster, &sample.ns.name, pod_prefix);
    let name = pod["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let line = format!("app: env DB_PASSWORD {}", digest(&password(sample)));
    wait_logs(cluster, &sample.ns.name, &name, "app", &line);
    name
}

/// No secret value in the agent's or the app container's log (the supervisor writes there),
/// nor in the stored Pod.
fn assert_no_values(sample: &NodeSample, pod: &str, values: &[&str]) {
    let cluster = Cluster::running();
    let ns = &sample.ns.name;
    let mut texts = vec![
        ("agent", logs(cluster, ns, pod, "vaultlet-agent")),
        ("agent-init", logs(cluster, ns, pod, "vaultlet-agent-init")),
        ("app", logs(cluster, ns, pod, "app")),
    ];
    if let Some(p) = cluster.get(ns, "pod", pod) {
        texts.push(("pod", p.to_string()));
    }
    for (what, text) in texts {
        for v in values {
            assert!(!text.contains(v), "a secret value in the {what} output");
        }
    }
}

/// `kubectl exec` in the app container, retried while the API server cannot reach the
/// kubelet yet (a fresh node).
fn exec(cluster: &Cluster, ns: &str, pod: &str, command: &[&str]) -> String {
    let mut args = vec!["exec", "-n", ns, pod, "-c", "app", "--"];
    args.extend_from_slice(command);
    let mut out = Err(String::new());
    wait_until(WAIT, &format!("kubectl exec {command:?}"), || {
        out = cluster.kubectl(&args, None);
        if let Err(e) = &out {
            eprintln!("kubectl exec {command:?}: {e}");
        }
        out.is_ok()
    });
    out.unwrap_or_default()
}

fn app_status(cluster: &Cluster, ns: &str, pod: &str) -> Value {
    cluster
        .get(ns, "pod", pod)
        .and_then(|p| {
            p["status"]["containerStatuses"]
                .as_array()?
                .iter()
                .find(|c| c["name"] == "app")
                .cloned()
        })
        .unwrap_or(Value::Null)
}

#[test]
fn env_sample_gets_its_values_and_a_change_restarts_the_app() {
    let _turn = VAULT_FOR_PODS.lock().unwrap_or_else(|e| e.into_inner());
    let cluster = Cluster::running();
    let sample = node_sample("env");
    let ns = sample.ns.name.clone();
    let old = password(&sample);
    let workload = deployment(
        &sample,
        &["--term-exit", "42"],
        &[("vaultlet.io/refresh-interval", "1s")],
        &[],
    );
    let name = start(&sample, &workload, "checkout-");
    let first = logs(cluster, &ns, &name, "app");
    assert!(
        first
            .lines()
            .any(|l| l == format!("app: env DB_USER {}", digest("checkout"))),
        "{first}"
    );
    // `kubectl exec ... env` is a new process: it does not have the values.
    let exec_env = exec(cluster, &ns, &name, &["env"]);
    assert!(
        !exec_env.contains("DB_PASSWORD"),
        "exec env shows the secret"
    );

    let new = format!("rotated-{}", vaultlet_testkit::random_hex(12));
    let changed = std::time::Instant::now();
    sample.env.bao(&[
        "kv",
        "put",
        "-mount=secret",
        "checkout/db",
        "username=checkout",
        &format!("password={new}"),
    ]);
    let line = format!("app: env DB_PASSWORD {}", digest(&new));
    let after = wait_logs(cluster, &ns, &name, "app", &line);
    eprintln!(
        "timing: {ns}: kv put -> app restarted with the new value {} ms (refresh interval 1s)",
        changed.elapsed().as_millis()
    );
    let pids: Vec<&str> = after
        .lines()
        .filter_map(|l| l.strip_prefix("app: started pid "))
        .collect();
    assert_eq!(pids.len(), 2, "{after}");
    assert_ne!(pids[0], pids[1], "a new app process");
    assert!(after.lines().any(|l| l == "app: got SIGTERM"), "{after}");
    let status = app_status(cluster, &ns, &name);
    assert_eq!(status["restartCount"], 0, "the container was not restarted");

    // SIGTERM to the container's PID 1 (the supervisor) reaches the app, and the container
    // exits with the app's code (42); the kubelet then starts it again.
    exec(cluster, &ns, &name, &["kill", "-TERM", "1"]);
    wait_until(WAIT, "the app container's exit with code 42", || {
        app_status(cluster, &ns, &name)["lastState"]["terminated"]["exitCode"] == 42
    });
    assert_no_values(&sample, &name, &[&old, &new]);
}

fn run_env_job(sample: &NodeSample, name: &str, exit: &str) -> (Option<String>, Value) {
    let cluster = Cluster::running();
    let d = deployment(sample, &["--exit", exit], &[], &[]);
    let mut template = d["spec"]["template"].clone();
    template["spec"]["restartPolicy"] = json!("Never");
    let job = json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": sample.ns.name},
        "spec": {"backoffLimit": 0, "template": template},
    });
    cluster
        .create(&sample.ns.name, &job)
        .unwrap_or_else(|e| panic!("job refused: {e}"));
    let mut status = None;
    wait_until(WAIT, &format!("Job {name} finished"), || {
        status = job_status(cluster, &sample.ns.name, name);
        status.is_some()
    });
    let pod = pod_of(cluster, &sample.ns.name, &format!("{name}-"));
    let pod_name = pod["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let app = logs(cluster, &sample.ns.name, &pod_name, "app");
    let line = format!("app: env DB_PASSWORD {}", digest(&password(sample)));
    assert!(app.lines().any(|l| l == line), "{app}");
    assert_no_values(sample, &pod_name, &[&password(sample)]);
    let stored = cluster
        .get(&sample.ns.name, "pod", &pod_name)
        .unwrap_or(Value::Null);
    let code = stored["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"].clone();
    (status, code)
}

#[test]
fn env_jobs_report_the_apps_exit_code() {
    let _turn = VAULT_FOR_PODS.lock().unwrap_or_else(|e| e.into_inner());
    let sample = node_sample("env");
    let (status, code) = run_env_job(&sample, "env-ok", "0");
    assert_eq!((status.as_deref(), code), (Some("Complete"), json!(0)));
    let (status, code) = run_env_job(&sample, "env-fails", "3");
    assert_eq!((status.as_deref(), code), (Some("Failed"), json!(3)));
}

#[test]
fn env_works_in_classic_and_init_only_mode() {
    let _turn = VAULT_FOR_PODS.lock().unwrap_or_else(|e| e.into_inner());
    let sample = node_sample("env");
    let classic = deployment(
        &sample,
        &[],
        &[("vaultlet.io/native-sidecar", "false")],
        &[],
    );
    let name = start(&sample, &classic, "checkout-");
    assert_no_values(&sample, &name, &[&password(&sample)]);
    Cluster::running().delete(&sample.ns.name, "deployment", "checkout");

    let mut init_only = deployment(
        &sample,
        &[],
        &[("vaultlet.io/mode", "init-only")],
        &["vaultlet.io/on-env-change"],
    );
    init_only["metadata"]["name"] = json!("checkout-once");
    let name = start(&sample, &init_only, "checkout-once-");
    assert_no_values(&sample, &name, &[&password(&sample)]);
}

#[test]
fn a_container_without_command_is_denied() {
    let cluster = Cluster::running();
    let ns = cluster.namespace("e2e-env-deny", vaultlet_e2e::node::RESTRICTED);
    cluster.ensure_service_account(&ns.name, "checkout");
    let mut pod = vaultlet_e2e::node::read_yaml(
        &vaultlet_testkit::workspace_root().join("samples/env/pod.yaml"),
    );
    pod["metadata"]["namespace"] = json!(ns.name);
    if let Some(app) = pod["spec"]["containers"][0].as_object_mut() {
        app.remove("command");
    }
    let err = cluster.create(&ns.name, &pod).expect_err("denied");
    assert!(
        err.contains("vaultlet: container \"app\" has no command: vaultlet.io/env-db loads secrets into its environment by starting its command through the agent's supervisor, and vaultlet never looks up an image's entrypoint in a registry; set command to the image's entrypoint (args stay as they are), or narrow vaultlet.io/containers"),
        "{err}"
    );
}
