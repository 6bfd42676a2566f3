//! `vaultlet-agent supervise [flags] -- COMMAND...`: the process supervisor that runs an app
//! with its secrets in its environment (`vaultlet.io/env-<name>`).
//!
//! It waits (with a deadline) for the env files, starts the app with the merged environment,
//! forwards every signal it can catch, reaps every child (it is PID 1 of the app container),
//! and exits with the app's exit code. When a file's content changes it restarts the app,
//! sends it a signal, or does nothing, as the Pod asked. It logs names and paths, never a
//! value.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use tokio::sync::mpsc;

use crate::config::supervise::{OnChange, OnExit, SuperviseArgs};

pub mod install;
mod load;

use load::Contents;

/// Signals passed on to the app. SIGTERM, SIGINT and SIGQUIT also mean "stop": once the app
/// has exited, the supervisor exits with its code instead of starting it again.
const FORWARDED: &[Signal] = &[
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGHUP,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
    Signal::SIGCONT,
    Signal::SIGALRM,
];

/// The longest backoff before a crashed app starts again, and how long it must have run for
/// the backoff to start over (the kubelet's values).
const MAX_BACKOFF: Duration = Duration::from_secs(300);
const BACKOFF_RESET: Duration = Duration::from_secs(600);
/// Changes of several files in one agent round become one restart.
const SETTLE: Duration = Duration::from_millis(100);
/// How often the files are looked for while waiting for them.
const POLL: Duration = Duration::from_millis(100);

fn say(msg: std::fmt::Arguments<'_>) {
    eprintln!("vaultlet-supervise: {msg}");
}

