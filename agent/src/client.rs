//! A small typed Vault/OpenBao HTTP client: address, namespace, TLS, token header.

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use reqwest::Method;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::config::VaultConfig;

mod redirect;
mod tls;
pub use redirect::{MAX_REDIRECTS, MAX_RESPONSE_BYTES, Origins};
use tls::{TlsFiles, tls_config, tls_stamp};

/// How long one Vault call may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long connecting may take; short so an unreachable server is noticed quickly.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// A sensitive string (token, secret-id): never shown by `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a sensitive string.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The sensitive value itself; only for sending it where it belongs.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Errors of the Vault client. None of them carries a token or a secret value.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A TLS file (CA, client certificate, key) could not be used.
    #[error("{what} {path}: {reason}; point the setting at a readable PEM file")]
    TlsFile {
        /// Which setting, e.g. `vault.caCert`, and where it came from.
        what: String,
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The TLS settings do not fit together.
    #[error("invalid TLS settings: {0}")]
    Tls(String),
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Build(String),
    /// No answer from Vault (connection refused, timeout, TLS failure).
    #[error(
        "Vault is unreachable ({op} {path:?}): {reason}; check vault.address, TLS settings and the network"
    )]
    Unreachable {
        /// HTTP method.
        op: Method,
        /// Vault path.
        path: String,
        /// Cause, without URL or credentials.
        reason: String,
    },
    /// Vault redirected the request somewhere the token and credentials must not go.
    #[error("{reason} ({op} {path:?})")]
    Redirect {
        /// HTTP method.
        op: Method,
        /// Vault path.
        path: String,
        /// Which host was refused and what to do.
        reason: String,
    },
    /// The TLS handshake with Vault failed for a reason a setting explains.
    #[error("TLS with Vault failed ({op} {path:?}): {reason}; {hint}")]
    Handshake {
        /// HTTP method.
        op: Method,
        /// Vault path.
        path: String,
        /// What rustls or the server said.
        reason: String,
        /// Which file (and annotation) to look at, and what to do.
        hint: String,
    },
    /// Vault answered 403: the token is invalid, expired or lacks a policy.
    #[error(
        "Vault denied {op} {path:?} (403 {reason:?}); the token expired or was revoked, or its policies do not allow this path"
    )]
    Forbidden {
        /// HTTP method.
        op: Method,
        /// Vault path.
        path: String,
        /// Vault's error messages.
        reason: String,
    },
    /// Vault answered with another error status.
    #[error("Vault answered {status} to {op} {path:?}: {reason:?}")]
    Status {
        /// HTTP method.
        op: Method,
        /// Vault path.
        path: String,
        /// HTTP status code.
        status: u16,
        /// Vault's error messages.
        reason: String,
    },
    /// Vault's answer was larger than [`MAX_RESPONSE_BYTES`].
    #[error(
        "Vault's answer is larger than {} MiB ({op} {path:?}); the path reads far more than a secret, check the path and the server at vault.address",
        MAX_RESPONSE_BYTES >> 20
    )]
    TooLarge {
        /// HTTP method.
        op: Method,
        /// Vault path.
        path: String,
    },
    /// Vault's answer was not the JSON expected.
    #[error("unexpected answer to {op} {path:?}: {reason:?}")]
    Decode {
        /// HTTP method.
        op: Method,
        /// Vault path.
        path: String,
        /// What did not parse.
        reason: String,
    },
}

impl ClientError {
    /// True when Vault refused the token (403): re-authenticating may help.
    pub fn is_forbidden(&self) -> bool {
        matches!(self, Self::Forbidden { .. })
    }

    /// The HTTP status Vault answered with, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Forbidden { .. } => Some(403),
            Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// The `auth` block of a login or renewal answer.
#[derive(Debug, Clone, Deserialize)]
pub struct AuthInfo {
    /// The token.
    pub client_token: Secret,
    /// Seconds the token lives (0: no expiry).
    #[serde(default)]
    pub lease_duration: u64,
    /// Whether the token can be renewed.
    #[serde(default)]
    pub renewable: bool,
}

/// A Vault answer, keeping the lease fields that typed helpers elsewhere drop.
#[derive(Clone, Default, Deserialize)]
pub struct Response {
    /// The payload; holds secret values, so `Debug` hides it.
    #[serde(default)]
    pub data: Option<Map<String, Value>>,
    /// Lease of a dynamic secret; empty for static ones.
    #[serde(default)]
    pub lease_id: String,
    /// Seconds the lease (or, for KV v1, the suggested refresh) lasts.
    #[serde(default)]
    pub lease_duration: u64,
    /// Whether the lease can be renewed.
    #[serde(default)]
    pub renewable: bool,
    /// Login and renew-self answers carry the token here.
    #[serde(default)]
    pub auth: Option<AuthInfo>,
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("data", &self.data.as_ref().map(|_| "<redacted>"))
            .field("lease_id", &self.lease_id)
            .field("lease_duration", &self.lease_duration)
            .field("renewable", &self.renewable)
            .field("auth", &self.auth)
            .finish()
    }
}

