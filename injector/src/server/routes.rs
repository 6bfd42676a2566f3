//! Routing and answering one request: /mutate (TLS only), /healthz, /readyz, /metrics, and
//! the shared limits that shed load with a 503 instead of growing.
//!
//! Two limits hold across all connections. The bytes of request bodies, as they arrive and
//! until their review is answered, are held from [`BODY_BUDGET`] (a client that trickles its
//! body holds only what it sent); reviews being decoded hold one of `--max-concurrent-reviews`
//! permits. A body past [`LARGE_BODY`] may grow only while [`BODY_RESERVE`] of the budget stays
//! free, so that large bodies, which can hold each other up half-read, never keep an ordinary
//! review (a few KiB) waiting. A request that finds no room within half of `--read-timeout`
//! is answered 503 with `Retry-After` (held requests meet their own deadline at the full read
//! timeout, so a waiting one is answered before they let go), and nothing more is buffered
//! for it.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode, Version};
use tokio::sync::{Semaphore, SemaphorePermit};

use super::{App, REVIEW_LOG};
use crate::review::{self, MAX_BODY, Verdict};

/// Bytes of request bodies held at once across all connections (a few of the largest Pods
/// the API server can send; ordinary reviews are a few KiB).
pub const BODY_BUDGET: usize = 16 * 1024 * 1024;
/// The part of [`BODY_BUDGET`] that only bodies up to [`LARGE_BODY`] may use.
pub const BODY_RESERVE: usize = 4 * 1024 * 1024;
/// Bodies larger than this grow only while [`BODY_RESERVE`] stays free (a Pod of a few
/// containers is 5-20 KiB of review).
pub const LARGE_BODY: usize = 256 * 1024;
/// How often a large body that found no room looks again (it does not queue: queued waiters
/// are served in order, and a large one would hold up every small one behind it).
const LARGE_BODY_RETRY: Duration = Duration::from_millis(5);

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

    /// Holds `n` more bytes of a body (`large`: one past [`LARGE_BODY`]), waiting at most
    /// `wait` for room.
    async fn hold(&self, n: usize, large: bool) -> Result<SemaphorePermit<'_>, ReadError> {
        let count = u32::try_from(n).map_err(|_| ReadError::TooLarge)?;
        if !large {
            return match tokio::time::timeout(self.wait, self.bodies.acquire_many(count)).await {
                Ok(Ok(permit)) => Ok(permit),
                _ => Err(ReadError::Busy),
            };
        }
        let deadline = Instant::now() + self.wait;
        loop {
            if self.bodies.available_permits() >= n + BODY_RESERVE
                && let Ok(permit) = self.bodies.try_acquire_many(count)
            {
                return Ok(permit);
            }
            if Instant::now() >= deadline {
                return Err(ReadError::Busy);
            }
            tokio::time::sleep(LARGE_BODY_RETRY).await;
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

/// Why a request body was not read whole.
enum ReadError {
    TooLarge,
    Busy,
    Body(hyper::Error),
}

/// Reads a body of at most `limit` bytes, holding its bytes from the shared budget as they
/// arrive (a client that sends slowly holds only what it has sent); the permit is returned
/// with the bytes and released when the review is done.
async fn read_body(
    load: &Load,
    mut body: Incoming,
    limit: usize,
) -> Result<(Bytes, Option<SemaphorePermit<'_>>), ReadError> {
    let mut parts = Vec::new();
    let mut len = 0;
    let mut held: Option<SemaphorePermit<'_>> = None;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(ReadError::Body)?.into_data() else {
            continue; // Trailers.
        };
        len += data.len();
        if len > limit {
            return Err(ReadError::TooLarge);
        }
        let permit = load.hold(data.len(), len > LARGE_BODY).await?;
        match &mut held {
            Some(h) => h.merge(permit),
            None => held = Some(permit),
        }
        parts.push(data);
    }
    let bytes = if parts.len() == 1 {
        parts.pop().unwrap_or_default()
    } else {
        let mut joined = Vec::with_capacity(len);
        for part in &parts {
            joined.extend_from_slice(part);
        }
        Bytes::from(joined)
    };
    Ok((bytes, held))
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
        read_body(&app.load, req.into_body(), MAX_BODY),
    );
    let (body, _held) = match read.await {
        Ok(Ok(read)) => read,
        Ok(Err(ReadError::TooLarge)) => return too_large(app),
        Ok(Err(ReadError::Busy)) => return busy(app, "bodies", "request bytes held at once"),
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
        Ok(Err(ReadError::Body(e))) => {
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
            tracing::info!(error = ?e.to_string(), "bad admission request");
            let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
            text(status, format!("{e}\n"))
        }
    }
}

/// One line per review. What the Pod's author controls (its names, and the denial message that
/// quotes its annotations) is logged in Debug form, quoted and escaped, so that no newline or
/// control character in it can forge a line of its own.
fn log_review(reviewed: &review::Reviewed) {
    let a = &reviewed.about;
    match &reviewed.verdict {
        Verdict::Denied { reason, message } => tracing::info!(
            target: REVIEW_LOG,
            uid = ?a.uid, namespace = ?a.namespace, pod = ?a.name,
            outcome = "denied", reason, denial = ?message, "review"
        ),
        Verdict::Injected(mode) => tracing::info!(
            target: REVIEW_LOG,
            uid = ?a.uid, namespace = ?a.namespace, pod = ?a.name,
            outcome = "injected", mode = mode.as_str(), "review"
        ),
        Verdict::Skipped(skip) => tracing::info!(
            target: REVIEW_LOG,
            uid = ?a.uid, namespace = ?a.namespace, pod = ?a.name,
            outcome = "skipped", why = skip.explain(), "review"
        ),
        Verdict::Ignored => tracing::debug!(
            target: REVIEW_LOG,
            uid = ?a.uid, namespace = ?a.namespace, pod = ?a.name,
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
