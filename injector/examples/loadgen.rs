//! Loopback load test of `/mutate` over TLS + HTTP/2, against the real injector and a
//! do-nothing baseline server (hyper + rustls, parses the review, answers "allowed") in the
//! same run, so the result is a ratio.
//!
//! ```text
//! cargo run --release --example loadgen -- run --injector target/release/vaultlet-injector
//! ```
//! `run` starts both servers on 127.0.0.1 with a fresh test certificate, measures throughput
//! (N concurrent streams for a bounded time) and latency at a fixed rate, reads the injector's
//! peak RSS (VmHWM) and prints a Markdown report. `baseline` is the baseline server itself.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use kube_core::DynamicObject;
use kube_core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Parser)]
#[command(about = "Load test of the injector's /mutate against a do-nothing TLS baseline")]
enum Cli {
    /// Run the do-nothing baseline server (prints `listening ADDR`).
    Baseline {
        /// PEM certificate.
        #[arg(long)]
        cert: PathBuf,
        /// PEM key.
        #[arg(long)]
        key: PathBuf,
    },
    /// Start both servers and measure them.
    Run(RunArgs),
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Path of the `vaultlet-injector` binary.
    #[arg(long)]
    injector: PathBuf,
    /// Concurrent in-flight requests in the throughput phase.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// HTTP/2 connections the streams are spread over.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Seconds of each throughput round.
    #[arg(long, default_value_t = 5)]
    duration: u64,
    /// Alternating rounds per server (throughput and fixed rate).
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Requests per second in the fixed-rate phase.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Seconds of each fixed-rate round.
    #[arg(long, default_value_t = 5)]
    rate_duration: u64,
    /// The injector's --log-level: `info` logs one line per review;
    /// `info,vaultlet_injector::review=warn` leaves those out.
    #[arg(long, default_value = "info")]
    injector_log_level: String,
}

fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match Cli::parse() {
        Cli::Baseline { cert, key } => runtime.block_on(baseline(&cert, &key)),
        Cli::Run(args) => runtime.block_on(run(args)),
    }
}

// ---------------------------------------------------------------- baseline server

fn server_tls(cert: &Path, key: &Path) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let cert_pem = std::fs::read(cert)?;
    let key_pem = std::fs::read(key)?;
    let config = vaultlet_injector::tls::server_config(&cert_pem, &key_pem, cert, key)?;
    Ok(Arc::new(config))
}

async fn baseline(cert: &Path, key: &Path) -> anyhow::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(server_tls(cert, key)?);
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("listening {}", listener.local_addr()?);
    std::io::stdout().flush()?;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(stream).await else {
                return;
            };
            let svc = hyper::service::service_fn(allow_everything);
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let _ = builder.serve_connection(TokioIo::new(tls), svc).await;
        });
    }
}

