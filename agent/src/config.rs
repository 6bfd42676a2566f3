//! The typed, versioned contract between the injector and the agent.
//!
//! The injector resolves a Pod's annotations plus its own defaults into an [`AgentConfig`],
//! serialises it as JSON into the agent container's [`CONFIG_ENV`] variable, and the agent
//! reads it back (or from `--config FILE`, YAML or JSON). Nothing here holds a secret value:
//! tokens, role ids and secret ids are always referenced by file path.
//!
//! This module has no dependency beyond serde so the injector can use it without pulling in
//! the agent's HTTP client.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Version of the config schema; the agent refuses a config with another version.
pub const CONFIG_VERSION: u32 = 1;

/// Environment variable through which the injector hands the JSON config to the agent.
pub const CONFIG_ENV: &str = "VAULTLET_AGENT_CONFIG";

/// Default directory the secret files are written to (and mounted at in app containers).
pub const DEFAULT_SECRETS_DIR: &str = "/vault/secrets";

/// Default path of the projected service-account token mounted into the agent container.
pub const DEFAULT_SA_TOKEN_PATH: &str = "/var/run/secrets/vaultlet.io/serviceaccount/token";

/// Default directory for the agent's own state (readiness marker, token sink).
pub const DEFAULT_STATE_DIR: &str = "/vault/agent";

/// Default file mode of rendered secret files.
pub const DEFAULT_FILE_MODE: u32 = 0o440;

/// Errors found while checking a config; each names the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The config was written for another schema version.
    #[error(
        "config version {found} is not supported (this agent speaks version {CONFIG_VERSION}); use an agent image that matches the injector"
    )]
    Version {
        /// The version found in the config.
        found: u32,
    },
    /// A field holds a value the agent cannot use.
    #[error("{field}: {reason}")]
    Invalid {
        /// Dotted path of the field, e.g. `secrets[db].file`.
        field: String,
        /// What is wrong and what is expected instead.
        reason: String,
    },
}

impl ConfigError {
    fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Everything one agent needs to know.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentConfig {
    /// Schema version, [`CONFIG_VERSION`].
    pub version: u32,
    /// How to reach Vault.
    pub vault: VaultConfig,
    /// How to log in.
    pub auth: AuthConfig,
    /// The secrets to render, each into its own file.
    pub secrets: Vec<SecretSpec>,
    /// Notifications sent once after any file changed (in addition to per-secret ones).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<NotifySpec>,
    /// Where files go.
    #[serde(default)]
    pub paths: Paths,
    /// How often static secrets (KV) are checked for a new version.
    #[serde(default = "default_refresh", with = "duration_str")]
    pub refresh_interval: Duration,
    /// How long the `init` role keeps retrying before it gives up.
    #[serde(default = "default_init_deadline", with = "duration_str")]
    pub init_deadline: Duration,
    /// Revoke the token (and with it its leases) on shutdown.
    #[serde(default)]
    pub revoke_on_shutdown: bool,
    /// When the long-running agent stops by itself.
    #[serde(default)]
    pub exit: ExitPolicy,
    /// Logging.
    #[serde(default)]
    pub log: LogConfig,
    /// Address (`127.0.0.1:9102`) of the Prometheus metrics listener; none when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_addr: Option<String>,
    /// Classic mode: `init` leaves its token, leases and data in the state dir (0600) and
    /// `run` adopts them, so the Pod gets one login and one set of dynamic credentials.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub handoff: bool,
}

fn default_refresh() -> Duration {
    Duration::from_secs(60)
}

fn default_init_deadline() -> Duration {
    Duration::from_secs(120)
}

/// Connection to Vault/OpenBao.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VaultConfig {
    /// Base URL, e.g. `https://vault.vault.svc:8200`.
    pub address: String,
    /// Vault Enterprise / OpenBao namespace, sent as `X-Vault-Namespace`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// PEM file with the CA(s) to trust instead of the system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<PathBuf>,
    /// Name to verify the server certificate against, when it differs from the address host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_server_name: Option<String>,
    /// PEM client certificate for mutual TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<PathBuf>,
    /// PEM private key of the client certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key: Option<PathBuf>,
}