/// A Vault HTTP client bound to one server (and namespace); cheap to clone.
#[derive(Clone)]
pub struct VaultClient {
    /// The HTTP client and the stamp of the TLS files it was built from; shared by every
    /// clone, so a reload reaches the fetch loops and the authenticator alike.
    http: Arc<RwLock<(reqwest::Client, Option<u64>)>>,
    vault: Arc<VaultConfig>,
    base: String,
    namespace: Option<String>,
    tls: Arc<TlsFiles>,
}

impl fmt::Debug for VaultClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultClient")
            .field("base", &self.base)
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<String>,
}

impl VaultClient {
    /// Builds a client from the config's Vault section (TLS files are read here; again by
    /// [`reload_tls`](Self::reload_tls) when they change).
    pub fn new(cfg: &VaultConfig) -> Result<Self, ClientError> {
        let stamp = tls_stamp(cfg);
        let http = build_http(cfg)?;
        Ok(Self {
            http: Arc::new(RwLock::new((http, stamp))),
            vault: Arc::new(cfg.clone()),
            base: format!("{}/v1/", cfg.address.trim_end_matches('/')),
            namespace: cfg.namespace.clone().filter(|n| !n.is_empty()),
            tls: Arc::new(TlsFiles::new(cfg)),
        })
    }

    /// Rebuilds the HTTP client when the CA or client certificate files changed since it was
    /// built (a Secret renewed by cert-manager, say), so new connections use them; `Ok(true)`
    /// when it did. On an error the current client stays.
    pub fn reload_tls(&self) -> Result<bool, ClientError> {
        let stamp = tls_stamp(&self.vault);
        let current = self.http.read().unwrap_or_else(|e| e.into_inner()).1;
        if stamp.is_none() || stamp == current {
            return Ok(false);
        }
        let http = build_http(&self.vault)?;
        *self.http.write().unwrap_or_else(|e| e.into_inner()) = (http, stamp);
        Ok(true)
    }

    fn http(&self) -> reqwest::Client {
        self.http
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .clone()
    }

    /// Sends one request to `v1/<path>`; `Ok(None)` for an empty (204) answer.
    pub async fn call(
        &self,
        op: Method,
        path: &str,
        token: Option<&Secret>,
        body: Option<&Value>,
    ) -> Result<Option<Response>, ClientError> {
        Ok(self
            .call_text(op, path, token, body)
            .await?
            .map(|(_, resp)| resp))
    }

