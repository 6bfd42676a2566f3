//! A tiny threaded HTTP/1.1 server on loopback, and [`HttpRecorder`] built on it.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;

use crate::http::{header, read_headers};
use crate::wait_until;

/// One request received by a test server.
#[derive(Debug, Clone)]
pub struct Request {
    /// `GET`, `POST`, ...
    pub method: String,
    /// Path including any query string.
    pub path: String,
    /// Headers with lowercased names.
    pub headers: Vec<(String, String)>,
    /// The body (by `Content-Length`).
    pub body: Vec<u8>,
}

impl Request {
    /// The body as JSON (`Null` when empty or not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, &name.to_ascii_lowercase())
    }
}

/// Computes `(status, content type, body)` for a request.
pub type Handler = dyn Fn(&Request) -> (u16, &'static str, String) + Send + Sync;

/// Accept loop on its own thread, one thread per connection, one request per connection;
/// stopped (and joined) on drop.
#[derive(Debug)]
pub struct HttpServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HttpServer {
    /// Binds `127.0.0.1:0` and serves `handler`.
    pub fn start(name: &str, handler: Arc<Handler>) -> HttpServer {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap_or_else(|e| panic!("bind {name} server on 127.0.0.1: {e}"));
        let addr = listener.local_addr().expect("local_addr of a bound socket");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || accept_loop(&listener, &flag, &handler))
            .unwrap_or_else(|e| panic!("spawn {name} server thread: {e}"));
        HttpServer {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept so the thread sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, stop: &AtomicBool, handler: &Arc<Handler>) {
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        let handler = Arc::clone(handler);
        std::thread::spawn(move || {
            let _ = serve(stream, &*handler);
        });
    }
}

/// Reads one request, writes one response, closes.
fn serve(stream: TcpStream, handler: &Handler) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let request = read_request(&mut BufReader::new(stream.try_clone()?))?;
    let (status, content_type, body) = handler(&request);
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        reason(status),
        body.len()
    )?;
    stream.flush()
}

/// One HTTP/1.1 request: request line, headers, and a body of its Content-Length.
pub(crate) fn read_request(reader: &mut impl BufRead) -> std::io::Result<Request> {
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let headers = read_headers(reader)?;
    let len = header(&headers, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0usize);
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    let mut parts = request_line.split_whitespace();
    Ok(Request {
        method: parts.next().unwrap_or_default().to_string(),
        path: parts.next().unwrap_or_default().to_string(),
        headers,
        body,
    })
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// An HTTP endpoint on `127.0.0.1:<free port>` that records every request and answers with a
/// settable status (200 by default) and an empty JSON object: the target of the agent's
/// `http://` notify, or any webhook a test wants to observe.
pub struct HttpRecorder {
    server: HttpServer,
    seen: Arc<Mutex<Vec<Request>>>,
    status: Arc<AtomicU16>,
}

impl std::fmt::Debug for HttpRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpRecorder")
            .field("addr", &self.server.addr())
            .field("requests", &self.count())
            .finish_non_exhaustive()
    }
}

impl HttpRecorder {
    /// Starts recording.
    pub fn start() -> HttpRecorder {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let status = Arc::new(AtomicU16::new(200));
        let (log, answer) = (Arc::clone(&seen), Arc::clone(&status));
        let handler: Arc<Handler> = Arc::new(move |req: &Request| {
            lock(&log).push(req.clone());
            (
                answer.load(Ordering::SeqCst),
                "application/json",
                "{}".to_string(),
            )
        });
        HttpRecorder {
            server: HttpServer::start("http-recorder", handler),
            seen,
            status,
        }
    }

    /// `http://127.0.0.1:PORT` (append any path).
    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    /// The socket address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// The status code later requests get (e.g. 500 to simulate a failing app).
    pub fn set_status(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    /// Number of requests received so far.
    pub fn count(&self) -> usize {
        lock(&self.seen).len()
    }

    /// All requests received so far, oldest first.
    pub fn requests(&self) -> Vec<Request> {
        lock(&self.seen).clone()
    }

    /// Waits until at least `n` requests arrived and returns them.
    ///
    /// # Panics
    /// When fewer than `n` arrive within `timeout`.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Request> {
        wait_until(
            timeout,
            &format!("{n} request(s) at {}", self.url()),
            || self.count() >= n,
        );
        self.requests()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request;

    #[test]
    fn recorder_records_requests_and_answers_the_set_status() {
        let rec = HttpRecorder::start();
        let host = rec.addr().to_string();
        let ok = request(&host, "POST", "/-/reload", &[("X-A", "b")], Some(b"hi")).expect("post");
        assert_eq!(ok.status, 200);
        rec.set_status(503);
        let failed = request(&host, "GET", "/x?y=1", &[], None).expect("get");
        assert_eq!(failed.status, 503);
        let seen = rec.wait_for(2, Duration::from_secs(5));
        assert_eq!(seen[0].method, "POST");
        assert_eq!(seen[0].path, "/-/reload");
        assert_eq!(seen[0].header("x-a"), Some("b"));
        assert_eq!(seen[0].body, b"hi");
        assert_eq!(seen[1].path, "/x?y=1");
    }
}
