//! The pure mutation: Pod + [`Settings`] -> injected Pod and JSON Patch, or a denial.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{EnvVar, Pod, PodSpec};
use vaultlet_agent::config::{
    AgentConfig, CONFIG_ENV, CONFIG_VERSION, ConfigError, DEFAULT_FILE_MODE, DEFAULT_SECRETS_DIR,
    ExitPolicy, LogConfig, Paths, SecretSpec, VaultConfig, supervise::BIN_DIR,
};

use crate::access;
use crate::annotations::{
    self, AnnotationError, AuthMethod, INJECT, InitPosition, Mode, PREFIX, PodRequest, STATUS,
    STATUS_INJECTED,
};
use crate::settings::Settings;

mod auth;
mod containers;
mod env;
mod fit;
mod patch;
mod reach;
mod resources;
mod tls;
use auth::auth_config;
use containers::{agent_container, volumes, wait_for_secrets};
use fit::{check_conflicts, mount_into_apps};
pub use patch::{Shape, patch};
use resources::check_resources;

/// Name of the long-running agent container (native or classic sidecar).
pub const AGENT_CONTAINER: &str = "vaultlet-agent";
/// Name of the run-once agent init container (classic and init-only).
pub const AGENT_INIT_CONTAINER: &str = "vaultlet-agent-init";
/// Volume holding the rendered secrets.
pub const SECRETS_VOLUME: &str = "vaultlet-secrets";
/// Volume holding the agent's state (ready marker).
pub const STATE_VOLUME: &str = "vaultlet-state";
/// Projected service-account token volume (kubernetes auth).
pub const SA_TOKEN_VOLUME: &str = "vaultlet-sa-token";
/// AppRole credentials Secret volume.
pub const APPROLE_VOLUME: &str = "vaultlet-approle";
/// Vault CA ConfigMap volume.
pub const CA_VOLUME: &str = "vaultlet-ca";
/// Volume the agent copies its binary into for the app's supervisor (`env-<name>`).
pub use vaultlet_agent::config::supervise::BIN_VOLUME;
/// Where the AppRole Secret is mounted in the agent.
pub const APPROLE_DIR: &str = "/vault/approle";
/// Where the Vault CA ConfigMap is mounted in the agent.
pub const CA_DIR: &str = "/vault/ca";
/// Path of the agent binary in its image.
pub const AGENT_BINARY: &str = "/vaultlet-agent";
/// User and group the agent runs as when the pod sets none.
pub const DEFAULT_AGENT_ID: i64 = 65532;
/// sizeLimit of the volume holding the agent binary for the supervisor.
const BIN_VOLUME_SIZE: &str = "64Mi";
/// sizeLimit of the agent's state volume.
const STATE_VOLUME_SIZE: &str = "1Mi";
/// Name of the agent's metrics port (`vaultlet.io/metrics-port`).
pub const METRICS_PORT_NAME: &str = "vaultlet-metrics";

/// Why a Pod is denied; the message says what to change.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Deny {
    /// A `vaultlet.io/*` annotation is invalid.
    #[error(transparent)]
    Annotation(#[from] AnnotationError),
    /// The Pod already uses a name or path the injector needs.
    #[error("{0}")]
    Conflict(String),
    /// The resolved agent config is incomplete (e.g. no secret declared).
    #[error("the agent configuration derived from the vaultlet.io annotations is invalid: {0}")]
    Config(#[from] ConfigError),
    /// An app container cannot be wrapped by the supervisor (`env-<name>`).
    #[error("{0}")]
    Env(String),
    /// The Pod would choose where its agent finds Vault (`hostAliases`, its own resolvers).
    #[error("{0}")]
    Reach(String),
    /// The Pod object could not be (de)serialised.
    #[error("the Pod object could not be read: {0}")]
    Object(String),
}

impl Deny {
    /// Short, fixed label for metrics (never user data).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Annotation(AnnotationError::Unknown { .. }) => "unknown_annotation",
            Self::Annotation(AnnotationError::Orphan { .. }) => "orphan_annotation",
            Self::Annotation(AnnotationError::Invalid { key, .. })
                if key.ends_with("vault-addr") =>
            {
                "vault_addr"
            }
            Self::Annotation(AnnotationError::Invalid { .. }) => "invalid_annotation",
            Self::Conflict(_) => "conflict",
            Self::Env(_) => "env",
            Self::Reach(_) => "vault_reach",
            Self::Config(_) => "config",
            Self::Object(_) => "object",
        }
    }
}

