//! Helpers shared by the tests of the real `vaultlet-injector serve` binary: a test CA, the
//! server process, TLS and plain-HTTP clients, AdmissionReview bodies.
// Each test binary uses only some of these.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// A test CA that signs serving certificates for `localhost`.
pub struct Ca {
    pub cert: CertificateDer<'static>,
    pub issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    pub fn new() -> Self {
        let key = KeyPair::generate().expect("ca key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).expect("ca cert");
        Self {
            cert: cert.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A new leaf: (cert PEM, key PEM, cert DER).
    pub fn leaf(&self) -> (String, String, Vec<u8>) {
        let key = KeyPair::generate().expect("leaf key");
        let params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("leaf params");
        let cert = params.signed_by(&key, &self.issuer).expect("leaf cert");
        (cert.pem(), key.serialize_pem(), cert.der().to_vec())
    }
}

/// A running `vaultlet-injector serve`.
pub struct Server {
    pub child: Child,
    pub webhook: SocketAddr,
    pub admin: SocketAddr,
    pub _logs: mpsc::Receiver<String>,
}

impl Server {
    pub fn start(cert: &Path, key: &Path) -> Self {
        Self::start_with(cert, key, &[])
    }

    pub fn start_with(cert: &Path, key: &Path, extra: &[&str]) -> Self {
        Self::start_under(&[], cert, key, extra)
    }

    /// Starts the injector under `wrapper` (e.g. `prlimit --nofile=64 --`), if any.
    pub fn start_under(wrapper: &[&str], cert: &Path, key: &Path, extra: &[&str]) -> Self {
        let bin = env!("CARGO_BIN_EXE_vaultlet-injector");
        let mut command = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        let mut child = command
            .args([
                "serve",
                "--listen-addr",
                "127.0.0.1:0",
                "--admin-addr",
                "127.0.0.1:0",
            ])
            .arg("--tls-cert-file")
            .arg(cert)
            .arg("--tls-key-file")
            .arg(key)
            .args(["--shutdown-grace", "10s"])
            .args(
                ["--log-level", "info"]
                    .iter()
                    .filter(|_| !extra.contains(&"--log-level")),
            )
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start vaultlet-injector");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[injector] {line}");
                let _ = tx.send(line);
            }
        });
        let unset = SocketAddr::from(([0, 0, 0, 0], 0));
        // Owned by the struct from here on, so Drop kills it if start-up fails.
        let mut server = Self {
            child,
            webhook: unset,
            admin: unset,
            _logs: rx,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while server.webhook == unset {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = server
                ._logs
                .recv_timeout(left)
                .expect("injector did not log 'listening' in time");
            if line.contains("listening") {
                let field = |name: &str| -> SocketAddr {
                    let start = line.find(&format!("{name}=")).expect("field") + name.len() + 1;
                    let rest = &line[start..];
                    rest.split_whitespace()
                        .next()
                        .expect("addr")
                        .parse()
                        .expect("socket addr")
                };
                server.admin = field("admin");
                server.webhook = field("webhook");
            }
        }
        server
    }

    /// Waits for a log line containing every one of `parts`; returns it.
    pub fn log_line(&self, parts: &[&str], within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                ._logs
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no log line with {parts:?} within {within:?}"));
            if parts.iter().all(|p| line.contains(p)) {
                return line;
            }
        }
    }

    /// The log lines that arrived since the last call (or since start-up).
    pub fn drain_lines(&self) -> Vec<String> {
        self._logs.try_iter().collect()
    }

    pub fn signal_term(&self) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).expect("pid"));
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("kill -TERM");
    }

    pub fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "injector did not exit in time");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A server on a fresh CA-signed certificate; the temp dir holding it must outlive the server.
pub fn start_signed(extra: &[&str]) -> (Ca, tempfile::TempDir, Server) {
    let ca = Ca::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key, _) = ca.leaf();
    let (cert_path, key_path) = write_pair(dir.path(), &cert, &key);
    let server = Server::start_with(&cert_path, &key_path, extra);
    (ca, dir, server)
}

