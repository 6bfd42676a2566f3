//! A real OpenBao server on loopback (dev or file storage), with CLI and HTTP API helpers.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::{Value, json};

use crate::process::{Process, log_tail};
use crate::{TempDir, bao_bin, http, random_hex, util, wait_until};

mod auth;
mod engines;
mod tls;

/// How long a server may take to come up (2 shared cores, parallel builds).
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A status code and JSON body from the OpenBao HTTP API.
#[derive(Debug, Clone)]
pub struct ApiResponse {
    /// HTTP status code.
    pub status: u16,
    /// JSON body (`Null` when empty, e.g. 204).
    pub body: Value,
}

impl ApiResponse {
    /// True for a 2xx status.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Dev (in-memory, unsealed) or persistent (file storage, init + unseal).
enum Kind {
    Dev,
    Persistent { config: PathBuf, unseal_key: String },
}

/// A running OpenBao server on `127.0.0.1:<port>`; dropping it kills the server.
///
/// Server output goes to `<dir>/bao.log`; its last lines are printed when a test panics while
/// the server is alive. `secret/` is a KV v2 mount in both kinds of server.
pub struct OpenBao {
    // Declared first: the process must die before its directory is removed.
    server: Option<Process>,
    kind: Kind,
    port: u16,
    token: String,
    dir: PathBuf,
    /// A second, TLS listener from a config file (dev servers only).
    tls: Option<tls::TlsListener>,
    _temp: Option<TempDir>,
}

impl fmt::Debug for OpenBao {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenBao")
            .field("addr", &self.addr())
            .field("dir", &self.dir)
            .field("running", &self.server.is_some())
            .finish_non_exhaustive()
    }
}

impl OpenBao {
    /// Starts `bao server -dev` (in memory, unsealed, KV v2 at `secret/`) with a random root
    /// token on a free port and waits until healthy.
    pub fn dev() -> OpenBao {
        Self::dev_on(util::free_port_pair())
    }

    /// [`dev`](Self::dev) on a given port, so a test can point a client at an address first and
    /// bring OpenBao up there later. The cluster listener takes `port + 1`: pick the port with
    /// [`free_port_pair`](crate::free_port_pair).
    pub fn dev_on(port: u16) -> OpenBao {
        let mut bao = Self::dev_unstarted_on(port);
        bao.spawn();
        bao.wait_health(|status| status == 200, "OpenBao dev server healthy");
        bao
    }

    fn dev_unstarted() -> OpenBao {
        Self::dev_unstarted_on(util::free_port_pair())
    }

    fn dev_unstarted_on(port: u16) -> OpenBao {
        let temp = TempDir::with_prefix("vaultlet-bao-").expect("create temp dir");
        OpenBao {
            server: None,
            kind: Kind::Dev,
            port,
            token: format!("root-{}", random_hex(12)),
            dir: temp.path().to_path_buf(),
            tls: None,
            _temp: Some(temp),
        }
    }

    /// Starts a non-dev server storing its data under `dir` (which must not hold an earlier
    /// server's data), initialises it with one key share, unseals it and mounts KV v2 at
    /// `secret/`. Survives [`stop`](Self::stop) / [`kill`](Self::kill) and
    /// [`start`](Self::start) with the same port, data, root token and unseal key.
    ///
    /// OpenBao 2.x has no `file` storage backend any more, so this is single-node integrated
    /// storage (`storage "raft"`); the first start waits ~2 s for its leader election.
    pub fn persistent(dir: &Path) -> OpenBao {
        Self::persistent_with(dir.to_path_buf(), None)
    }

    /// [`persistent`](Self::persistent) in a temp dir owned (and removed) by the server.
    pub fn persistent_temp() -> OpenBao {
        let temp = TempDir::with_prefix("vaultlet-bao-").expect("create temp dir");
        Self::persistent_with(temp.path().to_path_buf(), Some(temp))
    }

    fn persistent_with(dir: PathBuf, temp: Option<TempDir>) -> OpenBao {
        let port = util::free_port_pair();
        let config = dir.join("bao.hcl");
        let data = dir.join("data");
        std::fs::create_dir_all(&data)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", data.display()));
        write_persistent_config(&config, &data, port);
        let mut bao = OpenBao {
            server: None,
            kind: Kind::Persistent {
                config,
                unseal_key: String::new(),
            },
            port,
            token: String::new(),
            dir,
            tls: None,
            _temp: temp,
        };
        bao.spawn();
        bao.wait_health(|s| s == 501 || s == 503 || s == 200, "OpenBao listening");
        bao.initialize();
        bao.unseal();
        bao.enable_kv("secret", 2);
        bao
    }

    /// `http://127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The port the API listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The root token.
    pub fn root_token(&self) -> &str {
        &self.token
    }

