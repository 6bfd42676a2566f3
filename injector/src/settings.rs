//! Command-line settings (flags with `VAULTLET_*` env-var equivalents), one struct per concern.

use std::net::SocketAddr;
use std::path::PathBuf;

use vaultlet_agent::config::{HumanDuration, validate_mount, validate_vault_address};

use crate::annotations::{AuthMethod, InitPosition, Mode, parse_quantity};

/// A settings value that cannot work; the message names the flag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--{flag}: {reason}")]
pub struct SettingsError {
    /// Flag name without dashes.
    pub flag: &'static str,
    /// What is wrong and what is expected.
    pub reason: String,
}

fn check(flag: &'static str, r: Result<impl Sized, String>) -> Result<(), SettingsError> {
    r.map(|_| ())
        .map_err(|reason| SettingsError { flag, reason })
}

/// Where and how the webhook listens.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// HTTPS address serving /mutate, /healthz, /readyz and /metrics.
    #[arg(long, env = "VAULTLET_LISTEN_ADDR", default_value = "0.0.0.0:8443")]
    pub listen_addr: SocketAddr,
    /// Plain-HTTP admin address serving /healthz, /readyz and /metrics ("off" to disable).
    #[arg(long, env = "VAULTLET_ADMIN_ADDR", default_value = "0.0.0.0:9090")]
    pub admin_addr: String,
    /// After SIGTERM, how long the server stays unready but keeps accepting and answering
    /// reviews, so the API server learns of the endpoint change before connections are refused.
    #[arg(long, env = "VAULTLET_DRAIN_DELAY", default_value = "10s")]
    pub drain_delay: HumanDuration,
    /// After the drain delay, how long in-flight reviews may take to finish.
    #[arg(long, env = "VAULTLET_SHUTDOWN_GRACE", default_value = "10s")]
    pub shutdown_grace: HumanDuration,
    /// A request in progress must get on within this: a new connection's handshake and first
    /// request, HTTP/1 headers, a request body, a response the client does not read.
    #[arg(long, env = "VAULTLET_READ_TIMEOUT", default_value = "10s")]
    pub read_timeout: HumanDuration,
    /// A connection with no request in progress is closed after this; longer than the API
    /// server keeps its idle connections (90 s), so it never writes a review on a connection
    /// being closed.
    #[arg(long, env = "VAULTLET_IDLE_TIMEOUT", default_value = "120s")]
    pub idle_timeout: HumanDuration,
    /// Open webhook connections at most; at the cap the one idle the longest is closed
    /// gracefully for a new one, and while none is idle new ones wait in the listen backlog.
    #[arg(long, env = "VAULTLET_MAX_CONNECTIONS", default_value_t = 128)]
    pub max_connections: u32,
    /// Reviews decoded at the same time at most; more wait up to half of --read-timeout, then get 503.
    #[arg(long, env = "VAULTLET_MAX_CONCURRENT_REVIEWS", default_value_t = 4)]
    pub max_concurrent_reviews: u32,
}

impl ServerArgs {
    /// Checks the limits; the message names the flag.
    pub fn validate(&self) -> Result<(), SettingsError> {
        check(
            "max-connections",
            (1..=65_536)
                .contains(&self.max_connections)
                .then_some(())
                .ok_or_else(|| format!("{} is not between 1 and 65536", self.max_connections)),
        )?;
        check(
            "max-concurrent-reviews",
            (1..=1024)
                .contains(&self.max_concurrent_reviews)
                .then_some(())
                .ok_or_else(|| {
                    format!("{} is not between 1 and 1024", self.max_concurrent_reviews)
                }),
        )?;
        check(
            "read-timeout",
            (!self.read_timeout.0.is_zero())
                .then_some(())
                .ok_or_else(|| "must be more than 0s".to_owned()),
        )?;
        check(
            "idle-timeout",
            (self.idle_timeout.0 >= self.read_timeout.0)
                .then_some(())
                .ok_or_else(|| {
                    format!(
                        "{} is shorter than --read-timeout; the API server keeps idle connections 90s, keep this above that",
                        self.idle_timeout
                    )
                }),
        )
    }
}

/// The serving certificate.
#[derive(Debug, Clone, clap::Args)]
pub struct TlsArgs {
    /// PEM certificate chain; reloaded when the file (or its directory's `..data` link) changes.
    #[arg(
        long,
        env = "VAULTLET_TLS_CERT_FILE",
        default_value = "/etc/vaultlet/tls/tls.crt"
    )]
    pub tls_cert_file: PathBuf,
    /// PEM private key matching the certificate.
    #[arg(
        long,
        env = "VAULTLET_TLS_KEY_FILE",
        default_value = "/etc/vaultlet/tls/tls.key"
    )]
    pub tls_key_file: PathBuf,
}

