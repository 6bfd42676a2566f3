//! A throwaway PostgreSQL cluster on loopback for the database secrets engine.

use std::os::unix::fs::chown;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::{Uid, User};

use crate::{Process, TempDir, free_port, pg_bin_dir, random_hex, wait_until};

const SUPERUSER: &str = "postgres";

/// A PostgreSQL server on `127.0.0.1:<port>` with unix sockets in its temp dir, run in the
/// foreground as a [`Process`] and killed on drop. Runs as user `postgres` when the tests run
/// as root, since PostgreSQL refuses to run as root.
pub struct Postgres {
    // Declared first: the server must die before its directory is removed.
    server: Option<Process>,
    bin: PathBuf,
    port: u16,
    password: String,
    run_as: Option<User>,
    temp: TempDir,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres")
            .field("port", &self.port)
            .field("dir", &self.temp.path())
            .field("running", &self.server.is_some())
            .finish_non_exhaustive()
    }
}

impl Postgres {
    /// `initdb` in a temp dir (superuser `postgres` with a random password, scram over TCP)
    /// and `postgres` on a free port; returns once the server accepts connections.
    pub fn start() -> Postgres {
        let run_as = Uid::effective().is_root().then(postgres_user);
        let temp = TempDir::with_prefix("vaultlet-pg-").expect("create temp dir");
        let mut pg = Postgres {
            server: None,
            bin: pg_bin_dir(),
            port: free_port(),
            password: random_hex(16),
            run_as,
            temp,
        };
        pg.initdb();
        pg.start_again();
        pg
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The superuser name (`postgres`).
    pub fn superuser(&self) -> &str {
        SUPERUSER
    }

    /// The superuser's password.
    pub fn superuser_password(&self) -> &str {
        &self.password
    }

    /// The temp dir holding `data/`, the sockets and `postgres.log`.
    pub fn dir(&self) -> &Path {
        self.temp.path()
    }

    /// `connection_url` for OpenBao's database engine:
    /// `postgresql://{{username}}:{{password}}@127.0.0.1:PORT/postgres?sslmode=disable`.
    pub fn connection_url_template(&self) -> String {
        format!(
            "postgresql://{{{{username}}}}:{{{{password}}}}@127.0.0.1:{}/postgres?sslmode=disable",
            self.port
        )
    }

    /// Runs `sql` as the superuser with `psql` and returns its unaligned, tuples-only output.
    ///
    /// # Panics
    /// When psql fails, with its stderr.
    pub fn psql(&self, sql: &str) -> String {
        let out = self.psql_as(SUPERUSER, &self.password, sql);
        assert!(
            out.status.success(),
            "psql failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// True when `user` can log in over TCP with `password` and run `SELECT 1`.
    pub fn can_login(&self, user: &str, password: &str) -> bool {
        self.psql_as(user, password, "SELECT 1").status.success()
    }

    /// Stops the server (fast shutdown: SIGINT, SIGKILL after 10 s); the data stays for
    /// [`start_again`](Self::start_again).
    pub fn stop(&mut self) {
        if let Some(mut server) = self.server.take() {
            server.stop_with(Signal::SIGINT, Duration::from_secs(10));
        }
    }

    /// Kills the server at once (SIGKILL, like a crash); the data stays.
    pub fn kill(&mut self) {
        if let Some(mut server) = self.server.take() {
            server.kill();
        }
    }

    /// Starts a stopped server again on the same port and data; returns once it accepts
    /// connections.
    pub fn start_again(&mut self) {
        if self.server.is_some() {
            return;
        }
        let dir = self.temp.path();
        let mut cmd = self.server_cmd("postgres");
        cmd.arg("-D").arg(dir.join("data"));
        cmd.args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"]);
        cmd.arg("-c").arg(format!("port={}", self.port));
        cmd.arg("-c")
            .arg(format!("unix_socket_directories={}", dir.display()));
        let mut server = Process::spawn("PostgreSQL", cmd, &dir.join("postgres.log"));
        let pid_file = dir.join("data/postmaster.pid");
        wait_until(
            Duration::from_secs(60),
            "PostgreSQL accepting connections",
            || {
                server.assert_running();
                // Line 8 of postmaster.pid is the server status, "ready" once it accepts connections.
                std::fs::read_to_string(&pid_file)
                    .is_ok_and(|pid| pid.lines().nth(7).is_some_and(|l| l.trim() == "ready"))
            },
        );
        self.server = Some(server);
    }

    fn initdb(&self) {
        let dir = self.temp.path();
        let pwfile = dir.join("pwfile");
        std::fs::write(&pwfile, &self.password).expect("write PostgreSQL password file");
        if let Some(user) = &self.run_as {
            for path in [dir, pwfile.as_path()] {
                chown(path, Some(user.uid.as_raw()), Some(user.gid.as_raw()))
                    .unwrap_or_else(|e| panic!("chown {} to postgres: {e}", path.display()));
            }
        }
        let data = dir.join("data");
        let mut cmd = self.server_cmd("initdb");
        cmd.arg("-D")
            .arg(&data)
            .arg(format!("--pwfile={}", pwfile.display()));
        cmd.args(["-U", SUPERUSER, "-E", "UTF8", "--auth-local=trust"]);
        cmd.args([
            "--auth-host=scram-sha-256",
            "--no-sync",
            "--no-instructions",
        ]);
        let out = cmd.output().expect("run initdb");
        let _ = std::fs::remove_file(&pwfile);
        assert!(
            out.status.success(),
            "initdb failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A server-side binary from the PostgreSQL bin dir, as user `postgres` when root.
    fn server_cmd(&self, name: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(name));
        if let Some(user) = &self.run_as {
            cmd.uid(user.uid.as_raw()).gid(user.gid.as_raw());
        }
        scrub_pg_env(&mut cmd);
        cmd.current_dir(self.temp.path()).stdin(Stdio::null());
        cmd
    }

    fn psql_as(&self, user: &str, password: &str, sql: &str) -> Output {
        let mut cmd = Command::new(self.bin.join("psql"));
        scrub_pg_env(&mut cmd);
        cmd.args([
            "-X",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-d",
            "postgres",
        ])
        .arg("-p")
        .arg(self.port.to_string())
        .args(["-U", user, "-c", sql])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "5")
        .stdin(Stdio::null())
        .output()
        .expect("run psql")
    }
}

fn postgres_user() -> User {
    User::from_name("postgres")
        .ok()
        .flatten()
        .expect("running as root needs a `postgres` user: run `source scripts/tools.sh` (installs PostgreSQL)")
}

/// Drops inherited libpq settings (PGHOST, PGUSER, ...) so the shell cannot redirect psql.
fn scrub_pg_env(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        if key.to_str().is_some_and(|k| k.starts_with("PG")) {
            cmd.env_remove(key);
        }
    }
}
