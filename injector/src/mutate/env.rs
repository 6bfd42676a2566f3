//! `vaultlet.io/env-<name>`: the app containers' `command` becomes the agent's process
//! supervisor followed by the original command, and they mount the agent binary read-only.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::{PodSpec, VolumeMount};
use vaultlet_agent::config::AgentConfig;
use vaultlet_agent::config::supervise::{BIN_DIR, OnChange, OnExit, SuperviseArgs};

use super::fit::app_containers;
use super::{BIN_VOLUME, Deny, InjectMode, Plan, invalid};
use crate::annotations::PodRequest;

/// The kubelet's default `terminationGracePeriodSeconds`.
const DEFAULT_GRACE: Duration = Duration::from_secs(30);

/// Wraps the command of every app container that gets the secrets, when any secret is an
/// env secret; denies a container without `command` (its image's entrypoint is unknown here).
pub(super) fn wrap_apps(
    spec: &mut PodSpec,
    plan: &Plan,
    req: &PodRequest,
    config: &AgentConfig,
    agent_index: usize,
) -> Result<(), Deny> {
    if !plan.env {
        return Ok(());
    }
    let env_secrets: Vec<&str> = config
        .secrets
        .iter()
        .filter(|s| s.env)
        .map(|s| s.name.as_str())
        .collect();
    let env_files = config
        .secrets
        .iter()
        .filter(|s| s.env)
        .map(|s| config.paths.secrets_dir.join(&s.file))
        .collect();
    let once = plan.mode == InjectMode::InitOnly;
    if let (true, Some(change)) = (once, &req.on_env_change) {
        return Err(invalid(
            "on-env-change",
            &change.to_string(),
            "an init-only Pod reads its env files once and never sees a change; remove it or use mode sidecar",
        )
        .into());
    }
    let base = SuperviseArgs {
        env_files,
        on_change: if once {
            OnChange::Nothing
        } else {
            req.on_env_change.clone().unwrap_or_default()
        },
        grace: spec
            .termination_grace_period_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map_or(DEFAULT_GRACE, Duration::from_secs),
        wait: config.init_deadline,
        once,
        ..SuperviseArgs::default()
    };
    // Kubernetes restarts containers of `Always` Pods; the supervisor does it in place, so
    // the app keeps its env files watched. Elsewhere the container exits with the app's code.
    let restarts = spec.restart_policy.as_deref().is_none_or(|p| p == "Always");
    let regular: BTreeSet<String> = spec.containers.iter().map(|c| c.name.clone()).collect();
    for c in app_containers(spec, req, agent_index) {
        let command = match c.command.as_ref().filter(|cmd| !cmd.is_empty()) {
            Some(cmd) => cmd.clone(),
            None => {
                return Err(Deny::Env(format!(
                    "container {:?} has no command: vaultlet.io/env-{} loads secrets into its environment by starting its command through the agent's supervisor, and vaultlet never looks up an image's entrypoint in a registry; set command to the image's entrypoint (args stay as they are), or narrow vaultlet.io/containers",
                    c.name,
                    env_secrets.join(", vaultlet.io/env-")
                )));
            }
        };
        let mounts = c.volume_mounts.get_or_insert_with(Vec::new);
        if mounts
            .iter()
            .any(|m| m.mount_path.trim_end_matches('/') == BIN_DIR)
        {
            return Err(Deny::Conflict(format!(
                "container {:?} already mounts a volume at {BIN_DIR}, where vaultlet.io/env-* mounts the agent's supervisor; move it elsewhere",
                c.name
            )));
        }
        mounts.push(VolumeMount {
            name: BIN_VOLUME.to_owned(),
            mount_path: BIN_DIR.to_owned(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
        let on_exit = if restarts && regular.contains(&c.name) {
            OnExit::Restart
        } else {
            OnExit::Exit
        };
        c.command = Some(
            SuperviseArgs {
                command,
                on_exit,
                ..base.clone()
            }
            .to_argv(),
        );
    }
    Ok(())
}