/// The injector's own logging.
#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    /// Log format: text or json.
    #[arg(long, env = "VAULTLET_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// Log filter, e.g. info or vaultlet_injector=debug.
    #[arg(long, env = "VAULTLET_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
}

/// The agent container: image, mode and timing.
#[derive(Debug, Clone, clap::Args)]
pub struct AgentArgs {
    /// Agent image.
    #[arg(
        long,
        env = "VAULTLET_AGENT_IMAGE",
        default_value = "vaultlet/agent:0.1.0"
    )]
    pub agent_image: String,
    /// imagePullPolicy of the agent containers.
    #[arg(long, env = "VAULTLET_AGENT_IMAGE_PULL_POLICY", default_value = "IfNotPresent",
          value_parser = ["Always", "IfNotPresent", "Never"])]
    pub agent_image_pull_policy: String,
    /// Default mode: sidecar or init-only (annotation vaultlet.io/mode).
    #[arg(long, env = "VAULTLET_MODE", default_value = "sidecar")]
    pub mode: Mode,
    /// Inject sidecars as native sidecars (init container with restartPolicy Always).
    #[arg(long, env = "VAULTLET_NATIVE_SIDECARS", default_value_t = true, action = clap::ArgAction::Set)]
    pub native_sidecars: bool,
    /// Give the agent containers an explicit runAsUser/runAsGroup (the Pod's, else 65532).
    /// false: leave them unset so the platform assigns them (OpenShift's restricted SCC);
    /// files are then shared through the Pod's fsGroup (annotation vaultlet.io/set-run-as-ids).
    #[arg(long, env = "VAULTLET_SET_RUN_AS_IDS", default_value_t = true, action = clap::ArgAction::Set)]
    pub set_run_as_ids: bool,
    /// Default place of the agent among existing init containers: first or last.
    #[arg(long, env = "VAULTLET_INIT_POSITION", default_value = "first")]
    pub init_position: InitPosition,
    /// Default interval at which static secrets are checked for a new version.
    #[arg(long, env = "VAULTLET_REFRESH_INTERVAL", default_value = "60s")]
    pub refresh_interval: HumanDuration,
    /// Default time the first render may take.
    #[arg(long, env = "VAULTLET_INIT_DEADLINE", default_value = "120s")]
    pub init_deadline: HumanDuration,
    /// Default sizeLimit of the memory-backed secrets volume.
    #[arg(long, env = "VAULTLET_SECRETS_VOLUME_SIZE", default_value = "16Mi")]
    pub secrets_volume_size: String,
    /// Allow `exec:` notifications: only for an agent image that holds the programs they run
    /// (the default image holds only the agent).
    #[arg(long, env = "VAULTLET_ALLOW_EXEC_NOTIFY", default_value_t = false, action = clap::ArgAction::Set)]
    pub allow_exec_notify: bool,
}

/// Which Vault, and how pods log in.
#[derive(Debug, Clone, clap::Args)]
pub struct VaultArgs {
    /// Default Vault/OpenBao address.
    #[arg(
        long,
        env = "VAULTLET_VAULT_ADDR",
        default_value = "https://vault.vault.svc:8200"
    )]
    pub vault_addr: String,
    /// Other addresses a pod may choose with vaultlet.io/vault-addr (comma-separated).
    #[arg(long, env = "VAULTLET_ALLOWED_VAULT_ADDRS", value_delimiter = ',')]
    pub allowed_vault_addrs: Vec<String>,
    /// ConfigMap (key ca.crt) with the CA that signs Vault's certificate; mounted for the agent.
    #[arg(long, env = "VAULTLET_VAULT_CA_CONFIGMAP")]
    pub vault_ca_configmap: Option<String>,
    /// Addresses of --allowed-vault-addrs for which a Pod may choose how its agent verifies
    /// Vault (vaultlet.io/tls-ca-secret, tls-ca-configmap, tls-server-name), comma-separated.
    #[arg(long, env = "VAULTLET_POD_TLS_VAULT_ADDRS", value_delimiter = ',')]
    pub pod_tls_vault_addrs: Vec<String>,
    /// Whether a Pod may choose how its agent verifies the default address (--vault-addr).
    #[arg(long, env = "VAULTLET_POD_TLS_DEFAULT_ADDR", default_value_t = true, action = clap::ArgAction::Set)]
    pub pod_tls_default_addr: bool,
    /// Vault's own nodes (HA standbys, the active node) the agents may follow a redirect to,
    /// comma-separated; every other redirect is refused (the token goes only to Vault).
    #[arg(long, env = "VAULTLET_VAULT_REDIRECT_ADDRS", value_delimiter = ',')]
    pub vault_redirect_addrs: Vec<String>,
    /// Default auth method: kubernetes, jwt, cert or approle.
    #[arg(long, env = "VAULTLET_AUTH_METHOD", default_value = "kubernetes")]
    pub auth_method: AuthMethod,
    /// Mount path of the default auth method, without auth/.
    #[arg(long, env = "VAULTLET_AUTH_PATH", default_value = "kubernetes")]
    pub auth_path: String,
    /// Audience of the projected service-account token.
    #[arg(long, env = "VAULTLET_SA_TOKEN_AUDIENCE", default_value = "vault")]
    pub sa_token_audience: String,
    /// Lifetime of the projected service-account token (at least 10m), e.g. 1h.
    #[arg(long, env = "VAULTLET_SA_TOKEN_EXPIRATION", default_value = "1h")]
    pub sa_token_expiration: HumanDuration,
}

