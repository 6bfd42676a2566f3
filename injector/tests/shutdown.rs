//! Stopping the real `vaultlet-injector serve`: the drain after SIGTERM (unready, still
//! answering), a second signal, in-flight reviews, and failing fast at start.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::Request;
use tokio::net::TcpStream;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_reviews_and_exits_zero() {
    let (ca, _dir, mut server) = start_signed(&["--drain-delay", "0s"]);

    // Start a review whose body is still being sent, then SIGTERM.
    let mut sender = h2_streaming_sender(&ca, server.webhook).await;
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
