//! Runs a mutated Pod on this machine like a kubelet: volumes become directories under a work
//! dir, the agent container runs the real `vaultlet-agent` with its config's paths mapped to
//! those directories, app containers run a stand-in shell script under the app's process name.
//!
//! Order is the kubelet's: init containers one by one (a failure fails the Pod), a native
//! sidecar (`restartPolicy: Always`) is started and its postStart hook (or startupProbe) awaited before the next
//! container, then all regular containers start. With `shareProcessNamespace: true` every
//! process of the Pod lives in one PID namespace, so the agent's `/proc` is the Pod's. As
//! root, containers run as their `securityContext` users with volumes owned like a kubelet's.

mod process;
mod spec;
mod volumes;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::Value;
use vaultlet_agent::config::CONFIG_ENV;

pub use process::{Exit, Isolation};
pub use spec::{
    ContainerSpec, Identity, MountMap, Probe, Role, containers, pod_name, pod_namespace,
    rewrite_agent_config, service_account, volume_env_name,
};

use process::{Proc, Sandbox, Spawn};

/// Errors of the harness; each says which container or volume and what to do.
#[derive(Debug, thiserror::Error)]
pub enum PodError {
    /// The Pod spec has something the harness cannot run.
    #[error("pod spec: {0}")]
    Spec(String),
    /// A volume could not be materialised.
    #[error("volume {volume}: {reason}")]
    Volume {
        /// Volume name.
        volume: String,
        /// What is missing.
        reason: String,
    },
    /// A path in a container is under none of its volumeMounts.
    #[error(
        "container {container}: path {path} is not under any of its volumeMounts (a wrong mountPath in the injected Pod?)"
    )]
    Unmapped {
        /// Container name.
        container: String,
        /// The path as the container sees it.
        path: String,
    },
    /// The agent container's config could not be read.
    #[error("container {container}: {CONFIG_ENV} is not a valid agent config: {reason}")]
    AgentConfig {
        /// Container name.
        container: String,
        /// Parser message.
        reason: String,
    },
    /// A process could not be started.
    #[error("container {container}: cannot start {program}: {source}")]
    Spawn {
        /// Container name.
        container: String,
        /// Program.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// An init container failed, so the Pod failed.
    #[error("init container {container} failed ({status}); its output:\n{output}")]
    InitFailed {
        /// Container name.
        container: String,
        /// Exit status.
        status: String,
        /// Its stdout and stderr.
        output: String,
    },
    /// A native sidecar never passed its startupProbe.
    #[error(
        "native sidecar {container}: startupProbe did not pass within {timeout:?}; its output:\n{output}"
    )]
    StartupProbe {
        /// Container name.
        container: String,
        /// failureThreshold x periodSeconds.
        timeout: Duration,
        /// The sidecar's output.
        output: String,
    },
    /// A container's postStart hook failed (the kubelet then kills the container).
    #[error("container {container}: postStart hook {status}; its output:\n{output}")]
    PostStart {
        /// Container name.
        container: String,
        /// How it ended (exit status, or not within the init timeout).
        status: String,
        /// The hook's output.
        output: String,
    },
    /// A native sidecar exited before its startupProbe passed.
    #[error(
        "native sidecar {container} exited ({status}) before its startupProbe passed; its output:\n{output}"
    )]
    SidecarExited {
        /// Container name.
        container: String,
        /// Exit status.
        status: String,
        /// The sidecar's output.
        output: String,
    },
    /// A wait ran past its deadline.
    #[error("timed out after {timeout:?} waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// The deadline.
        timeout: Duration,
    },
    /// The cancel flag was raised (Ctrl-C in the demo).
    #[error("interrupted")]
    Interrupted,
    /// No such container in the Pod.
    #[error("the Pod has no container named {0}")]
    NoContainer(String),
    /// Reading or writing under the work dir failed.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PodError + '_ {
    move |source| PodError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// A request for a projected service-account token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    /// Pod namespace.
    pub namespace: String,
    /// Service account name.
    pub service_account: String,
    /// Token audience.
    pub audience: String,
    /// Lifetime in seconds.
    pub expiration_secs: u64,
}

