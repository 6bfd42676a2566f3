//! Admission-time checks that the app containers can use what the agent leaves them: its
//! signals and its rendered files. They only warn: a container image's own user and its
//! `/etc/group` memberships are not in the Pod spec, so a clash is likely, never certain.

use k8s_openapi::api::core::v1::{Container, PodSpec};
use vaultlet_agent::config::AgentConfig;

use crate::annotations::{PREFIX, PodRequest};

/// The agent's user and group as the Pod spec decides them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentIds {
    /// User; `None` when the platform or the image decides it.
    pub uid: Option<i64>,
    /// Primary group; `None` when the platform or the image decides it.
    pub gid: Option<i64>,
    /// runAsUser/runAsGroup are left to the platform (`--set-run-as-ids=false`), which gives
    /// every container without its own runAsUser the same user (OpenShift's restricted SCC).
    pub platform: bool,
}

/// What the Pod spec says about the ids an app container runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AppIds {
    uid: Option<i64>,
    gid: Option<i64>,
    /// fsGroup and supplementalGroups: every container has them.
    extra_groups: Vec<i64>,
}

impl AppIds {
    fn of(spec: &PodSpec, c: &Container) -> Self {
        let psc = spec.security_context.as_ref();
        let csc = c.security_context.as_ref();
        let uid = csc
            .and_then(|sc| sc.run_as_user)
            .or(psc.and_then(|p| p.run_as_user));
        let gid = csc
            .and_then(|sc| sc.run_as_group)
            .or(psc.and_then(|p| p.run_as_group));
        let extra_groups = psc
            .map(|p| {
                p.fs_group
                    .into_iter()
                    .chain(p.supplemental_groups.iter().flatten().copied())
                    .collect()
            })
            .unwrap_or_default();
        Self {
            uid,
            gid,
            extra_groups,
        }
    }

    /// Whether this container is the agent's user, as far as the spec tells.
    fn same_user(&self, agent: AgentIds) -> bool {
        match (self.uid, agent.uid) {
            (Some(a), Some(b)) => a == b,
            // Both left to the platform, which assigns one user to the whole Pod.
            (None, None) => agent.platform,
            _ => false,
        }
    }

    fn has_group(&self, gid: i64) -> bool {
        self.gid == Some(gid) || self.extra_groups.contains(&gid)
    }

    fn describe(&self) -> String {
        let user = match self.uid {
            Some(u) => format!("user {u}"),
            None => "its image's user".to_owned(),
        };
        let group = match self.gid {
            Some(g) => format!("group {g}"),
            None => "its image's group".to_owned(),
        };
        let mut out = format!("{user}, {group}");
        if !self.extra_groups.is_empty() {
            let extra: Vec<String> = self.extra_groups.iter().map(i64::to_string).collect();
            out.push_str(&format!(" (and groups {})", extra.join(", ")));
        }
        out
    }
}

fn describe_id(id: Option<i64>, what: &str) -> String {
    id.map_or_else(|| format!("the platform's {what}"), |i| i.to_string())
}

fn targeted<'a>(spec: &'a PodSpec, req: &'a PodRequest) -> impl Iterator<Item = &'a Container> {
    spec.containers.iter().filter(move |c| {
        req.containers
            .as_ref()
            .is_none_or(|names| names.iter().any(|n| n == &c.name))
    })
}

/// A signal only reaches processes of the agent's own user (restricted Pods cannot grant
/// CAP_KILL), so warn about app containers that may run as someone else.
pub fn signal_warnings(spec: &PodSpec, req: &PodRequest, agent: AgentIds) -> Vec<String> {
    if !req.signals() {
        return Vec::new();
    }
    targeted(spec, req)
        .filter_map(|c| {
            let app = AppIds::of(spec, c);
            if app.same_user(agent) {
                return None;
            }
            let runs_as = match app.uid {
                Some(u) => format!("runs as user {u}"),
                None => "runs as its image's user".to_owned(),
            };
            Some(format!(
                "{PREFIX}notify: container {:?} {runs_as} but the agent runs as user {}, so a signal \
                 cannot reach it; set spec.securityContext.runAsUser to the app's user",
                c.name,
                describe_id(agent.uid, "user")
            ))
        })
        .collect()
}

/// Whether `app` can read a file owned by `uid`:`gid` with `mode`.
fn can_read(app: &AppIds, agent: AgentIds, gid: Option<i64>, mode: u32) -> bool {
    mode & 0o004 != 0
        || (mode & 0o400 != 0 && app.same_user(agent))
        || (mode & 0o040 != 0 && gid.is_some_and(|g| app.has_group(g)))
}

/// Warns about targeted app containers with a known user that cannot read some rendered files: the agent
/// writes them as its own user, with the group `vaultlet.io/group` or the Pod's fsGroup
/// (else the agent's group), and mode `vaultlet.io/perms-<name>` (default 0440).
pub fn file_warnings(
    spec: &PodSpec,
    req: &PodRequest,
    agent: AgentIds,
    config: &AgentConfig,
) -> Vec<String> {
    targeted(spec, req)
        .filter_map(|c| {
            let app = AppIds::of(spec, c);
            // Without a runAsUser the image decides (and root reads anyway): nothing to tell.
            if app.uid.is_none_or(|u| u == 0) && !agent.platform {
                return None;
            }
            let unreadable: Vec<_> = config
                .secrets
                .iter()
                .map(|s| (s, s.group.map(i64::from).or(agent.gid)))
                .filter(|(s, gid)| !can_read(&app, agent, *gid, s.mode))
                .collect();
            let first = unreadable.first()?.0;
            let files: Vec<String> = unreadable
                .iter()
                .map(|(s, gid)| {
                    format!(
                        "{} (mode {:04o}, owner {}, group {})",
                        s.file,
                        s.mode,
                        describe_id(agent.uid, "user"),
                        describe_id(*gid, "group"),
                    )
                })
                .collect();
            Some(format!(
                "{PREFIX}perms-{}: container {:?} runs as {} and cannot read {}; set \
                 spec.securityContext.fsGroup (the files' group) or {PREFIX}group to a group of the \
                 container, or a mode readable by it such as {PREFIX}perms-{}: \"0444\"",
                first.name,
                c.name,
                app.describe(),
                files.join(", "),
                first.name
            ))
        })
        .collect()
}

#[cfg(test)]
#[path = "access_tests.rs"]
mod tests;
