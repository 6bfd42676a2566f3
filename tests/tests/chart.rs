//! The Helm chart against the real API server of `scripts/cluster.sh`: `helm upgrade` keeps
//! the generated CA, and the chart installs and uninstalls cleanly with an existing Secret and
//! with cert-manager (its CRDs from its Go module; no cert-manager controller runs here).
//!
//! The release `vaultlet` in `vaultlet-system` is the one `scripts/cluster.sh install` made
//! (tls.mode helm; the injector as its Pods behind its Service, or with no node a host process
//! behind webhook.url); the other releases restrict their
//! webhook to a label no Pod carries, so they never stand in the way of other tests.

use serde_json::{Value, json};
use vaultlet_e2e::bins;
use vaultlet_testkit::TempDir;
use vaultlet_testkit::cluster::{Cluster, Namespace};

#[path = "chart/reuse.rs"]
mod reuse;

const RELEASE_NS: &str = "vaultlet-system";

fn chart_dir() -> String {
    bins::workspace_root()
        .join("charts/vaultlet")
        .display()
        .to_string()
}

fn helm_ok(cluster: &Cluster, args: &[&str]) -> String {
    cluster
        .helm(args)
        .unwrap_or_else(|e| panic!("helm {args:?} failed: {e}"))
}

fn ca_bundle(config: &Value) -> String {
    config["webhooks"][0]["clientConfig"]["caBundle"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// `--set-json` for a webhook that only matches Pods labelled for `release`.
fn isolated(release: &str) -> String {
    format!(
        "webhook.objectSelectorExpressions=[{{\"key\":\"vaultlet.io/e2e-release\",\"operator\":\"In\",\"values\":[\"{release}\"]}}]"
    )
}

const EXEC_NOTIFY: &str = "exec:/bin/reload";

/// The installed release keeps the chart's default (`injector.allowExecNotify: false`): an
/// `exec:` notification is denied at admission, with the reason.
#[test]
fn exec_notifications_are_denied_by_default() {
    let cluster = Cluster::running();
    let ns = cluster.namespace("e2e-chart-exec", &[]);
    let mut pod = labelled_pod();
    pod["metadata"]["annotations"]["vaultlet.io/notify"] = json!(EXEC_NOTIFY);
    let err = cluster
        .create(&ns.name, &pod)
        .expect_err("exec: must be denied by default");
    assert_eq!(
        err,
        format!(
            "Error from server: error when creating \"STDIN\": admission webhook \
             \"inject.vaultlet.io\" denied the request: vaultlet: annotation vaultlet.io/notify: \
             value \"{EXEC_NOTIFY}\" is invalid: exec: runs the command inside the agent container, \
             whose image holds only the agent (no shell or tools); use signal: or http:, or ask \
             the operator for an agent image with the tools and --allow-exec-notify"
        )
    );
}

fn labelled_pod() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "app",
            "labels": {"vaultlet.io/inject": "true"},
            "annotations": {"vaultlet.io/role": "app", "vaultlet.io/secret-db": "secret/data/db"},
        },
        "spec": {"containers": [{"name": "app", "image": "busybox", "command": ["sleep", "1"]}]},
    })
}

/// What a release left behind in `ns` and cluster-wide (webhook configurations).
fn objects_of(cluster: &Cluster, release: &str) -> Vec<String> {
    let selector = format!("app.kubernetes.io/instance={release}");
    let kinds = "deployments,services,serviceaccounts,secrets,poddisruptionbudgets,\
                 mutatingwebhookconfigurations";
    cluster
        .list_labelled(kinds, &selector)
        .iter()
        .map(|o| {
            format!(
                "{}/{}",
                o["kind"].as_str().unwrap_or_default(),
                o["metadata"]["name"].as_str().unwrap_or_default()
            )
        })
        .collect()
}

#[test]
fn upgrade_keeps_the_generated_ca_and_admission_keeps_working() {
    let cluster = Cluster::running();
    let config_before = cluster
        .get("", "mutatingwebhookconfiguration", "vaultlet")
        .expect("scripts/cluster.sh install made the webhook configuration");
    let secret_before = cluster
        .get(RELEASE_NS, "secret", "vaultlet-tls")
        .expect("the generated TLS Secret");
    assert_eq!(
        ca_bundle(&config_before),
        secret_before["data"]["ca.crt"].as_str().unwrap_or_default(),
        "the caBundle must be the generated CA"
    );
    let client = &config_before["webhooks"][0]["clientConfig"];
    if cluster.injector_in_cluster() {
        assert_eq!(
            client["service"],
            json!({"name": "vaultlet", "namespace": RELEASE_NS, "path": "/mutate", "port": 443})
        );
        assert_eq!(client.get("url"), None);
    } else {
        assert_eq!(client["url"], cluster.injector_url());
    }

    helm_ok(
        cluster,
        &[
            "upgrade",
            "vaultlet",
            &chart_dir(),
            "-n",
            RELEASE_NS,
            "--reuse-values",
        ],
    );
    let config_after = cluster
        .get("", "mutatingwebhookconfiguration", "vaultlet")
        .expect("webhook configuration after upgrade");
    let secret_after = cluster
        .get(RELEASE_NS, "secret", "vaultlet-tls")
        .expect("TLS Secret after upgrade");
    assert_eq!(ca_bundle(&config_after), ca_bundle(&config_before));
    assert_eq!(secret_after["data"], secret_before["data"]);

    // The API server still trusts the injector: a labelled Pod is injected.
    let ns = cluster.namespace("e2e-upgrade", &[]);
    let stored = cluster
        .create(&ns.name, &labelled_pod())
        .expect("labelled Pod admitted after the upgrade");
    let agent = stored["spec"]["initContainers"][0]["name"].as_str();
    assert_eq!(agent, Some("vaultlet-agent"));
}

