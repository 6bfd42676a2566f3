//! One connection's life: when it is cut off, when it is closed, and how.
//!
//! The API server pools its connections to a webhook and reuses an idle one for the next
//! review (Go's transport keeps idle connections 90 s). A server that closes an idle
//! connection while the client is writing a request on it fails that review, and with
//! `failurePolicy: Fail` the Pod is refused. So an idle connection that has served a review
//! stays open for `--idle-timeout` (120 s, longer than the client keeps it), and a deadline
//! (`--read-timeout`) applies only to a request in progress: HTTP/1 bytes of a request whose
//! headers have not all arrived, a response the client does not read, and a connection that
//! sends no request at all after its handshake (the API server sends one at once).
//!
//! Closing is graceful wherever a client may still be using the connection: HTTP/1 answers
//! the request in progress with `Connection: close`, HTTP/2 sends GOAWAY so the client opens a
//! new connection for its next review. During the drain every connection is closed that way
//! after its next review; at the end of it the idle ones are closed.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

/// The deadlines of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A request in progress (headers, a response being written), and the first request of a
    /// new connection, must get on within this (`--read-timeout`).
    pub request_timeout: Duration,
    /// A connection with no request in progress is closed after this (`--idle-timeout`).
    pub idle_timeout: Duration,
}

/// Why a connection's deadline came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// Idle for the idle timeout: close it gracefully (HTTP/2 GOAWAY).
    Idle,
    /// A request (or the first one) did not get on within the request timeout: cut it off.
    Stalled,
}

/// What a connection is doing, as its I/O and its requests report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct State {
    /// Requests being handled now.
    pub in_flight: usize,
    /// Requests started on this connection so far.
    pub served: u64,
    /// When the connection last had no request in flight (or was accepted).
    pub idle_since: Instant,
    /// HTTP/1: when bytes of a request arrived with no request in flight yet (its headers are
    /// still coming in).
    pub reading_since: Option<Instant>,
    /// Since when a write has been waiting for the client to read.
    pub write_blocked_since: Option<Instant>,
    /// The connection speaks HTTP/2 (known from its first request).
    pub h2: bool,
    /// Asked to make room for a new connection (see [`Activity::evict`]).
    pub evicted: bool,
}

impl State {
    fn new(now: Instant) -> Self {
        Self {
            in_flight: 0,
            served: 0,
            idle_since: now,
            reading_since: None,
            write_blocked_since: None,
            h2: false,
            evicted: false,
        }
    }

    /// Idle for the longest is evicted first; `None` while a request is in progress or none
    /// has been served yet (such a connection meets its request deadline soon anyway).
    pub fn evictable_since(&self) -> Option<Instant> {
        let idle = self.in_flight == 0
            && self.served > 0
            && self.reading_since.is_none()
            && self.write_blocked_since.is_none()
            && !self.evicted;
        idle.then_some(self.idle_since)
    }
}

/// The next deadline of a connection in `state`, or `None` while a request is being handled
/// (the handler bounds its own body read). HTTP/2 control frames (PING, SETTINGS) arrive on
/// idle connections and say nothing about a request, so only HTTP/1 bytes start a request.
pub fn deadline(state: &State, limits: &Limits) -> Option<(Instant, Expiry)> {
    if let Some(blocked) = state.write_blocked_since {
        return Some((blocked + limits.request_timeout, Expiry::Stalled));
    }
    if state.in_flight > 0 {
        return None;
    }
    if let Some(reading) = state.reading_since.filter(|_| !state.h2) {
        return Some((reading + limits.request_timeout, Expiry::Stalled));
    }
    if state.served == 0 {
        return Some((state.idle_since + limits.request_timeout, Expiry::Stalled));
    }
    Some((state.idle_since + limits.idle_timeout, Expiry::Idle))
}

/// A connection's [`State`], shared by its I/O wrapper, its requests and its driver.
#[derive(Debug)]
pub struct Activity {
    state: Mutex<State>,
    changed: Notify,
}