/// Parses the review and answers "allowed" (what any webhook must do at least).
async fn allow_everything(
    req: Request<hyper::body::Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, std::convert::Infallible> {
    let body = req
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let answer = serde_json::from_slice::<AdmissionReview<DynamicObject>>(&body)
        .ok()
        .and_then(|r| r.try_into().ok())
        .map(|r: AdmissionRequest<DynamicObject>| AdmissionResponse::from(&r))
        .unwrap_or_else(|| AdmissionResponse::invalid("not a review"));
    let bytes = serde_json::to_vec(&answer.into_review()).unwrap_or_default();
    let mut resp = hyper::Response::new(Full::new(Bytes::from(bytes)));
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

// ---------------------------------------------------------------- test fixture

struct Pki {
    ca: CertificateDer<'static>,
    cert: PathBuf,
    key: PathBuf,
    _dir: tempfile::TempDir,
}

fn pki() -> anyhow::Result<Pki> {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate()?;
    let leaf = CertificateParams::new(vec!["localhost".to_owned()])?.signed_by(&key, &issuer)?;
    let dir = tempfile::tempdir()?;
    let (cert, keyf) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert, leaf.pem())?;
    std::fs::write(&keyf, key.serialize_pem())?;
    Ok(Pki {
        ca: ca_cert.der().clone(),
        cert,
        key: keyf,
        _dir: dir,
    })
}

/// A realistic ~3 KB review: a Deployment's Pod with two containers and six annotations.
fn review() -> Vec<u8> {
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "generateName": "checkout-7d9f8b6c5d-", "namespace": "shop",
            "labels": {"app.kubernetes.io/name": "checkout", "app.kubernetes.io/part-of": "shop",
                       "pod-template-hash": "7d9f8b6c5d", "vaultlet.io/inject": "true"},
            "annotations": {
                "vaultlet.io/role": "checkout",
                "vaultlet.io/secret-db": "database/creds/checkout",
                "vaultlet.io/template-db": "DATABASE_URL=postgres://{{username}}:{{password}}@postgres.shop.svc:5432/checkout?sslmode=require\n",
                "vaultlet.io/secret-stripe": "secret/data/shop/stripe",
                "vaultlet.io/file-stripe": "stripe.env",
                "vaultlet.io/notify": "http://127.0.0.1:8080/-/reload"
            },
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "checkout-7d9f8b6c5d",
                                 "uid": "5f0c3c0e-7a0b-4c1f-9f57-2a7c1c7e9d11", "controller": true, "blockOwnerDeletion": true}]
        },
        "spec": {
            "serviceAccountName": "checkout",
            "securityContext": {"runAsNonRoot": true, "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {"name": "checkout", "image": "registry.example.com/shop/checkout:2.14.3",
                 "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                 "env": [{"name": "LOG_LEVEL", "value": "info"}, {"name": "CONFIG_DIR", "value": "/vault/secrets"},
                         {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                 "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}},
                 "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}, "periodSeconds": 5},
                 "livenessProbe": {"httpGet": {"path": "/live", "port": 8080}, "periodSeconds": 10},
                 "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                                     "capabilities": {"drop": ["ALL"]}},
                 "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
                 "imagePullPolicy": "IfNotPresent"},
                {"name": "metrics-exporter", "image": "registry.example.com/shop/exporter:0.9.1",
                 "ports": [{"name": "metrics", "containerPort": 9100}],
                 "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}},
                 "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}
            ],
            "restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
            "schedulerName": "default-scheduler", "priority": 0, "enableServiceLinks": true,
            "tolerations": [
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
            ]
        }
    });
    let review = json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "0c9a8d74-9cb7-44dd-b98e-09fd62def2f4",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "shop", "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller",
                         "uid": "3e6a5c52-2d5b-4a83-9a1d-8f8b9a4d7e21", "groups": ["system:serviceaccounts", "system:authenticated"]},
            "object": pod, "oldObject": null, "dryRun": false,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}
        }
    });
    serde_json::to_vec(&review).unwrap_or_default()
}

// ---------------------------------------------------------------- processes

struct Proc {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawns a server and waits for the line announcing its address (on stdout or stderr).
fn spawn(mut cmd: Command, from_stderr: bool, marker: &str) -> anyhow::Result<Proc> {
    if from_stderr {
        cmd.stderr(Stdio::piped()).stdout(Stdio::null());
    } else {
        cmd.stdout(Stdio::piped()).stderr(Stdio::inherit());
    }
    let mut child = cmd.spawn().context("spawning a server")?;
    let out: Box<dyn std::io::Read + Send> = if from_stderr {
        Box::new(child.stderr.take().context("stderr")?)
    } else {
        Box::new(child.stdout.take().context("stdout")?)
    };
    let mut lines = BufReader::new(out).lines();
    let addr = loop {
        let Some(line) = lines.next() else {
            let _ = child.kill();
            let _ = child.wait();
            bail!("server exited before announcing its address");
        };
        let line = line?;
        if let Some(pos) = line.find(marker) {
            let rest = &line[pos + marker.len()..];
            break rest.split_whitespace().next().unwrap_or_default().parse()?;
        }
    };
    // Keep draining the pipe so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Ok(Proc { child, addr })
}

fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

// ---------------------------------------------------------------- client

async fn h2_connect(
    ca: &CertificateDer<'static>,
    addr: SocketAddr,
) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone())?;
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost")?, tcp)
        .await?;
    let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(tls))
        .await?;
    tokio::spawn(conn);
    Ok(sender)
}

/// Sends one review; returns its latency, or an error for a non-200 answer.
async fn one(mut sender: SendRequest<Full<Bytes>>, body: Bytes) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let req = Request::post("https://localhost/mutate")
        .header("content-type", "application/json")
        .body(Full::new(body))?;
    sender.ready().await?;
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    let bytes = resp.into_body().collect().await?.to_bytes();
    if status != 200 || !bytes.starts_with(b"{") {
        bail!("status {status}");
    }
    Ok(start.elapsed())
}