/// The login method.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "lowercase", deny_unknown_fields)]
pub enum AuthConfig {
    /// Kubernetes auth with the pod's (projected) service-account token.
    #[serde(rename_all = "camelCase")]
    Kubernetes {
        /// Vault role.
        role: String,
        /// Mount path of the auth method, without `auth/`.
        #[serde(default = "default_k8s_mount")]
        mount_path: String,
        /// Service-account token file; re-read at each login because it rotates.
        #[serde(default = "default_sa_token_path")]
        token_path: PathBuf,
    },
    /// AppRole auth with role-id and secret-id read from files.
    #[serde(rename_all = "camelCase")]
    Approle {
        /// Mount path of the auth method, without `auth/`.
        #[serde(default = "default_approle_mount")]
        mount_path: String,
        /// File holding the role-id.
        role_id_file: PathBuf,
        /// File holding the secret-id (or a wrapping token, see `secret_id_wrapped`).
        secret_id_file: PathBuf,
        /// The secret-id file holds a response-wrapping token to unwrap first.
        #[serde(default)]
        secret_id_wrapped: bool,
    },
    /// A token read from a file (development and tests).
    #[serde(rename_all = "camelCase")]
    Token {
        /// File holding the token.
        token_file: PathBuf,
    },
}

fn default_k8s_mount() -> String {
    "kubernetes".into()
}

fn default_approle_mount() -> String {
    "approle".into()
}

fn default_sa_token_path() -> PathBuf {
    DEFAULT_SA_TOKEN_PATH.into()
}

impl AuthConfig {
    /// Short name of the method, as used in the `vaultlet.io/auth` annotation.
    pub fn method(&self) -> &'static str {
        match self {
            Self::Kubernetes { .. } => "kubernetes",
            Self::Approle { .. } => "approle",
            Self::Token { .. } => "token",
        }
    }
}

/// One secret: where it comes from, how it is rendered, where it goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretSpec {
    /// DNS-label-like name (`db`), from the `vaultlet.io/secret-<name>` annotation.
    pub name: String,
    /// Vault API path without `v1/`, e.g. `secret/data/app` or `database/creds/app`.
    pub path: String,
    /// Parameters of a write (`pki/issue/web` with `common_name=...`); a non-empty map makes
    /// the fetch a write instead of a read.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, String>,
    /// Pinned KV v2 version; latest when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// Handlebars template; the default format applies when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// Output format when there is no template.
    #[serde(default)]
    pub format: OutputFormat,
    /// File path relative to the secrets dir.
    pub file: String,
    /// File mode: a number (`288` is `0o440`) or an octal string (`"0440"`).
    #[serde(default = "default_mode", deserialize_with = "mode_de")]
    pub mode: u32,
    /// Group id to own the file; the agent's own group when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<u32>,
    /// Notifications sent when this file changes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<NotifySpec>,
}

fn default_mode() -> u32 {
    DEFAULT_FILE_MODE
}

/// Parses an octal file mode: `0440`, `440` or `0o440`, at most `0777`.
pub fn parse_mode(v: &str) -> Result<u32, String> {
    let digits = v.strip_prefix("0o").unwrap_or(v);
    if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b))
    {
        return Err("expected an octal mode like 0440".into());
    }
    let mode = u32::from_str_radix(digits, 8).map_err(|e| e.to_string())?;
    if mode > 0o777 {
        return Err("must be between 0000 and 0777 (no setuid/setgid/sticky bits)".into());
    }
    Ok(mode)
}

/// A file mode from a number or an octal string, so YAML configs can say `mode: "0440"`.
fn mode_de<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Mode {
        Number(u32),
        Octal(String),
    }
    match Mode::deserialize(d)? {
        Mode::Number(n) => Ok(n),
        Mode::Octal(s) => parse_mode(&s).map_err(serde::de::Error::custom),
    }
}

