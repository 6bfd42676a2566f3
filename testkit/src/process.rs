//! Child processes in their own process group, logging to a file, killed on drop.

use std::fs::{File, OpenOptions};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

/// A spawned process (a server, the agent under test, ...) in its own process group, with
/// stdout and stderr appended to a log file. Dropping it kills the whole group; if the test is
/// panicking, the log's last lines are printed first.
#[derive(Debug)]
pub struct Process {
    child: Child,
    /// Set once the child has been reaped: its pid may then belong to someone else.
    reaped: bool,
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
        Process {
            child,
            reaped: false,
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
        if self.reaped {
            return;
        }
        let group = self.group();
        let _ = killpg(group, Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                // Stragglers in the group (the leader is gone, the group id still names them).
                let _ = killpg(group, Signal::SIGKILL);
                self.reaped = true;
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.kill();
    }

    /// SIGKILL to the whole group and reap the child.
    pub fn kill(&mut self) {
        if self.reaped {
            return;
        }
        let _ = killpg(self.group(), Signal::SIGKILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.reaped = true;
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
