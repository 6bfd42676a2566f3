//! The supervisor's part of the contract: where the agent copies itself for app containers,
//! and the command line the injector puts in front of an app's `command`
//! ([`SuperviseArgs::to_argv`]), which the supervisor reads back ([`SuperviseArgs::parse`]).
//!
//! Both sides use this one type, so the flags cannot drift apart.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use super::{SIGNALS, format_duration, parse_duration};

/// Volume holding the agent binary for the app containers (an `emptyDir` on disk).
pub const BIN_VOLUME: &str = "vaultlet-bin";

/// Where [`BIN_VOLUME`] is mounted: writable in the agent, which copies its binary into it,
/// read-only in the app containers.
pub const BIN_DIR: &str = "/vaultlet/bin";

/// File name of the agent binary inside [`BIN_DIR`].
pub const BIN_NAME: &str = "vaultlet-agent";

/// Subcommand of the agent binary that runs an app with its secrets in the environment.
pub const SUPERVISE_SUBCOMMAND: &str = "supervise";

/// Path of the supervisor binary in an app container.
pub fn supervisor_path() -> String {
    format!("{BIN_DIR}/{BIN_NAME}")
}

/// What the supervisor does when an env file's content changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum OnChange {
    /// Stop the app (SIGTERM, the grace period, SIGKILL) and start it with the new values.
    #[default]
    Restart,
    /// Send this signal (`SIGHUP`, ...) to the app.
    Signal(String),
    /// Nothing; the new values are used the next time the app starts.
    Nothing,
}

impl FromStr for OnChange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "restart" => Ok(Self::Restart),
            "none" => Ok(Self::Nothing),
            other => {
                let sig = other.strip_prefix("signal:").ok_or(
                    "expected restart, signal:<SIGNAL> (e.g. signal:SIGHUP) or none".to_owned(),
                )?;
                let sig = sig.trim().to_ascii_uppercase();
                let sig = if sig.starts_with("SIG") {
                    sig
                } else {
                    format!("SIG{sig}")
                };
                if !SIGNALS.contains(&sig.as_str()) {
                    return Err(format!(
                        "unknown signal, expected one of {}",
                        SIGNALS.join(", ")
                    ));
                }
                Ok(Self::Signal(sig))
            }
        }
    }
}

impl std::fmt::Display for OnChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Restart => f.write_str("restart"),
            Self::Signal(s) => write!(f, "signal:{s}"),
            Self::Nothing => f.write_str("none"),
        }
    }
}

/// What the supervisor does when the app exits by itself (not stopped by a signal).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnExit {
    /// Exit with the app's code: the kubelet and the Job controller see the app's result
    /// (Pods with `restartPolicy` `Never` or `OnFailure`, init containers).
    #[default]
    Exit,
    /// Start the app again after a backoff that doubles up to 5 minutes, as the kubelet
    /// does, and keep watching the env files (Pods with `restartPolicy: Always`).
    Restart,
}

impl FromStr for OnExit {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "exit" => Ok(Self::Exit),
            "restart" => Ok(Self::Restart),
            _ => Err("expected exit or restart".into()),
        }
    }
}

impl std::fmt::Display for OnExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Exit => "exit",
            Self::Restart => "restart",
        })
    }
}

/// The supervisor's settings and the app's command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuperviseArgs {
    /// Env files (the agent's `env` output), loaded in this order; a later file wins.
    pub env_files: Vec<PathBuf>,
    /// What to do when a file's content changes.
    pub on_change: OnChange,
    /// What to do when the app exits by itself.
    pub on_exit: OnExit,
    /// Time between SIGTERM and SIGKILL when the app is restarted (the Pod's grace period).
    pub grace: Duration,
    /// How long to wait for the env files before giving up.
    pub wait: Duration,
    /// First delay before a crashed app is started again (doubles up to 5 minutes).
    pub backoff: Duration,
    /// Read the files once and never watch them (init-only Pods).
    pub once: bool,
    /// The app's command (the container's `command`; its `args` follow as given).
    pub command: Vec<String>,
}

impl Default for SuperviseArgs {
    fn default() -> Self {
        Self {
            env_files: Vec::new(),
            on_change: OnChange::default(),
            on_exit: OnExit::default(),
            grace: Duration::from_secs(30),
            wait: Duration::from_secs(120),
            backoff: Duration::from_secs(10),
            once: false,
            command: Vec::new(),
        }
    }
}

impl SuperviseArgs {
    /// The full `command` of the app container: the supervisor, its flags, `--`, the app's
    /// command.
    pub fn to_argv(&self) -> Vec<String> {
        let mut argv = vec![supervisor_path(), SUPERVISE_SUBCOMMAND.to_owned()];
        for f in &self.env_files {
            argv.push("--env-file".into());
            argv.push(f.display().to_string());
        }
        let d = Self::default();
        if self.on_change != d.on_change {
            argv.extend(["--on-change".into(), self.on_change.to_string()]);
        }
        if self.on_exit != d.on_exit {
            argv.extend(["--on-exit".into(), self.on_exit.to_string()]);
        }
        if self.grace != d.grace {
            argv.extend(["--grace".into(), format_duration(self.grace)]);
        }
        if self.wait != d.wait {
            argv.extend(["--wait".into(), format_duration(self.wait)]);
        }
        if self.backoff != d.backoff {
            argv.extend(["--backoff".into(), format_duration(self.backoff)]);
        }
        if self.once {
            argv.push("--once".into());
        }
        argv.push("--".into());
        argv.extend(self.command.iter().cloned());
        argv
    }

