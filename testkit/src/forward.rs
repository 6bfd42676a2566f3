//! A TCP forwarder, so that Pods on the local cluster's node reach a server of the test that
//! listens on loopback (OpenBao, PostgreSQL): it listens on the Pod bridge's host address.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

/// Accepts on `<ip>:<free port>` and copies bytes both ways to a target; stopped on drop.
#[derive(Debug)]
pub struct Forward {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Forward {
    /// Forwards connections to `ip:port` (`port` 0: a free one) to `target`.
    ///
    /// # Panics
    /// When `ip:port` cannot be bound.
    pub fn start(ip: &str, port: u16, target: SocketAddr) -> Forward {
        let listener = TcpListener::bind((ip, port))
            .unwrap_or_else(|e| panic!("cannot listen on {ip}:{port} to forward to {target}: {e}"));
        let addr = listener.local_addr().expect("local_addr of a bound socket");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            for client in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(target) else {
                    continue;
                };
                pipe(client, server);
            }
        });
        Forward {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    /// The address Pods connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// Two threads, one per direction; each closes the other side's writer when its reader ends.
fn pipe(a: TcpStream, b: TcpStream) {
    for (mut from, mut to) in [
        (a.try_clone(), b.try_clone()),
        (b.try_clone(), a.try_clone()),
    ]
    .into_iter()
    .filter_map(|(x, y)| Some((x.ok()?, y.ok()?)))
    {
        std::thread::spawn(move || {
            let mut buf = [0u8; 16 * 1024];
            loop {
                match from.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = to.shutdown(Shutdown::Write);
        });
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept so the thread sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
