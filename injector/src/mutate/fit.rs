//! Fitting the injection into the Pod: names the injector reserves, and the secrets mount
//! in the app containers.

use k8s_openapi::api::core::v1::{Container, PodSpec, VolumeMount};

use super::{AGENT_CONTAINER, AGENT_INIT_CONTAINER, Deny, Plan, SECRETS_VOLUME, invalid};
use crate::annotations::PodRequest;

pub(super) fn check_conflicts(spec: &PodSpec) -> Result<(), Deny> {
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