/// What an app container runs instead of its image.
#[derive(Debug, Clone)]
pub struct StandIn {
    /// argv\[0\] of the process (what `signal:SIGHUP:<name>` looks for).
    pub process_name: String,
    /// A bash script. `{{path:/container/path}}` expands to the host path the container sees
    /// there; env has `SECRETS_DIR`, `VOLUME_<NAME>` per mount and `PORT_<n>` per mapped port.
    pub script: String,
}

pub(crate) type TokenMinter<'a> = Box<dyn Fn(&TokenRequest) -> String + 'a>;
pub(crate) type SecretData = BTreeMap<String, BTreeMap<String, String>>;

/// Everything the test provides to run a Pod; [`start`](Self::start) runs it.
pub struct PodSetup<'a> {
    pod: Value,
    work_dir: PathBuf,
    secrets: SecretData,
    config_maps: SecretData,
    minter: Option<TokenMinter<'a>>,
    vault_addr: Option<String>,
    ports: BTreeMap<u16, u16>,
    apps: BTreeMap<String, StandIn>,
    agent_bin: Option<PathBuf>,
    isolation: Option<Isolation>,
    users: Option<bool>,
    init_timeout: Duration,
    cancel: Option<Arc<AtomicBool>>,
}

impl std::fmt::Debug for PodSetup<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secret data is left out on purpose.
        f.debug_struct("PodSetup")
            .field("pod", &pod_name(&self.pod))
            .field("work_dir", &self.work_dir)
            .field("apps", &self.apps.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl<'a> PodSetup<'a> {
    /// A Pod (already mutated) to run with `work_dir` as its node.
    pub fn new(pod: Value, work_dir: impl Into<PathBuf>) -> PodSetup<'a> {
        PodSetup {
            pod,
            work_dir: work_dir.into(),
            secrets: BTreeMap::new(),
            config_maps: BTreeMap::new(),
            minter: None,
            vault_addr: None,
            ports: BTreeMap::new(),
            apps: BTreeMap::new(),
            agent_bin: None,
            isolation: None,
            users: None,
            init_timeout: Duration::from_secs(60),
            cancel: None,
        }
    }

    /// A Kubernetes Secret the Pod may mount or refer to.
    pub fn secret<K: Into<String>, V: Into<String>>(
        mut self,
        name: &str,
        data: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.secrets.insert(name.into(), owned(data));
        self
    }

    /// A ConfigMap the Pod may mount.
    pub fn config_map<K: Into<String>, V: Into<String>>(
        mut self,
        name: &str,
        data: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.config_maps.insert(name.into(), owned(data));
        self
    }

    /// Mints projected service-account tokens (e.g. the testkit's TokenReview stand-in).
    pub fn token_minter(mut self, minter: impl Fn(&TokenRequest) -> String + 'a) -> Self {
        self.minter = Some(Box::new(minter));
        self
    }

    /// Points every agent at this Vault address instead of the injected one.
    pub fn vault_addr(mut self, addr: impl Into<String>) -> Self {
        self.vault_addr = Some(addr.into());
        self
    }

    /// Gives the Pod's loopback port `pod_port` the host port `host_port`: the agent's
    /// `http://127.0.0.1:<pod_port>` notifications go there, and apps get `PORT_<pod_port>`.
    pub fn port(mut self, pod_port: u16, host_port: u16) -> Self {
        self.ports.insert(pod_port, host_port);
        self
    }

    /// The stand-in for app container `container`.
    pub fn app(mut self, container: &str, process_name: &str, script: &str) -> Self {
        self.apps.insert(
            container.into(),
            StandIn {
                process_name: process_name.into(),
                script: script.into(),
            },
        );
        self
    }

    /// The agent binary (default: [`crate::bins::agent_bin`]).
    pub fn agent_bin(mut self, bin: impl Into<PathBuf>) -> Self {
        self.agent_bin = Some(bin.into());
        self
    }

    /// Whether containers run as their `securityContext` user and group (default: when this
    /// process is root, which it must be to switch users).
    pub fn run_as_users(mut self, on: bool) -> Self {
        self.users = Some(on);
        self
    }

    /// Forces an isolation mode (default: [`Isolation::detect`]).
    pub fn isolation(mut self, isolation: Isolation) -> Self {
        self.isolation = Some(isolation);
        self
    }

    /// How long an init container (or a startupProbe) may take at most (default 60 s).
    pub fn init_timeout(mut self, timeout: Duration) -> Self {
        self.init_timeout = timeout;
        self
    }

    /// Every wait returns [`PodError::Interrupted`] once this flag is set.
    pub fn cancel_flag(mut self, flag: Arc<AtomicBool>) -> Self {
        self.cancel = Some(flag);
        self
    }

    /// Materialises the volumes and runs the Pod up to "all containers started".
    ///
    /// On error every process started so far is killed.
    pub fn start(self) -> Result<PodRun, PodError> {
        let agent_bin = match &self.agent_bin {
            Some(b) => b.clone(),
            None => crate::bins::agent_bin().map_err(|e| PodError::Spec(e.to_string()))?,
        };
        let isolation = self.isolation.unwrap_or_else(Isolation::detect);
        for dir in ["volumes", "logs"] {
            let d = self.work_dir.join(dir);
            std::fs::create_dir_all(&d).map_err(io_err(&d))?;
        }
        let sources = volumes::Sources {
            pod: &self.pod,
            secrets: &self.secrets,
            config_maps: &self.config_maps,
            minter: self.minter.as_ref(),
        };
        let volumes = volumes::materialise(&sources, &self.work_dir.join("volumes"))?;
        let users = self
            .users
            .unwrap_or_else(|| nix::unistd::Uid::effective().is_root());
        let specs = containers(&self.pod)?;
        let mut maps = BTreeMap::new();
        for c in &specs {
            maps.insert(c.name.clone(), MountMap::new(c, &volumes)?);
        }
        if users {
            volumes::apply_ownership(&self.pod, &specs, &volumes, &self.work_dir)?;
        }
        let shared = self.pod["spec"]["shareProcessNamespace"] == true;
        let pod_sandbox = if isolation == Isolation::Namespaces && shared {
            Some(Sandbox::start(&self.work_dir)?)
        } else {
            None
        };
        let mut run = PodRun {
            procs: BTreeMap::new(),
            probes: Vec::new(),
            sandboxes: BTreeMap::new(),
            pod_sandbox,
            specs,
            maps,
            volumes,
            isolation,
            shared,
            agent_bin,
            users,
            pod: self.pod,
            work_dir: self.work_dir,
            secrets: self.secrets,
            vault_addr: self.vault_addr,
            ports: self.ports,
            apps: self.apps,
            init_timeout: self.init_timeout,
            cancel: self.cancel,
        };
        run.kubelet_start()?;
        Ok(run)
    }
}

