//! The real `vaultlet-injector serve` under a hostile Pod author: text the Pod controls (an
//! annotation key, its generateName) never starts a log line of its own, and the denial the
//! API client gets is one line naming the key, quoted.

mod common;

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::*;

const FORGED_KEY: &str = "vaultlet.io/secret-db\nFORGED annotation line";
const FORGED_NAME: &str = "web-\nFORGED pod line ";

/// Sends one review with a forged key and name, then an ordinary one; returns every log line
/// up to the ordinary one's, and the first review's denial message.
async fn log_of_a_forged_review(extra: &[&str]) -> (Vec<String>, String) {
    let (ca, _dir, server) = start_signed(extra);
    wait_ready(&server).await;
    let mut bad = pod();
    bad["metadata"]["generateName"] = json!(FORGED_NAME);
    bad["metadata"]["annotations"][FORGED_KEY] = json!("kv/x");
    let (status, body) = send(&ca, server.webhook, b"h2", "/mutate", review_body(&bad)).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let review: Value = serde_json::from_slice(&body).expect("json");
    let message = review["response"]["status"]["message"]
        .as_str()
        .expect("denied with a message")
        .to_owned();
    let mut end = pod();
    end["metadata"]["generateName"] = json!("end-");
    let (status, _) = send(&ca, server.webhook, b"h2", "/mutate", review_body(&end)).await;
    assert_eq!(status, 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut lines = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = server
            ._logs
            .recv_timeout(left)
            .expect("the ordinary review is logged");
        let done = line.contains("end-*");
        lines.push(line);
        if done {
            return (lines, message);
        }
    }
}

fn check_message(message: &str) {
    assert_eq!(
        message,
        "vaultlet: annotation \"vaultlet.io/secret-db\\nFORGED annotation line\": value \
         \"kv/x\" is invalid: secret name \"db\\nFORGED annotation line\" must be 1-63 lowercase \
         letters, digits or '-', not starting or ending with '-'"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_text_cannot_forge_a_text_log_line() {
    let (lines, message) = log_of_a_forged_review(&[]).await;
    check_message(&message);
    let forged: Vec<&String> = lines.iter().filter(|l| l.starts_with("FORGED")).collect();
    assert!(forged.is_empty(), "forged log lines: {forged:?}");
    let review = lines
        .iter()
        .find(|l| l.contains("outcome=\"denied\""))
        .expect("the denied review is logged");
    assert!(
        review.contains(r#"pod="web-\\nFORGED pod line *""#)
            && review.contains("\\nFORGED annotation"),
        "{review}"
    );
}