impl Deny {
    /// The message sent to the API client (and printed by `preview`).
    pub fn message(&self) -> String {
        format!("vaultlet: {}", annotations::printable(&self.to_string()))
    }
}

/// How the agent was injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InjectMode {
    /// One native sidecar (init container with `restartPolicy: Always`).
    NativeSidecar,
    /// Init agent plus a sidecar container.
    Classic,
    /// Init agent only.
    InitOnly,
}

impl InjectMode {
    /// Label value for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NativeSidecar => "native-sidecar",
            Self::Classic => "classic",
            Self::InitOnly => "init-only",
        }
    }
}

/// Why a Pod passes unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// No `vaultlet.io/inject: "true"` label.
    NotOptedIn,
    /// The `vaultlet.io/inject` annotation without the label: the webhook's objectSelector
    /// never sends such a Pod, so it is not injected here either.
    AnnotationOnly,
    /// Labelled, but the annotation `vaultlet.io/inject: "false"` opts it out.
    OptedOut,
    /// `vaultlet.io/status` is present.
    AlreadyInjected,
    /// The Pod is past `Pending`.
    NotPending,
}

impl Skip {
    /// Why the Pod was left unchanged, for a person.
    pub fn explain(self) -> &'static str {
        match self {
            Self::NotOptedIn => {
                "the Pod (or pod template) has no label vaultlet.io/inject: \"true\"; only labelled Pods are injected"
            }
            Self::AnnotationOnly => {
                "vaultlet.io/inject is an annotation, not a label; the webhook only sees Pods \
                 labelled vaultlet.io/inject: \"true\", so move it to metadata.labels"
            }
            Self::OptedOut => "the annotation vaultlet.io/inject: \"false\" opts it out",
            Self::AlreadyInjected => "it is already injected (annotation vaultlet.io/status)",
            Self::NotPending => "it is past the Pending phase (only new Pods are injected)",
        }
    }
}

/// A successful injection.
#[derive(Debug, Clone)]
pub struct Injection {
    /// The mutated Pod.
    pub pod: Pod,
    /// The agent config placed in the agent's environment.
    pub config: AgentConfig,
    /// How the agent was injected.
    pub mode: InjectMode,
    /// Advice for the user that does not block admission (sent as admission warnings).
    pub warnings: Vec<String>,
}

/// Result of [`mutate`].
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Allowed unchanged.
    Skipped(Skip),
    /// Allowed with a patch.
    Injected(Box<Injection>),
}

/// Whether the Pod is owned by a Job (classic sidecars must then exit with the app).
pub fn owned_by_job(pod: &Pod) -> bool {
    pod.metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.kind == "Job")
}

/// Mutates a Pod as the webhook does; Job ownership comes from `ownerReferences`.
pub fn mutate(pod: &Pod, settings: &Settings) -> Result<Outcome, Deny> {
    mutate_pod(pod, settings, owned_by_job(pod))
}

/// Mutates a Pod; `job` says whether its containers run to completion under a Job.
pub fn mutate_pod(pod: &Pod, settings: &Settings, job: bool) -> Result<Outcome, Deny> {
    match prepare(pod, settings, job)? {
        Err(skip) => Ok(Outcome::Skipped(skip)),
        Ok(prepared) => inject(pod.clone(), prepared, settings),
    }
}

