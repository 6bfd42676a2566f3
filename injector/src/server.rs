//! HTTPS webhook and plain-HTTP admin listener: connections, graceful shutdown.
//!
//! Connections live as [`conn`] says (idle ones kept past the API server's own idle timeout,
//! deadlines only for a request in progress), under a cap ([`accept`]); requests are routed
//! and shed under load in [`routes`].
//!
//! Shutdown: the first SIGTERM/SIGINT turns `/readyz` false while both listeners keep
//! accepting for `--drain-delay`; meanwhile each connection is closed after its next review
//! (HTTP/1 `Connection: close`, HTTP/2 GOAWAY), so clients move to other replicas without a
//! failed request. Then the listeners close, idle connections are closed and in-flight
//! reviews get `--shutdown-grace`. A second signal at any point exits at once, non-zero.

mod accept;
pub mod conn;
mod routes;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use hyper::Version;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, watch};
use tokio_rustls::TlsAcceptor;

use crate::cli::ServeArgs;
use crate::metrics::Metrics;
use crate::settings::{LogArgs, Settings};
use crate::tls::{self, CertStore};
use accept::Listener;
use conn::{Activity, Ended, Limits, Watched};
pub use routes::{BODY_BUDGET, BODY_RESERVE, LARGE_BODY, handle};

/// Log target of the one line per review (`--log-level info,vaultlet_injector::review=warn`
/// drops those lines and keeps the rest).
pub const REVIEW_LOG: &str = "vaultlet_injector::review";

/// Open admin connections at most (probes and scrapes; more wait in the backlog).
const MAX_ADMIN_CONNECTIONS: u32 = 16;

/// HTTP/1: the most bytes buffered for one request's head.
const H1_MAX_BUF: usize = 64 * 1024;
/// HTTP/2: streams open at once on one connection.
const H2_MAX_STREAMS: u32 = 32;
/// HTTP/2: the most header bytes of one request.
const H2_MAX_HEADER_LIST: u32 = 64 * 1024;
/// HTTP/2: bytes a client may send ahead on one stream / on the connection before the
/// injector reads them (flow control: what one connection can make it buffer).
/// At most `--max-connections` × this is buffered before the body budget counts it.
const H2_STREAM_WINDOW: u32 = 64 * 1024;
const H2_CONNECTION_WINDOW: u32 = 128 * 1024;

/// Shared state of every connection.
#[derive(Debug)]
pub struct App {
    /// Mutation settings.
    pub settings: Settings,
    /// Metrics registry.
    pub metrics: Arc<Metrics>,
    /// Serving certificate.
    pub certs: Arc<CertStore>,
    /// A request in progress must get on within this (`--read-timeout`); the API server
    /// gives up on a webhook after at most 30 s, so a slower client is not the API server.
    pub read_timeout: Duration,
    load: routes::Load,
    draining: AtomicBool,
}

impl App {
    /// Ready: a certificate is loaded and the server is not draining.
    pub fn ready(&self) -> bool {
        self.certs.is_loaded() && !self.draining()
    }

    fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}

/// Runs `serve` until SIGTERM/SIGINT, then drains in-flight requests.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    // One crypto provider for the whole process (ring).
    let _ = rustls::crypto::ring::default_provider().install_default();
    init_logging(&args.log)?;
    args.settings.validate()?;
    args.server.validate()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(args))
}

fn init_logging(log: &LogArgs) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&log.log_level)
        .with_context(|| format!("--log-level {:?} is not a valid filter", log.log_level))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false);
    let result = if log.log_format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    result.map_err(|e| anyhow::anyhow!("cannot set up logging: {e}"))
}