/// Default resources of each agent container.
#[derive(Debug, Clone, clap::Args)]
pub struct ResourceArgs {
    /// CPU request.
    #[arg(long, env = "VAULTLET_CPU_REQUEST", default_value = "10m")]
    pub cpu_request: String,
    /// CPU limit (none by default).
    #[arg(long, env = "VAULTLET_CPU_LIMIT")]
    pub cpu_limit: Option<String>,
    /// Memory request.
    #[arg(long, env = "VAULTLET_MEMORY_REQUEST", default_value = "16Mi")]
    pub memory_request: String,
    /// Memory limit.
    #[arg(long, env = "VAULTLET_MEMORY_LIMIT", default_value = "64Mi")]
    pub memory_limit: Option<String>,
}

/// Everything the mutation needs; shared by `serve` and `preview`.
#[derive(Debug, Clone, clap::Args)]
pub struct Settings {
    /// Agent container.
    #[command(flatten)]
    pub agent: AgentArgs,
    /// Vault and auth.
    #[command(flatten)]
    pub vault: VaultArgs,
    /// Agent resources.
    #[command(flatten)]
    pub resources: ResourceArgs,
}

impl Settings {
    /// Checks what clap cannot: addresses, quantities, token lifetime.
    pub fn validate(&self) -> Result<(), SettingsError> {
        check("agent-image", non_empty(&self.agent.agent_image))?;
        check("vault-addr", validate_vault_address(&self.vault.vault_addr))?;
        // An empty list item (e.g. the env var set to "") means nothing.
        for addr in self
            .vault
            .allowed_vault_addrs
            .iter()
            .filter(|a| !a.trim().is_empty())
        {
            check("allowed-vault-addrs", validate_vault_address(addr.trim()))?;
        }
        for addr in listed(&self.vault.pod_tls_vault_addrs) {
            check("pod-tls-vault-addrs", self.pod_tls_addr(addr))?;
        }
        for addr in listed(&self.vault.vault_redirect_addrs) {
            check("vault-redirect-addrs", validate_vault_address(addr))?;
        }
        check("auth-path", validate_mount(&self.vault.auth_path))?;
        check(
            "sa-token-audience",
            non_empty(&self.vault.sa_token_audience),
        )?;
        if self.vault.sa_token_expiration.0 < std::time::Duration::from_secs(600) {
            return Err(SettingsError {
                flag: "sa-token-expiration",
                reason: "must be at least 10m (Kubernetes needs 600 seconds)".into(),
            });
        }
        check(
            "secrets-volume-size",
            parse_quantity(&self.agent.secrets_volume_size),
        )?;
        check("cpu-request", parse_quantity(&self.resources.cpu_request))?;
        check(
            "memory-request",
            parse_quantity(&self.resources.memory_request),
        )?;
        if let Some(q) = &self.resources.cpu_limit {
            check("cpu-limit", parse_quantity(q))?;
        }
        if let Some(q) = &self.resources.memory_limit {
            check("memory-limit", parse_quantity(q))?;
        }
        let over = |request: &str, limit: Option<&String>| {
            let value = |q: &str| crate::annotations::quantity_value(q);
            limit.is_some_and(|l| matches!((value(request), value(l)), (Some(r), Some(l)) if r > l))
        };
        if over(
            &self.resources.cpu_request,
            self.resources.cpu_limit.as_ref(),
        ) {
            return Err(SettingsError {
                flag: "cpu-request",
                reason: "must not exceed --cpu-limit".into(),
            });
        }
        if over(
            &self.resources.memory_request,
            self.resources.memory_limit.as_ref(),
        ) {
            return Err(SettingsError {
                flag: "memory-request",
                reason: "must not exceed --memory-limit".into(),
            });
        }
        if self.agent.init_deadline.0 < std::time::Duration::from_secs(1) {
            return Err(SettingsError {
                flag: "init-deadline",
                reason: "must be at least 1s".into(),
            });
        }
        Ok(())
    }

