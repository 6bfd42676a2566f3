//! The pure mutation: Pod + [`Settings`] -> injected Pod and JSON Patch, or a denial.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, EmptyDirVolumeSource, EnvVar, ExecAction, Pod,
    PodSpec, Probe, ProjectedVolumeSource, ResourceRequirements, SeccompProfile,
    SecretVolumeSource, SecurityContext, ServiceAccountTokenProjection, Volume, VolumeMount,
    VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use vaultlet_agent::config::{
    AgentConfig, AuthConfig, CONFIG_ENV, CONFIG_VERSION, ConfigError, DEFAULT_FILE_MODE,
    DEFAULT_SA_TOKEN_PATH, DEFAULT_SECRETS_DIR, DEFAULT_STATE_DIR, ExitPolicy, LogConfig, Paths,
    SecretSpec, VaultConfig,
};

use crate::access;
use crate::annotations::{
    self, AnnotationError, AuthMethod, INJECT, InitPosition, Mode, PREFIX, PodRequest, STATUS,
    STATUS_INJECTED,
};
use crate::settings::Settings;

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
/// Where the AppRole Secret is mounted in the agent.
pub const APPROLE_DIR: &str = "/vault/approle";
/// Where the Vault CA ConfigMap is mounted in the agent.
pub const CA_DIR: &str = "/vault/ca";
/// Path of the agent binary in its image.
pub const AGENT_BINARY: &str = "/vaultlet-agent";
/// User and group the agent runs as when the pod sets none.
pub const DEFAULT_AGENT_ID: i64 = 65532;
/// sizeLimit of the agent's state volume.
const STATE_VOLUME_SIZE: &str = "1Mi";

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
            Self::Config(_) => "config",
            Self::Object(_) => "object",
        }
    }
}

