//! The real `vaultlet-injector serve` attacked on loopback while an ordinary client (as the API
//! server) keeps sending reviews: the largest reviews the bounds admit, sent in parallel; slow
//! HTTP/1 and HTTP/2 clients trickling their bodies; idle HTTP/2 connections; and, under a low
//! descriptor limit, more connections than descriptors. Memory must stay under the chart's
//! limit and ordinary reviews must be answered well within the API server's webhook timeout.
//!
//! Bounded: each attack runs `VAULTLET_STRESS_SECONDS` (default 10) and stops by itself. With
//! `--release` the same test is the benchmark of docs/benchmarks.md:
//! `cargo test --release -p vaultlet-injector --test stress -- --nocapture --test-threads=1`.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use common::*;

/// The injector's memory limit in the chart (`resources.limits.memory` in values.yaml).
const CHART_MEMORY_LIMIT_MIB: f64 = 128.0;
/// The API server's webhook timeout in the chart (`webhook.timeoutSeconds`).
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(5);

fn attack_time() -> Duration {
    let secs = std::env::var("VAULTLET_STRESS_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    Duration::from_secs(secs)
}

/// The chart's values agree with the constants above.
#[test]
fn the_limits_checked_are_the_charts() {
    let values = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/vaultlet/values.yaml"),
    )
    .expect("values.yaml");
    let lines: Vec<&str> = values.lines().map(str::trim).collect();
    let limits = lines
        .iter()
        .position(|l| *l == "limits:")
        .expect("resources.limits");
    assert_eq!(lines[limits + 1], "memory: 128Mi");
    assert!(
        lines.contains(&"timeoutSeconds: 5"),
        "webhook.timeoutSeconds"
    );
}

/// A Pod as large as the review bounds admit: 30 containers of 1,000 environment variables
/// each, about 2.9 MiB of JSON and 92,000 values, every one decoded, mutated and patched.
fn largest_admitted_pod() -> Value {
    let env: Vec<Value> = (0..1000)
        .map(|i| json!({"name": format!("VARIABLE_{i:04}"), "value": "v".repeat(52)}))
        .collect();
    let containers: Vec<Value> = (0..30)
        .map(|i| json!({"name": format!("app-{i}"), "image": "registry.example/app:1", "env": env}))
        .collect();
    let mut pod = pod();
    pod["spec"]["containers"] = json!(containers);
    pod
}

/// Latencies of the ordinary reviews, and what else they got.
#[derive(Default)]
struct Ordinary {
    latencies: Vec<Duration>,
    other: Vec<u16>,
    failed: usize,
}

impl Ordinary {
    fn quantile(&self, q: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        let at = ((sorted.len() as f64 - 1.0) * q).round() as usize;
        sorted.get(at).copied().unwrap_or_default()
    }
}