pub async fn wait_ready(server: &Server) {
    wait_for("ready", Duration::from_secs(5), async || {
        plain_get(server.admin, "/readyz").await == 200
    })
    .await;
}

pub fn write_pair(dir: &Path, cert: &str, key: &str) -> (PathBuf, PathBuf) {
    let (c, k) = (dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::write(&k, key).expect("write key");
    std::fs::write(&c, cert).expect("write cert");
    (c, k)
}

pub fn connector(ca: &Ca, alpn: &[u8]) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert.clone()).expect("root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    TlsConnector::from(Arc::new(config))
}

pub type TlsStream = tokio_rustls::client::TlsStream<TcpStream>;

pub async fn tls_connect(ca: &Ca, addr: SocketAddr, alpn: &[u8]) -> TlsStream {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from("localhost").expect("name");
    connector(ca, alpn)
        .connect(name, tcp)
        .await
        .expect("TLS handshake")
}

/// The DER of the certificate the server presents to a new connection.
pub async fn served_cert(ca: &Ca, addr: SocketAddr) -> Option<Vec<u8>> {
    let tcp = TcpStream::connect(addr).await.ok()?;
    let name = ServerName::try_from("localhost").ok()?;
    let tls = connector(ca, b"h2").connect(name, tcp).await.ok()?;
    let (_, conn) = tls.get_ref();
    conn.peer_certificates()?.first().map(|c| c.to_vec())
}

/// Sends one request over a fresh connection with the given ALPN; returns (status, body).
pub async fn send(
    ca: &Ca,
    addr: SocketAddr,
    alpn: &[u8],
    path: &str,
    body: Vec<u8>,
) -> (u16, Vec<u8>) {
    let tls = tls_connect(ca, addr, alpn).await;
    let negotiated = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    assert_eq!(negotiated.as_deref(), Some(alpn), "ALPN");
    let req = Request::post(format!("https://localhost{path}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("request");
    let io = TokioIo::new(tls);
    let resp = if alpn == b"h2" {
        let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .expect("h2 handshake");
        tokio::spawn(conn);
        sender.send_request(req).await.expect("h2 response")
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .expect("h1 handshake");
        tokio::spawn(conn);
        sender.send_request(req).await.expect("h1 response")
    };
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
        .to_vec();
    (status, body)
}

/// HTTP/1.1 with a too-large Content-Length: the answer comes before the body is sent.
pub async fn h1_declared_too_large(ca: &Ca, addr: SocketAddr, len: usize) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tls = tls_connect(ca, addr, b"http/1.1").await;
    let head = format!(
        "POST /mutate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {len}\r\n\r\n"
    );
    tls.write_all(head.as_bytes()).await.expect("write head");
    let mut buf = vec![0; 512];
    let n = tls.read(&mut buf).await.expect("read response");
    let text = String::from_utf8_lossy(&buf[..n]);
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status line")
}

/// An HTTP/2 connection over TLS whose request bodies are streamed from a [`ChannelBody`].
pub async fn h2_streaming_sender(
    ca: &Ca,
    addr: SocketAddr,
) -> hyper::client::conn::http2::SendRequest<ChannelBody> {
    let tls = tls_connect(ca, addr, b"h2").await;
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .expect("h2");
    tokio::spawn(conn);
    sender
}

/// HTTP/2 with no declared length: the server stops reading at the limit.
pub async fn h2_streamed_too_large(ca: &Ca, addr: SocketAddr, len: usize) -> u16 {
    let mut sender = h2_streaming_sender(ca, addr).await;
    let (tx, body) = ChannelBody::new();
    tokio::spawn(async move {
        let chunk = Bytes::from(vec![b' '; 64 * 1024]);
        let mut sent = 0;
        while sent < len {
            if tx.send(chunk.clone()).await.is_err() {
                return;
            }
            sent += chunk.len();
        }
    });
    let req = Request::post("https://localhost/mutate")
        .body(body)
        .expect("req");
    sender
        .send_request(req)
        .await
        .expect("response")
        .status()
        .as_u16()
}

pub async fn plain_get(addr: SocketAddr, path: &str) -> u16 {
    try_plain_get(addr, path).await.expect("admin request")
}

/// GET over plain HTTP/1.1; `None` when the connection fails.
pub async fn try_plain_get(addr: SocketAddr, path: &str) -> Option<u16> {
    let tcp = TcpStream::connect(addr).await.ok()?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .ok()?;
    tokio::spawn(conn);
    let req = Request::get(path)
        .header("host", "localhost")
        .body(Full::new(Bytes::new()))
        .ok()?;
    Some(sender.send_request(req).await.ok()?.status().as_u16())
}

/// A request body fed chunk by chunk from a channel (to keep a review in flight).
pub struct ChannelBody(pub tokio::sync::mpsc::Receiver<Bytes>);

impl ChannelBody {
    pub fn new() -> (tokio::sync::mpsc::Sender<Bytes>, Self) {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        (tx, Self(rx))
    }
}

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|b| Ok(hyper::body::Frame::data(b))))
    }
}

