//! End-to-end tests of the real `vaultlet-injector serve` binary on loopback: AdmissionReviews
//! over TLS with HTTP/2 and HTTP/1.1, bad bodies, certificate rotation, idle CPU, slow
//! clients. Stopping it (drain, second signal, fail fast) is in tests/shutdown.rs.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::Request;
use serde_json::{Value, json};

use common::*;

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
                "uid=\"3b1f9c4e-1111-4222-8333-444455556666\"",
                "namespace=\"shop\"",
                "pod=\"web-*\"",
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
            "uid=\"3b1f9c4e",
            "namespace=\"shop\"",
            "pod=\"web-*\"",
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

/// A review sent straight to the webhook (as any Pod's network can) with a newline and a fake
/// log line in its namespace, Pod name and an annotation key: each stays inside its quoted
/// field of the one review line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_text_cannot_forge_a_log_line() {
    let (ca, _dir, server) = start_signed(&[]);
    wait_ready(&server).await;
    let forged =
        "\n2026-01-01T00:00:00Z  INFO vaultlet_injector::review: review outcome=\"injected\"";
    let mut object = pod();
    object["metadata"]["generateName"] = json!(format!("web{forged}"));
    object["metadata"]["annotations"][format!("vaultlet.io/secret-x{forged}")] = json!("a/b");
    let mut review: Value = serde_json::from_slice(&review_body(&object)).expect("json");
    review["request"]["namespace"] = json!(format!("shop{forged}"));
    let body = serde_json::to_vec(&review).expect("json");
    let (status, _) = send(&ca, server.webhook, b"h2", "/mutate", body).await;
    assert_eq!(status, 200);
    let line = server.log_line(&["outcome=\"denied\""], Duration::from_secs(5));
    assert!(
        line.contains(r#"namespace="shop\\n2026-01-01T00:00:00Z  INFO"#)
            && line.contains(r#"pod="web\\n2026"#),
        "{line}"
    );
    // Nothing else was logged: no line of the attacker's own.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rest = server.drain_lines();
    assert_eq!(rest, Vec::<String>::new());
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
    let mut sender = h2_streaming_sender(&ca, server.webhook).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_line_per_review_can_be_filtered_out() {
    let (ca, _dir, server) = start_signed(&[
        "--log-level",
        "info,vaultlet_injector::review=warn",
        "--drain-delay",
        "0s",
    ]);
    wait_ready(&server).await;
    let (status, _) = send(&ca, server.webhook, b"h2", "/mutate", review_body(&pod())).await;
    assert_eq!(status, 200);
    server.signal_term();
    // One stderr stream, in order: by the drain line, a review line would have come.
    let mut before = Vec::new();
    loop {
        let line = server
            ._logs
            .recv_timeout(Duration::from_secs(5))
            .expect("the drain is logged");
        if line.contains("draining") {
            break;
        }
        before.push(line);
    }
    assert!(
        before.iter().all(|l| !l.contains("outcome=")),
        "{before:#?}"
    );
}
