//! End-to-end: a secret behind a path that hangs delays neither the token's renewal nor a
//! lease's: Vault work runs as concurrent jobs, each with a deadline.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use common::{Harness, config, read};
use serde_json::json;
use vaultlet_testkit::{OpenBao, Postgres, wait_until};

/// Reads one HTTP/1.1 request (headers and a `content-length` body).
fn read_request(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).ok()? == 0 {
            return None;
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).to_ascii_lowercase();
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).ok()?;
    buf.extend(body);
    Some(buf)
}

/// A proxy to `upstream` (one request per connection) that never answers requests whose
/// request line contains `hang`.
fn hanging_proxy(upstream: String, hang: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
    let addr = format!("http://{}", listener.local_addr().expect("proxy addr"));
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { continue };
            let upstream = upstream.clone();
            std::thread::spawn(move || {
                let Some(request) = read_request(&mut client) else {
                    return;
                };
                let text = String::from_utf8_lossy(&request);
                if text.lines().next().is_some_and(|l| l.contains(hang)) {
                    std::thread::sleep(Duration::from_secs(120));
                    return;
                }
                // One request per upstream connection: ask it to close when done.
                let request = text.replacen("\r\n", "\r\nconnection: close\r\n", 1);
                let Ok(mut up) = TcpStream::connect(&upstream) else {
                    return;
                };
                if up.write_all(request.as_bytes()).is_err() {
                    return;
                }
                let mut response = Vec::new();
                let _ = up.read_to_end(&mut response);
                let _ = client.write_all(&response);
            });
        }
    });
    addr
}

#[test]
fn a_hanging_secret_path_delays_no_token_or_lease_renewal() {
    let pg = Postgres::start();
    let bao = OpenBao::dev();
    common::db_and_kv(&bao, &pg, "3s", "slow");
    // A token that lives 3 s unless renewed.
    let token = bao.create_token(&["app"], Some("3s"));
    let proxy = hanging_proxy(format!("127.0.0.1:{}", bao.port()), "/v1/secret/data/slow");
    let h = Harness::new();
    let cfg = config(
        &proxy,
        h.token_auth(&token),
        json!([
            { "name": "db", "path": "database/creds/app", "file": "db", "template": "{{username}}" },
            { "name": "slow", "path": "secret/data/slow", "file": "slow" }
        ]),
    );
    let mut agent = h.run(&cfg);
    wait_until(Duration::from_secs(10), "db credentials rendered", || {
        agent.assert_running();
        !read(&h.file("db")).is_empty()
    });
    let user = read(&h.file("db"));

    // Token and lease (3 s each) are renewed every ~2 s while the slow secret's read hangs.
    wait_until(
        Duration::from_secs(12),
        "three token and three lease renewals",
        || {
            agent.assert_running();
            let log = agent.log();
            log.matches("token renewed").count() >= 3 && log.matches("lease renewed").count() >= 3
        },
    );
    let lookup = bao.try_api(Some(&token), "GET", "auth/token/lookup-self", None);
    assert!(lookup.is_success(), "the token expired: {lookup:?}");
    assert_eq!(read(&h.file("db")), user, "the same credentials, renewed");
    assert!(!h.file("slow").exists());
    agent.assert_running();
}