pub fn pod() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "generateName": "web-", "namespace": "shop",
            "labels": {"app": "web", "vaultlet.io/inject": "true"},
            "annotations": {
                "vaultlet.io/role": "web",
                "vaultlet.io/secret-db": "database/creds/web",
                "vaultlet.io/template-db": "postgres://{{username}}:{{password}}@db/shop\n",
                "vaultlet.io/notify": "signal:SIGHUP:nginx"
            }
        },
        "spec": {
            "automountServiceAccountToken": false,
            "containers": [{"name": "web", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}]
        }
    })
}

pub fn review_body(object: &Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "3b1f9c4e-1111-4222-8333-444455556666",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "shop", "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": object, "oldObject": null, "dryRun": false
        }
    }))
    .expect("json")
}

/// Applies the response's patch to `object` and checks the injected Pod.
pub fn check_injected(object: &Value, body: &[u8]) {
    let review: Value = serde_json::from_slice(body).expect("review json");
    let resp = &review["response"];
    assert_eq!(resp["uid"], "3b1f9c4e-1111-4222-8333-444455556666");
    assert_eq!(resp["allowed"], true, "{resp}");
    assert_eq!(resp["patchType"], "JSONPatch");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(resp["patch"].as_str().expect("patch string"))
        .expect("base64");
    let patch: json_patch::Patch = serde_json::from_slice(&bytes).expect("patch");
    let mut pod = object.clone();
    json_patch::patch(&mut pod, &patch).expect("patch applies");
    let agent = &pod["spec"]["initContainers"][0];
    assert_eq!(agent["name"], "vaultlet-agent");
    assert_eq!(agent["restartPolicy"], "Always");
    assert_eq!(agent["securityContext"]["runAsNonRoot"], true);
    let config: Value = serde_json::from_str(agent["env"][0]["value"].as_str().expect("config"))
        .expect("config json");
    assert_eq!(config["auth"]["role"], "web");
    assert_eq!(pod["spec"]["shareProcessNamespace"], true);
    assert_eq!(
        pod["metadata"]["annotations"]["vaultlet.io/status"],
        "injected"
    );
    let app = &pod["spec"]["containers"][0];
    assert_eq!(app["volumeMounts"][0]["name"], "vaultlet-secrets");
    assert_eq!(app["volumeMounts"][0]["readOnly"], true);
    let volumes: Vec<&str> = pod["spec"]["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert!(volumes.contains(&"vaultlet-sa-token"), "{volumes:?}");
}

pub async fn wait_for(
    what: &str,
    within: Duration,
    mut cond: impl AsyncFnMut() -> bool,
) -> Duration {
    let start = Instant::now();
    loop {
        if cond().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs `vaultlet-injector <sub> <args>` with `stdin`; its whole output.
pub fn run_cli(sub: &str, args: &[&str], stdin: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_vaultlet-injector"))
        .arg(sub)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn vaultlet-injector");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("vaultlet-injector output")
}