/// Output format of a secret rendered without a template.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// `KEY=value` lines, keys sorted.
    #[default]
    Env,
    /// The secret's data as a JSON object.
    Json,
    /// The secret's data as a YAML mapping.
    Yaml,
}

impl FromStr for OutputFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "env" => Ok(Self::Env),
            "json" => Ok(Self::Json),
            "yaml" => Ok(Self::Yaml),
            _ => Err("expected one of env, json, yaml".into()),
        }
    }
}

/// How the application is told that a file changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum NotifySpec {
    /// Send a signal to every process whose name (comm or argv\[0\] basename) matches.
    /// Needs `shareProcessNamespace: true` in a Pod.
    Signal {
        /// Signal name, e.g. `SIGHUP`.
        signal: String,
        /// Process name to look for.
        process: String,
    },
    /// Send an HTTP request (POST by default) and expect a 2xx answer.
    Http {
        /// `http://` or `https://` URL.
        url: String,
        /// HTTP method.
        #[serde(default = "default_http_method")]
        method: String,
    },
    /// Run a command (argv, no shell) in the agent container.
    Exec {
        /// Program and arguments.
        command: Vec<String>,
    },
}

fn default_http_method() -> String {
    "POST".into()
}

/// Signals a `signal:` notification may name.
pub const SIGNALS: &[&str] = &[
    "SIGHUP", "SIGINT", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGTERM", "SIGWINCH", "SIGCONT",
];

impl FromStr for NotifySpec {
    type Err = String;

    /// Parses `signal:SIGHUP:nginx`, `http://127.0.0.1:8080/-/reload` (optionally prefixed by
    /// a method, `PUT http://...`), or `exec:/bin/reload --all` (whitespace-separated argv).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if let Some(rest) = s.strip_prefix("signal:") {
            let (signal, process) = rest
                .split_once(':')
                .ok_or("expected signal:<SIGNAL>:<process name>")?;
            let signal = signal.trim().to_ascii_uppercase();
            let signal = if signal.starts_with("SIG") {
                signal
            } else {
                format!("SIG{signal}")
            };
            if !SIGNALS.contains(&signal.as_str()) {
                return Err(format!(
                    "unknown signal, expected one of {}",
                    SIGNALS.join(", ")
                ));
            }
            let process = process.trim();
            if process.is_empty() || process.contains(char::is_whitespace) {
                return Err("expected a process name after the signal".into());
            }
            return Ok(Self::Signal {
                signal,
                process: process.into(),
            });
        }
        if let Some(rest) = s.strip_prefix("exec:") {
            let command: Vec<String> = rest.split_whitespace().map(String::from).collect();
            if command.is_empty() {
                return Err("expected a command after exec:".into());
            }
            return Ok(Self::Exec { command });
        }
        let (method, url) = match s.split_once(char::is_whitespace) {
            Some((m, u)) => (m.to_ascii_uppercase(), u.trim()),
            None => (default_http_method(), s),
        };
        if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() < 9 {
            return Err(
                "expected signal:<SIGNAL>:<process>, http(s)://<url> or exec:<command>".into(),
            );
        }
        if !["GET", "POST", "PUT"].contains(&method.as_str()) {
            return Err("HTTP method must be GET, POST or PUT".into());
        }
        Ok(Self::Http {
            url: url.into(),
            method,
        })
    }
}

/// Filesystem locations the agent uses; every one has a default and an override.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Paths {
    /// Directory secret files are written to.
    #[serde(default = "default_secrets_dir")]
    pub secrets_dir: PathBuf,
    /// Directory for the agent's own state: the readiness marker lives here.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// Also write the agent's Vault token to this file (e.g. for the app); off when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_sink: Option<PathBuf>,
}

fn default_secrets_dir() -> PathBuf {
    DEFAULT_SECRETS_DIR.into()
}

fn default_state_dir() -> PathBuf {
    DEFAULT_STATE_DIR.into()
}

