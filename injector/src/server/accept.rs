//! Accepting connections: a cap on how many are open, room made by closing the one idle the
//! longest, and a backoff on accept errors (out of file descriptors) instead of a spin.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::conn::Activity;
use crate::metrics::Metrics;

/// A failed accept is logged at most this often (with how many were not).
const ACCEPT_ERROR_LOG_EVERY: Duration = Duration::from_secs(10);

/// The open connections of one listener, for making room.
#[derive(Debug, Default)]
pub struct Live(Mutex<Vec<Weak<Activity>>>);

impl Live {
    /// Adds a connection accepted now.
    pub fn add(&self, activity: &Arc<Activity>) {
        let mut live = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        live.retain(|a| a.strong_count() > 0);
        live.push(Arc::downgrade(activity));
    }

    /// Asks the connection idle the longest to close; false when none is idle.
    pub fn evict_oldest(&self) -> bool {
        let live = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let oldest = live
            .iter()
            .filter_map(Weak::upgrade)
            .filter_map(|a| a.state().evictable_since().map(|t| (t, a)))
            .min_by_key(|(t, _)| *t);
        match oldest {
            Some((_, a)) => {
                a.evict();
                true
            }
            None => false,
        }
    }
}

/// One listening socket with its connection cap.
#[derive(Debug)]
pub struct Listener {
    tcp: TcpListener,
    name: &'static str,
    cap: Arc<Semaphore>,
    max: u32,
    /// The open connections, when the cap makes room by closing idle ones.
    pub live: Option<Arc<Live>>,
    metrics: Arc<Metrics>,
    failures: Failures,
    /// Accepted, waiting for a place under the cap.
    pending: Option<TcpStream>,
}

impl Listener {
    /// Serves at most `max` connections of `tcp` at once; `evict` makes room by closing idle
    /// ones (the webhook listener), else new ones wait (the admin listener).
    pub fn new(
        tcp: TcpListener,
        name: &'static str,
        max: u32,
        evict: bool,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            tcp,
            name,
            cap: Arc::new(Semaphore::new(max as usize)),
            max,
            live: evict.then(Arc::default),
            metrics,
            failures: Failures::new(),
            pending: None,
        }
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// Connections open now.
    pub fn open(&self) -> u32 {
        self.max
            .saturating_sub(u32::try_from(self.cap.available_permits()).unwrap_or(u32::MAX))
    }

    /// The next connection with its place under the cap (cancel-safe: a connection accepted
    /// while waiting for a place is kept for the next call).
    pub async fn next(&mut self) -> (TcpStream, OwnedSemaphorePermit) {
        let stream = match self.pending.take() {
            Some(stream) => stream,
            None => self.accept().await,
        };
        if let Ok(permit) = self.cap.clone().try_acquire_owned() {
            return (stream, permit);
        }
        // At the cap with a newcomer waiting: make room.
        if self.live.as_ref().is_some_and(|l| l.evict_oldest()) {
            self.metrics.evicted();
        }
        self.pending = Some(stream);
        let permit = match self.cap.clone().acquire_owned().await {
            Ok(permit) => permit,
            // Never closed; wait for the caller's stop instead.
            Err(_) => std::future::pending().await,
        };
        match self.pending.take() {
            Some(stream) => (stream, permit),
            None => std::future::pending().await,
        }
    }

    async fn accept(&mut self) -> TcpStream {
        loop {
            match self.tcp.accept().await {
                Ok((stream, _)) => {
                    self.failures.reset();
                    return stream;
                }
                Err(e) => {
                    self.metrics.accept_error();
                    let delay = self.failures.failed(self.name, &e);
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// Stops listening (new connections are refused); the result waits for the open ones.
    pub fn close(self) -> Closing {
        Closing {
            cap: self.cap,
            max: self.max,
        }
    }
}

/// A listener that no longer accepts, with its connections still open.
#[derive(Debug)]
pub struct Closing {
    cap: Arc<Semaphore>,
    max: u32,
}

impl Closing {
    /// Waits until every connection has ended.
    pub async fn closed(&self) {
        let _ = self.cap.acquire_many(self.max).await;
    }

    /// Connections open now.
    pub fn open(&self) -> u32 {
        self.max
            .saturating_sub(u32::try_from(self.cap.available_permits()).unwrap_or(u32::MAX))
    }
}

/// Consecutive accept failures: how long to wait before the next accept, and when to log.
#[derive(Debug)]
struct Failures {
    delays: Option<backon::ExponentialBackoff>,
    logged: Option<Instant>,
    unlogged: u64,
}

impl Failures {
    fn new() -> Self {
        Self {
            delays: None,
            logged: None,
            unlogged: 0,
        }
    }

    fn reset(&mut self) {
        self.delays = None;
    }

    /// Records a failure; returns how long to wait (10 ms doubling to 1 s).
    fn failed(&mut self, listener: &str, e: &std::io::Error) -> Duration {
        let now = Instant::now();
        if self
            .logged
            .is_none_or(|t| now.duration_since(t) >= ACCEPT_ERROR_LOG_EVERY)
        {
            tracing::warn!(listener, error = %e, not_logged = self.unlogged, "accept failed; backing off (at most one such line per 10s)");
            self.logged = Some(now);
            self.unlogged = 0;
        } else {
            self.unlogged += 1;
        }
        let delays = self.delays.get_or_insert_with(|| {
            ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(10))
                .with_max_delay(Duration::from_secs(1))
                .with_factor(2.0)
                .without_max_times()
                .build()
        });
        delays.next().unwrap_or(Duration::from_secs(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn accept_failures_back_off_to_a_second_and_are_logged_rarely() {
        let mut f = Failures::new();
        let e = std::io::Error::other("too many open files");
        let delays: Vec<_> = (0..9).map(|_| f.failed("webhook", &e)).collect();
        // Whole milliseconds; the crate computes in floating point (39.99.. ms).
        let ms: Vec<u128> = delays
            .iter()
            .map(|d| (d.as_micros() + 500) / 1000)
            .collect();
        assert_eq!(ms, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        assert_eq!(f.unlogged, 8, "only the first of 9 in 10 s is logged");
        tokio::time::advance(ACCEPT_ERROR_LOG_EVERY).await;
        f.failed("webhook", &e);
        assert_eq!(f.unlogged, 0);
        f.reset();
        assert_eq!(f.failed("webhook", &e), Duration::from_millis(10));
    }

    #[test]
    fn room_is_made_by_closing_the_connection_idle_the_longest() {
        let live = Live::default();
        let busy = Activity::new();
        let _in_flight = busy.request(true);
        let older = Activity::new();
        drop(older.request(false));
        std::thread::sleep(Duration::from_millis(5));
        let newer = Activity::new();
        drop(newer.request(true));
        for a in [&busy, &older, &newer] {
            live.add(a);
        }
        assert!(live.evict_oldest());
        assert!(older.state().evicted && !newer.state().evicted && !busy.state().evicted);
        assert!(live.evict_oldest());
        assert!(newer.state().evicted);
        assert!(!live.evict_oldest(), "the busy one stays");
    }
}
