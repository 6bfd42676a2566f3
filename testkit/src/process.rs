//! Child processes in their own process group, logging to a file, killed on drop.

use std::fs::{File, OpenOptions};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

/// Kills process group `$2` once process `$1` (the test) is gone, so servers do not outlive a
/// test binary that was killed (timeout, Ctrl-C) before its destructors ran.
const WATCHDOG: &str =
    r#"while kill -0 "$1" 2>/dev/null; do sleep 1; done; kill -KILL -"$2" 2>/dev/null"#;

/// A spawned process (a server, the agent under test, ...) in its own process group, with
/// stdout and stderr appended to a log file. Dropping it kills the whole group; if the test is
/// panicking, the log's last lines are printed first. A watchdog in the group kills it within
/// a second if the test process dies without running destructors.
#[derive(Debug)]
pub struct Process {
    child: Child,
    /// Set once the child has been reaped: its pid may then belong to someone else.
    reaped: bool,
    /// A member of the group (keeping the group id from being reused) until reaped.
    watchdog: Option<Child>,
    name: String,
    log: PathBuf,
}

impl Process {
    /// Spawns `cmd` in a new process group with stdout and stderr appended to `log`
    /// (stdin is null). `name` appears in failure messages.
    ///
    /// # Panics
    /// When the command cannot be started.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Process {
        let out = open_log(log);
        let err = out.try_clone().expect("clone log file handle");
        cmd.stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        let watchdog = spawn_watchdog(std::process::id(), child.id());
        Process {
            child,
            reaped: false,
            watchdog,
            name: name.to_string(),
            log: log.to_path_buf(),
        }
    }

    /// The process id (also its process group id).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The whole log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The exit status if the process has exited (reaping it), else `None`.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        let status = self.child.try_wait().ok().flatten();
        self.reaped |= status.is_some();
        status
    }

    /// Waits for the process to exit on its own.
    ///
    /// # Panics
    /// When it is still running after `timeout` (with the log tail).
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit() {
                return status;
            }
            if Instant::now() >= deadline {
                panic!(
                    "{} still running after {timeout:?}; log {}:\n{}",
                    self.name,
                    self.log.display(),
                    log_tail(&self.log, 40)
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Sends `signal` to the process itself (not its group); ignored once it has exited.
    pub fn signal(&mut self, signal: Signal) {
        if self.try_exit().is_none() {
            let _ = kill(self.group(), signal);
        }
    }

    /// Panics with the log tail when the process has already exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            self.reaped = true;
            panic!(
                "{} exited early with {status}; log {}:\n{}",
                self.name,
                self.log.display(),
                log_tail(&self.log, 40)
            );
        }
    }

    /// SIGTERM to the group, then SIGKILL if it has not exited within `grace`.
    pub fn stop(&mut self, grace: Duration) {
        self.stop_with(Signal::SIGTERM, grace);
    }

    /// `signal` to the group, then SIGKILL if the process has not exited within `grace`.
    pub fn stop_with(&mut self, signal: Signal, grace: Duration) {
        if !self.reaped {
            let _ = killpg(self.group(), signal);
            let deadline = Instant::now() + grace;
            while Instant::now() < deadline && self.try_exit().is_none() {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        self.kill();
    }

    /// SIGKILL to the whole group (stragglers included) and reap the child.
    pub fn kill(&mut self) {
        // The group id is safe to signal while the child or the watchdog is unreaped.
        if !self.reaped || self.watchdog.is_some() {
            let _ = killpg(self.group(), Signal::SIGKILL);
        }
        if !self.reaped {
            let _ = self.child.kill();
            let _ = self.child.wait();
            self.reaped = true;
        }
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
    }

    fn group(&self) -> Pid {
        // process_group(0) made the child the leader of a group with its own pid.
        Pid::from_raw(i32::try_from(self.child.id()).unwrap_or(i32::MAX))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- last lines of {} log ({}) ---\n{}",
                self.name,
                self.log.display(),
                log_tail(&self.log, 40)
            );
        }
        self.kill();
    }
}

/// Starts the [`WATCHDOG`] for `parent` inside process group `group`; `None` if the group is
/// already gone.
fn spawn_watchdog(parent: u32, group: u32) -> Option<Child> {
    let pgid = i32::try_from(group).ok()?;
    Command::new("sh")
        .args(["-c", WATCHDOG, "vaultlet-testkit-watchdog"])
        .arg(parent.to_string())
        .arg(group.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(pgid)
        .spawn()
        .ok()
}

fn open_log(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("cannot open log file {}: {e}", path.display()))
}

/// The last `lines` lines of a log file (for failure messages).
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str, dir: &Path) -> Process {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]);
        Process::spawn("sh", cmd, &dir.join("sh.log"))
    }

    #[test]
    fn signal_reaches_the_process_and_the_log_is_kept() {
        let dir = crate::TempDir::new().expect("temp dir");
        let mut p = sh(
            "trap 'echo got-term; exit 3' TERM; echo started; while :; do sleep 0.01; done",
            dir.path(),
        );
        crate::wait_until(Duration::from_secs(5), "sh started", || {
            p.log().contains("started")
        });
        p.assert_running();
        p.signal(Signal::SIGTERM);
        let status = p.wait_exit(Duration::from_secs(5));
        assert_eq!(status.code(), Some(3));
        assert!(p.log().contains("got-term"));
        assert_eq!(p.try_exit().map(|s| s.code()), Some(Some(3)));
    }

    #[test]
    fn watchdog_kills_the_group_when_the_parent_dies() {
        let mut parent = Command::new("sleep")
            .arg("60")
            .spawn()
            .expect("fake parent");
        let mut server = Command::new("sleep")
            .arg("60")
            .process_group(0)
            .spawn()
            .expect("fake server");
        let mut watchdog = spawn_watchdog(parent.id(), server.id()).expect("watchdog");
        assert!(server.try_wait().expect("try_wait").is_none());
        parent.kill().expect("kill fake parent");
        parent.wait().expect("reap fake parent");
        crate::wait_until(
            Duration::from_secs(5),
            "server killed by the watchdog",
            || server.try_wait().expect("try_wait").is_some(),
        );
        let _ = watchdog.wait();
    }

    #[test]
    fn drop_kills_the_whole_group() {
        let dir = crate::TempDir::new().expect("temp dir");
        let pidfile = dir.path().join("child.pid");
        let script = format!("sleep 60 & echo $! > {}; wait", pidfile.display());
        let p = sh(&script, dir.path());
        crate::wait_until(Duration::from_secs(5), "grandchild pid written", || {
            std::fs::read_to_string(&pidfile).is_ok_and(|s| s.ends_with('\n'))
        });
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .expect("pid file")
            .trim()
            .parse()
            .expect("pid");
        drop(p);
        let proc_dir = PathBuf::from(format!("/proc/{pid}"));
        // A killed grandchild may linger briefly as a zombie until init reaps it.
        crate::wait_until(Duration::from_secs(5), "grandchild gone", || {
            std::fs::read_to_string(proc_dir.join("stat"))
                .map_or(true, |stat| stat.contains(") Z "))
        });
    }
}
