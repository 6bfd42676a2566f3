//! For the no-cluster README demo only: a stand-in TokenReview endpoint for OpenBao's
//! kubernetes auth, so `scripts/demo.sh` runs without Kubernetes. Every test logs in against
//! the real API server of `scripts/cluster.sh` instead.
//!
//! It answers `POST /apis/authentication.k8s.io/v1/tokenreviews` like the API server does, for
//! service account JWTs it issued with [`TokenReviewServer::sa_token`] and has not revoked.
//! Signatures are not checked (the JWTs carry a dummy one); identity comes from the payload.
//! As on a real API server, the caller's own bearer token must be valid too, else 401.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use vaultlet_testkit::{Handler, HttpServer, OpenBao, Request, random_hex};

/// Any CA certificate: OpenBao requires `kubernetes_ca_cert` when `disable_local_ca_jwt=true`,
/// even for an `http://` TokenReview endpoint, and never uses it then.
pub const STANDIN_CA_PEM: &str = include_str!("test-ca.pem");

const REVIEW_PATH: &str = "/apis/authentication.k8s.io/v1/tokenreviews";
const CLAIM_NS: &str = "kubernetes.io/serviceaccount/namespace";
const CLAIM_NAME: &str = "kubernetes.io/serviceaccount/service-account.name";
const CLAIM_UID: &str = "kubernetes.io/serviceaccount/service-account.uid";

#[derive(Default)]
struct State {
    valid: Mutex<HashSet<String>>,
    requests: AtomicUsize,
}

impl State {
    fn valid(&self) -> MutexGuard<'_, HashSet<String>> {
        self.valid.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `(status, content type, body)` for one HTTP request.
    fn handle(&self, req: &Request) -> (u16, &'static str, String) {
        let is_review = req.method == "POST" && req.path.split('?').next() == Some(REVIEW_PATH);
        if !is_review {
            return (404, "application/json", not_found(&req.path).to_string());
        }
        self.requests.fetch_add(1, Ordering::SeqCst);
        // Like the API server, the caller must itself present a valid token (OpenBao sends the
        // JWT under review when no `token_reviewer_jwt` is configured).
        let bearer = req
            .header("authorization")
            .and_then(|h| h.strip_prefix("Bearer "));
        if !bearer.is_some_and(|t| self.valid().contains(t)) {
            return (401, "application/json", unauthorized().to_string());
        }
        (201, "application/json", review(self, &req.body).to_string())
    }
}

/// A TokenReview server on `127.0.0.1:<free port>` (one thread, plus one per connection);
/// stopped on drop.
pub struct TokenReviewServer {
    server: HttpServer,
    state: Arc<State>,
}

impl std::fmt::Debug for TokenReviewServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenReviewServer")
            .field("addr", &self.server.addr())
            .field("requests", &self.requests())
            .finish_non_exhaustive()
    }
}

impl TokenReviewServer {
    /// Binds a free loopback port and starts serving.
    pub fn start() -> TokenReviewServer {
        let state = Arc::new(State::default());
        let handler_state = Arc::clone(&state);
        let handler: Arc<Handler> = Arc::new(move |req: &Request| handler_state.handle(req));
        TokenReviewServer {
            server: HttpServer::start("tokenreview", handler),
            state,
        }
    }

    /// `http://127.0.0.1:PORT`: the `kubernetes_host` for OpenBao's kubernetes auth.
    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    /// Enables kubernetes auth on `bao` against this stand-in, with `role` for service
    /// account `namespace/sa_name` and `policies`.
    pub fn enable_in(
        &self,
        bao: &OpenBao,
        role: &str,
        sa_name: &str,
        namespace: &str,
        policies: &[&str],
    ) {
        bao.enable_auth("kubernetes", "kubernetes");
        bao.write(
            "auth/kubernetes/config",
            json!({
                "kubernetes_host": self.url(),
                "kubernetes_ca_cert": STANDIN_CA_PEM,
                "disable_local_ca_jwt": true,
            }),
        );
        bao.write(
            &format!("auth/kubernetes/role/{role}"),
            json!({
                "bound_service_account_names": [sa_name],
                "bound_service_account_namespaces": [namespace],
                "token_policies": policies,
            }),
        );
    }

    /// The socket address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
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
        self.state.valid().insert(token.clone());
        token
    }

    /// Makes later TokenReviews of `token` answer `authenticated: false`.
    pub fn revoke(&self, token: &str) {
        self.state.valid().remove(token);
    }
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
    let status = if state.valid().contains(token) {
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

fn unauthorized() -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": "Unauthorized",
        "reason": "Unauthorized",
        "code": 401,
    })
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
    fn answers_over_http_like_the_api_server() {
        let server = TokenReviewServer::start();
        let token = issued(&server);
        let host = server.addr().to_string();
        let body = json!({ "spec": { "token": token, "audiences": ["vault"] } }).to_string();
        let post = |auth: &str| {
            let headers = [
                ("Authorization", auth),
                ("Content-Type", "application/json"),
            ];
            vaultlet_testkit::http::request(
                &host,
                "POST",
                REVIEW_PATH,
                &headers,
                Some(body.as_bytes()),
            )
            .expect("POST tokenreview")
        };
        let ok = post(&format!("Bearer {token}"));
        assert_eq!(ok.status, 201);
        assert_eq!(ok.json()["status"]["authenticated"], true);
        assert_eq!(post("Bearer not-issued").status, 401);
        let other =
            vaultlet_testkit::http::request(&host, "GET", "/api/v1/pods", &[], None).expect("GET");
        assert_eq!(other.status, 404);
        assert_eq!(server.requests(), 2);
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
