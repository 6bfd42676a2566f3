//! Shared fixtures for the agent's end-to-end tests: a temp dir, a config file, the agent binary.

#![allow(dead_code, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use vaultlet_testkit::{OpenBao, Process, TempDir, wait_until};

/// The agent binary cargo built for these tests.
pub const AGENT: &str = env!("CARGO_BIN_EXE_vaultlet-agent");

/// A temp dir holding the config, credentials, the secrets dir and the state dir.
pub struct Harness {
    pub dir: TempDir,
    pub secrets: PathBuf,
    pub state: PathBuf,
}

impl Harness {
    pub fn new() -> Harness {
        let dir = TempDir::with_prefix("vaultlet-agent-test-").expect("temp dir");
        let secrets = dir.path().join("secrets");
        let state = dir.path().join("state");
        Harness {
            dir,
            secrets,
            state,
        }
    }

    /// A file in the secrets dir.
    pub fn file(&self, name: &str) -> PathBuf {
        self.secrets.join(name)
    }

    /// Writes `content` to a file in the temp dir and returns its path.
    pub fn put(&self, name: &str, content: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, content).expect("write fixture file");
        p
    }

    /// Token auth with `token` in a file.
    pub fn token_auth(&self, token: &str) -> Value {
        let f = self.put("vault-token", token);
        json!({ "method": "token", "tokenFile": f })
    }

    /// AppRole auth with the ids in files.
    pub fn approle_auth(&self, role_id: &str, secret_id: &str, wrapped: bool) -> Value {
        let r = self.put("role-id", role_id);
        let s = self.put("secret-id", secret_id);
        json!({ "method": "approle", "roleIdFile": r, "secretIdFile": s, "secretIdWrapped": wrapped })
    }

    /// Path of the token sink (when a test puts it in the config).
    pub fn sink(&self) -> PathBuf {
        self.dir.path().join("token-sink")
    }

    /// The agent command for `role` with `cfg` written to the config file.
    pub fn command(&self, role: &str, cfg: &Value) -> Command {
        let path = self.dir.path().join("agent.json");
        std::fs::write(&path, cfg.to_string()).expect("write config");
        let mut cmd = Command::new(AGENT);
        cmd.arg("--config")
            .arg(&path)
            .arg("--secrets-dir")
            .arg(&self.secrets)
            .arg("--state-dir")
            .arg(&self.state)
            .arg(role)
            .env_remove("VAULTLET_AGENT_CONFIG");
        cmd
    }

    /// Starts `vaultlet-agent run`.
    pub fn run(&self, cfg: &Value) -> Process {
        let log = self.dir.path().join("agent-run.log");
        Process::spawn("vaultlet-agent run", self.command("run", cfg), &log)
    }

    /// Runs `vaultlet-agent init` to completion; returns its status, log and duration.
    pub fn init(&self, cfg: &Value, timeout: Duration) -> (ExitStatus, String, Duration) {
        let log = self.dir.path().join("agent-init.log");
        let _ = std::fs::remove_file(&log);
        let start = Instant::now();
        let mut p = Process::spawn("vaultlet-agent init", self.command("init", cfg), &log);
        let status = p.wait_exit(timeout);
        (status, p.log(), start.elapsed())
    }

    /// `vaultlet-agent probe` exit status.
    pub fn probe(&self) -> bool {
        Command::new(AGENT)
            .arg("--state-dir")
            .arg(&self.state)
            .arg("probe")
            .env_remove("VAULTLET_AGENT_CONFIG")
            .status()
            .expect("run probe")
            .success()
    }

    /// Waits until the ready marker exists.
    pub fn wait_ready(&self, agent: &mut Process, timeout: Duration) {
        wait_until(timeout, "agent ready marker", || {
            agent.assert_running();
            self.state.join("ready").exists()
        });
    }
}

/// A config for `bao` with short intervals and debug logs (to prove even those hold no secret).
pub fn config(bao_addr: &str, auth: Value, secrets: Value) -> Value {
    json!({
        "version": 1,
        "vault": { "address": bao_addr },
        "auth": auth,
        "secrets": secrets,
        "refreshInterval": "300ms",
        "initDeadline": "10s",
        "log": { "level": "vaultlet_agent=debug", "format": "text" },
    })
}

/// Writes `pairs` to KV v2 `secret/app`; returns a token that may read it and a config
/// (token auth) rendering it to `app.env`.
pub fn app_env(bao: &OpenBao, h: &Harness, pairs: &[(&str, &str)]) -> (String, Value) {
    bao.write_kv("secret/app", pairs);
    kv_policy(bao, "app", &["app"]);
    let token = bao.create_token(&["app"], None);
    let cfg = config(
        &bao.addr(),
        h.token_auth(&token),
        json!([{ "name": "app", "path": "secret/data/app", "file": "app.env" }]),
    );
    (token, cfg)
}

/// Database role `app` (leases of `ttl`, max 60 s) on `pg`, KV v2 `secret/<kv>` = `k=v`, and
/// policy `app` reading both and renewing leases.
pub fn db_and_kv(bao: &OpenBao, pg: &vaultlet_testkit::Postgres, ttl: &str, kv: &str) {
    bao.enable_database_postgres(pg, "app", ttl, "60s");
    bao.write_kv(&format!("secret/{kv}"), &[("k", "v")]);
    bao.policy(
        "app",
        &format!(
            r#"path "database/creds/app" {{ capabilities = ["read"] }}
               path "sys/leases/renew" {{ capabilities = ["update"] }}
               path "secret/data/{kv}" {{ capabilities = ["read"] }}
               path "secret/metadata/{kv}" {{ capabilities = ["read"] }}"#
        ),
    );
}

/// A policy reading (data and metadata of) the KV v2 secrets under `secret/<name>`.
pub fn kv_policy(bao: &OpenBao, policy: &str, names: &[&str]) {
    let hcl: String = names
        .iter()
        .map(|n| {
            format!(
                "path \"secret/data/{n}\" {{ capabilities = [\"read\"] }}\n\
                 path \"secret/metadata/{n}\" {{ capabilities = [\"read\"] }}\n"
            )
        })
        .collect();
    bao.policy(policy, &hcl);
}

/// The file's content, or an empty string when it does not exist.
pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The file's permission bits.
pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .expect("file metadata")
        .permissions()
        .mode()
        & 0o777
}

/// Panics when the agent's log contains any of `secrets`.
pub fn assert_no_leak(log: &str, secrets: &[&str]) {
    assert!(!log.is_empty(), "the agent logged nothing");
    for s in secrets {
        assert!(
            !s.is_empty() && !log.contains(s),
            "the agent's log contains a secret value ({} chars):\n{log}",
            s.len()
        );
    }
}

/// Waits until the agent's log contains `needle`.
pub fn wait_log(agent: &mut Process, needle: &str, timeout: Duration) {
    wait_until(
        timeout,
        &format!("agent log line containing {needle:?}"),
        || {
            agent.assert_running();
            agent.log().contains(needle)
        },
    );
}