/// A release that is uninstalled however the test ends (its webhook configuration is
/// cluster-wide and would outlive the namespace).
struct Release {
    cluster: &'static Cluster,
    name: String,
    ns: String,
}

impl Drop for Release {
    fn drop(&mut self) {
        let _ = self.cluster.helm(&[
            "uninstall",
            &self.name,
            "-n",
            &self.ns,
            "--ignore-not-found",
        ]);
    }
}

fn install_isolated(
    cluster: &'static Cluster,
    ns: &Namespace,
    release: &str,
    extra: &[&str],
) -> Release {
    let set_json = isolated(release);
    let mut args = vec![
        "install",
        release,
        &chart_dir(),
        "-n",
        &ns.name,
        "--set-json",
        &set_json,
    ]
    .into_iter()
    .map(String::from)
    .collect::<Vec<_>>();
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let guard = Release {
        cluster,
        name: release.to_string(),
        ns: ns.name.clone(),
    };
    helm_ok(cluster, &args);
    guard
}

#[test]
fn existing_secret_mode_installs_and_uninstalls_cleanly() {
    let cluster = Cluster::running();
    let ns = cluster.namespace("e2e-chart-secret", &[]);
    let release = "vl-secret";
    let dir = TempDir::with_prefix("vaultlet-e2e-chart-").expect("temp dir");
    let service = format!("{release}-vaultlet.{}.svc", ns.name);
    let (crt, key) = cluster.sign_certificate(dir.path(), &service, &format!("DNS:{service}"));
    cluster.kubectl_ok(&[
        "create",
        "secret",
        "tls",
        "own-tls",
        "-n",
        &ns.name,
        "--cert",
        &crt.display().to_string(),
        "--key",
        &key.display().to_string(),
    ]);
    let ca = std::fs::read(cluster.ca_file()).expect("read cluster CA");
    let ca_b64 = base64_of(&ca);
    let _release = install_isolated(
        cluster,
        &ns,
        release,
        &[
            "--set",
            "replicaCount=1",
            "--set",
            "tls.mode=secret",
            "--set",
            "tls.secretName=own-tls",
            "--set",
            &format!("tls.caBundle={ca_b64}"),
        ],
    );
    let configs = cluster.list_labelled(
        "mutatingwebhookconfigurations",
        &format!("app.kubernetes.io/instance={release}"),
    );
    assert_eq!(configs.len(), 1);
    assert_eq!(ca_bundle(&configs[0]), ca_b64);
    let service_ref = &configs[0]["webhooks"][0]["clientConfig"]["service"];
    assert_eq!(service_ref["name"], format!("{release}-vaultlet"));
    assert_eq!(service_ref["namespace"], ns.name.as_str());
    let deployment = cluster
        .get(&ns.name, "deployment", &format!("{release}-vaultlet"))
        .expect("the injector Deployment");
    let volumes = deployment["spec"]["template"]["spec"]["volumes"].to_string();
    assert!(volumes.contains("\"secretName\":\"own-tls\""), "{volumes}");
    // helm made no Secret of its own in this mode.
    assert!(
        cluster
            .get(&ns.name, "secret", &format!("{release}-vaultlet-tls"))
            .is_none()
    );

    helm_ok(cluster, &["uninstall", release, "-n", &ns.name, "--wait"]);
    assert_eq!(objects_of(cluster, release), Vec::<String>::new());
    assert!(cluster.get(&ns.name, "secret", "own-tls").is_some());
}

