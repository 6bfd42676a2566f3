//! The connections of the real `vaultlet-injector serve`, as the API server and a hostile
//! client use them: pooled idle connections kept past the API server's own idle timeout,
//! deadlines only for a request in progress, the drain closing each connection after its
//! next review, the connection cap, shedding bodies beyond the budget, and reviews too big
//! to decode denied by name.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

use common::*;

/// One kept-alive client connection, HTTP/1.1 or HTTP/2, and its driving task (which ends
/// when the server closes the connection).
enum Kept {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

async fn keep(ca: &Ca, server: &Server, h2: bool) -> (Kept, JoinHandle<()>) {
    let alpn: &[u8] = if h2 { b"h2" } else { b"http/1.1" };
    let io = TokioIo::new(tls_connect(ca, server.webhook, alpn).await);
    if h2 {
        let (sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .expect("h2 handshake");
        let task = tokio::spawn(async move {
            let _ = conn.await;
        });
        (Kept::H2(sender), task)
    } else {
        let (sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .expect("h1 handshake");
        let task = tokio::spawn(async move {
            let _ = conn.await;
        });
        (Kept::H1(sender), task)
    }
}

/// Sends one review on `kept`: (status, `connection` header, body).
async fn review_on(kept: &mut Kept, object: &Value) -> (u16, Option<String>, Vec<u8>) {
    let req = Request::post("https://localhost/mutate")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(review_body(object))))
        .expect("request");
    let resp = match kept {
        Kept::H1(s) => s.send_request(req).await,
        Kept::H2(s) => s.send_request(req).await,
    }
    .expect("an answer on the kept connection");
    let status = resp.status().as_u16();
    let connection = resp
        .headers()
        .get("connection")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, connection, body.to_vec())
}