impl Activity {
    /// A connection accepted now.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State::new(Instant::now())),
            changed: Notify::new(),
        })
    }

    fn update(&self, f: impl FnOnce(&mut State) -> bool) {
        let notify = f(&mut self.state.lock().unwrap_or_else(PoisonError::into_inner));
        if notify {
            self.changed.notify_one();
        }
    }

    /// A copy of the state now.
    pub fn state(&self) -> State {
        *self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A request's headers have arrived (over HTTP/2 when `h2`); the returned guard ends it.
    pub fn request(self: &Arc<Self>, h2: bool) -> InFlight {
        self.update(|s| {
            s.h2 = h2;
            s.in_flight += 1;
            s.served += 1;
            s.reading_since = None;
            true
        });
        InFlight(self.clone())
    }

    /// Asks the connection to close gracefully (HTTP/1 once idle, HTTP/2 with GOAWAY).
    pub fn evict(&self) {
        self.update(|s| {
            s.evicted = true;
            true
        });
    }

    fn read(&self) {
        self.update(|s| {
            let starts = s.in_flight == 0 && s.reading_since.is_none();
            if starts {
                s.reading_since = Some(Instant::now());
            }
            starts
        });
    }

    fn write(&self, blocked: bool) {
        self.update(|s| {
            let was = s.write_blocked_since.is_some();
            if blocked && !was {
                s.write_blocked_since = Some(Instant::now());
            } else if !blocked {
                s.write_blocked_since = None;
            }
            blocked != was
        });
    }
}

/// One request in flight on a connection (see [`Activity::request`]).
#[derive(Debug)]
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.update(|s| {
            s.in_flight = s.in_flight.saturating_sub(1);
            if s.in_flight == 0 {
                s.idle_since = Instant::now();
            }
            true
        });
    }
}