/// Like [`mutate`], but consumes the Pod instead of copying it (the admission hot path).
pub fn mutate_owned(pod: Pod, settings: &Settings) -> Result<Outcome, Deny> {
    match prepare(&pod, settings, owned_by_job(&pod))? {
        Err(skip) => Ok(Outcome::Skipped(skip)),
        Ok(prepared) => inject(pod, prepared, settings),
    }
}

/// Everything decided before the Pod is changed.
struct Prepared {
    req: PodRequest,
    plan: Plan,
    config: AgentConfig,
}

/// Validates and decides; `Ok(Err(skip))` when the Pod passes unchanged.
fn prepare(pod: &Pod, settings: &Settings, job: bool) -> Result<Result<Prepared, Skip>, Deny> {
    let empty = BTreeMap::new();
    let annotations = pod.metadata.annotations.as_ref().unwrap_or(&empty);
    if annotations.contains_key(STATUS) {
        return Ok(Err(Skip::AlreadyInjected));
    }
    if let Some(skip) = opt_in_skip(pod) {
        return Ok(Err(skip));
    }
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if phase.is_some_and(|p| p != "Pending") {
        return Ok(Err(Skip::NotPending));
    }
    let req = annotations::parse(annotations)?;
    crate::advice::refuse_exec(&req, settings)?;
    let spec = pod
        .spec
        .as_ref()
        .ok_or_else(|| Deny::Object("the Pod has no spec".into()))?;
    let plan = Plan::new(&req, settings, spec, job)?;
    check_resources(&req, settings)?;
    let config = agent_config(&req, settings, &plan)?;
    reach::check(&req, settings, &pod.metadata, spec, &config.vault.address)?;
    Ok(Ok(Prepared { req, plan, config }))
}

fn inject(mut pod: Pod, p: Prepared, settings: &Settings) -> Result<Outcome, Deny> {
    let mut warnings = pod
        .spec
        .as_ref()
        .map(|spec| {
            let agent = access::AgentIds {
                uid: p.plan.uid,
                gid: p.plan.gid,
                platform: !p.plan.set_ids,
            };
            let mut w = access::signal_warnings(spec, &p.req, agent);
            w.extend(access::file_warnings(spec, &p.req, agent, &p.config));
            w
        })
        .unwrap_or_default();
    warnings.extend(crate::advice::warnings(&p.config, p.plan.mode));
    for w in &mut warnings {
        if let std::borrow::Cow::Owned(safe) = annotations::printable(w) {
            *w = safe;
        }
    }
    apply(&mut pod, &p.plan, &p.config, settings, &p.req)?;
    Ok(Outcome::Injected(Box::new(Injection {
        pod,
        config: p.config,
        mode: p.plan.mode,
        warnings,
    })))
}

fn label_opt_in(pod: &Pod) -> bool {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(INJECT))
        .is_some_and(|v| v == "true")
}

/// The label is the only opt-in (it is all the webhook's objectSelector sees); the
/// annotation can only opt out. A malformed annotation value is left to the parser to deny.
fn opt_in_skip(pod: &Pod) -> Option<Skip> {
    let annotation = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(INJECT))
        .map(|v| v.trim());
    match (label_opt_in(pod), annotation) {
        (true, Some("false")) => Some(Skip::OptedOut),
        (true, _) => None,
        (false, Some(v)) if v != "false" => Some(Skip::AnnotationOnly),
        (false, _) => Some(Skip::NotOptedIn),
    }
}

/// Decisions that depend on the Pod and the settings, taken once.
struct Plan {
    mode: InjectMode,
    auth: AuthMethod,
    secrets_dir: String,
    position: InitPosition,
    /// The agent's user and group as far as the Pod spec decides them (`None`: assigned by
    /// the platform or the image).
    uid: Option<i64>,
    gid: Option<i64>,
    /// Whether the agent containers get an explicit runAsUser/runAsGroup.
    set_ids: bool,
    fs_group: Option<i64>,
    job: bool,
    share_process_namespace: bool,
    /// Some secret goes into app environments: the agent copies itself for the supervisor.
    env: bool,
}

