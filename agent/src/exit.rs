//! Classic-sidecar exit: notice that the app containers of a Job's pod have finished.
//!
//! In classic mode (clusters without native sidecars) the kubelet never stops a sidecar, so a
//! Job whose pod carries a long-running agent would never complete. The injector gives such a
//! pod `shareProcessNamespace: true`; every container's processes are then visible under
//! `/proc`. PID 1 is the pod's infrastructure (pause) process, the agent knows its own PID and
//! its children; every other live process belongs to an app container. The agent starts after
//! the app containers (see [`AppWatch`]): once no app process is left, the apps are done and
//! the agent exits.
//!
//! Trade-offs (documented for operators): no Kubernetes API access or RBAC is needed and
//! detection takes one `/proc` scan per [`POLL_INTERVAL`]; but the pod must share its process
//! namespace, and a container restarted in place (`restartPolicy: OnFailure`) after the agent
//! left runs without renewal (its files stay in place).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How often `/proc` is scanned; well under the 1 s exit target.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// One process as seen in `/proc/<pid>/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proc {
    /// Process id.
    pub pid: u32,
    /// Parent process id.
    pub ppid: u32,
    /// State letter (`R`, `S`, `Z`, ...).
    pub state: char,
}

/// Parses the interesting fields of a `/proc/<pid>/stat` line.
///
/// The command name sits in parentheses and may itself contain spaces or `)`, so the fields
/// after it are found from the last `)`.
pub fn parse_stat(line: &str) -> Option<Proc> {
    let pid = line.split_once(' ')?.0.parse().ok()?;
    let after = &line[line.rfind(')')? + 1..];
    let mut fields = after.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some(Proc { pid, ppid, state })
}

/// The live processes that belong to the apps: not PID 1 (the pause process), not the agent,
/// not the agent's descendants (notification commands), not zombies.
pub fn app_pids(procs: &[Proc], agent_pid: u32) -> Vec<u32> {
    let parent: HashMap<u32, u32> = procs.iter().map(|p| (p.pid, p.ppid)).collect();
    let is_agents = |mut pid: u32| {
        // Walk up the parent chain; the bound guards against a cycle in a racy snapshot.
        for _ in 0..64 {
            if pid == agent_pid {
                return true;
            }
            match parent.get(&pid) {
                Some(&pp) if pp != 0 && pp != pid => pid = pp,
                _ => return false,
            }
        }
        false
    };
    procs
        .iter()
        .filter(|p| p.pid != 1 && p.state != 'Z' && p.state != 'X' && !is_agents(p.pid))
        .map(|p| p.pid)
        .collect()
}

/// Decides, scan after scan, when the apps have finished.
///
/// The injector puts the classic sidecar last in `containers`, and the kubelet starts a Pod's
/// containers one after the other in that order: when the agent runs, every app container has
/// been started. So an empty first scan means the apps already ran and ended (a short Job can
/// finish before the agent's first look), not that they have yet to start.
#[derive(Debug, Default)]
pub struct AppWatch {
    scanned: bool,
    seen: bool,
}

impl AppWatch {
    /// Feeds one scan's app process count; true when none is left: after apps were seen, or
    /// at the first scan.
    pub fn apps_done(&mut self, app_count: usize) -> bool {
        let first = !std::mem::replace(&mut self.scanned, true);
        if app_count > 0 {
            self.seen = true;
            false
        } else {
            self.seen || first
        }
    }

    /// Whether any app process has been seen yet.
    pub fn seen(&self) -> bool {
        self.seen
    }
}

/// Reads every process under `proc_root` (normally `/proc`). Processes that vanish during the
/// scan are skipped.
pub fn scan(proc_root: &Path) -> std::io::Result<Vec<Proc>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(proc_root)? {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(stat) = std::fs::read_to_string(entry.path().join("stat"))
            && let Some(p) = parse_stat(&stat)
        {
            out.push(p);
        }
    }
    Ok(out)
}

/// Where processes are listed; `/proc` unless overridden (tests).
pub fn proc_root() -> PathBuf {
    std::env::var_os("VAULTLET_PROC_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/proc"))
}

/// Resolves once every app process has exited.
///
/// Where the apps cannot be seen (the agent is PID 1 of its own namespace: the Pod does not
/// share its process namespace; or `/proc` cannot be listed) this is logged once and the agent
/// simply keeps running, as it would without this policy.
pub async fn apps_exited(proc_root: PathBuf) {
    let agent_pid = std::process::id();
    if agent_pid == 1 {
        tracing::warn!(
            "the agent is PID 1: the Pod does not share its process namespace, so the agent cannot see the apps and will not exit when they finish"
        );
        return std::future::pending().await;
    }
    let mut watch = AppWatch::default();
    let mut warned = false;
    let mut ticker = tokio::time::interval(POLL_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let count = match scan(&proc_root) {
            Ok(procs) => app_pids(&procs, agent_pid).len(),
            Err(e) => {
                if !warned {
                    tracing::warn!(
                        path = %proc_root.display(),
                        error = %e,
                        "cannot list processes; the agent will not exit when the apps finish (does the pod set shareProcessNamespace: true?)"
                    );
                    warned = true;
                }
                continue;
            }
        };
        let was_seen = watch.seen();
        if watch.apps_done(count) {
            tracing::info!("every app process has exited; stopping");
            return;
        }
        if !was_seen && watch.seen() {
            tracing::debug!(count, "app processes seen; will exit when they are gone");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mk(pid: u32, ppid: u32) -> Proc {
        Proc {
            pid,
            ppid,
            state: 'S',
        }
    }

    #[test]
    fn parses_stat_with_awkward_names() {
        let p = parse_stat("42 (my prog) x) R 7 42 42 0 -1 4194560").expect("parse");
        assert_eq!(
            p,
            Proc {
                pid: 42,
                ppid: 7,
                state: 'R'
            }
        );
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("12 (x)"), None);
        assert_eq!(parse_stat(""), None);
    }

    #[test]
    fn apps_exclude_pause_agent_children_and_zombies() {
        let procs = [
            mk(1, 0),   // pause
            mk(7, 0),   // agent
            mk(9, 7),   // agent's exec notify
            mk(11, 9),  // its child
            mk(20, 0),  // app
            mk(21, 20), // app's worker
            Proc {
                pid: 30,
                ppid: 1,
                state: 'Z',
            },
        ];
        assert_eq!(app_pids(&procs, 7), vec![20, 21]);
    }

    #[test]
    fn done_once_the_apps_seen_are_gone() {
        let mut w = AppWatch::default();
        assert!(!w.apps_done(2));
        assert!(!w.apps_done(1));
        assert!(w.apps_done(0));
    }

    #[test]
    fn apps_gone_before_the_first_scan_are_done() {
        // The kubelet started the app before the agent, and it has already exited.
        assert!(AppWatch::default().apps_done(0));
    }

    #[test]
    fn scan_reads_this_machine() {
        let procs = scan(Path::new("/proc")).expect("scan /proc");
        let me = std::process::id();
        assert!(procs.iter().any(|p| p.pid == me));
        assert!(!app_pids(&procs, me).contains(&me));
    }
}
