//! The local Kubernetes control plane of `scripts/cluster.sh`, driven with its own `kubectl`.
//!
//! Tests never start the cluster themselves: `scripts/test.sh` runs `scripts/cluster.sh install`
//! first (the README's test command). [`Cluster::running`] panics with that instruction when it is
//! not up. Each test works in its own [`Namespace`], deleted when dropped.
//!
//! Like the testkit, helpers panic with a message saying what failed: a failed `kubectl` call
//! is a test failure. Calls that a test expects to fail return a `Result` with kubectl's stderr.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::bins;

/// The running local cluster.
#[derive(Debug)]
pub struct Cluster {
    dir: PathBuf,
    endpoints: BTreeMap<String, String>,
}

impl Cluster {
    /// The cluster `scripts/cluster.sh install` started (`$VAULTLET_CLUSTER_DIR`, else
    /// `<repo>/.cluster`).
    ///
    /// # Panics
    /// When it is not running.
    pub fn running() -> &'static Cluster {
        static CLUSTER: OnceLock<Cluster> = OnceLock::new();
        CLUSTER.get_or_init(|| {
            let dir = std::env::var_os("VAULTLET_CLUSTER_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| bins::workspace_root().join(".cluster"));
            let env = std::fs::read_to_string(dir.join("endpoints.env")).unwrap_or_else(|e| {
                panic!(
                    "no local cluster at {} ({e}): start it with `scripts/cluster.sh install`",
                    dir.display()
                )
            });
            let endpoints = env
                .lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let cluster = Cluster { dir, endpoints };
            if let Err(e) = cluster.kubectl(&["get", "--raw", "/readyz"], None) {
                panic!("the local cluster does not answer ({e}): run `scripts/cluster.sh install`");
            }
            cluster
        })
    }

    /// `https://127.0.0.1:<port>` of the API server.
    pub fn api_url(&self) -> &str {
        self.endpoint("API_SERVER")
    }

    /// The URL the API server calls for the webhook: the injector's Service
    /// (`https://vaultlet.vaultlet-system.svc:443/mutate`), or the host injector's `webhook.url`
    /// when the cluster has no node.
    pub fn injector_url(&self) -> &str {
        self.endpoint("INJECTOR_URL")
    }

    /// Whether the injector runs as the chart's Pods behind its Service (else: a host process).
    pub fn injector_in_cluster(&self) -> bool {
        self.endpoint("INJECTOR") == "service"
    }

    fn endpoint(&self, key: &str) -> &str {
        self.endpoints
            .get(key)
            .unwrap_or_else(|| panic!("{key} missing from .cluster/endpoints.env"))
    }

    /// The node's name when `scripts/cluster.sh` runs one (a kubelet), else `None`.
    pub fn node(&self) -> Option<&str> {
        self.endpoints
            .get("NODE")
            .map(String::as_str)
            .filter(|n| !n.is_empty())
    }

    /// The host address the node's Pods reach (the Pod bridge's gateway), when there is a node.
    pub fn host_for_pods(&self) -> Option<&str> {
        self.node()
            .and(self.endpoints.get("HOST_FOR_PODS"))
            .map(String::as_str)
    }