impl Plan {
    fn new(req: &PodRequest, s: &Settings, spec: &PodSpec, job: bool) -> Result<Self, Deny> {
        let mode = match (req.mode.unwrap_or(s.agent.mode), req.native_sidecar) {
            (Mode::InitOnly, _) => InjectMode::InitOnly,
            (Mode::Sidecar, Some(true)) => InjectMode::NativeSidecar,
            (Mode::Sidecar, Some(false)) => InjectMode::Classic,
            (Mode::Sidecar, None) if s.agent.native_sidecars => InjectMode::NativeSidecar,
            (Mode::Sidecar, None) => InjectMode::Classic,
        };
        if let (InjectMode::InitOnly, Some(port)) = (mode, req.metrics_port) {
            return Err(Deny::Annotation(AnnotationError::Invalid {
                key: format!("{PREFIX}metrics-port"),
                value: format!("\"{port}\""),
                reason: "an init-only agent exits after rendering and serves no metrics; \
                         remove it or use mode sidecar"
                    .into(),
            }));
        }
        let psc = spec.security_context.as_ref();
        let pod_uid = psc.and_then(|c| c.run_as_user).filter(|u| *u != 0);
        let pod_gid = psc.and_then(|c| c.run_as_group);
        let set_ids = req.set_run_as_ids.unwrap_or(s.agent.set_run_as_ids);
        // Unset, the agent inherits the Pod's ids or gets the platform's (OpenShift).
        let (uid, gid) = if set_ids {
            (
                Some(pod_uid.unwrap_or(DEFAULT_AGENT_ID)),
                Some(pod_gid.unwrap_or(DEFAULT_AGENT_ID)),
            )
        } else {
            (pod_uid, pod_gid)
        };
        let fs_group = psc.and_then(|c| c.fs_group);
        let classic_job = job && mode == InjectMode::Classic;
        Ok(Self {
            mode,
            auth: req.auth.unwrap_or(s.vault.auth_method),
            secrets_dir: req
                .secrets_dir
                .clone()
                .unwrap_or_else(|| DEFAULT_SECRETS_DIR.to_owned()),
            position: req.init_position.unwrap_or(s.agent.init_position),
            uid,
            gid,
            set_ids,
            fs_group,
            job,
            share_process_namespace: req.signals() || classic_job,
            env: req.env(),
        })
    }
}

fn invalid(short: &str, value: &str, reason: impl Into<String>) -> AnnotationError {
    AnnotationError::Invalid {
        key: format!("{PREFIX}{short}"),
        value: format!("{value:?}"),
        reason: reason.into(),
    }
}

fn missing(short: &str, reason: &str) -> Deny {
    Deny::Annotation(invalid(short, "", reason))
}