/// The connection's byte stream, reporting reads and blocked writes to its [`Activity`].
#[derive(Debug)]
pub struct Watched<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T> Watched<T> {
    /// Wraps `inner`.
    pub fn new(inner: T, activity: Arc<Activity>) -> Self {
        Self { inner, activity }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> Watched<T> {
    fn report<R>(&self, polled: Poll<R>) -> Poll<R> {
        self.activity.write(polled.is_pending());
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.report(polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.report(polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.report(polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// How a connection ended, for the debug log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The client closed it, or it finished after a graceful close.
    Closed,
    /// Cut off: a request or the first one did not get on in time.
    Stalled,
    /// A graceful close did not finish within the request timeout.
    CloseTimedOut,
}

/// Waits for a change of `rx`; forever once its sender is gone.
async fn changed(rx: &mut watch::Receiver<bool>) {
    if rx.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Whether a connection in `state` is to be closed gracefully now: at `stop`, when evicted,
/// and while `draining` an HTTP/2 one that has served a review (GOAWAY is safe to send at any
/// time; an HTTP/1 one is answered with `Connection: close` by its next review instead).
pub fn closing(state: &State, draining: bool, stop: bool) -> bool {
    stop || state.evicted || (draining && state.h2 && state.served > 0)
}

/// Drives `conn` to its end: cuts it off when stalled, closes it gracefully with `close` when
/// idle for the idle timeout or when [`closing`] says so. Returns how it ended, with the
/// connection's own result when it finished.
pub async fn drive<C: std::future::Future>(
    conn: C,
    close: impl FnOnce(Pin<&mut C>),
    activity: &Activity,
    limits: Limits,
    mut draining: watch::Receiver<bool>,
    mut stop: watch::Receiver<bool>,
) -> (Ended, Option<C::Output>) {
    tokio::pin!(conn);
    loop {
        let state = activity.state();
        if closing(&state, *draining.borrow(), *stop.borrow()) {
            break;
        }
        let next = deadline(&state, &limits);
        let sleep = async {
            match next {
                Some((at, _)) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            out = conn.as_mut() => return (Ended::Closed, Some(out)),
            () = sleep => {
                // Deadlines only move later; look again before acting.
                match deadline(&activity.state(), &limits) {
                    Some((at, Expiry::Stalled)) if at <= Instant::now() => {
                        return (Ended::Stalled, None);
                    }
                    Some((at, Expiry::Idle)) if at <= Instant::now() => break,
                    _ => {}
                }
            }
            () = activity.changed.notified() => {}
            () = changed(&mut draining) => {}
            () = changed(&mut stop) => {}
        }
    }
    close(conn.as_mut());
    match tokio::time::timeout(limits.request_timeout, conn).await {
        Ok(out) => (Ended::Closed, Some(out)),
        Err(_) => (Ended::CloseTimedOut, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        request_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(120),
    };

    fn at(t0: Instant, secs: u64) -> Instant {
        t0 + Duration::from_secs(secs)
    }

    #[test]
    fn a_connection_that_served_a_review_stays_open_past_the_clients_idle_timeout() {
        let t0 = Instant::now();
        let mut s = State::new(t0);
        s.served = 1;
        s.idle_since = at(t0, 5);
        assert_eq!(deadline(&s, &LIMITS), Some((at(t0, 125), Expiry::Idle)));
        // HTTP/1 bytes start a request: its headers must arrive within the request timeout.
        s.reading_since = Some(at(t0, 30));
        assert_eq!(deadline(&s, &LIMITS), Some((at(t0, 40), Expiry::Stalled)));
        // HTTP/2 control frames on an idle connection do not.
        s.h2 = true;
        assert_eq!(deadline(&s, &LIMITS), Some((at(t0, 125), Expiry::Idle)));
    }

    #[test]
    fn a_new_connection_must_send_its_first_request_within_the_request_timeout() {
        let t0 = Instant::now();
        let mut s = State::new(t0);
        for h2 in [false, true] {
            s.h2 = h2;
            assert_eq!(deadline(&s, &LIMITS), Some((at(t0, 10), Expiry::Stalled)));
        }
    }

    #[test]
    fn a_request_in_flight_has_no_connection_deadline_but_a_blocked_write_has() {
        let t0 = Instant::now();
        let mut s = State::new(t0);
        s.in_flight = 1;
        s.served = 1;
        assert_eq!(deadline(&s, &LIMITS), None);
        s.write_blocked_since = Some(at(t0, 3));
        assert_eq!(deadline(&s, &LIMITS), Some((at(t0, 13), Expiry::Stalled)));
    }

    #[test]
    fn draining_closes_http2_after_a_review_and_leaves_http1_to_its_next_answer() {
        let mut s = State::new(Instant::now());
        assert!(!closing(&s, true, false), "nothing served yet");
        s.served = 1;
        assert!(
            !closing(&s, true, false),
            "HTTP/1 closes with its next answer"
        );
        s.h2 = true;
        assert!(closing(&s, true, false));
        assert!(!closing(&s, false, false));
        s.h2 = false;
        assert!(closing(&s, false, true), "stop closes every connection");
        s.evicted = true;
        assert!(closing(&s, false, false));
    }

    #[test]
    fn only_idle_connections_that_served_a_review_are_evictable() {
        let t0 = Instant::now();
        let mut s = State::new(t0);
        assert_eq!(s.evictable_since(), None);
        s.served = 1;
        assert_eq!(s.evictable_since(), Some(t0));
        s.in_flight = 1;
        assert_eq!(s.evictable_since(), None);
        s.in_flight = 0;
        s.reading_since = Some(t0);
        assert_eq!(s.evictable_since(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn activity_tracks_requests_reads_and_writes() {
        let a = Activity::new();
        let t0 = a.state().idle_since;
        tokio::time::advance(Duration::from_secs(1)).await;
        a.read();
        assert_eq!(a.state().reading_since, Some(at(t0, 1)));
        let guard = a.request(false);
        assert_eq!(
            (
                a.state().in_flight,
                a.state().served,
                a.state().reading_since
            ),
            (1, 1, None)
        );
        // Bytes while a request is in flight are its body, not a new request.
        a.read();
        assert_eq!(a.state().reading_since, None);
        tokio::time::advance(Duration::from_secs(2)).await;
        drop(guard);
        assert_eq!((a.state().in_flight, a.state().idle_since), (0, at(t0, 3)));
        a.write(true);
        tokio::time::advance(Duration::from_secs(1)).await;
        a.write(true);
        assert_eq!(a.state().write_blocked_since, Some(at(t0, 3)));
        a.write(false);
        assert_eq!(a.state().write_blocked_since, None);
    }

    /// A connection that never ends by itself and records when it was asked to close; after
    /// that it ends at once.
    struct Fake {
        closed_at: Option<Instant>,
    }

    impl std::future::Future for Fake {
        type Output = Instant;
        fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Instant> {
            match self.closed_at {
                Some(t) => Poll::Ready(t),
                None => Poll::Pending,
            }
        }
    }

    fn close(f: Pin<&mut Fake>) {
        f.get_mut().closed_at = Some(Instant::now());
    }

    #[tokio::test(start_paused = true)]
    async fn drive_keeps_a_served_connection_for_the_idle_timeout_and_cuts_a_silent_one() {
        let (_d, draining) = watch::channel(false);
        let (_s, stop) = watch::channel(false);
        let t0 = Instant::now();

        let silent = Activity::new();
        let (ended, out) = drive(
            Fake { closed_at: None },
            close,
            &silent,
            LIMITS,
            draining.clone(),
            stop.clone(),
        )
        .await;
        assert_eq!((ended, out), (Ended::Stalled, None));
        assert_eq!(Instant::now(), at(t0, 10));

        let served = Activity::new();
        drop(served.request(true));
        let t1 = Instant::now();
        let (ended, out) = drive(
            Fake { closed_at: None },
            close,
            &served,
            LIMITS,
            draining,
            stop,
        )
        .await;
        assert_eq!((ended, out), (Ended::Closed, Some(at(t1, 120))));
    }

    #[tokio::test(start_paused = true)]
    async fn drive_closes_at_drain_eviction_and_stop() {
        let (drain_tx, draining) = watch::channel(false);
        let (stop_tx, stop) = watch::channel(false);
        let a = Activity::new();
        drop(a.request(true));
        let t0 = Instant::now();
        let driven = tokio::spawn({
            let a = a.clone();
            let (draining, stop) = (draining.clone(), stop.clone());
            async move { drive(Fake { closed_at: None }, close, &a, LIMITS, draining, stop).await }
        });
        tokio::time::sleep(Duration::from_secs(3)).await;
        drain_tx.send_replace(true);
        let (ended, out) = driven.await.expect("drive");
        assert_eq!((ended, out), (Ended::Closed, Some(at(t0, 3))));

        // HTTP/1 while draining: left open (its next answer says `Connection: close`) until
        // evicted or stopped.
        let h1 = Activity::new();
        drop(h1.request(false));
        let driven = tokio::spawn({
            let h1 = h1.clone();
            async move { drive(Fake { closed_at: None }, close, &h1, LIMITS, draining, stop).await }
        });
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!driven.is_finished());
        stop_tx.send_replace(true);
        let (ended, out) = driven.await.expect("drive");
        assert_eq!((ended, out), (Ended::Closed, Some(at(t0, 8))));

        let evicted = Activity::new();
        drop(evicted.request(false));
        let (_d, draining) = watch::channel(false);
        let (_s, stop) = watch::channel(false);
        evicted.evict();
        let (ended, out) = drive(
            Fake { closed_at: None },
            close,
            &evicted,
            LIMITS,
            draining,
            stop,
        )
        .await;
        assert_eq!((ended, out), (Ended::Closed, Some(at(t0, 8))));
    }
}
