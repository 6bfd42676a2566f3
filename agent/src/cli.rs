//! Command line, config loading, logging setup and the wiring of the three roles.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tracing::{error, info, warn};

use crate::config::supervise::SUPERVISE_SUBCOMMAND;
use crate::config::{AgentConfig, CONFIG_ENV, DEFAULT_STATE_DIR, ExitPolicy, LogFormat};
use crate::metrics::{self, Metrics};
use crate::probe;
use crate::refresh::{Agent, AgentError};

/// Renders secrets from Vault/OpenBao into files, keeps them fresh and tells the app.
#[derive(Debug, Parser)]
#[command(name = "vaultlet-agent", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub role: Role,
    /// Config file (YAML or JSON); otherwise the JSON in $VAULTLET_AGENT_CONFIG.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Override the directory secret files are written to.
    #[arg(long, global = true, value_name = "DIR")]
    pub secrets_dir: Option<PathBuf>,
    /// Override the directory of the ready marker.
    #[arg(long, global = true, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Override the log format (text or json).
    #[arg(long, global = true, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Override the log filter (e.g. `info`, `vaultlet_agent=debug`).
    #[arg(long, global = true, value_name = "FILTER")]
    pub log_level: Option<String>,
}

/// The agent's roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
pub enum Role {
    /// Render every secret once and exit (0 on success; non-zero after the init deadline).
    Init,
    /// Render, then keep the files fresh until SIGTERM/SIGINT.
    Run,
    /// Exit 0 iff every secret has been rendered (`<stateDir>/ready` exists).
    Probe {
        /// Wait up to this long (e.g. `120s`) for the secrets instead of answering at once,
        /// then exit 1 with the init deadline's message: the native sidecar's postStart hook.
        #[arg(long, value_name = "DURATION", value_parser = crate::config::parse_duration)]
        wait: Option<std::time::Duration>,
    },
    // `supervise [--env-file FILE]... -- COMMAND...` is handled before this parser: see
    // `crate::supervise`.
}

/// Entry point behind `main`: parses arguments and runs the role.
pub fn main() -> ExitCode {
    // The supervisor in app containers takes the app's command line as is, so clap never
    // sees it (its flags are in `config::supervise`).
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() == Some(SUPERVISE_SUBCOMMAND) {
        return crate::supervise::main(args);
    }
    // First, before the config or any token is in memory.
    let dumpable = make_non_dumpable();
    let cli = Cli::parse();
    if let Role::Probe { wait } = cli.role {
        return probe_role(&cli, wait);
    }
    let (cfg, filter) = match load_config(&cli).and_then(|cfg| Ok((log_filter(&cfg)?, cfg))) {
        Ok((filter, cfg)) => (cfg, filter),
        Err(e) => {
            eprintln!("vaultlet-agent: {e:#}");
            return ExitCode::from(2);
        }
    };
    init_logging(&cfg, filter);
    // The start of the clock for "agent start -> file written" (scripts/bench-cluster.py).
    info!(role = ?cli.role, "starting");
    if let Err(e) = dumpable {
        warn!(error = %e, "cannot make the process non-dumpable; processes of the same user may read its memory");
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run_role(cli.role, cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            // Settings that can never work (TLS files, templates) are config errors, like a
            // bad config file: exit 2, not 1.
            let config_error = matches!(
                e.downcast_ref::<AgentError>(),
                Some(AgentError::Client(_) | AgentError::Template(_))
            );
            ExitCode::from(if config_error { 2 } else { 1 })
        }
    }
}

fn probe_role(cli: &Cli, wait: Option<std::time::Duration>) -> ExitCode {
    let state_dir = cli
        .state_dir
        .clone()
        .or_else(|| load_config(cli).ok().map(|c| c.paths.state_dir))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR));
    if let Some(deadline) = wait {
        // The kubelet puts this output into the container's status when the hook fails.
        return match probe::wait_ready(&state_dir, deadline) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("vaultlet-agent: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if probe::is_ready(&state_dir) {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "not ready: {} does not exist yet",
            state_dir.join("ready").display()
        );
        ExitCode::FAILURE
    }
}