    /// Reads the arguments after the subcommand (what [`to_argv`](Self::to_argv) wrote after
    /// `supervise`).
    pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Self, String> {
        let mut out = Self::default();
        let mut it = args.into_iter();
        while let Some(flag) = it.next() {
            if flag == "--" {
                out.command = it.collect();
                break;
            }
            if flag == "--once" {
                out.once = true;
                continue;
            }
            let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
            let bad = |e: String| format!("{flag} {value:?}: {e}");
            match flag.as_str() {
                "--env-file" => out.env_files.push(value.into()),
                "--on-change" => out.on_change = value.parse().map_err(bad)?,
                "--on-exit" => out.on_exit = value.parse().map_err(bad)?,
                "--grace" => out.grace = parse_duration(&value).map_err(bad)?,
                "--wait" => out.wait = parse_duration(&value).map_err(bad)?,
                "--backoff" => out.backoff = parse_duration(&value).map_err(bad)?,
                _ => {
                    return Err(format!(
                        "unknown option {flag:?}; expected --env-file, --on-change, --on-exit, --grace, --wait, --backoff, --once, then -- and the app's command"
                    ));
                }
            }
        }
        if out.command.is_empty() {
            return Err("no command: put the app's command after --".into());
        }
        if out.env_files.is_empty() {
            return Err("no --env-file: name at least one env file".into());
        }
        Ok(out)
    }
}

/// The keys a template makes known: text before `=` at the start of a line, outside quotes,
/// with no Handlebars expression in it. Keys written by an expression (`{{@key}}=...`) are
/// checked by the agent when it renders. Returns `(line, key)` pairs, 1-based lines.
pub fn literal_template_keys(template: &str) -> Vec<(usize, String)> {
    let mut keys = Vec::new();
    let mut quote: Option<char> = None;
    for (n, line) in template.lines().enumerate() {
        if quote.is_none()
            && let Some((key, _)) = line.split_once('=')
        {
            let literal = !key.contains("{{") && !key.contains(['\'', '"']);
            if literal && !key.is_empty() {
                keys.push((n + 1, key.to_owned()));
            }
        }
        // Track quotes across lines (a value may span lines); skip `{{...}}` expressions.
        let mut rest = line;
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix("{{") {
                rest = after.split_once("}}").map_or("", |(_, r)| r);
                continue;
            }
            let mut chars = rest.chars();
            let c = chars.next().unwrap_or_default();
            match (quote, c) {
                (None, '\'' | '"') => quote = Some(c),
                (Some('"'), '\\') => {
                    chars.next();
                }
                (Some(q), c) if c == q => quote = None,
                _ => {}
            }
            rest = chars.as_str();
        }
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_round_trip() {
        let args = SuperviseArgs {
            env_files: vec!["/vault/secrets/db".into(), "/vault/secrets/api.env".into()],
            on_change: OnChange::Signal("SIGHUP".into()),
            on_exit: OnExit::Restart,
            grace: Duration::from_secs(5),
            wait: Duration::from_secs(60),
            backoff: Duration::from_millis(200),
            once: true,
            command: vec!["sh".into(), "-c".into(), "--".into()],
        };
        let argv = args.to_argv();
        assert_eq!(
            argv[..2],
            [
                "/vaultlet/bin/vaultlet-agent".to_owned(),
                "supervise".to_owned()
            ]
        );
        assert_eq!(SuperviseArgs::parse(argv.into_iter().skip(2)), Ok(args));
    }

    #[test]
    fn defaults_are_left_out() {
        let args = SuperviseArgs {
            env_files: vec!["/vault/secrets/db".into()],
            command: vec!["/app".into()],
            ..SuperviseArgs::default()
        };
        assert_eq!(
            args.to_argv(),
            [
                "/vaultlet/bin/vaultlet-agent",
                "supervise",
                "--env-file",
                "/vault/secrets/db",
                "--",
                "/app"
            ]
        );
    }

    #[test]
    fn parse_errors_say_what_to_do() {
        let parse = |a: &[&str]| SuperviseArgs::parse(a.iter().map(|s| (*s).to_owned()));
        assert_eq!(
            parse(&["--env-file", "/f"]),
            Err("no command: put the app's command after --".into())
        );
        assert_eq!(
            parse(&["--", "/app"]),
            Err("no --env-file: name at least one env file".into())
        );
        assert!(parse(&["--on-change", "signal:KILL", "--env-file", "/f", "--", "a"]).is_err());
        assert!(parse(&["--bogus", "1"]).is_err());
        assert_eq!(parse(&["--grace"]), Err("--grace needs a value".into()));
    }

    #[test]
    fn on_change_values() {
        assert_eq!("restart".parse(), Ok(OnChange::Restart));
        assert_eq!("none".parse(), Ok(OnChange::Nothing));
        assert_eq!("signal:hup".parse(), Ok(OnChange::Signal("SIGHUP".into())));
        assert!("signal:".parse::<OnChange>().is_err());
        assert!("reload".parse::<OnChange>().is_err());
    }

    #[test]
    fn template_keys() {
        let t = "DB_USER={{username}}\nDB_PASS='{{password}}\nstill = the value'\n{{#each this}}{{@key}}={{this}}\n{{/each}}\nbad-key=x\nURL=\"a=b\"\n";
        assert_eq!(
            literal_template_keys(t),
            [
                (1, "DB_USER".to_owned()),
                (2, "DB_PASS".to_owned()),
                (6, "bad-key".to_owned()),
                (7, "URL".to_owned())
            ]
        );
    }
}