impl Default for Paths {
    fn default() -> Self {
        Self {
            secrets_dir: default_secrets_dir(),
            state_dir: default_state_dir(),
            token_sink: None,
        }
    }
}

impl Paths {
    /// The marker file that exists once every secret has been rendered (read by `probe`).
    pub fn ready_file(&self) -> PathBuf {
        self.state_dir.join("ready")
    }
}

/// When the long-running agent stops on its own.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "when", rename_all = "camelCase", deny_unknown_fields)]
pub enum ExitPolicy {
    /// Only on SIGTERM/SIGINT (native sidecars: the kubelet stops the agent).
    #[default]
    Never,
    /// Classic sidecar of a Job: exit once every other process in the shared process
    /// namespace has gone (the app containers finished).
    AppsExited,
}

/// Logging settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LogConfig {
    /// Output format.
    #[serde(default)]
    pub format: LogFormat,
    /// `tracing` filter directive, e.g. `info` or `vaultlet_agent=debug`.
    #[serde(default = "default_log_level")]
    pub level: String,
}

fn default_log_level() -> String {
    "info".into()
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::default(),
            level: default_log_level(),
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            _ => Err("expected text or json".into()),
        }
    }
}

/// The longest refresh interval or init deadline a config may ask for.
const MAX_WAIT: Duration = Duration::from_secs(24 * 3600);

impl AgentConfig {
    /// Parses the JSON the injector wrote, then [`validate`](Self::validate)s it.
    pub fn from_json(s: &str) -> Result<Self, ConfigError> {
        let cfg: Self = serde_json::from_str(s)
            .map_err(|e| ConfigError::invalid("config", format!("not a valid config: {e}")))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Serialises the config as compact JSON, the form carried in [`CONFIG_ENV`].
    pub fn to_json(&self) -> String {
        // Serialising plain structs with string keys cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Checks everything serde cannot: names, relative paths, modes, URLs, uniqueness.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.version != CONFIG_VERSION {
            return Err(ConfigError::Version {
                found: self.version,
            });
        }
        validate_vault_address(&self.vault.address)
            .map_err(|r| ConfigError::invalid("vault.address", r))?;
        if self.vault.client_cert.is_some() != self.vault.client_key.is_some() {
            return Err(ConfigError::invalid(
                "vault.clientCert",
                "clientCert and clientKey go together; set both or neither",
            ));
        }
        match &self.auth {
            AuthConfig::Kubernetes {
                role, mount_path, ..
            } => {
                if role.trim().is_empty() {
                    return Err(ConfigError::invalid(
                        "auth.role",
                        "kubernetes auth needs a Vault role",
                    ));
                }
                validate_mount(mount_path)
                    .map_err(|r| ConfigError::invalid("auth.mountPath", r))?;
            }
            AuthConfig::Approle { mount_path, .. } => {
                validate_mount(mount_path)
                    .map_err(|r| ConfigError::invalid("auth.mountPath", r))?;
            }
            AuthConfig::Token { .. } => {}
        }
        if self.secrets.is_empty() {
            return Err(ConfigError::invalid(
                "secrets",
                "no secret to render; add at least one",
            ));
        }
        if self.refresh_interval < Duration::from_millis(100) || self.refresh_interval > MAX_WAIT {
            return Err(ConfigError::invalid(
                "refreshInterval",
                "must be between 100ms and 24h",
            ));
        }
        if self.init_deadline > MAX_WAIT {
            return Err(ConfigError::invalid("initDeadline", "must be at most 24h"));
        }
        let mut names = std::collections::BTreeSet::new();
        let mut files = std::collections::BTreeSet::new();
        for s in &self.secrets {
            let field = |f: &str| format!("secrets[{}].{f}", s.name);
            validate_name(&s.name).map_err(|r| ConfigError::invalid("secrets[].name", r))?;
            if !names.insert(s.name.as_str()) {
                return Err(ConfigError::invalid(field("name"), "appears twice"));
            }
            validate_vault_path(&s.path).map_err(|r| ConfigError::invalid(field("path"), r))?;
            validate_relative_file(&s.file).map_err(|r| ConfigError::invalid(field("file"), r))?;
            if !files.insert(s.file.as_str()) {
                return Err(ConfigError::invalid(
                    field("file"),
                    "another secret writes the same file",
                ));
            }
            if s.mode > 0o777 {
                return Err(ConfigError::invalid(
                    field("mode"),
                    "must be a permission mode between 0000 and 0777",
                ));
            }
        }
        Ok(())
    }
}

