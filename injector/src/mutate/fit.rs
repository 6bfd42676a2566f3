//! Fitting the injection into the Pod: names the injector reserves, and the secrets mount
//! in the app containers.

use k8s_openapi::api::core::v1::{Container, PodSpec, VolumeDevice, VolumeMount};

use super::{AGENT_CONTAINER, AGENT_INIT_CONTAINER, Deny, Plan, SECRETS_VOLUME, invalid};
use crate::annotations::PodRequest;

/// Names starting with this are the injector's: a Pod can declare no such volume, so a
/// mount of one can only be a mount of what the injector adds (the agent's state and token
/// hand-off, the service-account token, TLS and AppRole credentials, the agent binary).
const RESERVED_PREFIX: &str = "vaultlet-";

/// One container of any kind, as far as its volumes go.
struct Mounts<'a> {
    kind: &'static str,
    name: &'a str,
    mounts: Option<&'a Vec<VolumeMount>>,
    devices: Option<&'a Vec<VolumeDevice>>,
}

fn of<'a>(kind: &'static str, c: &'a Container) -> Mounts<'a> {
    Mounts {
        kind,
        name: &c.name,
        mounts: c.volume_mounts.as_ref(),
        devices: c.volume_devices.as_ref(),
    }
}

fn every_container(spec: &PodSpec) -> impl Iterator<Item = Mounts<'_>> {
    let ephemeral = spec.ephemeral_containers.iter().flatten().map(|c| Mounts {
        kind: "ephemeral container",
        name: &c.name,
        mounts: c.volume_mounts.as_ref(),
        devices: c.volume_devices.as_ref(),
    });
    spec.containers
        .iter()
        .map(|c| of("container", c))
        .chain(
            spec.init_containers
                .iter()
                .flatten()
                .map(|c| of("init container", c)),
        )
        .chain(ephemeral)
}

/// Denies a Pod that declares a reserved volume or container name, or whose containers
/// already mount a reserved volume (before injection none exists, so such a mount would
/// reach what the injector adds for the agent).
pub(super) fn check_conflicts(spec: &PodSpec) -> Result<(), Deny> {
    if let Some(v) = spec
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name.starts_with(RESERVED_PREFIX))
    {
        return Err(Deny::Conflict(format!(
            "the Pod already declares a volume named {:?}; names starting with {RESERVED_PREFIX} \
             are reserved for the volumes the injector adds: rename it",
            v.name
        )));
    }
    for c in every_container(spec) {
        if c.kind != "ephemeral container"
            && (c.name == AGENT_CONTAINER || c.name == AGENT_INIT_CONTAINER)
        {
            return Err(Deny::Conflict(format!(
                "the Pod already has a container named {:?}, which the injector adds; rename it",
                c.name
            )));
        }
        let mounts = c.mounts.iter().flat_map(|m| m.iter()).map(|m| &m.name);
        let devices = c.devices.iter().flat_map(|d| d.iter()).map(|d| &d.name);
        let used = mounts
            .map(|n| ("volumeMounts", n))
            .chain(devices.map(|n| ("volumeDevices", n)));
        if let Some((field, volume)) = used
            .into_iter()
            .find(|(_, n)| n.starts_with(RESERVED_PREFIX))
        {
            return Err(Deny::Conflict(format!(
                "{} {:?} lists volume {volume:?} in {field}: volumes named {RESERVED_PREFIX}* are \
                 the injector's, and app containers get only {SECRETS_VOLUME}, read-only at the \
                 secrets directory, from the injector itself; remove it from {field} (to give \
                 this container the secrets, name it in vaultlet.io/containers)",
                c.kind, c.name
            )));
        }
    }
    Ok(())
}

/// Adds the read-only secrets mount to the app containers (and init containers after the agent).
pub(super) fn mount_into_apps(
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
    for c in app_containers(spec, req, agent_index) {
        add_mount(c, SECRETS_VOLUME, &plan.secrets_dir, true)?;
    }
    Ok(())
}

/// The app containers that get the secrets: the Pod's containers and the init containers
/// after the agent, narrowed by `vaultlet.io/containers`.
pub(super) fn app_containers<'a>(
    spec: &'a mut PodSpec,
    req: &'a PodRequest,
    agent_index: usize,
) -> impl Iterator<Item = &'a mut Container> {
    let wanted = req.containers.as_ref();
    let init_after = spec
        .init_containers
        .iter_mut()
        .flatten()
        .skip(agent_index)
        // Native sidecars of other tools (e.g. a mesh proxy) are not app containers.
        .filter(|c| c.restart_policy.as_deref() != Some("Always"));
    spec.containers
        .iter_mut()
        .chain(init_after)
        .filter(move |c| wanted.is_none_or(|names| names.contains(&c.name)))
}

pub(super) fn add_mount(
    c: &mut Container,
    volume: &str,
    path: &str,
    read_only: bool,
) -> Result<(), Deny> {
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
