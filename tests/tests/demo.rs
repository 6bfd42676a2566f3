//! The README demo binary: runs to completion, and Ctrl-C in the middle leaves nothing behind.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use vaultlet_testkit::TempDir;

const DEMO: &str = env!("CARGO_BIN_EXE_vaultlet-demo");

/// Processes whose working directory is under `dir` (every process of the demo's Pod).
fn processes_in(dir: &Path) -> Vec<i32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(cwd) = std::fs::read_link(entry.path().join("cwd"))
            && cwd.starts_with(dir)
        {
            out.push(pid);
        }
    }
    out
}

/// The pid of the process listening as the demo's OpenBao (its command line has the port).
fn bao_pid(port: &str) -> Option<i32> {
    let needle = format!("-dev-listen-address=127.0.0.1:{port}");
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid = e.file_name().to_string_lossy().parse::<i32>().ok()?;
        let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
        String::from_utf8_lossy(&cmd)
            .contains(&needle)
            .then_some(pid)
    })
}

fn describe(pid: i32) -> String {
    let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    format!("{pid} {}", String::from_utf8_lossy(&cmd).replace('\0', " "))
}

fn alive(pid: i32) -> bool {
    kill(Pid::from_raw(pid), None).is_ok()
        && std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

#[test]
fn demo_runs_to_completion() {
    let work = TempDir::with_prefix("vaultlet-demo-test-").expect("temp dir");
    let out = Command::new(DEMO)
        .arg("--work-dir")
        .arg(work.path())
        .output()
        .expect("run the demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    for step in 1..=7 {
        assert!(
            stdout.contains(&format!("[{step}/7]")),
            "step {step} missing:\n{stdout}"
        );
    }
    assert!(stdout.contains("DB_PASSWORD=rotated-password"), "{stdout}");
    assert!(stdout.contains("got SIGHUP"), "{stdout}");
    assert!(
        processes_in(work.path()).is_empty(),
        "processes left behind"
    );
}

#[test]
fn ctrl_c_stops_everything() {
    let work = TempDir::with_prefix("vaultlet-demo-test-").expect("temp dir");
    let mut child = Command::new(DEMO)
        .arg("--work-dir")
        .arg(work.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the demo");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Wait until the Pod runs (step 5), remembering OpenBao's port.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut port = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .expect("the demo reaches step 5 within 60 s");
        if let Some(rest) = line.trim().strip_prefix("http://127.0.0.1:") {
            port = rest.split_whitespace().next().map(String::from);
        }
        if line.starts_with("[5/7]") {
            break;
        }
    }
    let bao = bao_pid(&port.expect("OpenBao's address printed")).expect("OpenBao runs");
    let pod = processes_in(work.path());
    assert!(pod.len() >= 2, "the Pod's processes run: {pod:?}");

    let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    kill(pid, Signal::SIGINT).expect("send SIGINT");
    let t = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the demo did not stop after SIGINT"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(130), "exit code after Ctrl-C");
    let all: Vec<i32> = pod.into_iter().chain([bao]).collect();
    // The kernel tears a PID namespace down asynchronously: allow it a moment.
    let t = Instant::now();
    while all.iter().any(|p| alive(*p)) && t.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let left: Vec<String> = all
        .iter()
        .filter(|p| alive(**p))
        .map(|p| describe(*p))
        .collect();
    assert!(left.is_empty(), "left running after Ctrl-C: {left:?}");
}
