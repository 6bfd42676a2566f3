//! Prometheus metrics in text format, served by a tiny HTTP/1 listener on a local address.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[derive(Debug, Default, Clone)]
struct SecretCounters {
    renders: u64,
    failures: u64,
    last_success: Option<SystemTime>,
}

#[derive(Debug, Default)]
struct Inner {
    secrets: BTreeMap<String, SecretCounters>,
    token_expires: Option<Instant>,
    logins: u64,
    login_failures: u64,
}

/// Counters the agent updates and the listener reads; labels are secret names only.
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Metrics {
    /// Metrics with every secret present (at zero) from the start.
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        let secrets = names
            .into_iter()
            .map(|n| (n.to_owned(), SecretCounters::default()))
            .collect();
        Self {
            inner: Mutex::new(Inner {
                secrets,
                ..Inner::default()
            }),
        }
    }

    fn with(&self, f: impl FnOnce(&mut Inner)) {
        // A poisoned lock only means another thread panicked mid-update; counters stay usable.
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g);
    }

    /// A secret was fetched, rendered and its file is current.
    pub fn success(&self, secret: &str, wrote: bool) {
        self.with(|i| {
            let c = i.secrets.entry(secret.to_owned()).or_default();
            if wrote {
                c.renders += 1;
            }
            c.last_success = Some(SystemTime::now());
        });
    }

    /// Fetching, rendering or writing a secret failed.
    pub fn failure(&self, secret: &str) {
        self.with(|i| i.secrets.entry(secret.to_owned()).or_default().failures += 1);
    }

    /// A login finished; `expires` is when the new token expires (none: never).
    pub fn login(&self, ok: bool, expires: Option<Instant>) {
        self.with(|i| {
            if ok {
                i.logins += 1;
                i.token_expires = expires;
            } else {
                i.login_failures += 1;
            }
        });
    }

    /// The token's expiry moved (renewal).
    pub fn token_expires(&self, expires: Option<Instant>) {
        self.with(|i| i.token_expires = expires);
    }

    /// The metrics in Prometheus text exposition format.
    pub fn encode(&self) -> String {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        let per_secret = |out: &mut String,
                          name: &str,
                          kind: &str,
                          help: &str,
                          f: &dyn Fn(&SecretCounters) -> Option<String>| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (secret, c) in &g.secrets {
                if let Some(v) = f(c) {
                    let _ = writeln!(out, "{name}{{secret=\"{secret}\"}} {v}");
                }
            }
        };
        per_secret(
            &mut out,
            "vaultlet_agent_renders_total",
            "counter",
            "Files written because their content changed.",
            &|c| Some(c.renders.to_string()),
        );
        per_secret(
            &mut out,
            "vaultlet_agent_failures_total",
            "counter",
            "Failed fetches, renders or writes.",
            &|c| Some(c.failures.to_string()),
        );
        per_secret(
            &mut out,
            "vaultlet_agent_last_success_timestamp_seconds",
            "gauge",
            "Unix time of the last successful refresh.",
            &|c| {
                c.last_success
                    .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                    .map(|d| format!("{:.3}", d.as_secs_f64()))
            },
        );
        let _ = writeln!(
            out,
            "# HELP vaultlet_agent_logins_total Successful logins.\n# TYPE vaultlet_agent_logins_total counter\nvaultlet_agent_logins_total {}",
            g.logins
        );
        let _ = writeln!(
            out,
            "# HELP vaultlet_agent_login_failures_total Failed logins.\n# TYPE vaultlet_agent_login_failures_total counter\nvaultlet_agent_login_failures_total {}",
            g.login_failures
        );
        if let Some(exp) = g.token_expires {
            let left = exp.saturating_duration_since(Instant::now()).as_secs_f64();
            let _ = writeln!(
                out,
                "# HELP vaultlet_agent_token_ttl_seconds Seconds until the token expires.\n# TYPE vaultlet_agent_token_ttl_seconds gauge\nvaultlet_agent_token_ttl_seconds {left:.0}"
            );
        }
        out
    }
}

/// Binds `addr` now (so a bad address fails at start) and serves `/metrics` in the background.
pub async fn serve(addr: &str, metrics: Arc<Metrics>) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                // E.g. out of file descriptors: back off instead of spinning.
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            };
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let n = match tokio::time::timeout(
                    std::time::Duration::from_secs(5),
                    conn.read(&mut buf),
                )
                .await
                {
                    Ok(Ok(n)) => n,
                    _ => return,
                };
                let resp = respond(&buf[..n], &metrics);
                let _ = conn.write_all(resp.as_bytes()).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    Ok(())
}

/// The whole HTTP/1 answer to a request head (one request per connection).
fn respond(head: &[u8], metrics: &Metrics) -> String {
    let line = head
        .split(|&b| b == b'\r' || b == b'\n')
        .next()
        .unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let (method, path) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let (status, ctype, body) = match (method, path) {
        (b"GET", b"/metrics") => ("200 OK", "text/plain; version=0.0.4", metrics.encode()),
        (b"GET", b"/healthz") => ("200 OK", "text/plain", "ok\n".to_owned()),
        _ => ("404 Not Found", "text/plain", "not found\n".to_owned()),
    };
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_counters_by_secret() {
        let m = Metrics::new(["db", "web"]);
        m.success("db", true);
        m.success("db", false);
        m.failure("web");
        m.login(
            true,
            Some(Instant::now() + std::time::Duration::from_secs(100)),
        );
        let text = m.encode();
        assert!(
            text.contains("vaultlet_agent_renders_total{secret=\"db\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("vaultlet_agent_failures_total{secret=\"web\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("vaultlet_agent_last_success_timestamp_seconds{secret=\"db\"}"),
            "{text}"
        );
        assert!(
            !text.contains("last_success_timestamp_seconds{secret=\"web\"}"),
            "{text}"
        );
        assert!(
            text.contains("vaultlet_agent_token_ttl_seconds 10"),
            "{text}"
        );
    }

    #[test]
    fn answers_only_known_paths() {
        let m = Metrics::new(["db"]);
        assert!(respond(b"GET /metrics HTTP/1.1\r\n\r\n", &m).starts_with("HTTP/1.1 200"));
        assert!(respond(b"GET /other HTTP/1.1\r\n\r\n", &m).starts_with("HTTP/1.1 404"));
        assert!(respond(b"", &m).starts_with("HTTP/1.1 404"));
    }
}
