//! Telling the application a file changed: a signal by process name, an HTTP call, a command.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::config::{NotifySpec, SecretSpec};
use crate::renew::{backoff, jitter};

/// HTTP notifications give up after this many attempts.
const HTTP_ATTEMPTS: u32 = 3;
/// Each HTTP attempt may take this long.
const HTTP_TIMEOUT: Duration = Duration::from_secs(2);
/// A notify command may run this long before it is killed.
const EXEC_TIMEOUT: Duration = Duration::from_secs(30);

/// Errors of one notification; they are logged, never fatal.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The signal name is not one nix knows.
    #[error("unknown signal {0}")]
    Signal(String),
    /// No process of that name was found.
    #[error(
        "no process named {0:?} found; the app needs shareProcessNamespace: true and must be running"
    )]
    NoProcess(String),
    /// Signalling failed.
    #[error(
        "cannot signal {process:?} (pid {pid}): {source}; run the agent with a user allowed to signal the app"
    )]
    Kill {
        /// Process name.
        process: String,
        /// Its pid.
        pid: i32,
        /// The OS error.
        source: nix::Error,
    },
    /// Every HTTP attempt failed.
    #[error("{method} {url} failed after {attempts} attempts: {reason}")]
    Http {
        /// Method.
        method: String,
        /// URL.
        url: String,
        /// Attempts made.
        attempts: u32,
        /// Last failure.
        reason: String,
    },
    /// The command could not run or failed.
    #[error("command {program:?}: {reason}")]
    Exec {
        /// Program.
        program: String,
        /// What went wrong.
        reason: String,
    },
}

/// The distinct targets to notify after a round in which `changed` secrets' files changed:
/// each secret's own targets plus the pod-wide ones, each target once.
pub fn targets<'a>(
    changed: impl IntoIterator<Item = &'a SecretSpec>,
    pod: &'a [NotifySpec],
) -> Vec<NotifySpec> {
    let mut out: Vec<NotifySpec> = Vec::new();
    let mut any = false;
    for spec in changed {
        any = true;
        for t in &spec.notify {
            if !out.contains(t) {
                out.push(t.clone());
            }
        }
    }
    if any {
        for t in pod {
            if !out.contains(t) {
                out.push(t.clone());
            }
        }
    }
    out
}

/// True when a process with `comm` and raw `cmdline` is the one called `name`: its comm
/// (the kernel truncates it to 15 bytes) or the basename of its argv\[0\] matches.
pub fn process_matches(name: &str, comm: &str, cmdline: &[u8]) -> bool {
    let comm = comm.trim_end_matches('\n');
    let short = name.get(..name.len().min(15)).unwrap_or(name);
    if !comm.is_empty() && (comm == name || (name.len() > 15 && comm == short)) {
        return true;
    }
    let argv0 = cmdline.split(|&b| b == 0).next().unwrap_or_default();
    let argv0 = String::from_utf8_lossy(argv0);
    let base = argv0.rsplit('/').next().unwrap_or_default();
    // Some programs rewrite argv[0] into "name: details" (nginx: master process ...).
    let base = base.split([' ', ':']).next().unwrap_or_default();
    !base.is_empty() && base == name
}

/// Pids of processes named `name`, from /proc (the agent's own pid excluded).
pub fn find_processes(proc_root: &Path, name: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    let Ok(entries) = std::fs::read_dir(proc_root) else {
        return Vec::new();
    };
    let mut pids: Vec<i32> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            let dir = proc_root.join(pid.to_string());
            let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
            let cmdline = std::fs::read(dir.join("cmdline")).unwrap_or_default();
            process_matches(name, &comm, &cmdline)
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// A short, secret-free description of a target for logs.
pub fn describe(t: &NotifySpec) -> String {
    match t {
        NotifySpec::Signal { signal, process } => format!("signal {signal} to {process:?}"),
        NotifySpec::Http { url, method } => format!("{method} {url:?}"),
        NotifySpec::Exec { command } => {
            format!(
                "exec {:?}",
                command.first().map(String::as_str).unwrap_or_default()
            )
        }
    }
}

/// Sends one notification; `http` is the client for `http` targets.
pub async fn send(http: Option<&reqwest::Client>, target: &NotifySpec) -> Result<(), NotifyError> {
    match target {
        NotifySpec::Signal { signal, process } => send_signal(signal, process),
        NotifySpec::Http { url, method } => match http {
            Some(http) => send_http(http, method, url).await,
            None => Err(NotifyError::Http {
                method: method.clone(),
                url: url.clone(),
                attempts: 0,
                reason: "no HTTP client (see the earlier error)".into(),
            }),
        },
        NotifySpec::Exec { command } => run_command(command).await,
    }
}

fn send_signal(signal: &str, process: &str) -> Result<(), NotifyError> {
    let sig = Signal::from_str(signal).map_err(|_| NotifyError::Signal(signal.into()))?;
    let pids = find_processes(Path::new("/proc"), process);
    if pids.is_empty() {
        return Err(NotifyError::NoProcess(process.into()));
    }
    for pid in pids {
        kill(Pid::from_raw(pid), sig).map_err(|source| NotifyError::Kill {
            process: process.into(),
            pid,
            source,
        })?;
    }
    Ok(())
}

async fn send_http(http: &reqwest::Client, method: &str, url: &str) -> Result<(), NotifyError> {
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap_or(reqwest::Method::POST);
    let mut reason = String::new();
    for attempt in 0..HTTP_ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(backoff(
                attempt - 1,
                Duration::from_millis(200),
                Duration::from_secs(2),
                jitter(),
            ))
            .await;
        }
        match http
            .request(m.clone(), url)
            .timeout(HTTP_TIMEOUT)
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => reason = format!("answered {}", r.status()),
            Err(e) => reason = e.without_url().to_string(),
        }
    }
    Err(NotifyError::Http {
        method: m.to_string(),
        url: url.into(),
        attempts: HTTP_ATTEMPTS,
        reason,
    })
}