async fn ends_within(task: JoinHandle<()>, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    tokio::time::timeout(within, task)
        .await
        .ok()
        .map(|_| started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_pooled_connection_is_still_served_after_the_read_timeout() {
    // The API server reuses a connection that has been idle for up to 90 s; a server that
    // closed it after --read-timeout refused the Pod whose review was written at that moment.
    let (ca, _dir, server) = start_signed(&["--read-timeout", "1s"]);
    for h2 in [false, true] {
        let (mut kept, task) = keep(&ca, &server, h2).await;
        let (status, _, body) = review_on(&mut kept, &pod()).await;
        assert_eq!(status, 200);
        check_injected(&pod(), &body);
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(
            !task.is_finished(),
            "h2={h2}: the idle connection was closed"
        );
        let (status, connection, body) = review_on(&mut kept, &pod()).await;
        assert_eq!((status, connection), (200, None), "h2={h2}");
        check_injected(&pod(), &body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_close_gracefully_after_the_idle_timeout() {
    let (ca, _dir, server) = start_signed(&["--read-timeout", "1s", "--idle-timeout", "2s"]);
    for h2 in [false, true] {
        let (mut kept, task) = keep(&ca, &server, h2).await;
        assert_eq!(review_on(&mut kept, &pod()).await.0, 200);
        let after = ends_within(task, Duration::from_secs(5)).await;
        let after = after.unwrap_or_else(|| panic!("h2={h2}: still open after 5 s"));
        assert!(
            after >= Duration::from_millis(1800),
            "h2={h2}: closed after {after:?}, before the 2 s idle timeout"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_sends_nothing_is_cut_off_at_the_read_timeout() {
    let (ca, _dir, server) = start_signed(&["--read-timeout", "1s"]);
    // No TLS handshake at all.
    let mut tcp = tokio::net::TcpStream::connect(server.webhook)
        .await
        .expect("connect");
    let started = Instant::now();
    let mut buf = [0; 16];
    let read = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0) | Err(_))),
        "a silent TCP client was not cut off within 5 s: {read:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(900));
    // A handshake and then nothing, over both protocols.
    for alpn in [&b"h2"[..], b"http/1.1"] {
        let mut tls = tls_connect(&ca, server.webhook, alpn).await;
        let read = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf)).await;
        assert!(
            matches!(read, Ok(Ok(0) | Err(_))),
            "a silent TLS client was not cut off within 5 s: {read:?}"
        );
    }
    // An HTTP/1 head that stops half-way on a connection that has served a review.
    let mut tls = tls_connect(&ca, server.webhook, b"http/1.1").await;
    let body = review_body(&pod());
    let head = format!(
        "POST /mutate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).await.expect("head");
    tls.write_all(&body).await.expect("body");
    let mut answer = vec![0; 64 * 1024];
    let n = tls.read(&mut answer).await.expect("answer");
    assert!(answer[..n].starts_with(b"HTTP/1.1 200"));
    tls.write_all(b"POST /mutate HTTP/1.1\r\nhost: loc")
        .await
        .expect("partial head");
    let started = Instant::now();
    let read = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut answer)).await;
    assert!(
        matches!(read, Ok(Ok(0) | Err(_))),
        "a head stuck half-way was not cut off within 5 s: {read:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(900));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_closes_each_connection_after_its_next_review() {
    let (ca, _dir, server) = start_signed(&["--drain-delay", "4s"]);
    let (mut h1, h1_task) = keep(&ca, &server, false).await;
    let (mut h2, h2_task) = keep(&ca, &server, true).await;
    assert_eq!(review_on(&mut h1, &pod()).await.0, 200);
    assert_eq!(review_on(&mut h2, &pod()).await.0, 200);
    server.signal_term();
    server.log_line(&["draining"], Duration::from_secs(5));
    // HTTP/2: GOAWAY at once; the client opens a new connection for its next review.
    let closed = ends_within(h2_task, Duration::from_secs(2)).await;
    assert!(closed.is_some(), "no GOAWAY on the HTTP/2 connection");
    // HTTP/1: the next review is answered, with `Connection: close`, and the connection ends.
    assert!(
        !h1_task.is_finished(),
        "the idle HTTP/1 connection was closed under the client"
    );
    let (status, connection, body) = review_on(&mut h1, &pod()).await;
    assert_eq!((status, connection.as_deref()), (200, Some("close")));
    check_injected(&pod(), &body);
    assert!(ends_within(h1_task, Duration::from_secs(2)).await.is_some());
    // New connections are still served during the drain delay.
    let (status, body) = send(&ca, server.webhook, b"h2", "/mutate", review_body(&pod())).await;
    assert_eq!(status, 200);
    check_injected(&pod(), &body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_cap_the_one_idle_the_longest_makes_room() {
    let (ca, _dir, server) = start_signed(&["--max-connections", "2", "--read-timeout", "1s"]);
    let (mut first, first_task) = keep(&ca, &server, true).await;
    assert_eq!(review_on(&mut first, &pod()).await.0, 200);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (mut second, second_task) = keep(&ca, &server, false).await;
    assert_eq!(review_on(&mut second, &pod()).await.0, 200);
    // A third: the first (idle the longest) gets GOAWAY, the newcomer is served.
    let (status, _) = send(&ca, server.webhook, b"h2", "/mutate", review_body(&pod())).await;
    assert_eq!(status, 200);
    assert!(
        ends_within(first_task, Duration::from_secs(2))
            .await
            .is_some()
    );
    assert!(
        !second_task.is_finished(),
        "only one connection is closed for one newcomer"
    );

    let metrics = admin_get(server.admin, "/metrics").await;
    let evictions: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("vaultlet_injector_connection_evictions_total"))
        .collect();
    assert_eq!(
        evictions,
        ["vaultlet_injector_connection_evictions_total 1"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_holding_the_only_place_without_a_request_is_out_within_the_read_timeout() {
    let (ca, _dir, server) = start_signed(&["--max-connections", "1", "--read-timeout", "1s"]);
    let _silent = tokio::net::TcpStream::connect(server.webhook)
        .await
        .expect("connect");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let (status, _) = send(&ca, server.webhook, b"h2", "/mutate", review_body(&pod())).await;
    let waited = started.elapsed();
    assert_eq!(status, 200);
    assert!(
        (Duration::from_millis(700)..Duration::from_secs(3)).contains(&waited),
        "the newcomer waited {waited:?}: the cap of 1 should hold it until the silent one is cut off at 1 s"
    );
}

/// GET over plain HTTP/1.1 on the admin port; the body as text.
async fn admin_get(addr: std::net::SocketAddr, path: &str) -> String {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("admin");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .expect("h1");
    tokio::spawn(conn);
    let req = Request::get(format!("http://localhost{path}"))
        .body(Full::new(Bytes::new()))
        .expect("req");
    let resp = sender.send_request(req).await.expect("response");
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    String::from_utf8_lossy(&body).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_beyond_the_shared_budget_are_shed_with_503_not_buffered() {
    use vaultlet_injector::review::MAX_BODY;
    use vaultlet_injector::server::{BODY_BUDGET, BODY_RESERVE};
    // Held bodies time out at 8 s; a request finding no room waits half of that, then 503.
    let (ca, _dir, server) = start_signed(&["--read-timeout", "8s"]);
    // Large bodies may use the budget but for the part kept for ordinary reviews.
    let fit = (BODY_BUDGET - BODY_RESERVE) / MAX_BODY;
    let chunk = Bytes::from(vec![b' '; MAX_BODY - 1]);
    // `fit` bodies of almost the largest size, sent but for their last byte: held.
    let mut held = Vec::new();
    for _ in 0..fit {
        let mut sender = h2_streaming_sender(&ca, server.webhook).await;
        let (tx, body) = ChannelBody::new();
        tx.send(chunk.clone()).await.expect("chunk");
        let req = Request::post("https://localhost/mutate")
            .body(body)
            .expect("req");
        held.push((
            tx,
            tokio::spawn(async move { sender.send_request(req).await }),
        ));
    }
    // Time to send them (a debug build on a loaded machine moves some 10 MiB/s through TLS).
    tokio::time::sleep(Duration::from_millis(3000)).await;
    // An ordinary review still finds room at once: the reserve is kept for it.
    let started = Instant::now();
    let (status, body) = send(&ca, server.webhook, b"h2", "/mutate", review_body(&pod())).await;
    assert_eq!(status, 200);
    check_injected(&pod(), &body);
    let ordinary = started.elapsed();
    assert!(
        ordinary < Duration::from_secs(2),
        "an ordinary review waited {ordinary:?} behind the large bodies"
    );
    // One more large body finds no room: 503 after half the read timeout, long before the
    // held ones time out.
    let started = Instant::now();
    let (mut sender, _) = keep(&ca, &server, true).await;
    let Kept::H2(sender) = &mut sender else {
        unreachable!("asked for HTTP/2")
    };
    let req = Request::post("https://localhost/mutate")
        .body(Full::new(chunk.clone()))
        .expect("req");
    let resp = sender.send_request(req).await.expect("response");
    let waited = started.elapsed();
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "1");
    assert!(
        (Duration::from_millis(3800)..Duration::from_millis(4900)).contains(&waited),
        "503 after {waited:?}, not after half of the 8 s read timeout"
    );
    let mut statuses = Vec::new();
    for (_tx, answer) in held {
        let resp = tokio::time::timeout(Duration::from_secs(5), answer)
            .await
            .expect("every held request answered within 5 s more")
            .expect("join")
            .expect("response");
        statuses.push(resp.status().as_u16());
    }
    assert_eq!(statuses, vec![408; fit], "{fit} bodies fit in the budget");
    // Room again afterwards.
    let (status, body) = send(&ca, server.webhook, b"h2", "/mutate", review_body(&pod())).await;
    assert_eq!(status, 200);
    check_injected(&pod(), &body);
    let metrics = admin_get(server.admin, "/metrics").await;
    let shed: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("vaultlet_injector_shed_total"))
        .collect();
    assert_eq!(shed, ["vaultlet_injector_shed_total{limit=\"bodies\"} 1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_past_the_review_bounds_is_denied_by_name() {
    let (ca, _dir, server) = start_signed(&[]);
    let mut object = pod();
    object["spec"]["containers"] = json!(
        (0..101)
            .map(|i| json!({"name": format!("c{i}"), "image": "busybox"}))
            .collect::<Vec<_>>()
    );
    let (status, body) = send(&ca, server.webhook, b"h2", "/mutate", review_body(&object)).await;
    assert_eq!(status, 200);
    let review: Value = serde_json::from_slice(&body).expect("json");
    let response = &review["response"];
    assert_eq!(response["uid"], "3b1f9c4e-1111-4222-8333-444455556666");
    assert_eq!(response["allowed"], false);
    assert_eq!(
        response["status"]["message"],
        "vaultlet: spec.containers + initContainers + ephemeralContainers has more than 100 \
         entries; \
         vaultlet reviews Pods up to that size (split the workload, or mount a ConfigMap \
         instead of listing entries)"
    );
}
