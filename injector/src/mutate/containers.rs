//! The containers and volumes an injection adds: the agent container (with its restricted
//! security context and resources) and the Pod volumes it needs.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, ExecAction, Lifecycle,
    LifecycleHandler, ProjectedVolumeSource, ResourceRequirements, SeccompProfile,
    SecretVolumeSource, SecurityContext, ServiceAccountTokenProjection, Volume, VolumeMount,
    VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use vaultlet_agent::config::supervise::BIN_DIR;
use vaultlet_agent::config::{DEFAULT_SA_TOKEN_PATH, DEFAULT_STATE_DIR};

use super::{
    AGENT_BINARY, APPROLE_DIR, APPROLE_VOLUME, BIN_VOLUME, BIN_VOLUME_SIZE, METRICS_PORT_NAME,
    Plan, SA_TOKEN_VOLUME, SECRETS_VOLUME, STATE_VOLUME, STATE_VOLUME_SIZE,
};
use crate::annotations::{AuthMethod, PodRequest};
use crate::settings::Settings;

/// The native sidecar's gate: a `postStart` hook that returns once every secret is rendered
/// (or fails at the init deadline). The kubelet starts the next container only after it
/// returned; no startupProbe, which would always cost a probe tick (the facts, from the
/// kubelet's code, are in the agent's `probe` module and docs/contract.md).
pub(super) fn wait_for_secrets(deadline: Duration) -> Lifecycle {
    Lifecycle {
        post_start: Some(LifecycleHandler {
            exec: Some(ExecAction {
                command: Some(vec![
                    AGENT_BINARY.to_owned(),
                    "probe".to_owned(),
                    "--wait".to_owned(),
                    format!("{}s", deadline.as_secs().max(1)),
                ]),
            }),
            ..LifecycleHandler::default()
        }),
        ..Lifecycle::default()
    }
}

/// The metrics port, declared on the agent that serves it (`run`; `init` never does).
fn metrics_port(command: &str, req: &PodRequest) -> Option<Vec<ContainerPort>> {
    let port = req.metrics_port.filter(|_| command == "run")?;
    Some(vec![ContainerPort {
        name: Some(METRICS_PORT_NAME.to_owned()),
        container_port: i32::from(port),
        protocol: Some("TCP".to_owned()),
        ..ContainerPort::default()
    }])
}

pub(super) fn agent_container(
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
        AuthMethod::Kubernetes | AuthMethod::Jwt => {
            let dir = DEFAULT_SA_TOKEN_PATH.trim_end_matches("/token");
            mounts.push(mount(SA_TOKEN_VOLUME, dir, true));
        }
        AuthMethod::Approle => mounts.push(mount(APPROLE_VOLUME, APPROLE_DIR, true)),
        // The client certificate is mounted with the TLS settings below.
        AuthMethod::Cert => {}
    }
    mounts.extend(super::tls::mounts(req, s));
    if plan.env {
        mounts.push(mount(BIN_VOLUME, BIN_DIR, false));
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
        ports: metrics_port(command, req),
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

/// The secrets volume's `sizeLimit`: the annotation, else the injector's default.
fn secrets_volume_size(req: &PodRequest, s: &Settings) -> String {
    req.secrets_volume_size
        .clone()
        .unwrap_or_else(|| s.agent.secrets_volume_size.clone())
}

/// The secrets volume's size in bytes: the agent's bound on one rendered file.
pub(super) fn secrets_volume_bytes(req: &PodRequest, s: &Settings) -> u64 {
    crate::annotations::quantity_value(&secrets_volume_size(req, s))
        .filter(|v| v.is_finite() && *v >= 1.0)
        .map_or(vaultlet_agent::config::DEFAULT_MAX_FILE_SIZE, |v| v as u64)
}

pub(super) fn volumes(plan: &Plan, s: &Settings, req: &PodRequest) -> Vec<Volume> {
    let size = secrets_volume_size(req, s);
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
        AuthMethod::Kubernetes | AuthMethod::Jwt => out.push(Volume {
            name: SA_TOKEN_VOLUME.to_owned(),
            projected: Some(ProjectedVolumeSource {
                sources: Some(vec![VolumeProjection {
                    service_account_token: Some(ServiceAccountTokenProjection {
                        audience: Some(
                            req.sa_token_audience
                                .clone()
                                .unwrap_or_else(|| s.vault.sa_token_audience.clone()),
                        ),
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
        AuthMethod::Cert => {}
    }
    if plan.env {
        // On disk, not in memory: the binary would count against the Pod's memory.
        out.push(Volume {
            name: BIN_VOLUME.to_owned(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: None,
                size_limit: Some(Quantity(BIN_VOLUME_SIZE.to_owned())),
            }),
            ..Volume::default()
        });
    }
    out.extend(super::tls::volumes(req, s));
    out
}
