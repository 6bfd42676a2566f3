//! A loopback HTTP/1.1 server that misbehaves on purpose (redirects, endless bodies) and
//! records every request, to prove what a client sends where.

use std::io::{BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::server::{Request, read_request};

/// What the server answers to one request.
#[derive(Debug, Clone)]
pub enum Answer {
    /// A complete response: status, extra header lines (`Name: value`) and a body.
    Full {
        /// Status code.
        status: u16,
        /// Extra header lines, e.g. `Location: http://...`.
        headers: Vec<String>,
        /// The body.
        body: Vec<u8>,
    },
    /// A 200 whose JSON body never ends: 64 MiB of it as fast as the client reads, then
    /// nothing more while the connection stays open (so a client that buffers everything
    /// cannot take the test machine's memory with it).
    Endless {
        /// Announce this length instead of chunked encoding.
        content_length: Option<u64>,
    },
}

impl Answer {
    /// A redirect with `status` (301, 302, 307, 308) to `location`.
    pub fn redirect(status: u16, location: &str) -> Answer {
        Answer::Full {
            status,
            headers: vec![format!("Location: {location}")],
            body: Vec::new(),
        }
    }

    /// A JSON answer.
    pub fn json(status: u16, body: &str) -> Answer {
        Answer::Full {
            status,
            headers: vec!["Content-Type: application/json".into()],
            body: body.as_bytes().to_vec(),
        }
    }
}

/// How much of an [`Answer::Endless`] body is sent before the server stalls.
const ENDLESS_CAP: usize = 64 << 20;

/// Computes the answer to a request.
pub type RawHandler = dyn Fn(&Request) -> Answer + Send + Sync;

/// Accept loop on its own thread, one thread per connection, one request per connection;
/// every request is recorded; stopped on drop.
#[derive(Debug)]
pub struct HostileServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<Request>>>,
    thread: Option<JoinHandle<()>>,
}

impl HostileServer {
    /// Binds `127.0.0.1:0` and answers with `handler`.
    pub fn start(name: &str, handler: Arc<RawHandler>) -> HostileServer {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap_or_else(|e| panic!("bind {name} server on 127.0.0.1: {e}"));
        let addr = listener.local_addr().expect("local_addr of a bound socket");
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (flag, log) = (Arc::clone(&stop), Arc::clone(&seen));
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                for stream in listener.incoming() {
                    if flag.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(stream) = stream else { continue };
                    let (handler, log, flag) =
                        (Arc::clone(&handler), Arc::clone(&log), Arc::clone(&flag));
                    std::thread::spawn(move || {
                        let _ = serve(stream, &*handler, &log, &flag);
                    });
                }
            })
            .unwrap_or_else(|e| panic!("spawn {name} server thread: {e}"));
        HostileServer {
            addr,
            stop,
            seen,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<Request> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for HostileServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(
    stream: TcpStream,
    handler: &RawHandler,
    seen: &Mutex<Vec<Request>>,
    stop: &AtomicBool,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let request = read_request(&mut BufReader::new(stream.try_clone()?))?;
    seen.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(request.clone());
    let mut stream = stream;
    match handler(&request) {
        Answer::Full {
            status,
            headers,
            body,
        } => {
            let mut head = format!("HTTP/1.1 {status} Status\r\n");
            for h in headers {
                head.push_str(&h);
                head.push_str("\r\n");
            }
            head.push_str(&format!(
                "Content-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            ));
            stream.write_all(head.as_bytes())?;
            stream.write_all(&body)?;
        }
        Answer::Endless { content_length } => {
            let framing = match content_length {
                Some(n) => format!("Content-Length: {n}"),
                None => "Transfer-Encoding: chunked".into(),
            };
            write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{framing}\r\n\r\n"
            )?;
            let chunk = vec![b'a'; 64 * 1024];
            let open = b"{\"data\":{\"x\":\"";
            if content_length.is_some() {
                stream.write_all(open)?;
            } else {
                write!(stream, "{:x}\r\n", open.len())?;
                stream.write_all(open)?;
                stream.write_all(b"\r\n")?;
            }
            // Until the client hangs up (a write fails), the server is dropped or 64 MiB went.
            let mut sent = 0usize;
            while !stop.load(Ordering::SeqCst) && sent < ENDLESS_CAP {
                sent += chunk.len();
                if content_length.is_none() {
                    write!(stream, "{:x}\r\n", chunk.len())?;
                }
                stream.write_all(&chunk)?;
                if content_length.is_none() {
                    stream.write_all(b"\r\n")?;
                }
            }
            stream.flush()?;
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while !stop.load(Ordering::SeqCst) && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    stream.flush()
}