#[test]
fn cert_manager_mode_objects_are_accepted_by_the_api_server() {
    let cluster = Cluster::running();
    let crds = cluster.script_output(&["cert-manager-crds"]);
    cluster.kubectl_ok(&["apply", "--server-side", "-f", crds.trim()]);
    cluster.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/certificates.cert-manager.io",
        "crd/issuers.cert-manager.io",
    ]);
    let ns = cluster.namespace("e2e-chart-cm", &[]);
    let release = "vl-cm";
    let _release = install_isolated(cluster, &ns, release, &["--set", "tls.mode=cert-manager"]);
    let fullname = format!("{release}-vaultlet");
    let issuers: Vec<Value> = cluster.list(&ns.name, "issuers.cert-manager.io");
    let mut issuer_names: Vec<&str> = issuers
        .iter()
        .filter_map(|i| i["metadata"]["name"].as_str())
        .collect();
    issuer_names.sort_unstable();
    assert_eq!(
        issuer_names,
        [format!("{fullname}-ca"), format!("{fullname}-selfsigned")]
    );
    let certificate = cluster
        .get(
            &ns.name,
            "certificates.cert-manager.io",
            &format!("{fullname}-serving"),
        )
        .expect("the serving Certificate");
    assert_eq!(
        certificate["spec"]["secretName"],
        format!("{fullname}-tls").as_str()
    );
    assert_eq!(
        certificate["spec"]["dnsNames"][2],
        format!("{fullname}.{}.svc", ns.name).as_str()
    );
    let config = cluster
        .get("", "mutatingwebhookconfiguration", &fullname)
        .expect("webhook configuration");
    assert_eq!(
        config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
        format!("{}/{fullname}-serving", ns.name).as_str()
    );
    helm_ok(cluster, &["uninstall", release, "-n", &ns.name, "--wait"]);
    assert_eq!(objects_of(cluster, release), Vec::<String>::new());
    assert_eq!(
        cluster.list(&ns.name, "certificates.cert-manager.io"),
        Vec::<Value>::new()
    );
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::prelude::*;
    BASE64_STANDARD.encode(bytes)
}

/// The reviews an in-cluster injector Pod answered with `outcome`, read through the API server's
/// proxy to its admin port.
fn pod_reviews(cluster: &Cluster, ns: &str, pod: &str, outcome: &str) -> f64 {
    pod_metric(
        cluster,
        ns,
        pod,
        &format!("vaultlet_injector_reviews_total{{outcome=\"{outcome}\"}}"),
    )
}

/// The value of `series` (a metric name with its labels) on an in-cluster injector Pod, read
/// through the API server's proxy to its admin port.
fn pod_metric(cluster: &Cluster, ns: &str, pod: &str, series: &str) -> f64 {
    let metrics = cluster.kubectl_ok(&[
        "get",
        "--raw",
        &format!("/api/v1/namespaces/{ns}/pods/{pod}:9090/proxy/metrics"),
    ]);
    let series = format!("{series} ");
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix(&series))
        .filter_map(|v| v.trim().parse::<f64>().ok())
        .sum()
}

/// The chart with its defaults (three replicas, spread over nodes and zones) on the one-node
/// cluster: every replica runs on the node, and the API server calls them through the Service.
#[test]
fn the_chart_runs_the_injector_on_the_node_behind_its_service() {
    let cluster = Cluster::running();
    assert!(
        cluster.node().is_some(),
        "needs the node (scripts/cluster.sh install with VAULTLET_CLUSTER_NODE=1)"
    );
    let ns = cluster.namespace("e2e-chart-node", &[]);
    // Its webhook configuration sorts before the installed release's `vaultlet`, so it is
    // called first and injects; `vaultlet`'s injectors then see an injected Pod.
    let release = "aa-node";
    // The operator of this release has an agent image with tools: `exec:` is admitted.
    let _release = install_isolated(
        cluster,
        &ns,
        release,
        &[
            "--wait",
            "--timeout",
            "180s",
            "--set",
            "injector.allowExecNotify=true",
        ],
    );
    let fullname = format!("{release}-vaultlet");
    let deployment = cluster
        .get(&ns.name, "deployment", &fullname)
        .expect("the injector Deployment");
    assert_eq!(
        deployment["status"]["readyReplicas"], 3,
        "{}",
        deployment["status"]
    );
    let mut pod = labelled_pod();
    pod["metadata"]["labels"]["vaultlet.io/e2e-release"] = json!(release);
    pod["metadata"]["annotations"]["vaultlet.io/notify"] = json!(EXEC_NOTIFY);
    pod["spec"]["nodeSelector"] = json!({"vaultlet.io/no-such-node": "true"});
    // Not in the release's own namespace: the chart keeps its webhook away from it.
    let apps = cluster.namespace("e2e-chart-node-apps", &[]);
    let stored = cluster
        .create(&apps.name, &pod)
        .expect("labelled Pod admitted");
    assert_eq!(
        stored["spec"]["initContainers"][0]["name"].as_str(),
        Some("vaultlet-agent")
    );
    let injectors = cluster.list(&ns.name, "pods");
    let injected: f64 = injectors
        .iter()
        .filter_map(|p| p["metadata"]["name"].as_str())
        .filter(|n| n.starts_with(&fullname))
        .map(|n| pod_reviews(cluster, &ns.name, n, "injected"))
        .sum();
    assert_eq!(injected, 1.0, "one in-cluster injector injected the Pod");
}