/// Checks a DNS-label-like secret name: 1-63 of `a-z`, `0-9`, `-`, not starting or ending
/// with `-`.
pub fn validate_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err("must be 1-63 lowercase letters, digits or '-', not starting or ending with '-'".into())
    }
}

/// Checks a file path relative to the secrets dir: not absolute, no `..`, no empty segment.
pub fn validate_relative_file(file: &str) -> Result<(), String> {
    if file.is_empty() {
        return Err("must not be empty".into());
    }
    if file.starts_with('/') {
        return Err("must be relative to the secrets directory, not absolute".into());
    }
    for seg in file.split('/') {
        if seg.is_empty() || seg == "." || seg == ".." {
            return Err(
                "must stay inside the secrets directory (no '..', '.', or empty segments)".into(),
            );
        }
        if seg.starts_with("..") {
            // `..data`-style names collide with Kubernetes' atomic-writer layout.
            return Err("segments must not start with '..'".into());
        }
    }
    if file.contains(['\0', '\n', '\r']) {
        return Err("must not contain control characters".into());
    }
    Ok(())
}

/// Checks a Vault API path: relative, no `..`, no query, no whitespace.
pub fn validate_vault_path(path: &str) -> Result<(), String> {
    if path.is_empty() || path.starts_with('/') {
        return Err("must be a Vault path like secret/data/app (no leading '/')".into());
    }
    if path.starts_with("v1/") {
        return Err("leave out the v1/ prefix".into());
    }
    if path
        .split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return Err("must not contain empty, '.' or '..' segments".into());
    }
    if path.contains(|c: char| c.is_whitespace() || c == '?' || c == '#' || c.is_control()) {
        return Err("must not contain whitespace, '?' or '#'".into());
    }
    Ok(())
}

/// Checks an auth mount path like `kubernetes` or `k8s/cluster-a`.
pub fn validate_mount(mount: &str) -> Result<(), String> {
    validate_vault_path(mount).map_err(|r| format!("auth mount path {r}"))
}

/// Checks a Vault address: `http(s)://host[:port]`, nothing after the authority but `/`.
pub fn validate_vault_address(addr: &str) -> Result<(), String> {
    let rest = addr
        .strip_prefix("https://")
        .or_else(|| addr.strip_prefix("http://"))
        .ok_or("must start with https:// or http://")?;
    let authority = rest.trim_end_matches('/');
    if authority.is_empty()
        || authority.contains(['/', '?', '#', '@'])
        || authority.contains(char::is_whitespace)
    {
        return Err("must be scheme://host[:port] with no path, user or query".into());
    }
    Ok(())
}

/// Parses a duration such as `500ms`, `30s`, `5m`, `1h`, or a sum like `1h30m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration; use e.g. 30s, 5m, 1h".into());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!("{s:?} is not a duration; use e.g. 30s, 5m, 1h"));
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("{s:?}: number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(|b| b.is_ascii_alphabetic()).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let part = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            "" => return Err(format!("{s:?} needs a unit (ms, s, m, h)")),
            _ => {
                return Err(format!(
                    "{s:?} has unknown unit {unit:?}; use ms, s, m or h"
                ));
            }
        };
        total = total
            .checked_add(part)
            .ok_or_else(|| format!("{s:?} is too long"))?;
    }
    Ok(total)
}