/// Entry point: `args` are the words after `supervise`.
pub fn main(args: impl IntoIterator<Item = String>) -> ExitCode {
    let args = match SuperviseArgs::parse(args) {
        Ok(a) => a,
        Err(e) => {
            say(format_args!("{e}"));
            return ExitCode::from(2);
        }
    };
    // The supervisor holds the values too: keep other processes of the user out of its memory.
    let _ = crate::cli::make_non_dumpable();
    // Orphans of the app are reparented here even when the supervisor is not PID 1 (a Pod
    // with a shared process namespace), so they are reaped with the rest.
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        say(format_args!(
            "cannot become a subreaper ({e}); orphans go to PID 1"
        ));
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            say(format_args!("cannot start the async runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    ExitCode::from(runtime.block_on(Supervisor::new(args).run()))
}

/// What arrives in the loop.
enum Event {
    /// A signal to forward (or SIGCHLD: reap).
    Signal(Signal),
    /// Something changed in a watched directory.
    Files,
}

enum Phase {
    /// The app runs.
    Running,
    /// The app was sent SIGTERM to restart it; SIGKILL at `kill_at`.
    Restarting {
        kill_at: Instant,
        killed: bool,
        since: Instant,
    },
    /// The app exited by itself; start it again at `until`.
    Backoff { until: Instant },
    /// A stop signal came: exit with the app's code once it is gone.
    Stopping,
}

struct Supervisor {
    args: SuperviseArgs,
    /// The file contents the current (or next) app environment comes from.
    contents: Contents,
    vars: BTreeMap<String, String>,
    app: Option<(Pid, Instant)>,
    phase: Phase,
    backoff: Duration,
    check_at: Option<Instant>,
}

impl Supervisor {
    fn new(args: SuperviseArgs) -> Self {
        let backoff = args.backoff;
        Self {
            args,
            contents: Vec::new(),
            vars: BTreeMap::new(),
            app: None,
            phase: Phase::Running,
            backoff,
            check_at: None,
        }
    }

    async fn run(mut self) -> u8 {
        let (tx, mut rx) = mpsc::unbounded_channel();
        if let Err(e) = listen_for_signals(&tx) {
            say(format_args!("cannot handle signals: {e}"));
            return 1;
        }
        if let Err(code) = self.wait_for_files(&mut rx).await {
            return code;
        }
        // Kept alive for the whole run: dropping the watcher stops it.
        let _watcher = if self.args.once {
            None
        } else {
            match watch(&self.args, tx.clone()) {
                Ok(w) => Some(w),
                Err(e) => {
                    say(format_args!(
                        "cannot watch the env files ({e}); the app keeps the values it starts with"
                    ));
                    None
                }
            }
        };
        if let Err(code) = self.start() {
            return code;
        }
        loop {
            let wake = self.next_wake();
            let event = tokio::select! {
                e = rx.recv() => e,
                () = sleep_until(wake) => None,
            };
            let outcome = match event {
                Some(Event::Signal(Signal::SIGCHLD)) => self.reap(),
                Some(Event::Signal(sig)) => self.forward(sig),
                Some(Event::Files) => {
                    self.check_at.get_or_insert_with(|| Instant::now() + SETTLE);
                    None
                }
                None => self.timers(),
            };
            if let Some(code) = outcome {
                return code;
            }
        }
    }

    /// Waits for every env file to exist and parse, until the deadline or a stop signal.
    async fn wait_for_files(&mut self, rx: &mut mpsc::UnboundedReceiver<Event>) -> Result<(), u8> {
        let deadline = Instant::now() + self.args.wait;
        let mut last_error;
        loop {
            match self.load() {
                Ok(()) => return Ok(()),
                Err(e) => last_error = e,
            }
            if Instant::now() >= deadline {
                say(format_args!(
                    "the env files are not ready after {}: {last_error}; check the agent's log (kubectl logs <pod> -c vaultlet-agent)",
                    crate::config::format_duration(self.args.wait)
                ));
                return Err(1);
            }
            tokio::select! {
                Some(Event::Signal(sig)) = rx.recv() => {
                    if is_stop(sig) {
                        say(format_args!("{} before the app started; exiting", sig.as_str()));
                        return Err(128 + sig as u8);
                    }
                }
                () = tokio::time::sleep(POLL) => {}
            }
        }
    }

    /// Reads and parses the files; on success they become the next app environment.
    fn load(&mut self) -> Result<(), load::LoadError> {
        let contents = load::read_all(&self.args.env_files)?;
        let (vars, twice) = load::variables(&self.args.env_files, &contents)?;
        for name in twice {
            say(format_args!(
                "variable {name} is set by more than one env file; the last file wins"
            ));
        }
        self.contents = contents;
        self.vars = vars;
        Ok(())
    }

    fn start(&mut self) -> Result<(), u8> {
        let Some((program, rest)) = self.args.command.split_first() else {
            return Err(2);
        };
        let overridden: Vec<&str> = self
            .vars
            .keys()
            .filter(|k| std::env::var_os(k).is_some())
            .map(String::as_str)
            .collect();
        if !overridden.is_empty() {
            say(format_args!(
                "the env files override the container's {}",
                overridden.join(", ")
            ));
        }
        let child = std::process::Command::new(program)
            .args(rest)
            .envs(&self.vars)
            .spawn();
        match child {
            Ok(child) => {
                let pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
                // Dropping the handle neither kills nor waits: the loop reaps every child.
                drop(child);
                self.app = Some((pid, Instant::now()));
                self.phase = Phase::Running;
                let names: Vec<&str> = self.vars.keys().map(String::as_str).collect();
                say(format_args!(
                    "started {program} (pid {pid}) with {} variables from {} env files: {}",
                    names.len(),
                    self.args.env_files.len(),
                    names.join(", ")
                ));
                Ok(())
            }
            Err(e) => {
                say(format_args!(
                    "cannot start {program:?}: {e}; check the container's command (it must name a program in the image)"
                ));
                Err(127)
            }
        }
    }

    fn next_wake(&self) -> Instant {
        let far = Instant::now() + Duration::from_secs(3600);
        let phase = match self.phase {
            Phase::Restarting {
                kill_at,
                killed: false,
                ..
            } => Some(kill_at),
            Phase::Backoff { until } => Some(until),
            _ => None,
        };
        [phase, self.check_at]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(far)
    }

    fn forward(&mut self, sig: Signal) -> Option<u8> {
        if is_stop(sig) {
            match self.phase {
                Phase::Backoff { .. } => {
                    say(format_args!(
                        "{} while the app was not running; exiting",
                        sig.as_str()
                    ));
                    return Some(128 + sig as u8);
                }
                _ => self.phase = Phase::Stopping,
            }
        }
        if let Some((pid, _)) = self.app
            && let Err(e) = kill(pid, sig)
        {
            say(format_args!("cannot send {} to the app: {e}", sig.as_str()));
        }
        None
    }

    /// Reaps every exited child; the app's exit decides what happens next.
    fn reap(&mut self) -> Option<u8> {
        loop {
            let status = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => return None,
                Ok(s) => s,
            };
            let code = match status {
                WaitStatus::Exited(_, code) => u8::try_from(code & 0xff).unwrap_or(1),
                WaitStatus::Signaled(_, sig, _) => 128 + sig as u8,
                _ => continue,
            };
            let Some((app, started)) = self.app else {
                continue;
            };
            if status.pid() != Some(app) {
                continue;
            }
            self.app = None;
            if let Some(code) = self.app_exited(code, started.elapsed()) {
                return Some(code);
            }
        }
    }

    fn app_exited(&mut self, code: u8, ran: Duration) -> Option<u8> {
        match self.phase {
            Phase::Stopping => {
                say(format_args!("the app exited with code {code}"));
                Some(code)
            }
            Phase::Restarting { since, .. } => {
                if let Err(code) = self.start() {
                    return Some(code);
                }
                say(format_args!(
                    "restarted the app with the new values in {} ms",
                    since.elapsed().as_millis()
                ));
                None
            }
            Phase::Running | Phase::Backoff { .. } => match self.args.on_exit {
                OnExit::Exit => {
                    say(format_args!("the app exited with code {code}"));
                    Some(code)
                }
                OnExit::Restart => {
                    if ran >= BACKOFF_RESET {
                        self.backoff = self.args.backoff;
                    }
                    say(format_args!(
                        "the app exited with code {code}; starting it again in {}",
                        crate::config::format_duration(self.backoff)
                    ));
                    self.phase = Phase::Backoff {
                        until: Instant::now() + self.backoff,
                    };
                    self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                    None
                }
            },
        }
    }

    /// A deadline passed: SIGKILL a restart that took too long, end a backoff, or look at the
    /// files after they settled.
    fn timers(&mut self) -> Option<u8> {
        let now = Instant::now();
        if self.check_at.is_some_and(|t| t <= now) {
            self.check_at = None;
            self.files_changed();
        }
        match self.phase {
            Phase::Restarting {
                kill_at,
                killed: false,
                since,
            } if kill_at <= now => {
                if let Some((pid, _)) = self.app {
                    say(format_args!(
                        "the app did not exit within the grace period; sending SIGKILL"
                    ));
                    let _ = kill(pid, Signal::SIGKILL);
                }
                self.phase = Phase::Restarting {
                    kill_at,
                    killed: true,
                    since,
                };
            }
            Phase::Backoff { until } if until <= now => {
                if let Err(code) = self.start() {
                    return Some(code);
                }
            }
            _ => {}
        }
        None
    }

    fn files_changed(&mut self) {
        let previous = std::mem::take(&mut self.contents);
        let previous_vars = self.vars.clone();
        let contents = match load::read_all(&self.args.env_files) {
            Ok(c) => c,
            Err(e) => {
                // Mid-rename or removed: the next event looks again.
                self.contents = previous;
                say(format_args!("{e}; keeping the current values"));
                return;
            }
        };
        if contents == previous {
            self.contents = previous;
            return;
        }
        if let Err(e) = self.load() {
            self.contents = previous;
            self.vars = previous_vars;
            say(format_args!("{e}; keeping the current values"));
            return;
        }
        let changed: Vec<String> = self
            .args
            .env_files
            .iter()
            .zip(previous.iter().map(Some).chain(std::iter::repeat(None)))
            .zip(&self.contents)
            .filter(|((_, old), new)| *old != Some(*new))
            .map(|((path, _), _)| path.display().to_string())
            .collect();
        let what = changed.join(", ");
        match (&self.args.on_change, self.app) {
            (OnChange::Restart, Some((pid, _))) if matches!(self.phase, Phase::Running) => {
                say(format_args!("{what} changed; restarting the app (SIGTERM)"));
                let now = Instant::now();
                self.phase = Phase::Restarting {
                    kill_at: now + self.args.grace,
                    killed: false,
                    since: now,
                };
                if let Err(e) = kill(pid, Signal::SIGTERM) {
                    say(format_args!("cannot send SIGTERM to the app: {e}"));
                }
            }
            (OnChange::Signal(name), Some((pid, _))) => match name.parse::<Signal>() {
                Ok(sig) => {
                    say(format_args!("{what} changed; sending {name} to the app"));
                    let _ = kill(pid, sig);
                }
                Err(e) => say(format_args!("cannot send {name}: {e}")),
            },
            _ => say(format_args!(
                "{what} changed; the new values apply when the app next starts"
            )),
        }
    }
}

fn is_stop(sig: Signal) -> bool {
    matches!(sig, Signal::SIGTERM | Signal::SIGINT | Signal::SIGQUIT)
}

async fn sleep_until(t: Instant) {
    tokio::time::sleep_until(t.into()).await;
}

/// Installs a handler for every forwarded signal and SIGCHLD; each arrival becomes an event.
fn listen_for_signals(tx: &mpsc::UnboundedSender<Event>) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    for &sig in FORWARDED.iter().chain(&[Signal::SIGCHLD]) {
        let mut stream = signal(SignalKind::from_raw(sig as i32))?;
        let tx = tx.clone();
        tokio::spawn(async move {
            while stream.recv().await.is_some() {
                if tx.send(Event::Signal(sig)).is_err() {
                    break;
                }
            }
        });
    }
    Ok(())
}

/// Watches the directories of the env files: the agent replaces files by renaming a temp
/// file over them, which a watch on the file itself would stop seeing.
fn watch(
    args: &SuperviseArgs,
    tx: mpsc::UnboundedSender<Event>,
) -> ::notify::Result<::notify::RecommendedWatcher> {
    use ::notify::Watcher as _;
    let mut watcher =
        ::notify::recommended_watcher(move |res: ::notify::Result<::notify::Event>| {
            if res.is_ok() {
                let _ = tx.send(Event::Files);
            }
        })?;
    let mut dirs: Vec<&std::path::Path> =
        args.env_files.iter().filter_map(|f| f.parent()).collect();
    dirs.sort();
    dirs.dedup();
    for dir in dirs {
        watcher.watch(dir, ::notify::RecursiveMode::NonRecursive)?;
    }
    Ok(watcher)
}