async fn run_role(role: Role, cfg: AgentConfig) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new(cfg.secrets.iter().map(|s| s.name.as_str())));
    if let (Role::Run, Some(addr)) = (role, &cfg.metrics_addr) {
        metrics::serve(addr, metrics.clone())
            .await
            .with_context(|| format!("cannot listen for metrics on {addr}"))?;
        info!(%addr, "serving metrics");
    }
    if let Some(dir) = &cfg.paths.bin_dir {
        // Before the first render, so the app's supervisor exists once the app may start.
        let path = crate::supervise::install::install_self(dir)?;
        info!(path = %path.display(), "agent binary copied for the app's supervisor");
    }
    let exit = cfg.exit.clone();
    let agent = Agent::new(cfg, metrics)?;
    match role {
        Role::Init => {
            // As PID 1 (no shared process namespace) the kernel ignores signals without a
            // handler, so without this a deleted Pod would wait out its grace period.
            let stop = stop_signal()?;
            tokio::select! {
                result = agent.init() => result?,
                () = stop => anyhow::bail!("stopped by a signal before every secret was rendered"),
            }
        }
        Role::Run => {
            let stop = stop_signal()?;
            agent
                .run(async move {
                    tokio::select! {
                        () = stop => {}
                        () = exit_when(exit) => info!("exit policy reached"),
                    }
                })
                .await;
        }
        Role::Probe { .. } => {}
    }
    Ok(())
}

/// Resolves on SIGTERM or SIGINT; the handlers are installed before returning.
fn stop_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => info!("SIGTERM received"),
            _ = int.recv() => info!("SIGINT received"),
        }
    })
}

/// Resolves when the exit policy says the agent should stop by itself.
async fn exit_when(policy: ExitPolicy) {
    match policy {
        ExitPolicy::Never => std::future::pending().await,
        ExitPolicy::AppsExited => crate::exit::apps_exited(crate::exit::proc_root()).await,
    }
}

/// Reads the config from `--config FILE` or the environment and applies flag overrides.
pub fn load_config(cli: &Cli) -> anyhow::Result<AgentConfig> {
    let mut cfg = match &cli.config {
        Some(path) => parse_config_file(path)?,
        None => {
            let json = std::env::var(CONFIG_ENV).with_context(|| {
                format!(
                    "no config: set {CONFIG_ENV} to the agent config JSON or pass --config FILE"
                )
            })?;
            AgentConfig::from_json(&json)
                .with_context(|| format!("invalid config in {CONFIG_ENV}"))?
        }
    };
    if let Some(d) = &cli.secrets_dir {
        cfg.paths.secrets_dir = d.clone();
    }
    if let Some(d) = &cli.state_dir {
        cfg.paths.state_dir = d.clone();
    }
    if let Some(f) = cli.log_format {
        cfg.log.format = f;
    }
    if let Some(l) = &cli.log_level {
        cfg.log.level = l.clone();
    }
    Ok(cfg)
}

/// Parses a config file: JSON when it starts with `{`, YAML otherwise.
pub fn parse_config_file(path: &Path) -> anyhow::Result<AgentConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    parse_config_text(&text).with_context(|| format!("invalid config file {}", path.display()))
}

/// Parses and validates config text: JSON when it starts with `{`, YAML otherwise.
pub fn parse_config_text(text: &str) -> anyhow::Result<AgentConfig> {
    if text.trim_start().starts_with('{') {
        return Ok(AgentConfig::from_json(text)?);
    }
    let cfg: AgentConfig = serde_saphyr::from_str(text)?;
    cfg.validate()?;
    Ok(cfg)
}

/// Makes the process non-dumpable (`PR_SET_DUMPABLE` 0). A process of the same user, such
/// as the app in a Pod with a shared process namespace, then cannot read the agent's memory,
/// environment or mounts (`/proc/<pid>/mem`, `environ`, `root/...`): those need ptrace
/// access, which the kernel refuses for a non-dumpable process. Children (exec
/// notifications) are dumpable again after their `execve`.
pub fn make_non_dumpable() -> nix::Result<()> {
    nix::sys::prctl::set_dumpable(false)
}

