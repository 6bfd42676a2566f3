//! The one Kubernetes stand-in: a TokenReview endpoint for OpenBao's kubernetes auth.
//!
//! It answers `POST /apis/authentication.k8s.io/v1/tokenreviews` like the API server does, for
//! service account JWTs it issued with [`TokenReviewServer::sa_token`] and has not revoked.
//! Signatures are not checked (the JWTs carry a dummy one); identity comes from the payload.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::http::{header, read_headers};
use crate::random_hex;

const REVIEW_PATH: &str = "/apis/authentication.k8s.io/v1/tokenreviews";
const CLAIM_NS: &str = "kubernetes.io/serviceaccount/namespace";
const CLAIM_NAME: &str = "kubernetes.io/serviceaccount/service-account.name";
const CLAIM_UID: &str = "kubernetes.io/serviceaccount/service-account.uid";

#[derive(Default)]
struct State {
    valid: Mutex<HashSet<String>>,
    requests: AtomicUsize,
    stop: AtomicBool,
}

impl State {
    fn is_valid(&self, token: &str) -> bool {
        self.valid
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(token)
    }
}

/// A TokenReview server on `127.0.0.1:<free port>` (one thread, plus one per connection);
/// stopped on drop.
pub struct TokenReviewServer {
    addr: SocketAddr,
    state: Arc<State>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for TokenReviewServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenReviewServer")
            .field("addr", &self.addr)
            .field("requests", &self.requests())
            .finish_non_exhaustive()
    }
}

