//! Prometheus metrics (OpenMetrics text, encoded by prometheus-client), served by a tiny
//! HTTP/1 listener on a local address.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

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

    /// The metrics in the OpenMetrics text format (prometheus-client's encoder).
    pub fn encode(&self) -> String {
        let snapshot = {
            let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            Snapshot {
                secrets: g.secrets.clone(),
                logins: g.logins,
                login_failures: g.login_failures,
                token_ttl: g
                    .token_expires
                    .map(|exp| exp.saturating_duration_since(Instant::now()).as_secs()),
            }
        };
        let mut registry = Registry::default();
        registry.register_collector(Box::new(snapshot));
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}

/// The counters at one scrape, encoded by prometheus-client.
#[derive(Debug)]
struct Snapshot {
    secrets: BTreeMap<String, SecretCounters>,
    logins: u64,
    login_failures: u64,
    token_ttl: Option<u64>,
}

impl Snapshot {
    fn per_secret(
        &self,
        encoder: &mut DescriptorEncoder,
        (name, help, kind): (&str, &str, MetricType),
        value: impl Fn(&SecretCounters) -> Option<f64>,
    ) -> std::fmt::Result {
        let mut family = encoder.encode_descriptor(name, help, None, kind)?;
        for (secret, c) in &self.secrets {
            let Some(v) = value(c) else { continue };
            let labels = [("secret", secret.as_str())];
            match kind {
                // Counts are whole numbers; encode them as integers.
                MetricType::Counter => {
                    ConstCounter::new(v as u64).encode(family.encode_family(&labels)?)?
                }
                _ => ConstGauge::new(v).encode(family.encode_family(&labels)?)?,
            }
        }
        Ok(())
    }
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        self.per_secret(
            &mut encoder,
            (
                "vaultlet_agent_renders",
                "Files written because their content changed.",
                MetricType::Counter,
            ),
            |c| Some(c.renders as f64),
        )?;
        self.per_secret(
            &mut encoder,
            (
                "vaultlet_agent_failures",
                "Failed fetches, renders or writes.",
                MetricType::Counter,
            ),
            |c| Some(c.failures as f64),
        )?;
        self.per_secret(
            &mut encoder,
            (
                "vaultlet_agent_last_success_timestamp_seconds",
                "Unix time of the last successful refresh.",
                MetricType::Gauge,
            ),
            |c| {
                c.last_success
                    .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                    .map(|d| d.as_secs_f64())
            },
        )?;
        for (name, help, v) in [
            ("vaultlet_agent_logins", "Successful logins.", self.logins),
            (
                "vaultlet_agent_login_failures",
                "Failed logins.",
                self.login_failures,
            ),
        ] {
            let counter = ConstCounter::new(v);
            counter.encode(encoder.encode_descriptor(
                name,
                help,
                None,
                counter.metric_type(),
            )?)?;
        }
        if let Some(ttl) = self.token_ttl {
            let gauge = ConstGauge::new(i64::try_from(ttl).unwrap_or(i64::MAX));
            gauge.encode(encoder.encode_descriptor(
                "vaultlet_agent_token_ttl_seconds",
                "Seconds until the token expires.",
                None,
                gauge.metric_type(),
            )?)?;
        }
        Ok(())
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
        (b"GET", b"/metrics") => (
            "200 OK",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics.encode(),
        ),
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
        m.login(true, None);
        m.login(false, None);
        let text = m.encode();
        let stamp = text
            .lines()
            .find_map(|l| {
                l.strip_prefix("vaultlet_agent_last_success_timestamp_seconds{secret=\"db\"} ")
            })
            .expect("timestamp of db");
        assert_eq!(
            text,
            format!(
                "# HELP vaultlet_agent_renders Files written because their content changed.\n\
                 # TYPE vaultlet_agent_renders counter\n\
                 vaultlet_agent_renders_total{{secret=\"db\"}} 1\n\
                 vaultlet_agent_renders_total{{secret=\"web\"}} 0\n\
                 # HELP vaultlet_agent_failures Failed fetches, renders or writes.\n\
                 # TYPE vaultlet_agent_failures counter\n\
                 vaultlet_agent_failures_total{{secret=\"db\"}} 0\n\
                 vaultlet_agent_failures_total{{secret=\"web\"}} 1\n\
                 # HELP vaultlet_agent_last_success_timestamp_seconds Unix time of the last successful refresh.\n\
                 # TYPE vaultlet_agent_last_success_timestamp_seconds gauge\n\
                 vaultlet_agent_last_success_timestamp_seconds{{secret=\"db\"}} {stamp}\n\
                 # HELP vaultlet_agent_logins Successful logins.\n\
                 # TYPE vaultlet_agent_logins counter\n\
                 vaultlet_agent_logins_total 1\n\
                 # HELP vaultlet_agent_login_failures Failed logins.\n\
                 # TYPE vaultlet_agent_login_failures counter\n\
                 vaultlet_agent_login_failures_total 1\n\
                 # EOF\n"
            )
        );
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("clock")
            .as_secs_f64();
        let stamp: f64 = stamp.parse().expect("a number");
        assert!((now - stamp).abs() < 60.0, "{stamp}");

        m.token_expires(Some(Instant::now() + std::time::Duration::from_secs(100)));
        let ttl = m
            .encode()
            .lines()
            .find_map(|l| {
                l.strip_prefix("vaultlet_agent_token_ttl_seconds ")
                    .map(String::from)
            })
            .expect("token ttl");
        assert!(ttl == "99" || ttl == "100", "{ttl}");
    }

    #[test]
    fn answers_only_known_paths() {
        let m = Metrics::new(["db"]);
        assert!(respond(b"GET /metrics HTTP/1.1\r\n\r\n", &m).starts_with("HTTP/1.1 200"));
        assert!(respond(b"GET /other HTTP/1.1\r\n\r\n", &m).starts_with("HTTP/1.1 404"));
        assert!(respond(b"", &m).starts_with("HTTP/1.1 404"));
    }
}