/// The log filter of the config; a filter that does not parse is a config error.
fn log_filter(cfg: &AgentConfig) -> anyhow::Result<tracing_subscriber::EnvFilter> {
    tracing_subscriber::EnvFilter::try_new(&cfg.log.level)
        .with_context(|| format!("invalid config: log level filter {:?}", cfg.log.level))
}

fn init_logging(cfg: &AgentConfig, filter: tracing_subscriber::EnvFilter) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    match cfg.log.format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.with_ansi(false).init(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_and_json_files_give_the_same_config() {
        let dir = tempfile::tempdir().expect("tempdir");
        let yaml = dir.path().join("c.yaml");
        std::fs::write(
            &yaml,
            "version: 1\nvault:\n  address: http://127.0.0.1:8200\nauth:\n  method: token\n  tokenFile: /t\nsecrets:\n  - name: db\n    path: secret/data/db\n    file: db.env\nrefreshInterval: 2s\n",
        )
        .expect("write");
        let from_yaml = parse_config_file(&yaml).expect("yaml");
        let json = dir.path().join("c.json");
        std::fs::write(&json, from_yaml.to_json()).expect("write");
        assert_eq!(parse_config_file(&json).expect("json"), from_yaml);
        assert_eq!(
            from_yaml.refresh_interval,
            std::time::Duration::from_secs(2)
        );
    }

    #[test]
    fn flags_override_paths() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.yaml");
        std::fs::write(
            &path,
            "version: 1\nvault: {address: 'http://127.0.0.1:8200'}\nauth: {method: token, tokenFile: /t}\nsecrets: [{name: db, path: secret/data/db, file: db}]\n",
        )
        .expect("write");
        let cli = Cli::parse_from([
            "vaultlet-agent",
            "--config",
            path.to_str().expect("utf8"),
            "--secrets-dir",
            "/tmp/s",
            "run",
            "--state-dir",
            "/tmp/st",
        ]);
        let cfg = load_config(&cli).expect("config");
        assert_eq!(cfg.paths.secrets_dir, PathBuf::from("/tmp/s"));
        assert_eq!(cfg.paths.state_dir, PathBuf::from("/tmp/st"));
    }

    #[test]
    fn probe_waits_for_a_duration_or_answers_at_once() {
        let cli = Cli::parse_from(["vaultlet-agent", "probe", "--wait", "2m"]);
        assert_eq!(
            cli.role,
            Role::Probe {
                wait: Some(std::time::Duration::from_secs(120))
            }
        );
        let cli = Cli::parse_from(["vaultlet-agent", "probe"]);
        assert_eq!(cli.role, Role::Probe { wait: None });
        assert!(Cli::try_parse_from(["vaultlet-agent", "probe", "--wait", "soon"]).is_err());
    }

    #[test]
    fn the_process_is_not_dumpable() {
        make_non_dumpable().expect("prctl");
        assert!(!nix::sys::prctl::get_dumpable().expect("prctl"));
    }

    #[test]
    fn a_bad_log_filter_is_a_config_error() {
        let mut cfg: AgentConfig = serde_saphyr::from_str(
            "version: 1\nvault: {address: 'http://127.0.0.1:8200'}\nauth: {method: token, tokenFile: /t}\nsecrets: [{name: db, path: secret/data/db, file: db}]\n",
        )
        .expect("config");
        cfg.log.level = "vaultlet_agent=loud".into();
        let err = format!("{:#}", log_filter(&cfg).unwrap_err());
        assert!(
            err.starts_with("invalid config: log level filter \"vaultlet_agent=loud\": "),
            "{err}"
        );
        cfg.log.level = "info,vaultlet_agent=debug".into();
        assert!(log_filter(&cfg).is_ok());
    }

    #[test]
    fn invalid_file_names_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, "version: 2\n").expect("write");
        let err = format!("{:#}", parse_config_file(&path).unwrap_err());
        assert!(err.contains("c.yaml"), "{err}");
    }
}