/// A running Pod. Dropping it kills every process it started.
pub struct PodRun {
    // Processes first: dropped (killed) before their namespaces.
    procs: BTreeMap<String, Proc>,
    probes: Vec<Proc>,
    sandboxes: BTreeMap<String, Sandbox>,
    pod_sandbox: Option<Sandbox>,
    specs: Vec<ContainerSpec>,
    maps: BTreeMap<String, MountMap>,
    volumes: BTreeMap<String, PathBuf>,
    isolation: Isolation,
    shared: bool,
    agent_bin: PathBuf,
    users: bool,
    pod: Value,
    work_dir: PathBuf,
    secrets: SecretData,
    vault_addr: Option<String>,
    ports: BTreeMap<u16, u16>,
    apps: BTreeMap<String, StandIn>,
    init_timeout: Duration,
    cancel: Option<Arc<AtomicBool>>,
}

impl std::fmt::Debug for PodRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodRun")
            .field("pod", &pod_name(&self.pod))
            .field("isolation", &self.isolation)
            .field("shared_pid_namespace", &self.shared)
            .field("started", &self.procs.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// How often waits re-check their condition.
const POLL: Duration = Duration::from_millis(10);

/// How often a startupProbe runs (faster than any real periodSeconds, like a busy kubelet).
const PROBE_EVERY: Duration = Duration::from_millis(100);

impl PodRun {
    // ---- kubelet ----

    fn kubelet_start(&mut self) -> Result<(), PodError> {
        for c in self.specs.clone() {
            match c.role {
                Role::Init => {
                    self.spawn(&c)?;
                    let exit = self.wait_exit(&c.name, self.init_timeout)?;
                    if !exit.status.success() {
                        return Err(PodError::InitFailed {
                            status: exit.status.to_string(),
                            output: self.output(&c.name),
                            container: c.name,
                        });
                    }
                }
                Role::NativeSidecar => {
                    self.spawn(&c)?;
                    self.await_startup(&c)?;
                }
                Role::Regular => self.spawn(&c)?,
            }
        }
        Ok(())
    }

    fn spawn(&mut self, c: &ContainerSpec) -> Result<(), PodError> {
        let argv = self.as_user(c, self.argv(c)?);
        let env = self.env(c)?;
        let log = self.work_dir.join("logs").join(format!("{}.log", c.name));
        self.ensure_sandbox(&c.name)?;
        let spawn = Spawn {
            container: &c.name,
            argv,
            env,
            cwd: &self.work_dir,
            log,
        };
        let proc = Proc::start(spawn, self.sandbox(&c.name))?;
        self.procs.insert(c.name.clone(), proc);
        Ok(())
    }

    /// Creates the container's own PID namespace when it needs one.
    fn ensure_sandbox(&mut self, container: &str) -> Result<(), PodError> {
        if self.isolation == Isolation::Namespaces
            && !self.shared
            && !self.sandboxes.contains_key(container)
        {
            let sandbox = Sandbox::start(&self.work_dir)?;
            self.sandboxes.insert(container.to_string(), sandbox);
        }
        Ok(())
    }

    /// The PID namespace a container runs in: the Pod's, its own, or none (host).
    fn sandbox(&self, container: &str) -> Option<&Sandbox> {
        match (self.isolation, self.shared) {
            (Isolation::Host, _) => None,
            (_, true) => self.pod_sandbox.as_ref(),
            (_, false) => self.sandboxes.get(container),
        }
    }

    /// Prefixes `setpriv` so that `argv` runs as the container's user, groups included.
    fn as_user(&self, c: &ContainerSpec, argv: Vec<OsString>) -> Vec<OsString> {
        let Some(id) = c.identity.as_ref().filter(|_| self.users) else {
            return argv;
        };
        let mut out: Vec<OsString> = vec![
            "setpriv".into(),
            format!("--reuid={}", id.uid).into(),
            format!("--regid={}", id.gid).into(),
        ];
        if id.groups.is_empty() {
            out.push("--clear-groups".into());
        } else {
            let groups: Vec<String> = id.groups.iter().map(u32::to_string).collect();
            out.push(format!("--groups={}", groups.join(",")).into());
        }
        out.push("--".into());
        out.extend(argv);
        out
    }

    fn argv(&self, c: &ContainerSpec) -> Result<Vec<OsString>, PodError> {
        if c.is_agent() {
            if c.argv.is_empty() {
                return Err(PodError::Spec(format!(
                    "agent container {} has no command",
                    c.name
                )));
            }
            let mut argv = vec![self.agent_bin.clone().into_os_string()];
            argv.extend(c.argv[1..].iter().map(OsString::from));
            return Ok(argv);
        }
        let stand_in = self.apps.get(&c.name).ok_or_else(|| {
            PodError::Spec(format!(
                "no stand-in for app container {}; give one with PodSetup::app",
                c.name
            ))
        })?;
        let script = self.expand_paths(&c.name, &stand_in.script);
        // `exec -a` gives the script's process the app's name as argv[0].
        Ok([
            "bash",
            "-c",
            r#"exec -a "$0" bash -c "$1""#,
            &stand_in.process_name,
            &script,
        ]
        .map(OsString::from)
        .to_vec())
    }

    /// Replaces `{{path:/container/path}}` in a stand-in script by the host path.
    fn expand_paths(&self, container: &str, script: &str) -> String {
        let mut out = String::new();
        let mut rest = script;
        while let Some(start) = rest.find("{{path:") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 7..];
            let Some(end) = after.find("}}") else {
                out.push_str(&rest[start..]);
                return out;
            };
            out.push_str(
                &self
                    .app_path(container, Path::new(&after[..end]))
                    .display()
                    .to_string(),
            );
            rest = &after[end + 2..];
        }
        out.push_str(rest);
        out
    }

    fn env(&self, c: &ContainerSpec) -> Result<Vec<(String, String)>, PodError> {
        let mut env = vec![(
            "PATH".to_string(),
            std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()),
        )];
        env.extend(spec::resolve_env(
            &c.name,
            &self.pod,
            &c.env,
            &self.secrets,
        )?);
        let map = &self.maps[&c.name];
        if c.is_agent() {
            for (name, value) in &mut env {
                if name == CONFIG_ENV {
                    *value = rewrite_agent_config(
                        &c.name,
                        value,
                        map,
                        self.vault_addr.as_deref(),
                        &self.ports,
                    )?;
                }
            }
        } else {
            for (_, volume, _) in &c.mounts {
                let dir = self.volumes.get(volume).cloned().unwrap_or_default();
                env.push((volume_env_name(volume), dir.display().to_string()));
            }
            let secrets_dir = self.app_path(
                &c.name,
                Path::new(vaultlet_agent::config::DEFAULT_SECRETS_DIR),
            );
            env.push(("SECRETS_DIR".into(), secrets_dir.display().to_string()));
            for (pod_port, host_port) in &self.ports {
                env.push((format!("PORT_{pod_port}"), host_port.to_string()));
            }
        }
        Ok(env)
    }

    /// A container path on the host: through its mounts, else inside the container's own
    /// root filesystem (`<work>/rootfs/<container>`), where nothing the agent writes lands.
    fn app_path(&self, container: &str, path: &Path) -> PathBuf {
        self.maps
            .get(container)
            .and_then(|m| m.map(path).ok())
            .unwrap_or_else(|| {
                let rel = path.strip_prefix("/").unwrap_or(path);
                self.work_dir.join("rootfs").join(container).join(rel)
            })
    }

    /// As the kubelet does: the next container starts once the postStart hook has returned
    /// and the startupProbe (if any) has passed.
    fn await_startup(&mut self, c: &ContainerSpec) -> Result<(), PodError> {
        if let Some(hook) = c.post_start.clone() {
            self.run_post_start(c, hook)?;
        }
        let Some(probe) = c.startup_probe.clone() else {
            return Ok(());
        };
        let budget = Duration::from_secs(
            probe.initial_delay_secs + probe.period_secs * probe.failure_threshold,
        );
        let deadline = Instant::now() + budget;
        let mut argv: Vec<OsString> = probe.command.iter().map(OsString::from).collect();
        if c.is_agent() && !argv.is_empty() {
            argv[0] = self.agent_bin.clone().into_os_string();
        }
        let argv = self.as_user(c, argv);
        let env = self.env(c)?;
        let log = self
            .work_dir
            .join("logs")
            .join(format!("{}.probe.log", c.name));
        loop {
            self.check_cancel()?;
            if let Some(exit) = self.exit(&c.name) {
                return Err(PodError::SidecarExited {
                    container: c.name.clone(),
                    status: exit.status.to_string(),
                    output: self.output(&c.name),
                });
            }
            if Instant::now() > deadline {
                return Err(PodError::StartupProbe {
                    container: c.name.clone(),
                    timeout: budget,
                    output: self.output(&c.name),
                });
            }
            let spawn = Spawn {
                container: &c.name,
                argv: argv.clone(),
                env: env.clone(),
                cwd: &self.work_dir,
                log: log.clone(),
            };
            let proc = Proc::start(spawn, self.sandbox(&c.name))?;
            let passed = self.poll(Duration::from_secs(1), "startupProbe", || proc.exit());
            if let Ok(exit) = passed
                && exit.status.success()
            {
                return Ok(());
            }
            self.probes.push(proc);
            std::thread::sleep(PROBE_EVERY);
        }
    }

    fn run_post_start(&mut self, c: &ContainerSpec, hook: Vec<String>) -> Result<(), PodError> {
        let mut argv: Vec<OsString> = hook.iter().map(OsString::from).collect();
        if c.is_agent() && !argv.is_empty() {
            argv[0] = self.agent_bin.clone().into_os_string();
        }
        let log = self
            .work_dir
            .join("logs")
            .join(format!("{}.poststart.log", c.name));
        let spawn = Spawn {
            container: &c.name,
            argv: self.as_user(c, argv),
            env: self.env(c)?,
            cwd: &self.work_dir,
            log: log.clone(),
        };
        let proc = Proc::start(spawn, self.sandbox(&c.name))?;
        let ended = self.poll(self.init_timeout, "postStart hook", || proc.exit());
        let status = match ended {
            Ok(exit) if exit.status.success() => return Ok(()),
            Ok(exit) => format!("exited ({})", exit.status),
            Err(_) => format!("did not return within {:?}", self.init_timeout),
        };
        self.probes.push(proc);
        Err(PodError::PostStart {
            container: c.name.clone(),
            status,
            output: std::fs::read_to_string(&log).unwrap_or_default(),
        })
    }

    // ---- waiting ----

    fn check_cancel(&self) -> Result<(), PodError> {
        match &self.cancel {
            Some(flag) if flag.load(Ordering::SeqCst) => Err(PodError::Interrupted),
            _ => Ok(()),
        }
    }

    /// Polls `f` until it returns `Some`, for at most `timeout`.
    pub fn poll<T>(
        &self,
        timeout: Duration,
        what: &str,
        mut f: impl FnMut() -> Option<T>,
    ) -> Result<T, PodError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = f() {
                return Ok(v);
            }
            self.check_cancel()?;
            if Instant::now() >= deadline {
                return Err(PodError::Timeout {
                    what: what.into(),
                    timeout,
                });
            }
            std::thread::sleep(POLL);
        }
    }

    fn proc(&self, container: &str) -> Result<&Proc, PodError> {
        self.procs
            .get(container)
            .ok_or_else(|| PodError::NoContainer(container.into()))
    }

    // ---- what the test looks at ----

    /// The host path of `path` as `container` sees it.
    pub fn host_path(&self, container: &str, path: &str) -> Result<PathBuf, PodError> {
        if !self.maps.contains_key(container) {
            return Err(PodError::NoContainer(container.into()));
        }
        Ok(self.app_path(container, Path::new(path)))
    }

    /// Reads `path` as `container` sees it.
    pub fn read_file(&self, container: &str, path: &str) -> Result<String, PodError> {
        let host = self.host_path(container, path)?;
        std::fs::read_to_string(&host).map_err(io_err(&host))
    }

    /// Waits until `path` (as `container` sees it) exists and `accept`s its content.
    pub fn wait_for_file(
        &self,
        container: &str,
        path: &str,
        timeout: Duration,
        accept: impl Fn(&str) -> bool,
    ) -> Result<String, PodError> {
        let host = self.host_path(container, path)?;
        let what = format!("{path} in container {container} ({})", host.display());
        self.poll(timeout, &what, || {
            std::fs::read_to_string(&host).ok().filter(|s| accept(s))
        })
    }

    /// Waits until `container` has printed `needle`; returns its whole output.
    pub fn wait_for_output(
        &self,
        container: &str,
        needle: &str,
        timeout: Duration,
    ) -> Result<String, PodError> {
        let proc = self.proc(container)?;
        let what = format!("{needle:?} in the output of container {container}");
        self.poll(timeout, &what, || {
            let out = proc.output();
            out.contains(needle).then_some(out)
        })
    }

    /// What `container` printed (stdout and stderr), empty if it never started.
    pub fn output(&self, container: &str) -> String {
        self.procs
            .get(container)
            .map(Proc::output)
            .unwrap_or_default()
    }

    /// The log file of `container`.
    pub fn log_path(&self, container: &str) -> PathBuf {
        self.work_dir.join("logs").join(format!("{container}.log"))
    }

    /// How `container` ended, if it has.
    pub fn exit(&self, container: &str) -> Option<Exit> {
        self.procs.get(container).and_then(Proc::exit)
    }

    /// How long after `first` exited `then` exited (zero if `then` exited first).
    pub fn exit_gap(&self, first: &str, then: &str) -> Option<Duration> {
        let (a, b) = (self.exit(first)?, self.exit(then)?);
        Some(b.at.saturating_duration_since(a.at))
    }

    /// When `container` was started.
    pub fn started_at(&self, container: &str) -> Option<Instant> {
        self.procs.get(container).map(|p| p.started)
    }

    /// Waits for `container` to exit.
    pub fn wait_exit(&self, container: &str, timeout: Duration) -> Result<Exit, PodError> {
        let proc = self.proc(container)?;
        self.poll(timeout, &format!("container {container} to exit"), || {
            proc.exit()
        })
    }

    /// The containers in kubelet order with their roles.
    pub fn containers(&self) -> &[ContainerSpec] {
        &self.specs
    }

    /// The host directory of a Pod volume.
    pub fn volume_dir(&self, volume: &str) -> Option<&Path> {
        self.volumes.get(volume).map(PathBuf::as_path)
    }

    /// How processes are isolated in this run.
    pub fn isolation(&self) -> Isolation {
        self.isolation
    }

    /// True when containers run as their `securityContext` users.
    pub fn runs_as_users(&self) -> bool {
        self.users
    }

    /// True when the Pod's processes share one PID namespace.
    pub fn shares_process_namespace(&self) -> bool {
        self.shared
    }

    /// The mutated Pod being run.
    pub fn pod(&self) -> &Value {
        &self.pod
    }

    // ---- stopping ----

    fn names_with(&self, role: Role) -> Vec<String> {
        self.specs
            .iter()
            .filter(|c| c.role == role && self.procs.contains_key(&c.name))
            .map(|c| c.name.clone())
            .collect()
    }

    /// Like a Job's pod: waits until every regular container has exited (a classic agent
    /// sidecar must stop by itself), then stops native sidecars as the kubelet does.
    pub fn run_to_completion(&self, timeout: Duration) -> Result<(), PodError> {
        let deadline = Instant::now() + timeout;
        for name in self.names_with(Role::Regular) {
            let left = deadline.saturating_duration_since(Instant::now());
            self.wait_exit(&name, left)?;
        }
        let mut sidecars = self.names_with(Role::NativeSidecar);
        sidecars.reverse();
        self.terminate(&sidecars, Duration::from_secs(10));
        Ok(())
    }

    /// Waits until every started container has exited.
    pub fn wait_all_exited(&self, timeout: Duration) -> Result<(), PodError> {
        let deadline = Instant::now() + timeout;
        for name in self.procs.keys() {
            let left = deadline.saturating_duration_since(Instant::now());
            self.wait_exit(name, left)?;
        }
        Ok(())
    }

    /// Stops the Pod like the kubelet: SIGTERM to the regular containers, SIGKILL after
    /// `grace`; then the same for native sidecars, in reverse order.
    pub fn stop(&self, grace: Duration) {
        self.terminate(&self.names_with(Role::Regular), grace);
        let mut sidecars = self.names_with(Role::NativeSidecar);
        sidecars.reverse();
        for name in sidecars {
            self.terminate(&[name], grace);
        }
    }

    fn terminate(&self, names: &[String], grace: Duration) {
        let procs: Vec<&Proc> = names.iter().filter_map(|n| self.procs.get(n)).collect();
        for p in &procs {
            p.signal(Signal::SIGTERM);
        }
        let all_done = || procs.iter().all(|p| p.exit().is_some()).then_some(());
        if self.poll(grace, "containers to stop", all_done).is_err() {
            for p in &procs {
                p.signal(Signal::SIGKILL);
            }
            // Not `poll`: this must finish even after a cancel.
            let deadline = Instant::now() + Duration::from_secs(2);
            while all_done().is_none() && Instant::now() < deadline {
                std::thread::sleep(POLL);
            }
        }
    }
}

/// Key/value pairs as an owned map (Secret and ConfigMap data).
fn owned<K: Into<String>, V: Into<String>>(
    data: impl IntoIterator<Item = (K, V)>,
) -> BTreeMap<String, String> {
    data.into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect()
}