    /// The cluster CA certificate (PEM file).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("pki/ca.crt")
    }

    /// The admin kubeconfig.
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    /// A tool built by `scripts/cluster.sh` (`kubectl`, `helm`, ...).
    pub fn bin(&self, name: &str) -> PathBuf {
        self.dir.join("bin").join(name)
    }

    /// Runs `scripts/cluster.sh ARGS` and panics when it fails.
    pub fn script(&self, args: &[&str]) {
        self.script_output(args);
    }

    /// Runs `scripts/cluster.sh ARGS`; its stdout. Panics when it fails.
    pub fn script_output(&self, args: &[&str]) -> String {
        let out = Command::new(bins::workspace_root().join("scripts/cluster.sh"))
            .args(args)
            .env("VAULTLET_CLUSTER_DIR", &self.dir)
            .output()
            .expect("run scripts/cluster.sh");
        assert!(
            out.status.success(),
            "scripts/cluster.sh {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs the cluster's `helm` against it; stdout on success, else stderr.
    pub fn helm(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(self.bin("helm"))
            .arg("--kubeconfig")
            .arg(self.kubeconfig())
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run helm: {e}"));
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }

    /// `kubectl get KIND -l SELECTOR` across all namespaces (`items`).
    pub fn list_labelled(&self, kind: &str, selector: &str) -> Vec<Value> {
        let out = self.kubectl_ok(&["get", kind, "-A", "-l", selector, "-o", "json"]);
        let list: Value = serde_json::from_str(&out).expect("kubectl prints JSON");
        list["items"].as_array().cloned().unwrap_or_default()
    }

    /// A key and certificate for `san` (e.g. `IP:127.0.0.1`) signed by the cluster CA, written
    /// to `dir/tls.key` and `dir/tls.crt`.
    pub fn sign_certificate(
        &self,
        dir: &std::path::Path,
        cn: &str,
        san: &str,
    ) -> (PathBuf, PathBuf) {
        const SIGN: &str = r#"set -e
openssl ecparam -name prime256v1 -genkey -noout -out "$1/tls.key"
openssl req -new -key "$1/tls.key" -subj "/CN=$3" -out "$1/tls.csr"
printf 'subjectAltName=%s\n' "$4" >"$1/ext.cnf"
openssl x509 -req -in "$1/tls.csr" -CA "$2/ca.crt" -CAkey "$2/ca.key" -CAcreateserial \
  -CAserial "$1/ca.srl" -days 1 -extfile "$1/ext.cnf" -out "$1/tls.crt" 2>/dev/null"#;
        let out = Command::new("bash")
            .args(["-c", SIGN, "sign"])
            .arg(dir)
            .arg(self.dir.join("pki"))
            .args([cn, san])
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "signing a certificate for {san} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        (dir.join("tls.crt"), dir.join("tls.key"))
    }

    /// Runs kubectl with `stdin`; stdout on success, else stderr.
    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
        let mut child = Command::new(self.bin("kubectl"))
            .arg("--kubeconfig")
            .arg(self.kubeconfig())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run kubectl: {e}"));
        if let Some(mut pipe) = child.stdin.take() {
            // A write error means kubectl exited early; its stderr says why.
            let _ = pipe.write_all(stdin.unwrap_or_default().as_bytes());
        }
        let out = child.wait_with_output().expect("wait for kubectl");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }

    /// Runs kubectl and panics on failure.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        self.kubectl(args, None)
            .unwrap_or_else(|e| panic!("kubectl {args:?} failed: {e}"))
    }

    /// `kubectl create -f -` of `object`; the object as the API server stored it, or
    /// kubectl's error (an admission denial, say).
    pub fn create(&self, ns: &str, object: &Value) -> Result<Value, String> {
        let out = self.kubectl(
            &["create", "-n", ns, "-o", "json", "-f", "-"],
            Some(&object.to_string()),
        )?;
        Ok(serde_json::from_str(&out).expect("kubectl prints JSON"))
    }

    /// Like [`create`](Self::create) with `--dry-run=server`: validated, defaulted and
    /// admitted (webhooks included) but not stored.
    pub fn create_dry_run(&self, ns: &str, object: &Value) -> Result<Value, String> {
        let out = self.kubectl(
            &[
                "create",
                "--dry-run=server",
                "-n",
                ns,
                "-o",
                "json",
                "-f",
                "-",
            ],
            Some(&object.to_string()),
        )?;
        Ok(serde_json::from_str(&out).expect("kubectl prints JSON"))
    }

    /// `kubectl get KIND NAME` as JSON, `None` when it does not exist.
    pub fn get(&self, ns: &str, kind: &str, name: &str) -> Option<Value> {
        self.kubectl(&["get", "-n", ns, kind, name, "-o", "json"], None)
            .ok()
            .map(|out| serde_json::from_str(&out).expect("kubectl prints JSON"))
    }

    /// Every object of `kind` in `ns` (`items`).
    pub fn list(&self, ns: &str, kind: &str) -> Vec<Value> {
        let out = self.kubectl_ok(&["get", "-n", ns, kind, "-o", "json"]);
        let list: Value = serde_json::from_str(&out).expect("kubectl prints JSON");
        list["items"].as_array().cloned().unwrap_or_default()
    }

    /// Polls `kubectl get` of `kind` in `ns` every 100 ms until `pick` returns something.
    pub fn wait_for<T>(
        &self,
        ns: &str,
        kind: &str,
        timeout: Duration,
        what: &str,
        mut pick: impl FnMut(&[Value]) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            let items = self.list(ns, kind);
            if let Some(found) = pick(&items) {
                return found;
            }
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {what}; {kind} in {ns}:\n{}",
                    serde_json::to_string_pretty(&items).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A service-account token from the API server's TokenRequest, as the kubelet gets one
    /// for a projected volume; bound to `pod` (name, uid) when given.
    pub fn token(
        &self,
        ns: &str,
        service_account: &str,
        audience: &str,
        secs: u64,
        pod: Option<(&str, &str)>,
    ) -> String {
        let duration = format!("{secs}s");
        let mut args = vec![
            "create",
            "token",
            service_account,
            "-n",
            ns,
            "--audience",
            audience,
            "--duration",
            &duration,
        ];
        if let Some((name, uid)) = pod {
            args.extend([
                "--bound-object-kind",
                "Pod",
                "--bound-object-name",
                name,
                "--bound-object-uid",
                uid,
            ]);
        }
        self.kubectl_ok(&args).trim().to_string()
    }

    /// Creates namespace `ns` unless it exists.
    pub fn ensure_namespace(&self, ns: &str) {
        if self.get("", "namespace", ns).is_none()
            && let Err(e) = self.kubectl(&["create", "namespace", ns], None)
            && !e.contains("AlreadyExists")
        {
            panic!("cannot create namespace {ns}: {e}");
        }
    }

    /// Creates service account `name` in `ns` (and `ns`) unless it exists.
    pub fn ensure_service_account(&self, ns: &str, name: &str) {
        self.ensure_namespace(ns);
        if self.get(ns, "serviceaccount", name).is_none() {
            // Another test may create it at the same moment: only a real failure counts.
            if let Err(e) = self.kubectl(&["create", "serviceaccount", name, "-n", ns], None)
                && !e.contains("AlreadyExists")
            {
                panic!("cannot create service account {ns}/{name}: {e}");
            }
        }
    }

    /// Creates a Pod of service account `sa` in `ns` that never runs (no node takes it, no
    /// webhook sees it): something for [`token`](Self::token) to bind a token to, as the
    /// kubelet binds a projected token to its Pod. Returns `(name, uid)`.
    pub fn placeholder_pod(&self, ns: &str, sa: &str) -> (String, String) {
        self.ensure_service_account(ns, sa);
        let name = format!("holder-{}", crate::random_hex(4));
        let pod = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name},
            "spec": {
                "serviceAccountName": sa,
                "automountServiceAccountToken": false,
                "nodeSelector": {"vaultlet.io/no-such-node": "true"},
                "containers": [{"name": "idle", "image": "vaultlet/none"}],
            },
        });
        let stored = self
            .create(ns, &pod)
            .unwrap_or_else(|e| panic!("cannot create placeholder Pod: {e}"));
        let uid = stored["metadata"]["uid"].as_str().unwrap_or_default();
        (name, uid.to_string())
    }

    /// Deletes `kind/name` in `ns` and waits until it is gone.
    pub fn delete(&self, ns: &str, kind: &str, name: &str) {
        self.kubectl_ok(&[
            "delete",
            "-n",
            ns,
            kind,
            name,
            "--grace-period=0",
            "--force",
        ]);
    }

    /// A long-lived token of a service account allowed to call TokenReview
    /// (`system:auth-delegator`): what OpenBao's kubernetes auth needs as `token_reviewer_jwt`
    /// when it runs outside the cluster.
    pub fn reviewer_token(&self) -> String {
        static TOKEN: OnceLock<String> = OnceLock::new();
        TOKEN
            .get_or_init(|| {
                let ns = "vaultlet-e2e";
                self.ensure_service_account(ns, "token-reviewer");
                self.bind_cluster_role(
                    "vaultlet-e2e-token-reviewer",
                    "system:auth-delegator",
                    serde_json::json!({"kind": "ServiceAccount", "name": "token-reviewer",
                                       "namespace": ns}),
                );
                self.token(ns, "token-reviewer", self.api_url(), 24 * 3600, None)
            })
            .clone()
    }

    /// Binds ClusterRole `system:service-account-issuer-discovery` to `system:unauthenticated`,
    /// as Kubernetes documents for relying parties that fetch the issuer's OIDC discovery
    /// document and JWKS without credentials (OpenBao's `jwt` auth method). Idempotent.
    pub fn allow_anonymous_issuer_discovery(&self) {
        self.bind_cluster_role(
            "vaultlet-e2e-issuer-discovery",
            "system:service-account-issuer-discovery",
            serde_json::json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Group",
                               "name": "system:unauthenticated"}),
        );
    }

    /// `kubectl apply` of ClusterRoleBinding `name`: ClusterRole `role` to `subject`.
    fn bind_cluster_role(&self, name: &str, role: &str, subject: Value) {
        let binding = serde_json::json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": role},
            "subjects": [subject],
        });
        if let Err(e) = self.kubectl(&["apply", "-f", "-"], Some(&binding.to_string())) {
            panic!("cannot bind ClusterRole {role} ({name}): {e}");
        }
    }

    /// The injector's counter of answered reviews (all outcomes), from its `/metrics`
    /// (summed over its Pods).
    pub fn injector_reviews(&self) -> f64 {
        let pages = if self.injector_in_cluster() {
            // Every injector Pod's admin port, through the API server's Pod proxy.
            let ns = self.endpoint("INJECTOR_NAMESPACE");
            let pods = self.kubectl_ok(&[
                "get",
                "pods",
                "-n",
                ns,
                "-l",
                "app.kubernetes.io/name=vaultlet",
                "-o",
                "jsonpath={.items[*].metadata.name}",
            ]);
            pods.split_whitespace()
                .map(|pod| {
                    let path = format!("/api/v1/namespaces/{ns}/pods/{pod}:9090/proxy/metrics");
                    self.kubectl_ok(&["get", "--raw", &path])
                })
                .collect()
        } else {
            let url = format!("{}/metrics", self.endpoint("INJECTOR_ADMIN"));
            let out = Command::new("curl")
                .args(["-sf", &url])
                .output()
                .expect("run curl");
            assert!(out.status.success(), "GET {url} failed");
            vec![String::from_utf8_lossy(&out.stdout).into_owned()]
        };
        pages
            .iter()
            .flat_map(|page| page.lines())
            .filter(|l| l.starts_with("vaultlet_injector_reviews_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// A fresh namespace `<prefix>-<random>`, labelled `labels`; deleted when dropped.
    pub fn namespace(&'static self, prefix: &str, labels: &[(&str, &str)]) -> Namespace {
        let name = format!("{prefix}-{}", crate::random_hex(3));
        let ns = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": name,
                "labels": labels.iter().map(|(k, v)| (k.to_string(), Value::from(*v)))
                    .collect::<serde_json::Map<_, _>>(),
            },
        });
        self.create("", &ns)
            .unwrap_or_else(|e| panic!("cannot create namespace {name}: {e}"));
        Namespace {
            cluster: self,
            name,
        }
    }
}

/// A test's own namespace; deleted (without waiting) when dropped.
#[derive(Debug)]
pub struct Namespace {
    cluster: &'static Cluster,
    /// Its name.
    pub name: String,
}

impl Namespace {
    /// The cluster it lives in.
    pub fn cluster(&self) -> &'static Cluster {
        self.cluster
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = self
            .cluster
            .kubectl(&["delete", "namespace", &self.name, "--wait=false"], None);
    }
}
