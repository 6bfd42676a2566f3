//! A second mutating admission webhook for reinvocation tests: a small Python HTTPS server
//! that adds a container named `extra` to every labelled Pod of one namespace.

use std::process::Command;

use base64::prelude::*;
use serde_json::json;
use vaultlet_testkit::cluster::Cluster;
use vaultlet_testkit::{Process, TempDir, free_port, wait_until};

const SERVER: &str = r#"
import base64, http.server, json, ssl, sys
class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        request = review["request"]
        names = [c["name"] for c in request["object"]["spec"]["containers"]]
        response = {"uid": request["uid"], "allowed": True}
        if "extra" not in names:
            patch = [{"op": "add", "path": "/spec/containers/-", "value": {
                "name": "extra", "image": "busybox", "command": ["sleep", "3600"]}}]
            response["patchType"] = "JSONPatch"
            response["patch"] = base64.b64encode(json.dumps(patch).encode()).decode()
        print("review", request["uid"], flush=True)
        body = json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                           "response": response}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(sys.argv[2], sys.argv[3])
server.socket = context.wrap_socket(server.socket, server_side=True)
print("listening", flush=True)
server.serve_forever()
"#;

/// The running webhook and its registration; both removed when dropped.
#[derive(Debug)]
pub struct ExtraContainerWebhook {
    cluster: &'static Cluster,
    name: String,
    server: Process,
    _dir: TempDir,
}

impl ExtraContainerWebhook {
    /// Starts the server and registers it for labelled Pods of namespace `ns`, ordered after
    /// vaultlet's webhook (configurations run in name order).
    pub fn start(cluster: &'static Cluster, ns: &str) -> ExtraContainerWebhook {
        let dir = TempDir::with_prefix("vaultlet-e2e-webhook-").expect("temp dir");
        let (cert, key) = cluster.sign_certificate(dir.path(), "127.0.0.1", "IP:127.0.0.1");
        let port = free_port();
        let script = dir.path().join("webhook.py");
        std::fs::write(&script, SERVER).expect("write webhook.py");
        let mut cmd = Command::new("python3");
        cmd.arg(&script).arg(port.to_string()).arg(&cert).arg(&key);
        let server = Process::spawn("extra-webhook", cmd, &dir.path().join("webhook.log"));
        wait_until(
            std::time::Duration::from_secs(10),
            "the extra webhook listens",
            || server.log().contains("listening"),
        );
        let name = format!("zz-vaultlet-e2e-extra-{ns}");
        let ca = std::fs::read(cluster.ca_file()).expect("read cluster CA");
        let config = json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": name},
            "webhooks": [{
                "name": "extra.e2e.vaultlet.io",
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "failurePolicy": "Fail",
                "reinvocationPolicy": "Never",
                "clientConfig": {
                    "url": format!("https://127.0.0.1:{port}/"),
                    "caBundle": BASE64_STANDARD.encode(ca),
                },
                "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                           "resources": ["pods"]}],
                "objectSelector": {"matchLabels": {"vaultlet.io/inject": "true"}},
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
            }],
        });
        cluster
            .create("", &config)
            .unwrap_or_else(|e| panic!("cannot register the extra webhook: {e}"));
        ExtraContainerWebhook {
            cluster,
            name,
            server,
            _dir: dir,
        }
    }

    /// Reviews the server answered so far.
    pub fn calls(&self) -> usize {
        self.server
            .log()
            .lines()
            .filter(|l| l.starts_with("review "))
            .count()
    }
}

impl Drop for ExtraContainerWebhook {
    fn drop(&mut self) {
        let _ = self.cluster.kubectl(
            &["delete", "mutatingwebhookconfiguration", &self.name],
            None,
        );
    }
}