/// What every connection task needs besides the [`App`].
#[derive(Clone)]
struct Lifecycle {
    limits: Limits,
    draining: watch::Receiver<bool>,
    stop: watch::Receiver<bool>,
    builder: auto::Builder<TokioExecutor>,
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new());
    let certs = Arc::new(CertStore::new(
        args.tls.tls_cert_file.clone(),
        args.tls.tls_key_file.clone(),
    ));
    // Fail fast: a webhook that starts without a certificate would refuse every Pod.
    if let Err(e) = certs.reload() {
        anyhow::bail!("no serving certificate at start: {e}");
    }
    metrics.cert_reload(true);
    let server = &args.server;
    let app = Arc::new(App {
        settings: args.settings,
        metrics: metrics.clone(),
        certs: certs.clone(),
        read_timeout: server.read_timeout.0,
        load: routes::Load::new(server.max_concurrent_reviews, server.read_timeout.0 / 2),
        draining: AtomicBool::new(false),
    });
    let tcp = TcpListener::bind(server.listen_addr)
        .await
        .with_context(|| format!("binding --listen-addr {}", server.listen_addr))?;
    let mut webhook = Listener::new(
        tcp,
        "webhook",
        server.max_connections,
        true,
        metrics.clone(),
    );
    let mut admin = bind_admin(&server.admin_addr)
        .await?
        .map(|tcp| Listener::new(tcp, "admin", MAX_ADMIN_CONNECTIONS, false, metrics.clone()));
    tracing::info!(
        webhook = %webhook.local_addr()?,
        admin = %admin.as_ref().and_then(|l| l.local_addr().ok()).map_or("off".to_owned(), |a| a.to_string()),
        max_connections = server.max_connections,
        "listening"
    );
    let mut signals = Signals::new();
    let (stop_tx, stop_rx) = watch::channel(false);
    let (drain_tx, drain_rx) = watch::channel(false);
    tokio::spawn(tls::watch(certs, metrics, stop_rx.clone()));
    let life = Lifecycle {
        limits: Limits {
            request_timeout: server.read_timeout.0,
            idle_timeout: server.idle_timeout.0,
        },
        draining: drain_rx,
        stop: stop_rx,
        builder: conn_builder(),
    };

    let first = serve_until(&app, &life, &mut webhook, admin.as_mut(), signals.next()).await;
    // Unready at once, but keep answering: the API server keeps sending reviews to this
    // endpoint until it learns that the endpoint is gone.
    app.draining.store(true, Ordering::Relaxed);
    drain_tx.send_replace(true);
    let delay = server.drain_delay;
    tracing::info!(signal = first, drain_delay = %delay, "draining: unready, still answering new reviews for the drain delay; each connection closes after its next review");
    let until = async {
        tokio::select! {
            () = tokio::time::sleep(delay.0) => None,
            second = signals.next() => Some(second),
        }
    };
    if let Some(second) = serve_until(&app, &life, &mut webhook, admin.as_mut(), until).await {
        tracing::warn!(
            signal = second,
            connections = webhook.open(),
            "second signal: exiting at once"
        );
        anyhow::bail!("stopped by a second {second} during the drain delay");
    }
    tracing::info!(
        connections = webhook.open(),
        "drain delay over: no new connections; closing idle ones, finishing in-flight reviews"
    );
    stop_tx.send_replace(true);
    let webhook = webhook.close();
    let admin = admin.map(Listener::close);
    let closed = async {
        webhook.closed().await;
        if let Some(admin) = &admin {
            admin.closed().await;
        }
    };
    tokio::select! {
        () = closed => tracing::info!("all connections closed"),
        () = tokio::time::sleep(server.shutdown_grace.0) => {
            tracing::warn!(connections = webhook.open(), "shutdown grace period over; closing remaining connections");
        }
        second = signals.next() => {
            tracing::warn!(signal = second, "second signal: exiting without waiting for in-flight reviews");
            anyhow::bail!("stopped by a second {second} before in-flight reviews finished");
        }
    }
    Ok(())
}

/// Accepts and serves connections until `stop` completes; returns its output.
async fn serve_until<T>(
    app: &Arc<App>,
    life: &Lifecycle,
    webhook: &mut Listener,
    mut admin: Option<&mut Listener>,
    stop: impl std::future::Future<Output = T>,
) -> T {
    tokio::pin!(stop);
    loop {
        let admin_next = async {
            match admin.as_deref_mut() {
                Some(l) => l.next().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            out = &mut stop => return out,
            (stream, permit) = webhook.next() => {
                let activity = Activity::new();
                if let Some(live) = &webhook.live {
                    live.add(&activity);
                }
                spawn_tls(app, life, stream, permit, activity);
            }
            (stream, permit) = admin_next => {
                spawn_conn(app.clone(), life.clone(), stream, permit, Activity::new(), false);
            }
        }
    }
}

/// SIGTERM and SIGINT, registered once so that a second signal is caught too.
struct Signals {
    term: Option<tokio::signal::unix::Signal>,
    int: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn new() -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        let register = |kind: SignalKind, name: &str| match signal(kind) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for {name}");
                None
            }
        };
        Self {
            term: register(SignalKind::terminate(), "SIGTERM"),
            int: register(SignalKind::interrupt(), "SIGINT"),
        }
    }

    /// The name of the next signal received.
    async fn next(&mut self) -> &'static str {
        async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
            match s {
                Some(s) => {
                    if s.recv().await.is_none() {
                        std::future::pending::<()>().await;
                    }
                }
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            () = recv(&mut self.term) => "SIGTERM",
            () = recv(&mut self.int) => "SIGINT",
        }
    }
}

