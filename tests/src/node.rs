//! Samples run by the local cluster's real node (`tests/tests/node.rs`): a sample's OpenBao
//! reachable by the Pods, its workload prepared with the stand-in app image, and waits on what
//! the app prints (`kubectl logs`).
//!
//! OpenBao of each test is reached by the Pods at the cluster's fixed Vault address for Pods
//! (`http://<bridge host address>:8200`, allowed by the installed injector), forwarded to the
//! test's own loopback server: one test at a time may hold a [`NodeSample`].

use std::time::Duration;

use serde_json::{Value, json};
use vaultlet_testkit::Forward;
use vaultlet_testkit::cluster::{Cluster, Namespace};

use crate::injector::parse_yaml;
use crate::sample::{SampleEnv, SampleOptions};

/// Deadline of any wait on the node.
pub const WAIT: Duration = Duration::from_secs(90);
/// The port of the Vault address for Pods, on the bridge's host address.
pub const VAULT_PORT_FOR_PODS: u16 = 8200;
/// Labels of a namespace enforcing Pod Security `restricted`.
pub const RESTRICTED: &[(&str, &str)] = &[("pod-security.kubernetes.io/enforce", "restricted")];

/// A sample's OpenBao set up for service accounts of `ns`, reachable by the node's Pods.
pub struct NodeSample {
    /// The sample's OpenBao (and PostgreSQL).
    pub env: SampleEnv,
    /// The test's namespace.
    pub ns: Namespace,
    /// The Vault address the Pods use.
    pub vault_addr: String,
    _forward: Forward,
}

/// [`node_sample_with`] default options.
pub fn node_sample(name: &str) -> NodeSample {
    node_sample_with(name, SampleOptions::default())
}

/// Sets up `samples/<name>` for the node: a restricted namespace, the sample's OpenBao (with
/// `opts`) bound to that namespace's service accounts and forwarded to the Vault address for
/// Pods, its ServiceAccount, ConfigMap and the Secrets its `setup.sh` wrote.
pub fn node_sample_with(name: &str, mut opts: SampleOptions) -> NodeSample {
    let cluster = Cluster::running();
    let host = cluster
        .host_for_pods()
        .expect("the cluster has no node: scripts/cluster.sh install with VAULTLET_CLUSTER_NODE=1");
    let ns = cluster.namespace(&format!("e2e-node-{name}"), RESTRICTED);
    opts.env.push(("NAMESPACE".into(), ns.name.clone()));
    let env = SampleEnv::start(name, &opts);
    // TLS samples: Pods reach the listener that requires client certificates.
    let (port, scheme) = match &env.tls {
        Some(_) => (env.bao.tls_port(), "https"),
        None => (env.bao.port(), "http"),
    };
    let target = format!("127.0.0.1:{port}").parse().expect("socket address");
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
        vault_addr: format!("{scheme}://{host}:{VAULT_PORT_FOR_PODS}"),
        _forward: forward,
    }
}

/// A one-document YAML file as JSON.
pub fn read_yaml(path: &std::path::Path) -> Value {
    let text = std::fs::read_to_string(path).expect("read sample");
    parse_yaml(&text).expect("sample is YAML")
}

/// The workload's pod template with the test's Vault address and a stand-in app image.
pub fn prepare(
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

/// Waits for a Pod named `prefix*` in `ns`.
pub fn pod_of(cluster: &Cluster, ns: &str, prefix: &str) -> Value {
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

/// `kubectl logs` of one container (empty when there are none yet).
pub fn logs(cluster: &Cluster, ns: &str, pod: &str, container: &str) -> String {
    cluster
        .kubectl(&["logs", "-n", ns, pod, "-c", container], None)
        .unwrap_or_default()
}

/// Waits for the log line `line` (equality); the logs then. Panics with the app's and the
/// agent's logs on timeout.
pub fn wait_logs(cluster: &Cluster, ns: &str, pod: &str, container: &str, line: &str) -> String {
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
pub fn wait_log_line<T>(
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
pub fn unix_seconds(stamp: &str) -> Option<f64> {
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
pub fn report_first_read(
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

impl NodeSample {
    /// Creates the sample's `deployment.yaml` (prepared as [`prepare`] does: the app runs
    /// `command`), waits until the app in `container` of the Pod `pod_prefix*` started with
    /// `file` present, and prints the time from apply to that first read. Returns the Pod's
    /// name.
    pub fn deploy(
        &self,
        pod_prefix: &str,
        container: &str,
        file: &str,
        command: &[&str],
        annotations: &[(&str, &str)],
    ) -> String {
        let cluster = Cluster::running();
        let deployment = prepare(self, "deployment.yaml", command, annotations);
        let applied = std::time::SystemTime::now();
        cluster
            .create(&self.ns.name, &deployment)
            .unwrap_or_else(|e| panic!("deployment refused: {e}"));
        let pod = pod_of(cluster, &self.ns.name, pod_prefix);
        let name = pod["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let started = format!("app: started with {file} present");
        wait_logs(cluster, &self.ns.name, &name, container, &started);
        report_first_read(cluster, &self.ns.name, &name, container, &started, applied);
        name
    }
}
