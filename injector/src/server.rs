//! HTTPS webhook and plain-HTTP admin listener: routing, body limits, graceful shutdown.
//!
//! Shutdown: the first SIGTERM/SIGINT turns `/readyz` false while both listeners keep
//! accepting for `--drain-delay`; then the listeners close and in-flight reviews get
//! `--shutdown-grace`. A second signal at any point exits at once, non-zero.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::cli::ServeArgs;
use crate::metrics::Metrics;
use crate::review::{self, MAX_BODY, Verdict};
use crate::settings::{LogArgs, Settings};
use crate::tls::{self, CertStore};

/// Log target of the one line per review (`--log-level info,vaultlet_injector::review=warn`
/// drops those lines and keeps the rest).
pub const REVIEW_LOG: &str = "vaultlet_injector::review";

/// A TLS handshake that takes longer than this is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Shared state of every connection.
#[derive(Debug)]
pub struct App {
    /// Mutation settings.
    pub settings: Settings,
    /// Metrics registry.
    pub metrics: Arc<Metrics>,
    /// Serving certificate.
    pub certs: Arc<CertStore>,
    /// HTTP/1 headers and request bodies must arrive within this (`--read-timeout`); the API
    /// server gives up on a webhook after at most 30 s, so a slower client is not the API server.
    pub read_timeout: Duration,
    draining: AtomicBool,
}

impl App {
    /// Ready: a certificate is loaded and the server is not draining.
    pub fn ready(&self) -> bool {
        self.certs.is_loaded() && !self.draining.load(Ordering::Relaxed)
    }
}

/// Runs `serve` until SIGTERM/SIGINT, then drains in-flight requests.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    // One crypto provider for the whole process (ring).
    let _ = rustls::crypto::ring::default_provider().install_default();
    init_logging(&args.log)?;
    args.settings.validate()?;
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
    let app = Arc::new(App {
        settings: args.settings,
        metrics: metrics.clone(),
        certs: certs.clone(),
        read_timeout: args.server.read_timeout.0,
        draining: AtomicBool::new(false),
    });
    let listener = TcpListener::bind(args.server.listen_addr)
        .await
        .with_context(|| format!("binding --listen-addr {}", args.server.listen_addr))?;
    let admin = bind_admin(&args.server.admin_addr).await?;
    tracing::info!(
        webhook = %listener.local_addr()?,
        admin = %admin.as_ref().and_then(|l| l.local_addr().ok()).map_or("off".to_owned(), |a| a.to_string()),
        "listening"
    );
    let mut signals = Signals::new();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(tls::watch(certs, metrics, stop_rx));
    let graceful = GracefulShutdown::new();
    let listeners = Listeners {
        webhook: &listener,
        admin: admin.as_ref(),
    };

    let first = listeners.serve_until(&app, &graceful, signals.next()).await;
    // Unready at once, but keep answering: the API server keeps sending reviews to this
    // endpoint until it learns that the endpoint is gone.
    app.draining.store(true, Ordering::Relaxed);
    let delay = args.server.drain_delay;
    tracing::info!(signal = first, drain_delay = %delay, "draining: unready, still answering new reviews for the drain delay");
    let until = async {
        tokio::select! {
            () = tokio::time::sleep(delay.0) => None,
            second = signals.next() => Some(second),
        }
    };
    if let Some(second) = listeners.serve_until(&app, &graceful, until).await {
        return aborted(second, &graceful);
    }
    tracing::info!(
        connections = graceful.count(),
        "drain delay over: no new connections; finishing in-flight reviews"
    );
    let _ = stop_tx.send(true);
    drop(listener);
    drop(admin);
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(args.server.shutdown_grace.0) => {
            tracing::warn!("shutdown grace period over; closing remaining connections");
        }
        second = signals.next() => {
            // `graceful` was consumed by shutdown(); nothing is counted any more.
            tracing::warn!(signal = second, "second signal: exiting without waiting for in-flight reviews");
            anyhow::bail!("stopped by a second {second} before in-flight reviews finished");
        }
    }
    Ok(())
}

fn aborted(signal: &str, graceful: &GracefulShutdown) -> anyhow::Result<()> {
    tracing::warn!(
        signal,
        connections = graceful.count(),
        "second signal: exiting at once"
    );
    anyhow::bail!("stopped by a second {signal} during the drain delay")
}

/// The webhook listener and the optional admin listener.
struct Listeners<'a> {
    webhook: &'a TcpListener,
    admin: Option<&'a TcpListener>,
}

