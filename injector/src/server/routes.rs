//! Routing and answering one request: /mutate (TLS only), /healthz, /readyz, /metrics, and
//! the shared limits that shed load with a 503 instead of growing.
//!
//! Two limits hold across all connections. Request bodies being read hold their size
//! (declared, or the largest accepted when not declared) from [`BODY_BUDGET`]; reviews being
//! decoded hold one of `--max-concurrent-reviews` permits. A request that finds no room within
//! half of `--read-timeout` is answered 503 with `Retry-After` (held requests meet their own
//! deadline at the full read timeout, so a waiting one is answered before they let go), and
//! nothing more is buffered for it.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode, Version};
use tokio::sync::Semaphore;

use super::{App, REVIEW_LOG};
use crate::review::{self, MAX_BODY, Verdict};

/// Bytes of request bodies held at once across all connections (a few of the largest Pods
/// the API server can send; ordinary reviews are a few KiB).
pub const BODY_BUDGET: usize = 16 * 1024 * 1024;

/// The limits shared by every connection.
#[derive(Debug)]
pub struct Load {
    bodies: Semaphore,
    reviews: Semaphore,
    wait: Duration,
}

impl Load {
    /// [`BODY_BUDGET`] bytes, `reviews` concurrent reviews, waiting at most `wait` for room.
    pub fn new(reviews: u32, wait: Duration) -> Self {
        Self {
            bodies: Semaphore::new(BODY_BUDGET),
            reviews: Semaphore::new(reviews as usize),
            wait,
        }
    }
}

pub(super) type Body = Full<Bytes>;

fn reply(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn text(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    reply(status, "text/plain; charset=utf-8", body.into())
}

/// Routes one request; `webhook` is true on the TLS listener (the only one serving /mutate).
/// While draining, an HTTP/1 answer carries `Connection: close` so that the client opens its
/// next connection elsewhere instead of reusing this one.
pub async fn handle(
    app: Arc<App>,
    req: Request<Incoming>,
    webhook: bool,
) -> Result<Response<Body>, Infallible> {
    let h1 = req.version() < Version::HTTP_2;
    let mut response = route(&app, req, webhook).await;
    if h1 && app.draining() {
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    Ok(response)
}

async fn route(app: &App, req: Request<Incoming>, webhook: bool) -> Response<Body> {
    match (req.method(), req.uri().path()) {
        (&Method::POST, "/mutate") if webhook => mutate(app, req).await,
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
    }
}

fn busy(app: &App, limit: &'static str, what: &str) -> Response<Body> {
    app.metrics.shed(limit);
    let mut r = text(
        StatusCode::SERVICE_UNAVAILABLE,
        format!(
            "the injector is at its limit of {what} and found no room within {} (half of --read-timeout); retry shortly\n",
            vaultlet_agent::config::format_duration(app.load.wait)
        ),
    );
    r.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

async fn mutate(app: &App, req: Request<Incoming>) -> Response<Body> {
    let start = Instant::now();
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let room = match declared {
        Some(n) if n > MAX_BODY as u64 => return too_large(app),
        // Both fit in u32: at most MAX_BODY.
        Some(n) => n as u32,
        None => MAX_BODY as u32,
    };
    let held = tokio::time::timeout(app.load.wait, app.load.bodies.acquire_many(room)).await;
    let Ok(Ok(_held)) = held else {
        return busy(app, "bodies", "request bytes held at once");
    };
    let read = tokio::time::timeout(
        app.read_timeout,
        Limited::new(req.into_body(), room as usize).collect(),
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
    let permit = tokio::time::timeout(app.load.wait, app.load.reviews.acquire()).await;
    let Ok(Ok(_permit)) = permit else {
        return busy(app, "reviews", "reviews decoded at once");
    };
    match review::review(&body, &app.settings) {
        Ok(reviewed) => {
            log_review(&reviewed);
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

fn log_review(reviewed: &review::Reviewed) {
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
}

fn too_large(app: &App) -> Response<Body> {
    app.metrics.bad_request(413);
    text(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body is larger than {MAX_BODY} bytes\n"),
    )
}