impl Deny {
    /// The message sent to the API client (and printed by `preview`).
    pub fn message(&self) -> String {
        format!("vaultlet: {self}")
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
                "it has no label vaultlet.io/inject: \"true\" (only labelled Pods are injected)"
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
    let spec = pod
        .spec
        .as_ref()
        .ok_or_else(|| Deny::Object("the Pod has no spec".into()))?;
    let plan = Plan::new(&req, settings, spec, job)?;
    check_resources(&req, settings)?;
    let config = agent_config(&req, settings, &plan)?;
    Ok(Ok(Prepared { req, plan, config }))
}

fn inject(mut pod: Pod, p: Prepared, settings: &Settings) -> Result<Outcome, Deny> {
    let warnings = pod
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

/// The JSON Patch turning `before` into `after` (an injection of `before`).
pub fn patch(before: &Pod, after: &Pod) -> Result<json_patch::Patch, Deny> {
    let bytes = Shape::of(before).patch_json(after)?;
    serde_json::from_slice(&bytes).map_err(|e| Deny::Object(e.to_string()))
}

/// What the JSON Patch needs to know about a Pod before injection; cheap to take, so the
/// Pod itself can be consumed by the mutation.
///
/// The patch is built from the known shape of an injection (annotations and volumes
/// appended, mounts appended, agent containers inserted) rather than a generic diff: it is
/// several times cheaper, and it only ever adds, so fields of the request this API version
/// does not know are never touched. Parents are created where missing.
#[derive(Debug, Clone)]
pub struct Shape {
    annotations: Option<BTreeMap<String, String>>,
    containers: Option<Vec<(String, Option<usize>)>>,
    init_containers: Option<Vec<(String, Option<usize>)>>,
    volumes: Option<usize>,
    share_process_namespace: Option<bool>,
}

fn list_shape(list: Option<&Vec<Container>>) -> Option<Vec<(String, Option<usize>)>> {
    list.map(|l| {
        l.iter()
            .map(|c| (c.name.clone(), c.volume_mounts.as_ref().map(Vec::len)))
            .collect()
    })
}

impl Shape {
    /// Records the shape of a Pod before injection.
    pub fn of(pod: &Pod) -> Self {
        let spec = pod.spec.as_ref();
        Self {
            annotations: pod.metadata.annotations.clone(),
            containers: list_shape(spec.map(|s| &s.containers)),
            init_containers: list_shape(spec.and_then(|s| s.init_containers.as_ref())),
            volumes: spec.and_then(|s| s.volumes.as_ref()).map(Vec::len),
            share_process_namespace: spec.and_then(|s| s.share_process_namespace),
        }
    }

    /// The JSON Patch (serialised JSON) from this shape to `after`.
    pub fn patch_json(&self, after: &Pod) -> Result<Vec<u8>, Deny> {
        let mut ops = Ops::default();
        let empty = BTreeMap::new();
        match &self.annotations {
            None => ops.add(&["metadata", "annotations"], &after.metadata.annotations)?,
            Some(old) => {
                for (k, v) in after.metadata.annotations.as_ref().unwrap_or(&empty) {
                    if old.get(k) != Some(v) {
                        ops.add(&["metadata", "annotations", k], v)?;
                    }
                }
            }
        }
        let Some(a) = &after.spec else {
            return Err(Deny::Object("the Pod has no spec".into()));
        };
        patch_list(
            &mut ops,
            "containers",
            self.containers.as_ref(),
            Some(&a.containers),
        )?;
        patch_list(
            &mut ops,
            "initContainers",
            self.init_containers.as_ref(),
            a.init_containers.as_ref(),
        )?;
        append_tail(
            &mut ops,
            &["spec", "volumes"],
            self.volumes,
            a.volumes.as_ref(),
        )?;
        if self.share_process_namespace != a.share_process_namespace {
            ops.add(
                &["spec", "shareProcessNamespace"],
                &a.share_process_namespace,
            )?;
        }
        Ok(ops.finish())
    }
}

/// `add` operations written straight to JSON (no intermediate `Value`).
#[derive(Default)]
struct Ops(Vec<u8>);

impl Ops {
    fn add<T: serde::Serialize>(&mut self, path: &[&str], value: &T) -> Result<(), Deny> {
        let pointer = json_patch::jsonptr::PointerBuf::from_tokens(path.iter().copied());
        self.0.push(if self.0.is_empty() { b'[' } else { b',' });
        self.0.extend_from_slice(br#"{"op":"add","path":"#);
        let written = serde_json::to_writer(&mut self.0, pointer.as_str()).and_then(|()| {
            self.0.extend_from_slice(br#","value":"#);
            serde_json::to_writer(&mut self.0, value)
        });
        written.map_err(|e| Deny::Object(e.to_string()))?;
        self.0.push(b'}');
        Ok(())
    }

    fn finish(mut self) -> Vec<u8> {
        if self.0.is_empty() {
            self.0.push(b'[');
        }
        self.0.push(b']');
        self.0
    }
}

/// Adds the elements `after` has beyond the first `before` ones.
fn append_tail<T: serde::Serialize>(
    ops: &mut Ops,
    path: &[&str],
    before: Option<usize>,
    after: Option<&Vec<T>>,
) -> Result<(), Deny> {
    let Some(after) = after else { return Ok(()) };
    match before {
        None => ops.add(path, after),
        Some(before) => {
            let mut p = path.to_vec();
            p.push("-");
            after
                .get(before..)
                .unwrap_or_default()
                .iter()
                .try_for_each(|v| ops.add(&p, v))
        }
    }
}

/// Containers: mounts appended to existing ones, then new containers inserted as one block.
fn patch_list(
    ops: &mut Ops,
    field: &str,
    before: Option<&Vec<(String, Option<usize>)>>,
    after: Option<&Vec<Container>>,
) -> Result<(), Deny> {
    let Some(after) = after else { return Ok(()) };
    let Some(before) = before.filter(|b| !b.is_empty()) else {
        return if after.is_empty() {
            Ok(())
        } else {
            ops.add(&["spec", field], after)
        };
    };
    // The inserted block starts where names first differ.
    let at = before
        .iter()
        .zip(after)
        .position(|((name, _), a)| *name != a.name)
        .unwrap_or(before.len());
    let inserted = after.len().saturating_sub(before.len());
    for (i, (_, mounts)) in before.iter().enumerate() {
        let Some(new) = after.get(if i < at { i } else { i + inserted }) else {
            return Err(Deny::Object(format!(
                "{field} changed shape during injection"
            )));
        };
        let index = i.to_string();
        append_tail(
            ops,
            &["spec", field, &index, "volumeMounts"],
            *mounts,
            new.volume_mounts.as_ref(),
        )?;
    }
    for (n, c) in after.iter().skip(at).take(inserted).enumerate() {
        let index = if at == before.len() {
            "-".to_owned()
        } else {
            (at + n).to_string()
        };
        ops.add(&["spec", field, &index], c)?;
    }
    Ok(())
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
            format: r.format.unwrap_or_default(),
            file: r.file.clone().unwrap_or_else(|| name.clone()),
            mode: r.mode.unwrap_or(DEFAULT_FILE_MODE),
            group,
            notify: r.notify.clone(),
        })
        .collect();
    let exit = if plan.job && plan.mode == InjectMode::Classic {
        ExitPolicy::AppsExited
    } else {
        ExitPolicy::Never
    };
    let config = AgentConfig {
        version: CONFIG_VERSION,
        vault: VaultConfig {
            address,
            namespace: req.vault_namespace.clone(),
            ca_cert: s
                .vault
                .vault_ca_configmap
                .as_ref()
                .map(|_| format!("{CA_DIR}/ca.crt").into()),
            tls_server_name: req.tls_server_name.clone(),
            client_cert: None,
            client_key: None,
        },
        auth: auth_config(req, s, plan)?,
        secrets,
        notify: req.notify.clone(),
        paths: Paths {
            secrets_dir: plan.secrets_dir.clone().into(),
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
        metrics_addr: None,
    };
    config.validate()?;
    Ok(config)
}

fn init_deadline(req: &PodRequest, s: &Settings) -> Duration {
    req.init_deadline.unwrap_or(s.agent.init_deadline.0)
}

fn auth_config(req: &PodRequest, s: &Settings, plan: &Plan) -> Result<AuthConfig, Deny> {
    let default_mount = match plan.auth {
        _ if plan.auth == s.vault.auth_method => s.vault.auth_path.clone(),
        AuthMethod::Kubernetes => "kubernetes".to_owned(),
        AuthMethod::Approle => "approle".to_owned(),
    };
    let mount_path = req.auth_path.clone().unwrap_or(default_mount);
    match plan.auth {
        AuthMethod::Kubernetes => Ok(AuthConfig::Kubernetes {
            role: req.role.clone().ok_or_else(|| {
                missing(
                    "role",
                    "kubernetes auth needs a Vault role; add vaultlet.io/role",
                )
            })?,
            mount_path,
            token_path: DEFAULT_SA_TOKEN_PATH.into(),
        }),
        AuthMethod::Approle => {
            if req.approle_secret.is_none() {
                return Err(missing(
                    "approle-secret",
                    "approle auth needs the name of a Secret with keys role-id and secret-id",
                ));
            }
            Ok(AuthConfig::Approle {
                mount_path,
                role_id_file: format!("{APPROLE_DIR}/role-id").into(),
                secret_id_file: format!("{APPROLE_DIR}/secret-id").into(),
                secret_id_wrapped: req.approle_secret_id_wrapped,
            })
        }
    }
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
            c.startup_probe = Some(startup_probe(init_deadline(req, s)));
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

fn check_conflicts(spec: &PodSpec) -> Result<(), Deny> {
    let taken_volume = spec
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name.starts_with("vaultlet-"));
    if let Some(v) = taken_volume {
        return Err(Deny::Conflict(format!(
            "the Pod already has a volume named {:?}; names starting with vaultlet- are reserved for the injector",
            v.name
        )));
    }
    let all = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    if let Some(c) = all
        .into_iter()
        .find(|c| c.name == AGENT_CONTAINER || c.name == AGENT_INIT_CONTAINER)
    {
        return Err(Deny::Conflict(format!(
            "the Pod already has a container named {:?}, which the injector adds; rename it",
            c.name
        )));
    }
    Ok(())
}

/// Adds the read-only secrets mount to the app containers (and init containers after the agent).
fn mount_into_apps(
    spec: &mut PodSpec,
    plan: &Plan,
    req: &PodRequest,
    agent_index: usize,
) -> Result<(), Deny> {
    let wanted = req.containers.as_ref();
    if let Some(names) = wanted {
        let init_after = spec.init_containers.iter().flatten().skip(agent_index);
        for n in names {
            let known = spec
                .containers
                .iter()
                .chain(init_after.clone())
                .any(|c| &c.name == n);
            if !known {
                let joined = names.join(",");
                return Err(invalid(
                    "containers",
                    &joined,
                    format!(
                        "there is no container {n:?} (init containers count only when they run after the agent)"
                    ),
                )
                .into());
            }
        }
    }
    let selected = |c: &Container| wanted.is_none_or(|names| names.contains(&c.name));
    let init_after = spec
        .init_containers
        .iter_mut()
        .flatten()
        .skip(agent_index)
        // Native sidecars of other tools (e.g. a mesh proxy) are not app containers.
        .filter(|c| c.restart_policy.as_deref() != Some("Always"));
    for c in spec.containers.iter_mut().chain(init_after) {
        if !selected(c) {
            continue;
        }
        add_mount(c, SECRETS_VOLUME, &plan.secrets_dir, true)?;
    }
    Ok(())
}

fn add_mount(c: &mut Container, volume: &str, path: &str, read_only: bool) -> Result<(), Deny> {
    let mounts = c.volume_mounts.get_or_insert_with(Vec::new);
    if mounts
        .iter()
        .any(|m| m.mount_path.trim_end_matches('/') == path)
    {
        return Err(invalid(
            "secrets-dir",
            path,
            format!(
                "container {:?} already mounts a volume at {path}; choose another directory with vaultlet.io/secrets-dir",
                c.name
            ),
        )
        .into());
    }
    mounts.push(VolumeMount {
        name: volume.to_owned(),
        mount_path: path.to_owned(),
        read_only: Some(read_only),
        ..VolumeMount::default()
    });
    Ok(())
}

fn startup_probe(deadline: Duration) -> Probe {
    let secs = i32::try_from(deadline.as_secs().max(1)).unwrap_or(i32::MAX);
    Probe {
        exec: Some(ExecAction {
            command: Some(vec![AGENT_BINARY.to_owned(), "probe".to_owned()]),
        }),
        period_seconds: Some(1),
        failure_threshold: Some(secs),
        ..Probe::default()
    }
}

fn agent_container(
    name: &str,
    command: &str,
    env: Vec<EnvVar>,
    plan: &Plan,
    s: &Settings,
    req: &PodRequest,
) -> Container {
    let mut mounts = vec![
        mount(SECRETS_VOLUME, &plan.secrets_dir, false),
        mount(STATE_VOLUME, DEFAULT_STATE_DIR, false),
    ];
    match plan.auth {
        AuthMethod::Kubernetes => {
            let dir = DEFAULT_SA_TOKEN_PATH.trim_end_matches("/token");
            mounts.push(mount(SA_TOKEN_VOLUME, dir, true));
        }
        AuthMethod::Approle => mounts.push(mount(APPROLE_VOLUME, APPROLE_DIR, true)),
    }
    if s.vault.vault_ca_configmap.is_some() {
        mounts.push(mount(CA_VOLUME, CA_DIR, true));
    }
    Container {
        name: name.to_owned(),
        image: Some(s.agent.agent_image.clone()),
        image_pull_policy: Some(s.agent.agent_image_pull_policy.clone()),
        command: Some(vec![AGENT_BINARY.to_owned()]),
        args: Some(vec![command.to_owned()]),
        env: Some(env),
        volume_mounts: Some(mounts),
        resources: Some(resources(req, s)),
        security_context: Some(security_context(plan)),
        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
        ..Container::default()
    }
}

fn mount(volume: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: volume.to_owned(),
        mount_path: path.to_owned(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

/// Denies a request above its limit here, with the annotation's name, rather than letting
/// the API server reject the Pod with a message about a container the user did not write.
fn check_resources(req: &PodRequest, s: &Settings) -> Result<(), Deny> {
    let r = &s.resources;
    let pairs = [
        (
            "cpu",
            &req.cpu_request,
            Some(&r.cpu_request),
            &req.cpu_limit,
            r.cpu_limit.as_ref(),
        ),
        (
            "memory",
            &req.memory_request,
            Some(&r.memory_request),
            &req.memory_limit,
            r.memory_limit.as_ref(),
        ),
    ];
    for (what, req_ann, req_default, lim_ann, lim_default) in pairs {
        let request = req_ann.as_ref().or(req_default);
        let limit = lim_ann.as_ref().or(lim_default);
        let (Some(request), Some(limit)) = (request, limit) else {
            continue;
        };
        let (Some(rq), Some(lm)) = (
            annotations::quantity_value(request),
            annotations::quantity_value(limit),
        ) else {
            continue;
        };
        if rq > lm {
            let (key, value) = if req_ann.is_some() {
                (format!("{what}-request"), request)
            } else {
                (format!("{what}-limit"), limit)
            };
            return Err(invalid(
                &key,
                value,
                format!(
                    "the agent's {what} request ({request}) would exceed its limit ({limit}); \
                     set vaultlet.io/{what}-request and vaultlet.io/{what}-limit consistently"
                ),
            )
            .into());
        }
    }
    Ok(())
}

fn resources(req: &PodRequest, s: &Settings) -> ResourceRequirements {
    let r = &s.resources;
    let pick = |a: &Option<String>, b: Option<&String>| a.clone().or_else(|| b.cloned());
    let pairs = |cpu: Option<String>, memory: Option<String>| {
        let map: BTreeMap<String, Quantity> = [("cpu", cpu), ("memory", memory)]
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k.to_owned(), Quantity(v))))
            .collect();
        (!map.is_empty()).then_some(map)
    };
    ResourceRequirements {
        requests: pairs(
            pick(&req.cpu_request, Some(&r.cpu_request)),
            pick(&req.memory_request, Some(&r.memory_request)),
        ),
        limits: pairs(
            pick(&req.cpu_limit, r.cpu_limit.as_ref()),
            pick(&req.memory_limit, r.memory_limit.as_ref()),
        ),
        ..ResourceRequirements::default()
    }
}

fn security_context(plan: &Plan) -> SecurityContext {
    SecurityContext {
        run_as_non_root: Some(true),
        run_as_user: plan.uid.filter(|_| plan.set_ids),
        run_as_group: plan.gid.filter(|_| plan.set_ids),
        read_only_root_filesystem: Some(true),
        allow_privilege_escalation: Some(false),
        privileged: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            add: None,
        }),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_owned(),
            localhost_profile: None,
        }),
        ..SecurityContext::default()
    }
}

