//! Container processes: PID namespaces (a pause process per namespace), spawning into them,
//! signalling, and exit bookkeeping.

use std::ffi::OsString;
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

use super::PodError;

/// How containers are separated from the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// Each PID namespace (the whole Pod with `shareProcessNamespace`, else each container)
    /// is a new Linux PID namespace with its own `/proc`, as in Kubernetes. Needs root.
    Namespaces,
    /// Everything runs in the host's PID namespace (when namespaces are not available).
    Host,
}

impl Isolation {
    /// `Namespaces` when `unshare --pid` works here (root), else `Host`;
    /// `VAULTLET_PODRUN_ISOLATION=host` forces `Host`.
    pub fn detect() -> Isolation {
        if std::env::var("VAULTLET_PODRUN_ISOLATION").is_ok_and(|v| v == "host") {
            return Isolation::Host;
        }
        let ok = Command::new("unshare")
            .args(["--pid", "--fork", "--kill-child", "--mount-proc", "true"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            Isolation::Namespaces
        } else {
            Isolation::Host
        }
    }
}

/// A PID namespace kept alive by a pause process (`sleep infinity` as its PID 1).
///
/// `unshare --kill-child` makes the pause die with `unshare`, and the kernel kills every
/// process of a namespace whose PID 1 dies: killing `unshare` removes the whole namespace.
#[derive(Debug)]
pub struct Sandbox {
    unshare: Child,
    /// Host PID of the namespace's PID 1, the target for `nsenter`.
    init_pid: u32,
}

impl Sandbox {
    /// Starts a new PID (and mount, for its own `/proc`) namespace.
    pub fn start(work_dir: &Path) -> Result<Sandbox, PodError> {
        let mut unshare = Command::new("unshare")
            .args([
                "--pid",
                "--fork",
                "--kill-child",
                "--mount-proc",
                "sleep",
                "infinity",
            ])
            .current_dir(work_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| PodError::Spawn {
                container: "(pause)".into(),
                program: "unshare".into(),
                source,
            })?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(pid) = first_child(unshare.id()) {
                return Ok(Sandbox {
                    unshare,
                    init_pid: pid,
                });
            }
            if Instant::now() > deadline || matches!(unshare.try_wait(), Ok(Some(_))) {
                let _ = unshare.kill();
                let _ = unshare.wait();
                return Err(PodError::Spec(
                    "the pause process of a PID namespace did not start (unshare --pid needs root)"
                        .into(),
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn wrap(&self, argv: &[OsString]) -> Vec<OsString> {
        let mut out: Vec<OsString> = ["nsenter", "--target"].map(OsString::from).to_vec();
        out.push(self.init_pid.to_string().into());
        out.extend(["--pid", "--mount", "--"].map(OsString::from));
        out.extend(argv.iter().cloned());
        out
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.unshare.kill();
        let _ = self.unshare.wait();
    }
}

/// The first child of `pid` (from `/proc/<pid>/task/<pid>/children`).
fn first_child(pid: u32) -> Option<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// How a container process ended.
#[derive(Debug, Clone, Copy)]
pub struct Exit {
    /// Exit status (of the container's main process).
    pub status: ExitStatus,
    /// When the harness saw it exit.
    pub at: Instant,
}

/// A running (or finished) container process.
#[derive(Debug)]
pub struct Proc {
    /// Host PID of what we spawned (`nsenter` or the program itself).
    pid: u32,
    /// Whether `pid` is an `nsenter` wrapper whose child is the real process.
    wrapped: bool,
    exit: Arc<Mutex<Option<Exit>>>,
    /// When the process was started.
    pub started: Instant,
    /// File with the process's stdout and stderr.
    pub log: PathBuf,
}

/// What to run.
pub struct Spawn<'a> {
    /// Container name (for errors).
    pub container: &'a str,
    /// Program and arguments.
    pub argv: Vec<OsString>,
    /// The full environment (nothing is inherited).
    pub env: Vec<(String, String)>,
    /// Working directory.
    pub cwd: &'a Path,
    /// Output file (appended).
    pub log: PathBuf,
}

impl std::fmt::Debug for Spawn<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Env values may hold Secret data: names only.
        let names: Vec<&str> = self.env.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("Spawn")
            .field("container", &self.container)
            .field("argv", &self.argv)
            .field("env", &names)
            .field("log", &self.log)
            .finish_non_exhaustive()
    }
}

impl Proc {
    /// Starts `spawn` inside `sandbox` (or on the host) and a thread that records its exit.
    pub fn start(spawn: Spawn<'_>, sandbox: Option<&Sandbox>) -> Result<Proc, PodError> {
        let argv = match sandbox {
            Some(s) => s.wrap(&spawn.argv),
            None => spawn.argv.clone(),
        };
        let program = argv.first().cloned().unwrap_or_default();
        let spawn_err = |source| PodError::Spawn {
            container: spawn.container.into(),
            program: program.to_string_lossy().into_owned(),
            source,
        };
        let out = File::options()
            .create(true)
            .append(true)
            .open(&spawn.log)
            .map_err(spawn_err)?;
        let err = out.try_clone().map_err(spawn_err)?;
        let mut child = Command::new(&program)
            .args(&argv[1..])
            .env_clear()
            .envs(spawn.env.iter().map(|(k, v)| (k, v)))
            .current_dir(spawn.cwd)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            // Its own group, so that SIGKILL reaches whatever the container left behind.
            .process_group(0)
            .spawn()
            .map_err(spawn_err)?;
        let pid = child.id();
        let exit = Arc::new(Mutex::new(None));
        let slot = Arc::clone(&exit);
        std::thread::spawn(move || {
            if let Ok(status) = child.wait() {
                *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(Exit {
                    status,
                    at: Instant::now(),
                });
            }
        });
        Ok(Proc {
            pid,
            wrapped: sandbox.is_some(),
            exit,
            started: Instant::now(),
            log: spawn.log,
        })
    }

    /// The exit, once the process has ended.
    pub fn exit(&self) -> Option<Exit> {
        *self.exit.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends `signal` to the container's main process (not to the `nsenter` wrapper);
    /// SIGKILL goes to the whole process group.
    pub fn signal(&self, signal: Signal) {
        if signal == Signal::SIGKILL
            && let Ok(pid) = i32::try_from(self.pid)
        {
            // The group outlives its leader: kill it even after the leader exited.
            let _ = killpg(Pid::from_raw(pid), signal);
            return;
        }
        if self.exit().is_some() {
            return;
        }
        let target = if self.wrapped {
            first_child(self.pid)
        } else {
            Some(self.pid)
        };
        if let Some(pid) = target.and_then(|p| i32::try_from(p).ok()) {
            let _ = kill(Pid::from_raw(pid), signal);
        }
    }

    /// What the process printed so far.
    pub fn output(&self) -> String {
        std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.signal(Signal::SIGKILL);
    }
}