    /// [`call`](Self::call), also returning Vault's answer as sent (consul-template
    /// templates see its numbers as written).
    pub async fn call_text(
        &self,
        op: Method,
        path: &str,
        token: Option<&Secret>,
        body: Option<&Value>,
    ) -> Result<Option<(String, Response)>, ClientError> {
        let mut req = self
            .http()
            .request(op.clone(), format!("{}{path}", self.base));
        if let Some(ns) = &self.namespace {
            req = req.header("X-Vault-Namespace", ns);
        }
        if let Some(token) = token {
            req = req.header("X-Vault-Token", token.expose());
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let unreachable = |e: reqwest::Error| {
            let reason = error_chain(&e);
            if e.is_redirect() {
                return ClientError::Redirect {
                    op: op.clone(),
                    path: path.to_owned(),
                    reason,
                };
            }
            match self.tls.hint(&reason) {
                Some(hint) => ClientError::Handshake {
                    op: op.clone(),
                    path: path.to_owned(),
                    reason,
                    hint,
                },
                None => ClientError::Unreachable {
                    op: op.clone(),
                    path: path.to_owned(),
                    reason,
                },
            }
        };
        let mut resp = req.send().await.map_err(unreachable)?;
        let status = resp.status();
        let too_large = || ClientError::TooLarge {
            op: op.clone(),
            path: path.to_owned(),
        };
        // Read at most MAX_RESPONSE_BYTES: a huge or endless answer must not take the memory.
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_RESPONSE_BYTES as u64)
        {
            return Err(too_large());
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(unreachable)? {
            if bytes.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(too_large());
            }
            bytes.extend_from_slice(&chunk);
        }
        if status.is_success() {
            if bytes.iter().all(u8::is_ascii_whitespace) {
                return Ok(None);
            }
            let decode = |reason: String| ClientError::Decode {
                op: op.clone(),
                path: path.to_owned(),
                reason,
            };
            let resp: Response =
                serde_json::from_slice(&bytes).map_err(|e| decode(e.to_string()))?;
            let text = String::from_utf8(bytes).map_err(|e| decode(e.to_string()))?;
            return Ok(Some((text, resp)));
        }
        let reason = serde_json::from_slice::<ErrorBody>(&bytes)
            .ok()
            .filter(|b| !b.errors.is_empty())
            .map(|b| b.errors.join("; "))
            .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned());
        let path = path.to_owned();
        Err(if status.as_u16() == 403 {
            ClientError::Forbidden { op, path, reason }
        } else {
            ClientError::Status {
                op,
                path,
                status: status.as_u16(),
                reason,
            }
        })
    }

    /// `GET v1/<path>` with a token.
    pub async fn read(&self, path: &str, token: &Secret) -> Result<Option<Response>, ClientError> {
        self.call(Method::GET, path, Some(token), None).await
    }

    /// `POST v1/<path>` with a JSON body and an optional token.
    pub async fn write(
        &self,
        path: &str,
        token: Option<&Secret>,
        body: &Value,
    ) -> Result<Option<Response>, ClientError> {
        self.call(Method::POST, path, token, Some(body)).await
    }
}

/// One HTTP/1 client for Vault with the config's TLS settings.
fn build_http(cfg: &VaultConfig) -> Result<reqwest::Client, ClientError> {
    let mut builder = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .pool_idle_timeout(Duration::from_secs(90))
        .http1_only()
        // The token and the login body go only to Vault: redirects stay within its origin or
        // go to a node the operator listed.
        .redirect(Origins::from_config(cfg)?.policy())
        // Never route Vault traffic through a proxy taken from the environment.
        .no_proxy();
    if let Some(tls) = tls_config(cfg)? {
        builder = builder.tls_backend_preconfigured(tls);
    }
    builder
        .build()
        .map_err(|e| ClientError::Build(error_chain(&e)))
}

/// The error and its causes on one line, without the URL.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = String::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        let msg = err.to_string();
        // reqwest's top-level message repeats the URL (with any query); its causes say what
        // happened.
        if !msg.contains("://") && !out.contains(&msg) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&msg);
        }
        cur = err.source();
    }
    if out.is_empty() {
        "request failed".into()
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TlsOrigin;

    #[test]
    fn secret_is_redacted() {
        let s = Secret::new("hvs.supersecret");
        assert_eq!(format!("{s}"), "<redacted>");
        assert!(!format!("{s:?}").contains("supersecret"));
        assert_eq!(s.expose(), "hvs.supersecret");
        let auth = AuthInfo {
            client_token: s,
            lease_duration: 60,
            renewable: true,
        };
        assert!(!format!("{auth:?}").contains("supersecret"));
    }

    #[test]
    fn response_debug_hides_data() {
        let r: Response = serde_json::from_str(
            r#"{"data":{"password":"hunter2"},"lease_id":"db/creds/x/1","lease_duration":30,"renewable":true}"#,
        )
        .expect("parse");
        let dbg = format!("{r:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert!(dbg.contains("db/creds/x/1"), "{dbg}");
    }

    #[test]
    fn client_debug_and_base() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let c = VaultClient::new(&VaultConfig {
            address: "http://127.0.0.1:8200/".into(),
            namespace: Some("team".into()),
            ca_cert: None,
            tls_server_name: None,
            client_cert: None,
            client_key: None,
            tls_origin: TlsOrigin::default(),
            redirect_addresses: Vec::new(),
        })
        .expect("client");
        assert_eq!(c.base, "http://127.0.0.1:8200/v1/");
        assert!(format!("{c:?}").contains("team"));
    }
}
