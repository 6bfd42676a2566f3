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
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

mod auth;
mod checks;
mod envnames;
pub use auth::{
    AuthConfig, MAX_REDIRECT_ADDRESSES, TLS_CA_DIR, TLS_CA_KEY, TLS_CA_VOLUME, TLS_CLIENT_CERT_KEY,
    TLS_CLIENT_DIR, TLS_CLIENT_KEY_KEY, TLS_CLIENT_VOLUME, TLS_DIR, TlsOrigin, VaultConfig,
    tls_ca_file, tls_client_cert_file, tls_client_key_file,
};
pub use checks::{
    HumanDuration, duration_str, format_duration, parse_duration, validate_mount, validate_name,
    validate_relative_file, validate_vault_address, validate_vault_path,
};
pub use envnames::{CODE_LOADING_ENV_NAMES, CODE_LOADING_ENV_PREFIXES, loads_code, spelled_out};

pub mod supervise;

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

/// One secret: where it comes from, how it is rendered, where it goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretSpec {
    /// DNS-label-like name (`db`), from the `vaultlet.io/secret-<name>` annotation.
    pub name: String,
    /// Vault API path without `v1/`, e.g. `secret/data/app` or `database/creds/app`. Empty
    /// for a consul-template secret, whose template names what it reads.
    #[serde(default)]
    pub path: String,
    /// Parameters of a write (`pki/issue/web` with `common_name=...`); a non-empty map makes
    /// the fetch a write instead of a read.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, String>,
    /// Pinned KV v2 version; latest when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// Template in [`SecretSpec::language`]; the default format applies when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// The template's language: Handlebars over this secret's data, or consul-template's (Go
    /// `text/template`, as Vault Agent and vault-k8s render), whose `secret` calls name the
    /// Vault paths it reads.
    #[serde(default, skip_serializing_if = "TemplateLanguage::is_handlebars")]
    pub language: TemplateLanguage,
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
    /// The file is loaded into app environments (`vaultlet.io/env-<name>`): its rendered
    /// output must be env lines, checked at each render.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub env: bool,
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

/// The language of a secret's template.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TemplateLanguage {
    /// Handlebars over the secret's own data (`{{password}}`), `secrets.<name>` for others.
    #[default]
    Handlebars,
    /// consul-template: Go `text/template` with `secret "path"` and its functions, rendering
    /// the bytes Vault Agent renders (the vault-k8s migration).
    ConsulTemplate,
}

impl TemplateLanguage {
    fn is_handlebars(&self) -> bool {
        *self == Self::Handlebars
    }
}

impl FromStr for TemplateLanguage {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "handlebars" => Ok(Self::Handlebars),
            "consul-template" => Ok(Self::ConsulTemplate),
            _ => Err("expected handlebars or consul-template".into()),
        }
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
    /// Copy the agent binary into this directory at start, for the app containers' process
    /// supervisor (`vaultlet.io/env-<name>`); off when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bin_dir: Option<PathBuf>,
    /// Largest file a secret may render to, in bytes (the secrets volume's `sizeLimit`; by
    /// default the injector's default of 16Mi). A larger render is an error for that secret
    /// and the last good file stays.
    #[serde(
        default = "default_max_file_size",
        skip_serializing_if = "is_default_max_file_size"
    )]
    pub max_file_size: u64,
}

/// Default of [`Paths::max_file_size`]: 16 MiB, the injector's default secrets volume size.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 16 << 20;

fn default_max_file_size() -> u64 {
    DEFAULT_MAX_FILE_SIZE
}

fn is_default_max_file_size(n: &u64) -> bool {
    *n == DEFAULT_MAX_FILE_SIZE
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
            bin_dir: None,
            max_file_size: DEFAULT_MAX_FILE_SIZE,
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
        auth::validate(&self.vault, &self.auth)?;
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
        if self.paths.max_file_size == 0 {
            return Err(ConfigError::invalid(
                "paths.maxFileSize",
                "must be at least 1 byte (the secrets volume's size)",
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
            match s.language {
                TemplateLanguage::Handlebars => validate_vault_path(&s.path)
                    .map_err(|r| ConfigError::invalid(field("path"), r))?,
                TemplateLanguage::ConsulTemplate if s.template.is_none() => {
                    return Err(ConfigError::invalid(
                        field("template"),
                        "a consul-template secret needs its template (it names the Vault paths it reads)",
                    ));
                }
                TemplateLanguage::ConsulTemplate if !s.path.is_empty() => {
                    validate_vault_path(&s.path)
                        .map_err(|r| ConfigError::invalid(field("path"), r))?
                }
                TemplateLanguage::ConsulTemplate => {}
            }
            validate_relative_file(&s.file).map_err(|r| ConfigError::invalid(field("file"), r))?;
            if !files.insert(s.file.as_str()) {
                return Err(ConfigError::invalid(
                    field("file"),
                    "another secret writes the same file",
                ));
            }
            if s.env && s.template.is_none() && s.format != OutputFormat::Env {
                return Err(ConfigError::invalid(
                    field("format"),
                    "a secret loaded into the environment needs the env format (or a template)",
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

#[cfg(test)]
mod tests;
