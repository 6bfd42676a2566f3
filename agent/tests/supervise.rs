//! The process supervisor as a real process: the built agent binary's `supervise` subcommand
//! runs a small `sh` script as the app. The app prints a checksum of its variables (never
//! the values); each test also checks that the supervisor's own output holds no value.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const WAIT: Duration = Duration::from_secs(20);
const VALUE_1: &str = "s3cr3t-one value";
const VALUE_2: &str = "s3cr3t-two 'value'";

/// `sh` lines: print the pid and a checksum of $DB_PASS and $DB_USER.
const REPORT: &str =
    r#"echo "app: start $$ pass=$(printf %s "$DB_PASS" | cksum | cut -d' ' -f1) user=$DB_USER""#;

struct Supervised {
    child: Child,
    out: Arc<Mutex<Vec<String>>>,
    err: Arc<Mutex<Vec<String>>>,
}

fn cksum(v: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg("printf %s \"$1\" | cksum | cut -d' ' -f1")
        .arg("sh")
        .arg(v)
        .output()
        .expect("cksum");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Writes an env file the way the agent does: a temp file renamed over the old one.
fn write_env(path: &Path, pass: &str) {
    let text = vaultlet_agent::envfile::write("db", [("DB_PASS", pass), ("DB_USER", "app")])
        .expect("env text");
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

fn collect(stream: impl std::io::Read + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            sink.lock().expect("lock").push(line);
        }
    });
    lines
}

/// The agent binary: this build's, or `$VAULTLET_AGENT_BIN` (a release build, for the
/// figures in docs/benchmarks.md).
fn agent_bin() -> PathBuf {
    std::env::var_os("VAULTLET_AGENT_BIN").map_or_else(
        || env!("CARGO_BIN_EXE_vaultlet-agent").into(),
        PathBuf::from,
    )
}

