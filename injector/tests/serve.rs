//! End-to-end tests of the real `vaultlet-injector serve` binary on loopback: AdmissionReviews
//! over TLS with HTTP/2 and HTTP/1.1, bad bodies, certificate rotation, SIGTERM.

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
struct Ca {
    cert: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new() -> Self {
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
    fn leaf(&self) -> (String, String, Vec<u8>) {
        let key = KeyPair::generate().expect("leaf key");
        let params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("leaf params");
        let cert = params.signed_by(&key, &self.issuer).expect("leaf cert");
        (cert.pem(), key.serialize_pem(), cert.der().to_vec())
    }
}

/// A running `vaultlet-injector serve`.
struct Server {
    child: Child,
    webhook: SocketAddr,
    admin: SocketAddr,
    _logs: mpsc::Receiver<String>,
}

impl Server {
    fn start(cert: &Path, key: &Path) -> Self {
        Self::start_with(cert, key, &[])
    }

    fn start_with(cert: &Path, key: &Path, extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_vaultlet-injector"))
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
            .args(["--log-level", "info", "--shutdown-grace", "10s"])
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
    fn log_line(&self, parts: &[&str], within: Duration) -> String {
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

    fn signal_term(&self) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).expect("pid"));
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("kill -TERM");
    }

    fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
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
fn start_signed(extra: &[&str]) -> (Ca, tempfile::TempDir, Server) {
    let ca = Ca::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key, _) = ca.leaf();
    let (cert_path, key_path) = write_pair(dir.path(), &cert, &key);
    let server = Server::start_with(&cert_path, &key_path, extra);
    (ca, dir, server)
}

async fn wait_ready(server: &Server) {
    wait_for("ready", Duration::from_secs(5), async || {
        plain_get(server.admin, "/readyz").await == 200
    })
    .await;
}