async fn bind_admin(addr: &str) -> anyhow::Result<Option<TcpListener>> {
    if addr == "off" || addr.is_empty() {
        return Ok(None);
    }
    let addr: SocketAddr = addr
        .parse()
        .with_context(|| format!("--admin-addr {addr:?} is not host:port or off"))?;
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding --admin-addr {addr}"))?;
    Ok(Some(listener))
}

fn spawn_tls(
    app: &Arc<App>,
    life: &Lifecycle,
    stream: TcpStream,
    permit: OwnedSemaphorePermit,
    activity: Arc<Activity>,
) {
    let Some(config) = app.certs.current() else {
        return; // Not ready: no certificate to offer.
    };
    let _ = stream.set_nodelay(true);
    let acceptor = TlsAcceptor::from(config);
    let (app, life) = (app.clone(), life.clone());
    tokio::spawn(async move {
        let _open = OpenGauge::new(app.metrics.clone());
        // The handshake counts against the first request's deadline.
        let handshake = tokio::time::timeout_at(
            activity.state().idle_since + life.limits.request_timeout,
            acceptor.accept(stream),
        );
        let tls = match handshake.await {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => return,
        };
        serve_conn(app, life, tls, permit, activity, true).await;
    });
}

fn spawn_conn(
    app: Arc<App>,
    life: Lifecycle,
    stream: TcpStream,
    permit: OwnedSemaphorePermit,
    activity: Arc<Activity>,
    webhook: bool,
) {
    tokio::spawn(serve_conn(app, life, stream, permit, activity, webhook));
}

/// Serves one connection (TLS already done) until [`conn::drive`] ends it.
async fn serve_conn<T>(
    app: Arc<App>,
    life: Lifecycle,
    io: T,
    _permit: OwnedSemaphorePermit,
    activity: Arc<Activity>,
    webhook: bool,
) where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(Watched::new(io, activity.clone()));
    let svc = {
        let activity = activity.clone();
        hyper::service::service_fn(move |req| {
            let in_flight = activity.request(req.version() == Version::HTTP_2);
            let app = app.clone();
            async move {
                let response = handle(app, req, webhook).await;
                drop(in_flight);
                response
            }
        })
    };
    let conn = life.builder.serve_connection(io, svc);
    let (ended, out) = conn::drive(
        conn,
        |c| c.graceful_shutdown(),
        &activity,
        life.limits,
        life.draining,
        life.stop,
    )
    .await;
    match (ended, out) {
        (Ended::Closed, Some(Err(e))) => {
            tracing::debug!(error = %e, "connection ended with an error");
        }
        (Ended::Closed, _) => {}
        (why, _) => tracing::debug!(?why, "connection cut off"),
    }
}

/// Counts an open webhook connection in the `connections` gauge while it lives.
struct OpenGauge(Arc<Metrics>);

impl OpenGauge {
    fn new(metrics: Arc<Metrics>) -> Self {
        metrics.connections(1);
        Self(metrics)
    }
}

impl Drop for OpenGauge {
    fn drop(&mut self) {
        self.0.connections(-1);
    }
}

/// HTTP/1.1 and HTTP/2 on one connection. No hyper header-read timeout: in hyper it runs
/// while a kept-alive connection waits for its next request, which would make it an idle
/// timeout; [`conn::drive`] keeps those deadlines instead.
fn conn_builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .max_buf_size(H1_MAX_BUF);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_MAX_STREAMS)
        .max_header_list_size(H2_MAX_HEADER_LIST)
        .initial_stream_window_size(H2_STREAM_WINDOW)
        .initial_connection_window_size(H2_CONNECTION_WINDOW);
    builder
}