fn supervise(flags: &[&str], file: &Path, script: &str) -> Supervised {
    let mut child = Command::new(agent_bin())
        .arg("supervise")
        .arg("--env-file")
        .arg(file)
        .args(flags)
        .args(["--", "sh", "-c", script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the supervisor");
    let out = collect(child.stdout.take().expect("stdout"));
    let err = collect(child.stderr.take().expect("stderr"));
    Supervised { child, out, err }
}

impl Supervised {
    fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).expect("pid"))
    }

    fn signal(&self, sig: Signal) {
        kill(self.pid(), sig).expect("kill");
    }

    fn lines(&self) -> Vec<String> {
        self.out.lock().expect("lock").clone()
    }

    fn log(&self) -> String {
        self.err.lock().expect("lock").join("\n")
    }

    /// Waits until `count` app lines start with `prefix`; those lines then.
    fn wait_lines(&self, prefix: &str, count: usize) -> Vec<String> {
        let deadline = Instant::now() + WAIT;
        loop {
            let found: Vec<String> = self
                .lines()
                .into_iter()
                .filter(|l| l.starts_with(prefix))
                .collect();
            if found.len() >= count {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "no {count} lines {prefix:?} within {WAIT:?}; app:\n{}\nsupervisor:\n{}",
                self.lines().join("\n"),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_exit(&mut self) -> i32 {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code().expect("exit code, not a signal");
            }
            assert!(
                Instant::now() < deadline,
                "the supervisor did not exit; supervisor:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The supervisor's output never holds a secret value.
    fn assert_no_values(&self) {
        let log = self.log();
        for v in [VALUE_1, VALUE_2, "s3cr3t"] {
            assert!(
                !log.contains(v),
                "a secret value in the supervisor's log:\n{log}"
            );
        }
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn env_file() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("db");
    write_env(&file, VALUE_1);
    (dir, file)
}

fn looping(trap: &str) -> String {
    format!("{REPORT}; trap '{trap}' TERM HUP; while :; do sleep 0.05; done")
}

#[test]
fn the_app_gets_the_values_and_is_restarted_with_new_ones() {
    let (_dir, file) = env_file();
    let app = supervise(
        &["--grace", "2s"],
        &file,
        &looping("echo app: got TERM; exit 0"),
    );
    let first = app.wait_lines("app: start", 1);
    assert_eq!(
        first[0]
            .split_once(" pass=")
            .map(|(_, rest)| rest.to_owned()),
        Some(format!("{} user=app", cksum(VALUE_1)))
    );
    let changed = Instant::now();
    write_env(&file, VALUE_2);
    let starts = app.wait_lines("app: start", 2);
    let restart = changed.elapsed();
    assert_eq!(
        starts[1]
            .split_once(" pass=")
            .map(|(_, rest)| rest.to_owned()),
        Some(format!("{} user=app", cksum(VALUE_2)))
    );
    assert_ne!(starts[0], starts[1], "a new process");
    assert!(app.lines().contains(&"app: got TERM".to_owned()));
    eprintln!(
        "timing: env file replaced -> app restarted with the new values: {} ms",
        restart.as_millis()
    );
    // The same content again (the agent rewrites unchanged data): no restart.
    write_env(&file, VALUE_2);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(app.wait_lines("app: start", 2).len(), 2);
    app.assert_no_values();
}

#[test]
fn sigterm_reaches_the_app_and_the_supervisor_exits_with_its_code() {
    let (_dir, file) = env_file();
    let mut app = supervise(&[], &file, &looping("echo app: got TERM; exit 7"));
    app.wait_lines("app: start", 1);
    app.signal(Signal::SIGTERM);
    assert_eq!(app.wait_exit(), 7);
    app.wait_lines("app: got TERM", 1);
    app.assert_no_values();
}

#[test]
fn the_apps_exit_code_is_the_supervisors() {
    let (_dir, file) = env_file();
    let mut app = supervise(&[], &file, &format!("{REPORT}; exit 3"));
    assert_eq!(app.wait_exit(), 3);
    assert!(
        app.log().ends_with("the app exited with code 3"),
        "{}",
        app.log()
    );
}

#[test]
fn a_crashing_app_is_started_again_with_backoff() {
    let (_dir, file) = env_file();
    let mut app = supervise(
        &["--on-exit", "restart", "--backoff", "100ms"],
        &file,
        &format!("{REPORT}; exit 1"),
    );
    app.wait_lines("app: start", 3);
    let log = app.log();
    assert!(
        log.contains("the app exited with code 1; starting it again in 100ms"),
        "{log}"
    );
    assert!(
        log.contains("the app exited with code 1; starting it again in 200ms"),
        "{log}"
    );
    app.signal(Signal::SIGTERM);
    let code = app.wait_exit();
    // Stopped during a backoff (143), or while a run was going (the app's 1).
    assert!(code == 143 || code == 1, "{code}");
}

#[test]
fn a_signal_instead_of_a_restart() {
    let (_dir, file) = env_file();
    let app = supervise(
        &["--on-change", "signal:SIGHUP"],
        &file,
        &looping("echo app: got a signal"),
    );
    app.wait_lines("app: start", 1);
    write_env(&file, VALUE_2);
    app.wait_lines("app: got a signal", 1);
    assert_eq!(app.wait_lines("app: start", 1).len(), 1, "not restarted");
    app.assert_no_values();
}

#[test]
fn missing_files_time_out_with_a_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("never");
    let mut app = supervise(&["--wait", "300ms"], &file, "echo app: ran");
    assert_eq!(app.wait_exit(), 1);
    assert!(app.lines().is_empty(), "the app never starts");
    let log = app.log();
    assert!(
        log.starts_with(&format!(
            "vaultlet-supervise: the env files are not ready after 300ms: cannot read env file {file:?}: "
        )),
        "{log}"
    );
    assert!(
        log.ends_with("check the agent's log (kubectl logs <pod> -c vaultlet-agent)"),
        "{log}"
    );
}

#[test]
fn a_bad_file_after_a_change_keeps_the_running_app() {
    let (_dir, file) = env_file();
    let app = supervise(&[], &file, &looping("exit 0"));
    app.wait_lines("app: start", 1);
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, "DB_PASS=s3cr3t broken\n").expect("write");
    std::fs::rename(&tmp, &file).expect("rename");
    let deadline = Instant::now() + WAIT;
    while !app.log().contains("keeping the current values") {
        assert!(Instant::now() < deadline, "{}", app.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(app.wait_lines("app: start", 1).len(), 1);
    app.assert_no_values();
}

#[test]
fn orphans_are_reaped() {
    let (_dir, file) = env_file();
    // The subshell exits at once; its `sleep` is left to the supervisor (a subreaper).
    let app = supervise(
        &[],
        &file,
        "(sleep 1 & echo \"app: orphan $!\"); while :; do sleep 0.05; done",
    );
    let line = app.wait_lines("app: orphan", 1).remove(0);
    let pid = line.trim_start_matches("app: orphan ").to_owned();
    let stat = PathBuf::from(format!("/proc/{pid}/stat"));
    // Its parent is the supervisor (not the machine's init, which would reap it too).
    let parent = || {
        let text = std::fs::read_to_string(&stat).ok()?;
        let fields: Vec<&str> = text.rsplit_once(')')?.1.split_whitespace().collect();
        fields.get(1).and_then(|p| p.parse::<i32>().ok())
    };
    let deadline = Instant::now() + WAIT;
    while parent() != Some(app.pid().as_raw()) {
        assert!(
            Instant::now() < deadline,
            "orphan {pid}: parent {:?}",
            parent()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    while stat.exists() {
        assert!(
            Instant::now() < deadline,
            "orphan {pid} not reaped: {:?}",
            std::fs::read_to_string(&stat)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn bad_flags_exit_2_with_the_reason() {
    let out = Command::new(agent_bin())
        .args(["supervise", "--env-file", "/x"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "vaultlet-supervise: no command: put the app's command after --\n"
    );
}

/// For docs/benchmarks.md: the supervisor's resident memory beside a running app.
#[test]
fn report_supervisor_memory() {
    let (_dir, file) = env_file();
    let app = supervise(&[], &file, &looping("exit 0"));
    app.wait_lines("app: start", 1);
    std::thread::sleep(Duration::from_millis(300));
    let status = std::fs::read_to_string(format!("/proc/{}/status", app.pid())).expect("status");
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .unwrap_or("VmRSS: ?");
    eprintln!("memory: supervisor {rss}");
}