    /// Whether a pod may point its agent at `addr` (the default or an allowlisted address).
    pub fn vault_addr_allowed(&self, addr: &str) -> bool {
        self.is_default_addr(addr) || listed_has(&self.vault.allowed_vault_addrs, addr)
    }

    /// Whether `addr` is the default address (`--vault-addr`).
    pub fn is_default_addr(&self, addr: &str) -> bool {
        same_addr(&self.vault.vault_addr, addr)
    }

    /// Whether a Pod may choose the CA and server name the agent verifies `addr` with.
    pub fn pod_tls_allowed(&self, addr: &str) -> bool {
        (self.vault.pod_tls_default_addr && self.is_default_addr(addr))
            || listed_has(&self.vault.pod_tls_vault_addrs, addr)
    }

    /// An entry of --pod-tls-vault-addrs: an https address Pods may already choose.
    fn pod_tls_addr(&self, addr: &str) -> Result<(), String> {
        validate_vault_address(addr)?;
        if !addr.to_ascii_lowercase().starts_with("https://") {
            return Err(format!(
                "{addr} is plain HTTP, where no CA or server name applies; list https:// addresses only"
            ));
        }
        if !self.vault_addr_allowed(addr) {
            return Err(format!(
                "{addr} is neither --vault-addr nor in --allowed-vault-addrs; add it there first"
            ));
        }
        Ok(())
    }

    /// The defaults, as `vaultlet-injector` would parse them with no flags (for tests and benches).
    pub fn defaults() -> Self {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Only {
            #[command(flatten)]
            settings: Settings,
        }
        // Parsing an empty command line only uses the defaults above, which are valid.
        match Only::try_parse_from(["vaultlet-injector"]) {
            Ok(o) => o.settings,
            Err(e) => unreachable!("built-in defaults do not parse: {e}"),
        }
    }
}

impl Settings {
    /// The Vault nodes an agent talking to `address` may follow a redirect to: those of
    /// `--vault-redirect-addrs` with the address's scheme (never https -> http).
    pub fn redirect_addrs_for(&self, address: &str) -> Vec<String> {
        let scheme = address.split("://").next();
        listed(&self.vault.vault_redirect_addrs)
            .filter(|a| a.split("://").next() == scheme)
            .map(str::to_owned)
            .collect()
    }
}

/// The non-empty entries of a comma-separated list setting (an env var set to "" is empty).
fn listed(list: &[String]) -> impl Iterator<Item = &str> {
    list.iter().map(|a| a.trim()).filter(|a| !a.is_empty())
}

fn listed_has(list: &[String], addr: &str) -> bool {
    listed(list).any(|a| same_addr(a, addr))
}

/// Addresses compare without case and a trailing `/`.
fn same_addr(a: &str, b: &str) -> bool {
    let norm = |a: &str| a.trim().trim_end_matches('/').to_ascii_lowercase();
    norm(a) == norm(b)
}

fn non_empty(s: &str) -> Result<(), String> {
    if s.trim().is_empty() {
        Err("must not be empty".into())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let s = Settings::defaults();
        assert_eq!(s.validate(), Ok(()));
        assert!(s.vault_addr_allowed("https://vault.vault.svc:8200/"));
        assert!(!s.vault_addr_allowed("https://evil.example:8200"));
    }

    #[test]
    fn bad_settings_name_the_flag() {
        let mut s = Settings::defaults();
        s.vault.sa_token_expiration = HumanDuration(std::time::Duration::from_secs(60));
        assert_eq!(
            s.validate().expect_err("too short").flag,
            "sa-token-expiration"
        );
        let mut s = Settings::defaults();
        s.resources.memory_request = "128Mi".into();
        assert_eq!(s.validate().expect_err("over limit").flag, "memory-request");
        let mut s = Settings::defaults();
        s.vault.allowed_vault_addrs = vec!["vault:8200".into()];
        assert_eq!(
            s.validate().expect_err("bad addr").flag,
            "allowed-vault-addrs"
        );
    }
}