fn write_pair(dir: &Path, cert: &str, key: &str) -> (PathBuf, PathBuf) {
    let (c, k) = (dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::write(&k, key).expect("write key");
    std::fs::write(&c, cert).expect("write cert");
    (c, k)
}

fn connector(ca: &Ca, alpn: &[u8]) -> TlsConnector {
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

type TlsStream = tokio_rustls::client::TlsStream<TcpStream>;

async fn tls_connect(ca: &Ca, addr: SocketAddr, alpn: &[u8]) -> TlsStream {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from("localhost").expect("name");
    connector(ca, alpn)
        .connect(name, tcp)
        .await
        .expect("TLS handshake")
}

/// The DER of the certificate the server presents to a new connection.
async fn served_cert(ca: &Ca, addr: SocketAddr) -> Option<Vec<u8>> {
    let tcp = TcpStream::connect(addr).await.ok()?;
    let name = ServerName::try_from("localhost").ok()?;
    let tls = connector(ca, b"h2").connect(name, tcp).await.ok()?;
    let (_, conn) = tls.get_ref();
    conn.peer_certificates()?.first().map(|c| c.to_vec())
}

/// Sends one request over a fresh connection with the given ALPN; returns (status, body).
async fn send(ca: &Ca, addr: SocketAddr, alpn: &[u8], path: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
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
async fn h1_declared_too_large(ca: &Ca, addr: SocketAddr, len: usize) -> u16 {
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

/// HTTP/2 with no declared length: the server stops reading at the limit.
async fn h2_streamed_too_large(ca: &Ca, addr: SocketAddr, len: usize) -> u16 {
    let tls = tls_connect(ca, addr, b"h2").await;
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .expect("h2");
    tokio::spawn(conn);
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

async fn plain_get(addr: SocketAddr, path: &str) -> u16 {
    try_plain_get(addr, path).await.expect("admin request")
}

/// GET over plain HTTP/1.1; `None` when the connection fails.
async fn try_plain_get(addr: SocketAddr, path: &str) -> Option<u16> {
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
struct ChannelBody(tokio::sync::mpsc::Receiver<Bytes>);

impl ChannelBody {
    fn new() -> (tokio::sync::mpsc::Sender<Bytes>, Self) {
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

fn pod() -> Value {
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

fn review_body(object: &Value) -> Vec<u8> {
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
fn check_injected(object: &Value, body: &[u8]) {
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

async fn wait_for(what: &str, within: Duration, mut cond: impl AsyncFnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if cond().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reviews_over_h2_and_http1() {
    let (ca, _dir, server) = start_signed(&[]);
    wait_ready(&server).await;

    let object = pod();
    for alpn in [&b"h2"[..], b"http/1.1"] {
        let (status, body) = send(&ca, server.webhook, alpn, "/mutate", review_body(&object)).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        check_injected(&object, &body);
        // Every review is logged with its uid, namespace and Pod name.
        server.log_line(
            &[
                "uid=3b1f9c4e-1111-4222-8333-444455556666",
                "namespace=shop",
                "pod=web-*",
                "outcome=\"injected\"",
            ],
            Duration::from_secs(5),
        );
    }

    // Denied, with the annotation named in the message.
    let mut bad = pod();
    bad["metadata"]["annotations"]["vaultlet.io/vault-addr"] =
        json!("https://attacker.example:8200");
    let (status, body) = send(&ca, server.webhook, b"h2", "/mutate", review_body(&bad)).await;
    assert_eq!(status, 200);
    let review: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(review["response"]["allowed"], false);
    let msg = review["response"]["status"]["message"]
        .as_str()
        .expect("message");
    assert!(
        msg.contains("vaultlet.io/vault-addr") && msg.contains("attacker.example"),
        "{msg}"
    );
    let line = server.log_line(
        &[
            "uid=3b1f9c4e",
            "namespace=shop",
            "pod=web-*",
            "outcome=\"denied\"",
        ],
        Duration::from_secs(5),
    );
    assert!(line.contains("vaultlet.io/vault-addr"), "{line}");

    // Garbage -> 400; more than 3 MiB -> 413, over both protocols.
    for alpn in [&b"h2"[..], b"http/1.1"] {
        let (status, body) = send(&ca, server.webhook, alpn, "/mutate", b"not json".to_vec()).await;
        assert_eq!(status, 400);
        assert!(String::from_utf8_lossy(&body).contains("AdmissionReview"));
    }
    let too_big = 3 * 1024 * 1024 + 1;
    let (status, _) = send(&ca, server.webhook, b"h2", "/mutate", vec![b' '; too_big]).await;
    assert_eq!(status, 413, "declared length over h2");
    assert_eq!(
        h1_declared_too_large(&ca, server.webhook, too_big).await,
        413
    );
    assert_eq!(
        h2_streamed_too_large(&ca, server.webhook, too_big).await,
        413
    );

    // Metrics over TLS and on the admin port.
    let (status, body) = send(&ca, server.webhook, b"h2", "/metrics", Vec::new()).await;
    assert_eq!(status, 405, "POST /metrics");
    let _ = body;
    assert_eq!(plain_get(server.admin, "/metrics").await, 200);
    assert_eq!(plain_get(server.admin, "/healthz").await, 200);
    assert_eq!(
        plain_get(server.admin, "/mutate").await,
        404,
        "no /mutate without TLS"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_rotation_is_served_within_a_second() {
    let ca = Ca::new();
    let dir = tempfile::tempdir().expect("tempdir");
    // Secret-volume layout: tls.crt -> ..data/tls.crt, ..data -> ..<timestamp>/
    let secret_dir = dir.path();
    let publish = |generation: u32, cert: &str, key: &str| {
        let real = secret_dir.join(format!("..2026_11_22_{generation}"));
        std::fs::create_dir(&real).expect("mkdir");
        write_pair(&real, cert, key);
        let tmp = secret_dir.join("..data_tmp");
        std::os::unix::fs::symlink(real.file_name().expect("name"), &tmp).expect("symlink");
        std::fs::rename(&tmp, secret_dir.join("..data")).expect("atomic swap");
    };
    let (cert1, key1, der1) = ca.leaf();
    publish(1, &cert1, &key1);
    for f in ["tls.crt", "tls.key"] {
        std::os::unix::fs::symlink(format!("..data/{f}"), secret_dir.join(f)).expect("link");
    }
    let server = Server::start(&secret_dir.join("tls.crt"), &secret_dir.join("tls.key"));
    assert_eq!(served_cert(&ca, server.webhook).await, Some(der1));

    // 1. A Secret volume update: the ..data symlink swap.
    let (cert2, key2, der2) = ca.leaf();
    publish(2, &cert2, &key2);
    let took = wait_for(
        "new cert after ..data swap",
        Duration::from_millis(1500),
        async || served_cert(&ca, server.webhook).await.as_deref() == Some(&der2[..]),
    )
    .await;
    eprintln!("..data swap picked up in {took:?}");

    // 2. Plain files rewritten in place.
    let plain = tempfile::tempdir().expect("tempdir");
    let (cert3, key3, der3) = ca.leaf();
    let (c, k) = write_pair(plain.path(), &cert3, &key3);
    let server2 = Server::start(&c, &k);
    assert_eq!(served_cert(&ca, server2.webhook).await, Some(der3));
    let (cert4, key4, der4) = ca.leaf();
    write_pair(plain.path(), &cert4, &key4);
    let took = wait_for(
        "new cert after rewrite",
        Duration::from_millis(1500),
        async || served_cert(&ca, server2.webhook).await.as_deref() == Some(&der4[..]),
    )
    .await;
    eprintln!("in-place rewrite picked up in {took:?}");

    // A broken pair keeps the last good certificate.
    std::fs::write(&k, "not a key").expect("write");
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(served_cert(&ca, server2.webhook).await, Some(der4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_reviews_and_exits_zero() {
    let (ca, _dir, mut server) = start_signed(&["--drain-delay", "0s"]);

    // Start a review whose body is still being sent, then SIGTERM.
    let tls = tls_connect(&ca, server.webhook, b"h2").await;
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .expect("h2");
    tokio::spawn(conn);
    let (body_tx, body) = ChannelBody::new();
    let req = Request::post("https://localhost/mutate")
        .body(body)
        .expect("req");
    let in_flight = tokio::spawn(async move { sender.send_request(req).await });
    let full = review_body(&pod());
    let (first, rest) = full.split_at(full.len() / 2);
    body_tx
        .send(Bytes::copy_from_slice(first))
        .await
        .expect("first half");
    wait_for("readyz", Duration::from_secs(5), async || {
        plain_get(server.admin, "/readyz").await == 200
    })
    .await;

    server.signal_term();
    // Draining: readiness turns false (or the admin port is already closed).
    let admin = server.admin;
    wait_for(
        "unready while draining",
        Duration::from_secs(5),
        async || matches!(try_plain_get(admin, "/readyz").await, None | Some(503)),
    )
    .await;
    // New connections are refused.
    wait_for("listener closed", Duration::from_secs(5), async || {
        TcpStream::connect(server.webhook).await.is_err()
    })
    .await;
    assert!(
        server.child.try_wait().expect("try_wait").is_none(),
        "exited with a review in flight"
    );

    body_tx
        .send(Bytes::copy_from_slice(rest))
        .await
        .expect("second half");
    drop(body_tx);
    let resp = in_flight
        .await
        .expect("join")
        .expect("in-flight review answered");
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    check_injected(&pod(), &body);

    let status = server.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_sigterm_new_reviews_are_answered_for_the_drain_delay() {
    let delay = Duration::from_secs(3);
    let (ca, _dir, mut server) = start_signed(&["--drain-delay", "3s"]);
    wait_ready(&server).await;
    server.signal_term();
    let signalled = Instant::now();
    let admin = server.admin;
    // Unready at once, and the admin port still answers to say so.
    wait_for("unready", Duration::from_secs(2), async || {
        try_plain_get(admin, "/readyz").await == Some(503)
    })
    .await;
    // Connections opened after SIGTERM, within the delay, are answered, over both protocols.
    let object = pod();
    let mut answered = 0;
    while signalled.elapsed() + Duration::from_millis(800) < delay {
        for alpn in [&b"h2"[..], b"http/1.1"] {
            let (status, body) =
                send(&ca, server.webhook, alpn, "/mutate", review_body(&object)).await;
            assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
            check_injected(&object, &body);
            answered += 1;
        }
        assert_eq!(
            try_plain_get(admin, "/readyz").await,
            Some(503),
            "ready while draining"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        answered >= 4,
        "only {answered} reviews answered during the delay"
    );
    assert!(
        server.child.try_wait().expect("try_wait").is_none(),
        "exited before the drain delay was over"
    );
    let status = server.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
    assert!(
        signalled.elapsed() >= delay,
        "exited {:?} after SIGTERM, before the {delay:?} drain delay",
        signalled.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_exits_at_once() {
    for second in [
        nix::sys::signal::Signal::SIGTERM,
        nix::sys::signal::Signal::SIGINT,
    ] {
        let (_ca, _dir, mut server) = start_signed(&["--drain-delay", "60s"]);
        wait_ready(&server).await;
        server.signal_term();
        let admin = server.admin;
        wait_for("unready", Duration::from_secs(2), async || {
            try_plain_get(admin, "/readyz").await == Some(503)
        })
        .await;
        let pid = nix::unistd::Pid::from_raw(i32::try_from(server.child.id()).expect("pid"));
        nix::sys::signal::kill(pid, second).expect("second signal");
        let status = server.wait_exit(Duration::from_secs(2));
        assert_ne!(status.code(), Some(0), "{second}: {status:?}");
    }
}

#[test]
fn serve_without_readable_tls_files_fails_fast() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_vaultlet-injector"))
        .args([
            "serve",
            "--listen-addr",
            "127.0.0.1:0",
            "--admin-addr",
            "off",
        ])
        .arg("--tls-cert-file")
        .arg(dir.path().join("tls.crt"))
        .arg("--tls-key-file")
        .arg(dir.path().join("tls.key"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run serve");
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("serve kept running without a certificate instead of failing fast");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
        .expect("read stderr");
    assert_eq!(status.code(), Some(1), "{stderr}");
    let crt = dir.path().join("tls.crt");
    assert!(
        stderr.contains(&format!(
            "error: no serving certificate at start: cannot read {}: No such file or directory",
            crt.display()
        )) && stderr.contains("--tls-cert-file"),
        "{stderr}"
    );
    // Library errors are shown by their Display text, never their Debug form.
    assert!(
        !stderr.contains("Os {") && !stderr.contains("kind:"),
        "{stderr}"
    );
}

/// CPU time (user + system) of a process, from `/proc/<pid>/stat`, in clock ticks (1/100 s).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("proc stat");
    let after_comm = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // Fields 14 and 15 of stat(5); the slice starts at field 3.
    fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_server_uses_no_cpu() {
    // Regression: the certificate watcher once reacted to its own reads (inotify access
    // events) and spun a core at 100% while idle.
    let (_ca, _dir, server) = start_signed(&[]);
    wait_ready(&server).await;
    let pid = server.child.id();
    let before = cpu_ticks(pid);
    // A measurement window, not a synchronisation: it spans several certificate polls.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let used = cpu_ticks(pid) - before;
    assert!(
        used <= 5,
        "idle injector used {used} ticks (1/100 s) of CPU in 1.5 s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (ca, _dir, server) = start_signed(&["--read-timeout", "1s"]);

    // Headers that never finish: the connection is closed after the read timeout.
    let mut tls = tls_connect(&ca, server.webhook, b"http/1.1").await;
    tls.write_all(b"POST /mutate HTTP/1.1\r\nhost: localhost\r\n")
        .await
        .expect("write partial head");
    let started = Instant::now();
    let mut buf = vec![0; 512];
    let read = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf)).await;
    let elapsed = started.elapsed();
    let closed = match read {
        Ok(Ok(n)) => n == 0 || String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 408"),
        Ok(Err(_)) => true,
        Err(_) => false,
    };
    assert!(
        closed,
        "a client stuck in its headers was not cut off within 5 s"
    );
    assert!(
        elapsed >= Duration::from_millis(900),
        "cut off after {elapsed:?}, before the 1 s read timeout"
    );

    // A body that stalls half-way: 408, and the server still answers others.
    let tls = tls_connect(&ca, server.webhook, b"h2").await;
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .expect("h2");
    tokio::spawn(conn);
    let (tx, body) = ChannelBody::new();
    tx.send(Bytes::from_static(b"{\"apiVersion\":"))
        .await
        .expect("first chunk");
    let req = Request::post("https://localhost/mutate")
        .body(body)
        .expect("req");
    let status = tokio::time::timeout(Duration::from_secs(5), sender.send_request(req))
        .await
        .expect("an answer within 5 s")
        .expect("response")
        .status()
        .as_u16();
    assert_eq!(status, 408);
    drop(tx);
    let (status, body) = send(&ca, server.webhook, b"h2", "/mutate", review_body(&pod())).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
}