async fn run_command(command: &[String]) -> Result<(), NotifyError> {
    let program = command.first().cloned().unwrap_or_default();
    let err = |reason: String| NotifyError::Exec {
        program: program.clone(),
        reason,
    };
    let mut child = tokio::process::Command::new(&program)
        .args(command.iter().skip(1))
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| err(format!("cannot start: {e}")))?;
    match tokio::time::timeout(EXEC_TIMEOUT, child.wait()).await {
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => Err(err(format!("exited with {status}"))),
        Ok(Err(e)) => Err(err(e.to_string())),
        Err(_) => Err(err(format!("still running after {EXEC_TIMEOUT:?}; killed"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mk_spec(name: &str, notify: &[&str]) -> SecretSpec {
        let mut s: SecretSpec = serde_json::from_value(serde_json::json!({
            "name": name, "path": "secret/data/x", "file": name
        }))
        .expect("spec");
        s.notify = notify.iter().map(|n| n.parse().expect("notify")).collect();
        s
    }

    #[test]
    fn one_notification_per_target() {
        let a = mk_spec("a", &["signal:HUP:nginx", "http://127.0.0.1:1/r"]);
        let b = mk_spec("b", &["signal:SIGHUP:nginx"]);
        let pod: Vec<NotifySpec> = vec![
            "http://127.0.0.1:1/r".parse().expect("n"),
            "exec:/bin/true".parse().expect("n"),
        ];
        let t = targets([&a, &b], &pod);
        assert_eq!(t.len(), 3, "{t:?}");
        assert!(targets(std::iter::empty(), &pod).is_empty());
        assert_eq!(targets([&b], &[]).len(), 1);
    }

    #[test]
    fn process_names() {
        assert!(process_matches(
            "nginx",
            "nginx\n",
            b"nginx: master process\0"
        ));
        assert!(process_matches(
            "myapp",
            "sleep\n",
            b"/usr/local/bin/myapp\0--flag\0"
        ));
        assert!(process_matches(
            "a-very-long-process-name",
            "a-very-long-pro\n",
            b""
        ));
        assert!(!process_matches(
            "nginx",
            "nginx-exporter\n",
            b"/bin/nginx-exporter\0"
        ));
        assert!(!process_matches("sh", "bash\n", b"/bin/bash\0-c\0sh\0"));
        assert!(!process_matches("x", "", b""));
    }

    #[test]
    fn finds_a_renamed_child_in_proc() {
        let mut child = std::process::Command::new("/bin/bash")
            .args(["-c", "exec -a vaultlet-notify-test sleep 30"])
            .spawn()
            .expect("spawn");
        let pid = child.id() as i32;
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut found = Vec::new();
        while std::time::Instant::now() < deadline {
            found = find_processes(Path::new("/proc"), "vaultlet-notify-test");
            if found.contains(&pid) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(found, vec![pid]);
    }

    #[tokio::test]
    async fn exec_reports_failures() {
        assert!(run_command(&["/bin/true".into()]).await.is_ok());
        let err = run_command(&["/bin/false".into()])
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("exited"), "{err}");
        let err = run_command(&["/nonexistent/x".into()])
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot start"), "{err}");
    }
}