impl Listeners<'_> {
    /// Accepts and serves connections until `stop` completes; returns its output.
    async fn serve_until<T>(
        &self,
        app: &Arc<App>,
        graceful: &GracefulShutdown,
        stop: impl std::future::Future<Output = T>,
    ) -> T {
        tokio::pin!(stop);
        loop {
            tokio::select! {
                out = &mut stop => return out,
                accepted = self.webhook.accept() => match accepted {
                    Ok((stream, _)) => spawn_tls(app, stream, graceful),
                    Err(e) => tracing::warn!(error = %e, "accept failed"),
                },
                accepted = accept_opt(self.admin) => match accepted {
                    Ok((stream, _)) => spawn_plain(app, stream, graceful),
                    Err(e) => tracing::warn!(error = %e, "admin accept failed"),
                },
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

async fn accept_opt(l: Option<&TcpListener>) -> std::io::Result<(TcpStream, SocketAddr)> {
    match l {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

fn spawn_tls(app: &Arc<App>, stream: TcpStream, graceful: &GracefulShutdown) {
    let Some(config) = app.certs.current() else {
        return; // Not ready: no certificate to offer.
    };
    let _ = stream.set_nodelay(true);
    let acceptor = TlsAcceptor::from(config);
    let watcher = graceful.watcher();
    let app = app.clone();
    tokio::spawn(async move {
        let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => return,
        };
        let read_timeout = app.read_timeout;
        let svc = hyper::service::service_fn(move |req| handle(app.clone(), req, true));
        let conn = conn_builder(read_timeout)
            .serve_connection(TokioIo::new(tls), svc)
            .into_owned();
        if let Err(e) = watcher.watch(conn).await {
            tracing::debug!(error = %e, "connection ended with an error");
        }
    });
}

fn spawn_plain(app: &Arc<App>, stream: TcpStream, graceful: &GracefulShutdown) {
    let watcher = graceful.watcher();
    let app = app.clone();
    tokio::spawn(async move {
        let read_timeout = app.read_timeout;
        let svc = hyper::service::service_fn(move |req| handle(app.clone(), req, false));
        let conn = conn_builder(read_timeout)
            .serve_connection(TokioIo::new(stream), svc)
            .into_owned();
        let _ = watcher.watch(conn).await;
    });
}

/// HTTP/1.1 and HTTP/2 on one connection; a client that dribbles its headers is cut off.
fn conn_builder(read_timeout: Duration) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(read_timeout);
    builder
}

type Body = Full<Bytes>;

fn reply(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    r
}

fn text(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    reply(status, "text/plain; charset=utf-8", body.into())
}

/// Routes one request; `webhook` is true on the TLS listener (the only one serving /mutate).
pub async fn handle(
    app: Arc<App>,
    req: Request<Incoming>,
    webhook: bool,
) -> Result<Response<Body>, Infallible> {
    let response = match (req.method(), req.uri().path()) {
        (&Method::POST, "/mutate") if webhook => mutate(&app, req).await,
        (_, "/mutate") if !webhook => text(StatusCode::NOT_FOUND, "not found\n"),
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
        (&Method::GET, "/readyz") if app.ready() => text(StatusCode::OK, "ready\n"),
        (&Method::GET, "/readyz") => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
        (&Method::GET, "/metrics") => reply(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            app.metrics.render(),
        ),
        (_, "/mutate" | "/healthz" | "/readyz" | "/metrics") => {
            text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    };
    Ok(response)
}

async fn mutate(app: &App, req: Request<Incoming>) -> Response<Body> {
    let start = Instant::now();
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return too_large(app);
    }
    let read = tokio::time::timeout(
        app.read_timeout,
        Limited::new(req.into_body(), MAX_BODY).collect(),
    );
    let body = match read.await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => return too_large(app),
        Err(_) => {
            app.metrics.bad_request(408);
            return text(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request body did not arrive within {} (--read-timeout)\n",
                    vaultlet_agent::config::format_duration(app.read_timeout)
                ),
            );
        }
        Ok(Err(e)) => {
            app.metrics.bad_request(400);
            return text(
                StatusCode::BAD_REQUEST,
                format!("cannot read the request body: {e}\n"),
            );
        }
    };
    match review::review(&body, &app.settings) {
        Ok(reviewed) => {
            let a = &reviewed.about;
            match &reviewed.verdict {
                Verdict::Denied { reason, message } => tracing::info!(
                    target: REVIEW_LOG,
                    uid = %a.uid, namespace = %a.namespace, pod = %a.name,
                    outcome = "denied", reason, message = %message, "review"
                ),
                Verdict::Injected(mode) => tracing::info!(
                    target: REVIEW_LOG,
                    uid = %a.uid, namespace = %a.namespace, pod = %a.name,
                    outcome = "injected", mode = mode.as_str(), "review"
                ),
                Verdict::Skipped(skip) => tracing::info!(
                    target: REVIEW_LOG,
                    uid = %a.uid, namespace = %a.namespace, pod = %a.name,
                    outcome = "skipped", why = skip.explain(), "review"
                ),
                Verdict::Ignored => tracing::debug!(
                    target: REVIEW_LOG,
                    uid = %a.uid, namespace = %a.namespace, pod = %a.name,
                    outcome = "ignored", "review"
                ),
            }
            app.metrics
                .review(&reviewed.verdict, start.elapsed().as_secs_f64());
            reply(StatusCode::OK, "application/json", reviewed.body)
        }
        Err(e) => {
            app.metrics.bad_request(e.status());
            tracing::info!(error = %e, "bad admission request");
            let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
            text(status, format!("{e}\n"))
        }
    }
}

fn too_large(app: &App) -> Response<Body> {
    app.metrics.bad_request(413);
    text(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body is larger than {MAX_BODY} bytes\n"),
    )
}
