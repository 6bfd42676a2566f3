//! Readiness: the `<stateDir>/ready` marker written once every secret has been rendered, and
//! the wait for it that gates the app containers of a native sidecar.
//!
//! Why a `postStart` hook (`vaultlet-agent probe --wait <init deadline>`) and no startupProbe,
//! from the kubelet's code (Kubernetes v1.34.4, `pkg/kubelet`):
//! - `kuberuntime/kuberuntime_container.go`, `computeInitContainerActions`: the container after
//!   a running restartable init container is started only when that container has no
//!   startupProbe or `startupManager` holds `Success` for it.
//! - `prober/worker.go`, `run`/`doProbe`: a startup probe runs on its own ticker
//!   (`periodSeconds`, at least 1 s; no manual trigger, unlike readiness in
//!   `prober_manager.go` `UpdatePodStatus`) and only once the status manager shows the
//!   container running, i.e. after the pod sync that follows the container's start. Its
//!   `Success` then reaches `kubelet.go` `syncLoopIteration` (`startupManager.Updates()`,
//!   `handleProbeSync`), which syncs the Pod again. So a startupProbe always costs a probe tick
//!   (0-1 s) after that sync, and one more period for each probe that ran before the files
//!   existed: it cannot be made cheap, only dropped.
//! - `kuberuntime_container.go`, `startContainer` step 4: a `postStart` hook runs inside the
//!   sync that starts the container and that sync returns only when the hook has (exec hooks
//!   have no timeout, `lifecycle/handlers.go` `Run`). A failed hook kills the container
//!   (`FailedPostStartHook`) and, being restartable, it is started again with back-off.
//! - `pod_workers.go`, `podWorkerLoop`: the next sync waits for a pod cache newer than the end
//!   of the previous sync (`GetNewerThan(..., lastSyncTime)`), which only the PLEG relist
//!   writes (`pleg/generic.go` `Relist`, every 1 s: `kubelet.go` `genericPlegRelistPeriod`;
//!   the evented PLEG is alpha and off). So after the hook returns, the app starts at the next
//!   relist (0-1 s), as after an init container exits: the floor for any container that
//!   follows another one, and the same as classic and init-only mode pay.
//!
//! While the hook waits, that sync has not finished: the Pod's status still shows the agent
//! waiting, so `kubectl logs` of the agent answers only once the files exist or the hook has
//! failed at the deadline (then `--previous` shows the agent's log, and the hook's message is
//! in the container's status).

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The marker's file name in the state dir.
const MARKER: &str = "ready";
/// How often the marker is checked besides inotify's events, in case one is missed.
const RECHECK: Duration = Duration::from_millis(100);

/// True when the ready marker exists (what `vaultlet-agent probe` checks).
pub fn is_ready(state_dir: &Path) -> bool {
    state_dir.join(MARKER).is_file()
}

/// Writes the ready marker (creating the state dir).
pub fn mark_ready(state_dir: &Path) -> Result<(), crate::write::WriteError> {
    crate::write::write_atomic(&state_dir.join(MARKER), b"ready\n", 0o644, None).map(|_| ())
}

/// Why the secrets were not ready in time; the message of the agent's init deadline.
#[derive(Debug, thiserror::Error)]
#[error(
    "secrets not rendered within the init deadline of {deadline:?}: {} does not exist; the \
     agent's log says what failed (kubectl logs <pod> -c vaultlet-agent --previous), or raise \
     annotation vaultlet.io/init-deadline",
    marker.display()
)]
pub struct NotReady {
    /// The deadline that passed.
    pub deadline: Duration,
    /// The marker that never appeared.
    pub marker: PathBuf,
}

/// Returns once the ready marker exists, or fails when `deadline` has passed. Watches the
/// state dir with inotify (the marker is renamed into place) and checks every 100 ms too, so
/// the gate costs milliseconds, not a polling period.
pub fn wait_ready(state_dir: &Path, deadline: Duration) -> Result<(), NotReady> {
    let end = crate::renew::after(Instant::now(), deadline);
    let (tx, rx) = mpsc::channel();
    // Kept alive until we return; without a watch (no state dir yet) the rechecks remain.
    let _watcher = watch(state_dir, tx);
    loop {
        if is_ready(state_dir) {
            return Ok(());
        }
        let now = Instant::now();
        if now >= end {
            return Err(NotReady {
                deadline,
                marker: state_dir.join(MARKER),
            });
        }
        // An event, a timeout or a closed channel all lead to the same check.
        let _ = rx.recv_timeout(RECHECK.min(end - now));
    }
}

fn watch(dir: &Path, tx: mpsc::Sender<()>) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher as _;
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if res.is_ok() {
            let _ = tx.send(());
        }
    })
    .ok()?;
    watcher
        .watch(dir, notify::RecursiveMode::NonRecursive)
        .ok()?;
    Some(watcher)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("agent");
        assert!(!is_ready(&state));
        mark_ready(&state).expect("mark");
        assert!(is_ready(&state));
    }

    #[test]
    fn the_wait_returns_within_milliseconds_of_the_marker() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().to_path_buf();
        let writer = {
            let state = state.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(300));
                mark_ready(&state).expect("mark");
                Instant::now()
            })
        };
        wait_ready(&state, Duration::from_secs(10)).expect("ready");
        let returned = Instant::now();
        let marked = writer.join().expect("writer");
        let lag = returned.saturating_duration_since(marked);
        // inotify wakes the wait at once; the 100 ms recheck is the bound if it did not.
        assert!(
            lag < Duration::from_millis(50),
            "returned {lag:?} after the marker"
        );
    }

    #[test]
    fn the_wait_returns_at_once_when_ready_and_without_a_state_dir_it_times_out() {
        let dir = tempfile::tempdir().expect("tempdir");
        mark_ready(dir.path()).expect("mark");
        wait_ready(dir.path(), Duration::ZERO).expect("ready");
        let missing = dir.path().join("missing");
        let start = Instant::now();
        let err = wait_ready(&missing, Duration::from_millis(300)).unwrap_err();
        assert!(start.elapsed() >= Duration::from_millis(300));
        assert_eq!(
            err.to_string(),
            format!(
                "secrets not rendered within the init deadline of 300ms: {}/ready does not \
                 exist; the agent's log says what failed (kubectl logs <pod> -c vaultlet-agent \
                 --previous), or raise annotation vaultlet.io/init-deadline",
                missing.display()
            )
        );
    }
}