impl TokenReviewServer {
    /// Binds a free loopback port and starts serving.
    pub fn start() -> TokenReviewServer {
        let listener =
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind TokenReview server");
        let addr = listener.local_addr().expect("local_addr of a bound socket");
        let state = Arc::new(State::default());
        let thread_state = Arc::clone(&state);
        let thread = std::thread::Builder::new()
            .name("tokenreview".into())
            .spawn(move || accept_loop(&listener, &thread_state))
            .expect("spawn TokenReview thread");
        TokenReviewServer {
            addr,
            state,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`: the `kubernetes_host` for OpenBao's kubernetes auth.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The socket address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Number of TokenReview requests received so far (valid or not).
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Issues a service account JWT like a projected token (legacy
    /// `kubernetes.io/serviceaccount/*` claims plus iss/sub/aud/exp/iat/nbf) valid for
    /// `ttl_secs`, with a dummy signature, and accepts it in TokenReviews until revoked.
    pub fn sa_token(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
        audience: &str,
        ttl_secs: u64,
    ) -> String {
        let now = unix_now();
        let header = json!({ "alg": "RS256", "kid": "vaultlet-testkit", "typ": "JWT" });
        let payload = json!({
            "iss": "kubernetes/serviceaccount",
            "sub": format!("system:serviceaccount:{namespace}:{name}"),
            "aud": [audience],
            "iat": now,
            "nbf": now,
            "exp": now + ttl_secs,
            CLAIM_NS: namespace,
            CLAIM_NAME: name,
            CLAIM_UID: uid,
        });
        let token = format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(payload.to_string()),
            // Random so that two tokens issued in the same second differ.
            URL_SAFE_NO_PAD.encode(format!("unsigned-{}", random_hex(16))),
        );
        self.valid().insert(token.clone());
        token
    }

    /// Makes later TokenReviews of `token` answer `authenticated: false`.
    pub fn revoke(&self, token: &str) {
        self.valid().remove(token);
    }

    fn valid(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.state
            .valid
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for TokenReviewServer {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept so the thread sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, state: &Arc<State>) {
    for stream in listener.incoming() {
        if state.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        let state = Arc::clone(state);
        std::thread::spawn(move || {
            let _ = serve(stream, &state);
        });
    }
}

/// Reads one request, writes one response, closes.
fn serve(stream: TcpStream, state: &State) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let headers = read_headers(&mut reader)?;
    let len = header(&headers, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0usize);
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;

    let mut parts = request_line.split_whitespace();
    let (method, path) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let (status, answer) = if method == "POST" && path.split('?').next() == Some(REVIEW_PATH) {
        state.requests.fetch_add(1, Ordering::SeqCst);
        (201, review(state, &body))
    } else {
        (404, not_found(path))
    };
    respond(stream, status, &answer)
}

fn respond(mut stream: TcpStream, status: u16, body: &Value) -> std::io::Result<()> {
    let body = body.to_string();
    let reason = if status == 201 {
        "Created"
    } else {
        "Not Found"
    };
    write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

/// The TokenReview answer for a request body.
fn review(state: &State, body: &[u8]) -> Value {
    let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let token = request["spec"]["token"].as_str().unwrap_or_default();
    let wanted: Vec<String> = request["spec"]["audiences"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let status = if state.is_valid(token) {
        review_status(token, &wanted, unix_now())
    } else {
        json!({ "authenticated": false, "error": "token unknown or revoked" })
    };
    json!({
        "kind": "TokenReview",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": { "creationTimestamp": null },
        "spec": request["spec"],
        "status": status,
    })
}

/// `status` of a TokenReview for an issued, unrevoked token: checks expiry and audiences.
fn review_status(token: &str, wanted: &[String], now: u64) -> Value {
    let Some(claims) = decode_payload(token) else {
        return json!({ "authenticated": false, "error": "token is not a JWT" });
    };
    if claims["exp"].as_u64().is_none_or(|exp| exp <= now) {
        return json!({ "authenticated": false, "error": "token has expired" });
    }
    let token_aud: Vec<&str> = claims["aud"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let audiences: Vec<&str> = if wanted.is_empty() {
        token_aud
    } else {
        token_aud
            .into_iter()
            .filter(|a| wanted.iter().any(|w| w == a))
            .collect()
    };
    if audiences.is_empty() {
        return json!({ "authenticated": false, "error": "token audiences do not match" });
    }
    let ns = claims[CLAIM_NS].as_str().unwrap_or_default();
    let name = claims[CLAIM_NAME].as_str().unwrap_or_default();
    json!({
        "authenticated": true,
        "user": {
            "username": format!("system:serviceaccount:{ns}:{name}"),
            "uid": claims[CLAIM_UID],
            "groups": ["system:serviceaccounts", format!("system:serviceaccounts:{ns}"), "system:authenticated"],
        },
        "audiences": audiences,
    })
}

fn decode_payload(token: &str) -> Option<Value> {
    let payload = token.split('.').nth(1)?;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
}

fn not_found(path: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": format!("the server could not find the requested resource ({path})"),
        "reason": "NotFound",
        "code": 404,
    })
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issued(server: &TokenReviewServer) -> String {
        server.sa_token("ns1", "app", "uid-1", "vault", 60)
    }

    #[test]
    fn review_of_issued_token_names_the_service_account() {
        let server = TokenReviewServer::start();
        let token = issued(&server);
        let body = json!({ "spec": { "token": token } }).to_string();
        let status = &review(&server.state, body.as_bytes())["status"];
        assert_eq!(status["authenticated"], true);
        assert_eq!(status["user"]["username"], "system:serviceaccount:ns1:app");
        assert_eq!(status["user"]["uid"], "uid-1");
        assert_eq!(status["audiences"], json!(["vault"]));
    }

    #[test]
    fn revoked_expired_and_wrong_audience_tokens_are_rejected() {
        let server = TokenReviewServer::start();
        let token = issued(&server);
        assert_eq!(
            review_status(&token, &["other".into()], unix_now())["authenticated"],
            false
        );
        assert_eq!(
            review_status(&token, &[], unix_now() + 61)["authenticated"],
            false
        );
        server.revoke(&token);
        let body = json!({ "spec": { "token": token } }).to_string();
        assert_eq!(
            review(&server.state, body.as_bytes())["status"]["authenticated"],
            false
        );
    }
}