    /// The server's directory (log file; config and data of a persistent server).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The server log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("bao.log")
    }

    /// True between start and [`stop`](Self::stop).
    pub fn is_running(&self) -> bool {
        self.server.is_some()
    }

    /// Stops the server (SIGTERM, then SIGKILL after 5 s). Data of a persistent server stays.
    pub fn stop(&mut self) {
        if let Some(mut server) = self.server.take() {
            server.stop(Duration::from_secs(5));
        }
    }

    /// Kills the server at once (SIGKILL, like a crash). Data of a persistent server stays.
    pub fn kill(&mut self) {
        if let Some(mut server) = self.server.take() {
            server.kill();
        }
    }

    /// Starts a stopped server again on the same port with the same data, unseals it and waits
    /// until healthy.
    ///
    /// # Panics
    /// For a dev server (its data lives in memory and is gone).
    pub fn start(&mut self) {
        assert!(
            matches!(self.kind, Kind::Persistent { .. }),
            "OpenBao::start: only a persistent server can be restarted (dev data is in memory)"
        );
        if self.server.is_some() {
            return;
        }
        self.spawn();
        self.wait_health(|s| s == 503 || s == 200, "restarted OpenBao listening");
        self.unseal();
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new(bao_bin());
        cmd.current_dir(&self.dir);
        match &self.kind {
            Kind::Dev => cmd.args([
                "server",
                "-dev",
                "-dev-no-store-token",
                &format!("-dev-root-token-id={}", self.token),
                &format!("-dev-listen-address=127.0.0.1:{}", self.port),
            ]),
            Kind::Persistent { config, .. } => cmd
                .arg("server")
                .arg(format!("-config={}", config.display())),
        };
        if let Some(tls) = &self.tls {
            cmd.arg(format!("-config={}", tls.config.display()));
        }
        scrub_env(&mut cmd);
        self.server = Some(Process::spawn("OpenBao", cmd, &self.log_path()));
    }

    /// Polls `/v1/sys/health` until `ok(status)`, failing fast when the process dies.
    fn wait_health(&mut self, ok: impl Fn(u16) -> bool, what: &str) {
        let host = self.host_port();
        let log = self.log_path();
        let server = self.server.as_mut().expect("server spawned");
        let what = format!("{what} (GET /v1/sys/health; log {})", log.display());
        wait_until(START_TIMEOUT, &what, || {
            server.assert_running();
            http::request(&host, "GET", "/v1/sys/health", &[], None).is_ok_and(|r| ok(r.status))
        });
    }

    fn initialize(&mut self) {
        let init = self.try_api(
            None,
            "PUT",
            "sys/init",
            Some(&json!({"secret_shares": 1, "secret_threshold": 1})),
        );
        assert!(init.is_success(), "OpenBao init failed: {}", init.body);
        let key = init.body["keys_base64"][0].as_str().unwrap_or_default();
        let token = init.body["root_token"].as_str().unwrap_or_default();
        assert!(
            !key.is_empty() && !token.is_empty(),
            "OpenBao init answered no key or token"
        );
        if let Kind::Persistent { unseal_key, .. } = &mut self.kind {
            *unseal_key = key.to_string();
        }
        self.token = token.to_string();
    }

    fn unseal(&mut self) {
        let Kind::Persistent { unseal_key, .. } = &self.kind else {
            return;
        };
        let body = json!({ "key": unseal_key });
        let resp = self.try_api(None, "PUT", "sys/unseal", Some(&body));
        assert!(
            resp.is_success() && resp.body["sealed"] == false,
            "OpenBao unseal failed: status {}",
            resp.status
        );
        self.wait_health(|s| s == 200, "OpenBao unsealed and active");
    }

    fn host_port(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Prints the last `lines` of the server log to stderr (shown for failing tests).
    pub fn print_log_tail(&self, lines: usize) {
        eprintln!(
            "--- last lines of {} ---\n{}",
            self.log_path().display(),
            log_tail(&self.log_path(), lines)
        );
    }

    // ---- CLI ----

    /// Runs the `bao` CLI against this server with the root token (`BAO_ADDR`, `BAO_TOKEN`).
    pub fn bao(&self, args: &[&str]) -> Output {
        self.bao_with_token(&self.token, args)
    }

    /// Runs the `bao` CLI against this server with `token`.
    pub fn bao_with_token(&self, token: &str, args: &[&str]) -> Output {
        let mut cmd = Command::new(bao_bin());
        scrub_env(&mut cmd);
        cmd.args(args)
            .current_dir(&self.dir)
            .env("BAO_ADDR", self.addr())
            .env("BAO_TOKEN", token)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run bao {args:?}: {e}"))
    }

    /// Runs the CLI with the root token and returns its stdout.
    ///
    /// # Panics
    /// When the command fails, with its stderr.
    pub fn bao_ok(&self, args: &[&str]) -> String {
        let out = self.bao(args);
        assert!(
            out.status.success(),
            "bao {} failed ({}): {}",
            args.first().copied().unwrap_or_default(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    // ---- HTTP API ----

    /// One API call. `path` is relative to `/v1/` ("secret/data/app"; a leading `/v1/` is
    /// accepted too); `token` `None` sends no token. Never panics on an HTTP error status.
    pub fn try_api(
        &self,
        token: Option<&str>,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> ApiResponse {
        self.try_api_headers(token, method, path, &[], body)
    }

    /// [`try_api`](Self::try_api) with extra request headers (e.g. `X-Vault-Wrap-TTL`).
    pub fn try_api_headers(
        &self,
        token: Option<&str>,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> ApiResponse {
        let mut all: Vec<(&str, &str)> = headers.to_vec();
        if let Some(token) = token {
            all.push(("X-Vault-Token", token));
        }
        let payload = body.map(|b| b.to_string());
        if payload.is_some() {
            all.push(("Content-Type", "application/json"));
        }
        let full = api_path(path);
        let resp = http::request(
            &self.host_port(),
            method,
            &full,
            &all,
            payload.as_deref().map(str::as_bytes),
        )
        .unwrap_or_else(|e| panic!("OpenBao {method} {full} at {}: {e}", self.addr()));
        ApiResponse {
            status: resp.status,
            body: resp.json(),
        }
    }

    /// An API call with the root token; returns the JSON body (`Null` for 204).
    ///
    /// # Panics
    /// On a non-2xx status, with the status and OpenBao's `errors`.
    pub fn api(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.api_with_token(&self.token, method, path, body)
    }

    /// [`api`](Self::api) with the given token.
    pub fn api_with_token(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Value {
        let resp = self.try_api(Some(token), method, path, body.as_ref());
        assert!(
            resp.is_success(),
            "OpenBao {method} {path} answered {}: {}",
            resp.status,
            resp.body["errors"]
        );
        resp.body
    }

    /// `GET path` with the root token.
    pub fn read(&self, path: &str) -> Value {
        self.api("GET", path, None)
    }

    /// `POST path` with a JSON body and the root token.
    pub fn write(&self, path: &str, body: Value) -> Value {
        self.api("POST", path, Some(body))
    }

    /// `DELETE path` with the root token.
    pub fn delete(&self, path: &str) {
        self.api("DELETE", path, None);
    }

    /// Writes ACL policy `name`.
    pub fn policy(&self, name: &str, hcl: &str) {
        self.api(
            "PUT",
            &format!("sys/policies/acl/{name}"),
            Some(json!({ "policy": hcl })),
        );
    }

    /// Creates a token with `policies` (e.g. `ttl`: `"10s"`; `None` for the default TTL).
    pub fn create_token(&self, policies: &[&str], ttl: Option<&str>) -> String {
        let mut body = json!({ "policies": policies });
        if let Some(ttl) = ttl {
            body["ttl"] = json!(ttl);
        }
        let resp = self.write("auth/token/create", body);
        str_at(&resp, "/auth/client_token")
    }
}

/// The string at JSON pointer `ptr`, or a panic naming it.
pub(crate) fn str_at(value: &Value, ptr: &str) -> String {
    value
        .pointer(ptr)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("OpenBao response has no string at {ptr}"))
        .to_string()
}

/// `/v1/<path>` unless it already starts with `/v1/`.
fn api_path(path: &str) -> String {
    if path.starts_with("/v1/") {
        path.to_string()
    } else {
        format!("/v1/{}", path.trim_start_matches('/'))
    }
}

/// Drops inherited Vault/OpenBao settings so a developer's shell cannot redirect the tests.
fn scrub_env(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        if key.starts_with("BAO_") || key.starts_with("VAULT_") {
            cmd.env_remove(key);
        }
    }
}

fn write_persistent_config(config: &Path, data: &Path, port: u16) {
    let hcl = format!(
        r#"storage "raft" {{
  path    = "{data}"
  node_id = "testkit"
  # The default (5) waits ~8 s for the first leader election.
  performance_multiplier = 1
}}
listener "tcp" {{
  address         = "127.0.0.1:{port}"
  cluster_address = "127.0.0.1:{cluster}"
  tls_disable     = true
}}
api_addr      = "http://127.0.0.1:{port}"
cluster_addr  = "https://127.0.0.1:{cluster}"
"#,
        data = data.display(),
        cluster = port + 1,
    );
    std::fs::write(config, hcl)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", config.display()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_path_prefixes_v1_once() {
        assert_eq!(api_path("secret/data/a"), "/v1/secret/data/a");
        assert_eq!(api_path("/sys/health"), "/v1/sys/health");
        assert_eq!(api_path("/v1/sys/health"), "/v1/sys/health");
    }
}