fn agent_config(req: &PodRequest, s: &Settings, plan: &Plan) -> Result<AgentConfig, Deny> {
    let address = match &req.vault_addr {
        Some(addr) if !s.vault_addr_allowed(addr) => {
            return Err(invalid(
                "vault-addr",
                addr,
                "this address is not in the injector's allowlist (--allowed-vault-addrs); \
                 ask the platform team to add it or remove the annotation",
            )
            .into());
        }
        Some(addr) => addr.clone(),
        None => s.vault.vault_addr.clone(),
    };
    tls::check_scheme(req, &address)?;
    let group = req
        .group
        .or_else(|| plan.fs_group.and_then(|g| u32::try_from(g).ok()));
    let secrets = req
        .secrets
        .iter()
        .map(|(name, r)| SecretSpec {
            name: name.clone(),
            path: r.path.clone(),
            params: r.params.clone(),
            version: r.version,
            template: r.template.clone(),
            language: req.template_language,
            format: r.format.unwrap_or_default(),
            file: r.file.clone().unwrap_or_else(|| name.clone()),
            mode: r.mode.unwrap_or(DEFAULT_FILE_MODE),
            group,
            notify: r.notify.clone(),
            env: r.env,
        })
        .collect();
    let exit = if plan.job && plan.mode == InjectMode::Classic {
        ExitPolicy::AppsExited
    } else {
        ExitPolicy::Never
    };
    let redirect_addresses = s.redirect_addrs_for(&address);
    let mut vault = VaultConfig {
        address,
        namespace: req.vault_namespace.clone(),
        tls_server_name: req.tls_server_name.clone(),
        redirect_addresses,
        ..VaultConfig::default()
    };
    tls::apply_to(&mut vault, req, s);
    let config = AgentConfig {
        version: CONFIG_VERSION,
        vault,
        auth: auth_config(req, s, plan)?,
        secrets,
        notify: req.notify.clone(),
        paths: Paths {
            secrets_dir: plan.secrets_dir.clone().into(),
            bin_dir: plan.env.then(|| BIN_DIR.into()),
            max_file_size: containers::secrets_volume_bytes(req, s),
            ..Paths::default()
        },
        refresh_interval: req.refresh_interval.unwrap_or(s.agent.refresh_interval.0),
        init_deadline: init_deadline(req, s),
        revoke_on_shutdown: req.revoke_on_shutdown,
        exit,
        log: LogConfig {
            format: req.log_format.unwrap_or_default(),
            level: req.log_level.clone().unwrap_or_else(|| "info".into()),
        },
        metrics_addr: req.metrics_port.map(|p| format!("0.0.0.0:{p}")),
        handoff: plan.mode == InjectMode::Classic,
    };
    config.validate()?;
    Ok(config)
}

fn init_deadline(req: &PodRequest, s: &Settings) -> Duration {
    req.init_deadline.unwrap_or(s.agent.init_deadline.0)
}

/// Applies the plan to a clone of the Pod.
fn apply(
    pod: &mut Pod,
    plan: &Plan,
    config: &AgentConfig,
    s: &Settings,
    req: &PodRequest,
) -> Result<(), Deny> {
    pod.metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(STATUS.to_owned(), STATUS_INJECTED.to_owned());
    let Some(spec) = pod.spec.as_mut() else {
        return Err(Deny::Object("the Pod has no spec".into()));
    };
    check_conflicts(spec)?;
    let agent_count_before = spec.init_containers.as_ref().map_or(0, Vec::len);
    let insert_at = match plan.position {
        InitPosition::First => 0,
        InitPosition::Last => agent_count_before,
    };
    mount_into_apps(spec, plan, req, insert_at)?;
    env::wrap_apps(spec, plan, req, config, insert_at)?;
    let env = vec![EnvVar {
        name: CONFIG_ENV.to_owned(),
        value: Some(config.to_json()),
        value_from: None,
    }];
    let mut new_init = Vec::new();
    match plan.mode {
        InjectMode::NativeSidecar => {
            let mut c = agent_container(AGENT_CONTAINER, "run", env, plan, s, req);
            c.restart_policy = Some("Always".into());
            c.lifecycle = Some(wait_for_secrets(init_deadline(req, s)));
            new_init.push(c);
        }
        InjectMode::Classic => {
            new_init.push(agent_container(
                AGENT_INIT_CONTAINER,
                "init",
                env.clone(),
                plan,
                s,
                req,
            ));
            spec.containers
                .push(agent_container(AGENT_CONTAINER, "run", env, plan, s, req));
        }
        InjectMode::InitOnly => {
            new_init.push(agent_container(
                AGENT_INIT_CONTAINER,
                "init",
                env,
                plan,
                s,
                req,
            ));
        }
    }
    let init = spec.init_containers.get_or_insert_with(Vec::new);
    init.splice(insert_at..insert_at, new_init);
    spec.volumes
        .get_or_insert_with(Vec::new)
        .extend(volumes(plan, s, req));
    if plan.share_process_namespace {
        spec.share_process_namespace = Some(true);
    }
    Ok(())
}

#[cfg(test)]
#[path = "mutate_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "mutate_auth_tests.rs"]
mod auth_tests;