fn memory_dir(size: &str) -> EmptyDirVolumeSource {
    EmptyDirVolumeSource {
        medium: Some("Memory".to_owned()),
        size_limit: Some(Quantity(size.to_owned())),
    }
}

fn volumes(plan: &Plan, s: &Settings, req: &PodRequest) -> Vec<Volume> {
    let size = req
        .secrets_volume_size
        .clone()
        .unwrap_or_else(|| s.agent.secrets_volume_size.clone());
    let mut out = vec![
        Volume {
            name: SECRETS_VOLUME.to_owned(),
            empty_dir: Some(memory_dir(&size)),
            ..Volume::default()
        },
        Volume {
            name: STATE_VOLUME.to_owned(),
            empty_dir: Some(memory_dir(STATE_VOLUME_SIZE)),
            ..Volume::default()
        },
    ];
    match plan.auth {
        AuthMethod::Kubernetes => out.push(Volume {
            name: SA_TOKEN_VOLUME.to_owned(),
            projected: Some(ProjectedVolumeSource {
                sources: Some(vec![VolumeProjection {
                    service_account_token: Some(ServiceAccountTokenProjection {
                        audience: Some(s.vault.sa_token_audience.clone()),
                        expiration_seconds: Some(
                            i64::try_from(s.vault.sa_token_expiration.0.as_secs())
                                .unwrap_or(i64::MAX),
                        ),
                        path: "token".to_owned(),
                    }),
                    ..VolumeProjection::default()
                }]),
                default_mode: None,
            }),
            ..Volume::default()
        }),
        AuthMethod::Approle => out.push(Volume {
            name: APPROLE_VOLUME.to_owned(),
            secret: Some(SecretVolumeSource {
                secret_name: req.approle_secret.clone(),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        }),
    }
    if let Some(cm) = &s.vault.vault_ca_configmap {
        out.push(Volume {
            name: CA_VOLUME.to_owned(),
            config_map: Some(ConfigMapVolumeSource {
                name: cm.clone(),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        });
    }
    out
}

#[cfg(test)]
#[path = "mutate_tests.rs"]
mod tests;