/// One review every 20 ms on one kept HTTP/2 connection (reconnecting if it is lost), as the
/// API server sends them, until `stop`.
async fn ordinary_reviews(
    ca: Arc<Ca>,
    server: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
) -> Ordinary {
    let body = Bytes::from(review_body(&pod()));
    let mut out = Ordinary::default();
    let mut sender: Option<hyper::client::conn::http2::SendRequest<Full<Bytes>>> = None;
    while !stop.load(Ordering::SeqCst) {
        if sender.is_none() {
            let io = TokioIo::new(tls_connect(&ca, server, b"h2").await);
            let (s, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .expect("h2 handshake");
            tokio::spawn(conn);
            sender = Some(s);
        }
        let Some(s) = sender.as_mut() else { continue };
        let req = Request::post("https://localhost/mutate")
            .header("content-type", "application/json")
            .body(Full::new(body.clone()))
            .expect("request");
        let started = Instant::now();
        match tokio::time::timeout(WEBHOOK_TIMEOUT, s.send_request(req)).await {
            Ok(Ok(resp)) => {
                let status = resp.status().as_u16();
                let _ = resp.into_body().collect().await;
                if status == 200 {
                    out.latencies.push(started.elapsed());
                } else {
                    out.other.push(status);
                }
            }
            _ => {
                out.failed += 1;
                sender = None;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    out
}

/// Sends the largest admitted review again and again on its own connection; counts answers.
async fn big_reviews(
    ca: Arc<Ca>,
    server: std::net::SocketAddr,
    body: Bytes,
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicU64>,
) {
    while !stop.load(Ordering::SeqCst) {
        let io = TokioIo::new(tls_connect(&ca, server, b"h2").await);
        let Ok((mut s, conn)) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await
        else {
            continue;
        };
        tokio::spawn(conn);
        while !stop.load(Ordering::SeqCst) {
            let req = Request::post("https://localhost/mutate")
                .body(Full::new(body.clone()))
                .expect("request");
            let Ok(resp) = s.send_request(req).await else {
                break;
            };
            let _ = resp.into_body().collect().await;
            answered.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// Declares the largest body and trickles it, 1 KiB every 200 ms, over HTTP/1.1 (`h2` false)
/// or an HTTP/2 stream, reconnecting whenever the server cuts it off.
async fn slow_body(ca: Arc<Ca>, server: std::net::SocketAddr, h2: bool, stop: Arc<AtomicBool>) {
    let chunk = Bytes::from(vec![b' '; 1024]);
    while !stop.load(Ordering::SeqCst) {
        if h2 {
            let mut sender = h2_streaming_sender(&ca, server).await;
            let (tx, body) = ChannelBody::new();
            let req = Request::post("https://localhost/mutate")
                .body(body)
                .expect("request");
            let answer = tokio::spawn(async move { sender.send_request(req).await });
            while !stop.load(Ordering::SeqCst) && !answer.is_finished() {
                if tx.send(chunk.clone()).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            answer.abort();
        } else {
            let mut tls = tls_connect(&ca, server, b"http/1.1").await;
            let head = "POST /mutate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: 3000000\r\n\r\n";
            if tls.write_all(head.as_bytes()).await.is_err() {
                continue;
            }
            while !stop.load(Ordering::SeqCst) {
                if tls.write_all(&chunk).await.is_err() || tls.flush().await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Opens an HTTP/2 connection and leaves it idle until `stop`.
async fn idle_h2(ca: Arc<Ca>, server: std::net::SocketAddr, stop: Arc<AtomicBool>) {
    let io = TokioIo::new(tls_connect(&ca, server, b"h2").await);
    let Ok((_sender, conn)) =
        hyper::client::conn::http2::handshake::<_, _, Full<Bytes>>(TokioExecutor::new(), io).await
    else {
        return;
    };
    let conn = tokio::spawn(conn);
    while !stop.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    conn.abort();
}

/// `VmRSS` or `VmHWM` of a process, in MiB.
fn memory_mib(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// CPU seconds (user + system) a process has used.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of /proc/PID/stat: 11 and 12 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

/// The hostile mix against the chart's settings: memory stays under the chart's limit and the
/// ordinary client's reviews are all answered, their p99 well within the webhook timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_mix_keeps_memory_under_the_limit_and_ordinary_reviews_answered() {
    let (ca, _dir, server) = start_signed(&[]);
    let ca = Arc::new(ca);
    wait_ready(&server).await;
    let pid = server.child.id();
    let big = Bytes::from(review_body(&largest_admitted_pod()));
    assert!(
        big.len() <= vaultlet_injector::review::MAX_BODY,
        "{} bytes",
        big.len()
    );
    // The largest review is admitted (injected), not denied by the bounds.
    let (status, answer) = send(&ca, server.webhook, b"h2", "/mutate", big.to_vec()).await;
    assert_eq!(status, 200);
    let answer: Value = serde_json::from_slice(&answer).expect("review");
    assert_eq!(
        answer["response"]["allowed"], true,
        "{}",
        answer["response"]
    );
    let idle_rss = memory_mib(pid, "VmRSS:");

    let stop = Arc::new(AtomicBool::new(false));
    let big_answered = Arc::new(AtomicU64::new(0));
    let mut attackers = Vec::new();
    for _ in 0..8 {
        attackers.push(tokio::spawn(big_reviews(
            ca.clone(),
            server.webhook,
            big.clone(),
            stop.clone(),
            big_answered.clone(),
        )));
    }
    for i in 0..64 {
        attackers.push(tokio::spawn(slow_body(
            ca.clone(),
            server.webhook,
            i % 2 == 0,
            stop.clone(),
        )));
    }
    for _ in 0..40 {
        attackers.push(tokio::spawn(idle_h2(
            ca.clone(),
            server.webhook,
            stop.clone(),
        )));
    }
    let ordinary = tokio::spawn(ordinary_reviews(ca.clone(), server.webhook, stop.clone()));
    let cpu_before = cpu_seconds(pid);
    let started = Instant::now();
    let mut peak_rss = idle_rss;
    while started.elapsed() < attack_time() {
        peak_rss = peak_rss.max(memory_mib(pid, "VmRSS:"));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let cpu = cpu_seconds(pid) - cpu_before;
    let ordinary = ordinary.await.expect("ordinary client");
    for a in attackers {
        a.abort();
    }
    let hwm = memory_mib(pid, "VmHWM:");
    let (p50, p99, max) = (
        ordinary.quantile(0.5),
        ordinary.quantile(0.99),
        ordinary.quantile(1.0),
    );
    eprintln!(
        "stress: {:.0} s; injector RSS idle {idle_rss:.1} MiB, peak {peak_rss:.1} MiB (VmHWM {hwm:.1} MiB, limit {CHART_MEMORY_LIMIT_MIB} MiB); \
         CPU {cpu:.1} s; largest reviews answered {}; ordinary reviews {} answered 200: p50 {p50:?} p99 {p99:?} max {max:?}; \
         other answers {:?}; lost {}",
        attack_time().as_secs_f64(),
        big_answered.load(Ordering::SeqCst),
        ordinary.latencies.len(),
        ordinary.other,
        ordinary.failed,
    );
    assert!(hwm < CHART_MEMORY_LIMIT_MIB, "peak RSS {hwm:.1} MiB");
    assert_eq!(
        (ordinary.failed, ordinary.other.as_slice()),
        (0, &[][..]),
        "every ordinary review answered 200"
    );
    assert!(
        ordinary.latencies.len() >= 20,
        "only {} ordinary reviews",
        ordinary.latencies.len()
    );
    assert!(p99 < WEBHOOK_TIMEOUT / 2, "ordinary p99 {p99:?}");
    assert!(
        big_answered.load(Ordering::SeqCst) > 0,
        "the largest reviews were answered too"
    );
}

/// More connections than descriptors: the accept loop backs off instead of spinning (little
/// CPU, one log line per 10 s), and once the flood is gone ordinary reviews are served again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn descriptor_exhaustion_backs_off_and_recovers() {
    let ca = Ca::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key, _) = ca.leaf();
    let (cert, key) = write_pair(dir.path(), &cert, &key);
    let server = Server::start_under(
        &["prlimit", "--nofile=64", "--"],
        &cert,
        &key,
        &["--read-timeout", "2s"],
    );
    wait_ready(&server).await;
    let pid = server.child.id();
    let _ = server.drain_lines();
    let flooded = Instant::now();
    // 300 raw connections that never speak: far more than 64 descriptors.
    let mut flood = Vec::new();
    for _ in 0..300 {
        if let Ok(tcp) = TcpStream::connect(server.webhook).await {
            flood.push(tcp);
        }
    }
    let cpu_before = cpu_seconds(pid);
    tokio::time::sleep(attack_time().min(Duration::from_secs(6))).await;
    let cpu = cpu_seconds(pid) - cpu_before;
    let warnings = server
        .drain_lines()
        .iter()
        .filter(|l| l.contains("accept failed"))
        .count();
    let window = flooded.elapsed();
    drop(flood);
    eprintln!("descriptor flood: {window:?}, injector CPU {cpu:.2} s, accept warnings {warnings}");
    assert!(
        warnings >= 1,
        "descriptor exhaustion was reached and reported"
    );
    let allowed = window.as_secs() / 10 + 1;
    assert!(
        warnings as u64 <= allowed,
        "{warnings} accept warnings in {window:?}: one per 10 s at most"
    );
    assert!(cpu < 1.0, "the accept loop spun: {cpu:.2} CPU-s");
    // Served again once the flood is gone (the backoff is at most 1 s).
    wait_for(
        "reviews served again",
        Duration::from_secs(10),
        async || {
            let (status, _) =
                send(&ca, server.webhook, b"h2", "/mutate", review_body(&pod())).await;
            status == 200
        },
    )
    .await;
}