#[derive(Debug, Default)]
struct Stats {
    ok: usize,
    errors: usize,
    elapsed: Duration,
    micros: Vec<u32>,
}

impl Stats {
    fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }
    fn pct(&self, p: f64) -> f64 {
        if self.micros.is_empty() {
            return f64::NAN;
        }
        let i = ((self.micros.len() as f64 - 1.0) * p).round() as usize;
        f64::from(self.micros[i]) / 1000.0
    }
}

async fn connections(
    ca: &CertificateDer<'static>,
    addr: SocketAddr,
    n: usize,
) -> anyhow::Result<Vec<SendRequest<Full<Bytes>>>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n.max(1) {
        out.push(h2_connect(ca, addr).await?);
    }
    Ok(out)
}

/// `concurrency` workers, each sending back-to-back requests for `duration`.
async fn throughput(
    senders: &[SendRequest<Full<Bytes>>],
    body: &Bytes,
    concurrency: usize,
    duration: Duration,
) -> Stats {
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::new();
    for i in 0..concurrency {
        let sender = senders[i % senders.len()].clone();
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            let mut s = Stats::default();
            while Instant::now() < deadline {
                match one(sender.clone(), body.clone()).await {
                    Ok(d) => {
                        s.ok += 1;
                        s.micros
                            .push(u32::try_from(d.as_micros()).unwrap_or(u32::MAX));
                    }
                    Err(_) => s.errors += 1,
                }
            }
            s
        }));
    }
    merge(tasks, start).await
}

/// One request every 1/rate s (open loop, so slow answers do not lower the offered load).
async fn fixed_rate(
    senders: &[SendRequest<Full<Bytes>>],
    body: &Bytes,
    rate: u64,
    duration: Duration,
) -> Stats {
    let start = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate.max(1)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let total = rate * duration.as_secs();
    let mut tasks = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for i in 0..total {
        ticker.tick().await;
        let sender = senders[usize::try_from(i).unwrap_or(0) % senders.len()].clone();
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            let mut s = Stats::default();
            match one(sender, body).await {
                Ok(d) => {
                    s.ok = 1;
                    s.micros
                        .push(u32::try_from(d.as_micros()).unwrap_or(u32::MAX));
                }
                Err(_) => s.errors = 1,
            }
            s
        }));
    }
    merge(tasks, start).await
}

async fn merge(tasks: Vec<tokio::task::JoinHandle<Stats>>, start: Instant) -> Stats {
    let mut all = Stats::default();
    for t in tasks {
        if let Ok(s) = t.await {
            all.ok += s.ok;
            all.errors += s.errors;
            all.micros.extend(s.micros);
        }
    }
    all.elapsed = start.elapsed();
    all.micros.sort_unstable();
    all
}

/// One server under test and everything measured on it.
struct Target {
    name: &'static str,
    proc_: Proc,
    senders: Vec<SendRequest<Full<Bytes>>>,
    rates: Vec<f64>,
    load: Stats,
    paced: Stats,
}

impl Target {
    async fn new(
        name: &'static str,
        proc_: Proc,
        pki: &Pki,
        args: &RunArgs,
    ) -> anyhow::Result<Self> {
        let senders = connections(&pki.ca, proc_.addr, args.connections).await?;
        Ok(Self {
            name,
            proc_,
            senders,
            rates: Vec::new(),
            load: Stats::default(),
            paced: Stats::default(),
        })
    }

    fn absorb(into: &mut Stats, s: Stats) {
        into.ok += s.ok;
        into.errors += s.errors;
        into.elapsed += s.elapsed;
        into.micros.extend(s.micros);
    }

    fn median_rate(&self) -> f64 {
        let mut r = self.rates.clone();
        r.sort_by(f64::total_cmp);
        r.get(r.len() / 2).copied().unwrap_or(f64::NAN)
    }