/// Formats a duration in the shortest form [`parse_duration`] reads back exactly.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(3_600_000) && ms > 0 {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) && ms > 0 {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// A [`Duration`] wrapper that displays and parses as `30s` / `5m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_duration(self.0))
    }
}

impl FromStr for HumanDuration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_duration(s).map(Self)
    }
}

/// Serde adapter: durations as `30s`-style strings.
pub mod duration_str {
    use super::*;

    /// Serialises a duration as a string like `30s`.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(*d))
    }

    /// Deserialises a duration from a string like `30s`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mk_secret(name: &str, file: &str) -> SecretSpec {
        SecretSpec {
            name: name.into(),
            path: "secret/data/app".into(),
            params: BTreeMap::new(),
            version: None,
            template: None,
            format: OutputFormat::Env,
            file: file.into(),
            mode: DEFAULT_FILE_MODE,
            group: None,
            notify: vec![],
        }
    }

    fn mk_config() -> AgentConfig {
        AgentConfig {
            version: CONFIG_VERSION,
            vault: VaultConfig {
                address: "http://127.0.0.1:8200".into(),
                namespace: None,
                ca_cert: None,
                tls_server_name: None,
                client_cert: None,
                client_key: None,
            },
            auth: AuthConfig::Kubernetes {
                role: "app".into(),
                mount_path: "kubernetes".into(),
                token_path: DEFAULT_SA_TOKEN_PATH.into(),
            },
            secrets: vec![mk_secret("db", "db")],
            notify: vec![],
            paths: Paths::default(),
            refresh_interval: Duration::from_secs(60),
            init_deadline: Duration::from_secs(120),
            revoke_on_shutdown: false,
            exit: ExitPolicy::Never,
            log: LogConfig::default(),
            metrics_addr: None,
            handoff: false,
        }
    }

    #[test]
    fn json_round_trip() {
        let mut cfg = mk_config();
        cfg.secrets[0].notify = vec!["signal:HUP:nginx".parse().expect("notify")];
        cfg.refresh_interval = Duration::from_millis(1500);
        let json = cfg.to_json();
        assert!(json.contains(r#""refreshInterval":"1500ms""#), "{json}");
        assert_eq!(AgentConfig::from_json(&json), Ok(cfg));
    }

    #[test]
    fn defaults_fill_in_a_minimal_config() {
        let cfg = AgentConfig::from_json(
            r#"{"version":1,"vault":{"address":"https://vault:8200"},
                "auth":{"method":"approle","roleIdFile":"/r","secretIdFile":"/s"},
                "secrets":[{"name":"db","path":"database/creds/app","file":"db"}]}"#,
        )
        .expect("valid");
        assert_eq!(cfg.paths.secrets_dir, PathBuf::from(DEFAULT_SECRETS_DIR));
        assert_eq!(cfg.secrets[0].mode, 0o440);
        assert_eq!(cfg.refresh_interval, Duration::from_secs(60));
        assert!(
            matches!(cfg.auth, AuthConfig::Approle { ref mount_path, secret_id_wrapped: false, .. } if mount_path == "approle")
        );
    }

    #[test]
    fn rejects_wrong_version_and_unknown_fields() {
        let mut cfg = mk_config();
        cfg.version = 2;
        assert!(matches!(
            cfg.validate(),
            Err(ConfigError::Version { found: 2 })
        ));
        let err = AgentConfig::from_json(r#"{"version":1,"bogus":true}"#).unwrap_err();
        assert!(err.to_string().contains("bogus"), "{err}");
    }

    #[test]
    fn rejects_escaping_files_and_duplicates() {
        for bad in ["../x", "/etc/passwd", "a/../b", "a//b", "..data/x", ""] {
            let mut cfg = mk_config();
            cfg.secrets[0].file = bad.into();
            let err = cfg.validate().unwrap_err().to_string();
            assert!(err.starts_with("secrets[db].file"), "{bad}: {err}");
        }
        let mut cfg = mk_config();
        cfg.secrets.push(mk_secret("other", "db"));
        assert!(
            cfg.validate()
                .unwrap_err()
                .to_string()
                .contains("same file")
        );
        let mut cfg = mk_config();
        cfg.secrets.push(mk_secret("db", "db2"));
        assert!(cfg.validate().unwrap_err().to_string().contains("twice"));
    }

    #[test]
    fn modes_as_numbers_or_octal_strings() {
        let json = |mode: &str| {
            format!(
                r#"{{"version":1,"vault":{{"address":"http://v:8200"}},
                    "auth":{{"method":"token","tokenFile":"/t"}},
                    "secrets":[{{"name":"a","path":"kv/a","file":"a","mode":{mode}}}]}}"#
            )
        };
        for (mode, want) in [("288", 0o440), (r#""0440""#, 0o440), (r#""0o600""#, 0o600)] {
            let cfg = AgentConfig::from_json(&json(mode)).expect(mode);
            assert_eq!(cfg.secrets[0].mode, want, "{mode}");
        }
        for bad in [r#""0999""#, r#""rw""#, r#""""#, r#""01777""#, "512"] {
            assert!(AgentConfig::from_json(&json(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn names() {
        for good in ["db", "a", "web-cert", "x1"] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in ["", "DB", "-a", "a-", "a_b", "a.b", &"x".repeat(64)] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn intervals_out_of_bounds_are_config_errors() {
        let mut cfg = mk_config();
        cfg.refresh_interval = Duration::from_secs(100 * 365 * 24 * 3600);
        assert_eq!(
            cfg.validate().unwrap_err().to_string(),
            ConfigError::invalid("refreshInterval", "must be between 100ms and 24h").to_string()
        );
        let mut cfg = mk_config();
        cfg.init_deadline = Duration::MAX;
        assert_eq!(
            cfg.validate().unwrap_err().to_string(),
            ConfigError::invalid("initDeadline", "must be at most 24h").to_string()
        );
        let mut cfg = mk_config();
        cfg.refresh_interval = Duration::from_secs(24 * 3600);
        assert!(cfg.validate().is_ok());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration(" 2s "), Ok(Duration::from_secs(2)));
        for bad in ["", "5", "s", "5x", "-1s", "1.5s", "99999999999999999999s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        for d in [0, 1, 999, 1000, 60_000, 90_000, 3_600_000, 5_400_000] {
            let d = Duration::from_millis(d);
            assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
    }

    #[test]
    fn notify_specs() {
        assert_eq!(
            "signal:SIGHUP:nginx".parse(),
            Ok(NotifySpec::Signal {
                signal: "SIGHUP".into(),
                process: "nginx".into()
            })
        );
        assert_eq!(
            "http://127.0.0.1:8080/-/reload".parse(),
            Ok(NotifySpec::Http {
                url: "http://127.0.0.1:8080/-/reload".into(),
                method: "POST".into()
            })
        );
        assert_eq!(
            "PUT https://app/reload".parse(),
            Ok(NotifySpec::Http {
                url: "https://app/reload".into(),
                method: "PUT".into()
            })
        );
        assert_eq!(
            "exec:/bin/kill -HUP 1".parse(),
            Ok(NotifySpec::Exec {
                command: vec!["/bin/kill".into(), "-HUP".into(), "1".into()]
            })
        );
        for bad in [
            "signal:SIGKILL:x",
            "signal:HUP",
            "signal:HUP:",
            "exec:",
            "ftp://x",
            "DELETE http://x/y",
            "",
        ] {
            assert!(bad.parse::<NotifySpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn vault_addresses() {
        for good in [
            "http://127.0.0.1:8200",
            "https://vault.svc:8200/",
            "https://v",
        ] {
            assert!(validate_vault_address(good).is_ok(), "{good}");
        }
        for bad in [
            "vault:8200",
            "https://",
            "https://u@v",
            "https://v/x",
            "http://a b",
        ] {
            assert!(validate_vault_address(bad).is_err(), "{bad}");
        }
    }
}