    fn hwm_mib(&self) -> f64 {
        vm_hwm_kib(self.proc_.child.id()).map_or(f64::NAN, |k| k as f64 / 1024.0)
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let pki = pki()?;
    let body = Bytes::from(review());
    let mut injector_cmd = Command::new(&args.injector);
    injector_cmd
        .args([
            "serve",
            "--listen-addr",
            "127.0.0.1:0",
            "--admin-addr",
            "off",
            "--log-level",
            &args.injector_log_level,
        ])
        .arg("--tls-cert-file")
        .arg(&pki.cert)
        .arg("--tls-key-file")
        .arg(&pki.key);
    let mut baseline_cmd = Command::new(std::env::current_exe()?);
    baseline_cmd
        .arg("baseline")
        .arg("--cert")
        .arg(&pki.cert)
        .arg("--key")
        .arg(&pki.key);

    // Both servers run for the whole test; phases alternate so background load on a shared
    // machine hits both alike.
    let mut targets = [
        Target::new(
            "baseline",
            spawn(baseline_cmd, false, "listening ")?,
            &pki,
            &args,
        )
        .await?,
        Target::new(
            "injector",
            spawn(injector_cmd, true, "webhook=")?,
            &pki,
            &args,
        )
        .await?,
    ];
    for t in &targets {
        let _ = throughput(&t.senders, &body, args.concurrency, Duration::from_secs(1)).await;
    }
    for round in 0..args.rounds {
        for t in &mut targets {
            let s = throughput(
                &t.senders,
                &body,
                args.concurrency,
                Duration::from_secs(args.duration),
            )
            .await;
            eprintln!(
                "round {round} {}: {:.0} reviews/s ({} errors)",
                t.name,
                s.rate(),
                s.errors
            );
            t.rates.push(s.rate());
            Target::absorb(&mut t.load, s);
        }
    }
    for round in 0..args.rounds {
        for t in &mut targets {
            let s = fixed_rate(
                &t.senders,
                &body,
                args.rate,
                Duration::from_secs(args.rate_duration),
            )
            .await;
            eprintln!(
                "round {round} {} at {}/s: p99 {:.3} ms",
                t.name,
                args.rate,
                {
                    let mut m = s.micros.clone();
                    m.sort_unstable();
                    Stats {
                        micros: m,
                        ..Stats::default()
                    }
                    .pct(0.99)
                }
            );
            Target::absorb(&mut t.paced, s);
        }
    }
    for t in &mut targets {
        t.load.micros.sort_unstable();
        t.paced.micros.sort_unstable();
    }
    let [base, inj] = &targets;
    let ratio = inj.median_rate() / base.median_rate();
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    println!(
        "review body: {} bytes; {cpus} CPUs (shared by client and server); {} HTTP/2 connections, {} concurrent streams; \
         {} alternating rounds of {} s; fixed rate {}/s, {} rounds of {} s\n",
        body.len(),
        args.connections,
        args.concurrency,
        args.rounds,
        args.duration,
        args.rate,
        args.rounds,
        args.rate_duration
    );
    println!(
        "| server | reviews/s (h2, median of rounds) | p50 ms | p99 ms | p50 ms @{r}/s | p99 ms @{r}/s | max ms @{r}/s | errors | VmHWM MiB |",
        r = args.rate
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for t in &targets {
        println!(
            "| {} | {:.0} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {} | {:.1} |",
            t.name,
            t.median_rate(),
            t.load.pct(0.5),
            t.load.pct(0.99),
            t.paced.pct(0.5),
            t.paced.pct(0.99),
            t.paced.pct(1.0),
            t.load.errors + t.paced.errors,
            t.hwm_mib(),
        );
    }
    let p99 = inj.paced.pct(0.99);
    let rss = inj.hwm_mib();
    println!(
        "\nthroughput ratio injector/baseline: {ratio:.2} (target >= 0.5): {}",
        verdict(ratio >= 0.5)
    );
    println!(
        "injector p99 at {}/s: {p99:.3} ms (target <= 1 ms): {}",
        args.rate,
        verdict(p99 <= 1.0)
    );
    println!(
        "injector VmHWM under load: {rss:.1} MiB (target <= 24 MiB): {}",
        verdict(rss <= 24.0)
    );
    let errors = inj.load.errors + inj.paced.errors;
    if errors > 0 {
        bail!("the injector answered {errors} requests with errors");
    }
    Ok(())
}

fn verdict(ok: bool) -> &'static str {
    if ok { "PASS" } else { "MISS" }
}
