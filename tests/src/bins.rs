//! Where the binaries under test are: an env override, else next to the running executable.

use std::path::{Path, PathBuf};

/// Errors finding a binary.
#[derive(Debug, thiserror::Error)]
pub enum BinError {
    /// Neither the env override nor the target directory holds the binary.
    #[error(
        "{name} not found (looked at {looked}); build it first: cargo build -p {package} (or set {env})"
    )]
    Missing {
        /// Binary name.
        name: String,
        /// Cargo package that builds it.
        package: String,
        /// Env var that overrides the location.
        env: String,
        /// Paths that were tried.
        looked: String,
    },
    /// The binary is older than its sources.
    #[error("{path} is older than its sources; rebuild it: cargo build -p {name}")]
    Stale {
        /// The binary.
        path: String,
        /// Binary (and package) name.
        name: String,
    },
}

/// `vaultlet-agent`: `$VAULTLET_AGENT_BIN`, else beside this executable in the target dir.
pub fn agent_bin() -> Result<PathBuf, BinError> {
    find("vaultlet-agent", "vaultlet-agent", "VAULTLET_AGENT_BIN")
}

/// `vaultlet-injector`: `$VAULTLET_INJECTOR`, else beside this executable in the target dir.
pub fn injector_bin() -> Result<PathBuf, BinError> {
    find(
        "vaultlet-injector",
        "vaultlet-injector",
        "VAULTLET_INJECTOR",
    )
}

fn find(name: &str, package: &str, env: &str) -> Result<PathBuf, BinError> {
    let candidates: Vec<PathBuf> = match std::env::var_os(env) {
        Some(path) => vec![PathBuf::from(path)],
        None => target_dirs().iter().map(|d| d.join(name)).collect(),
    };
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| BinError::Missing {
            name: name.into(),
            package: package.into(),
            env: env.into(),
            looked: candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// `target/debug` as seen from a binary (`target/debug/x`) or a test (`target/debug/deps/x`).
fn target_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        if dir.file_name().is_some_and(|n| n == "deps")
            && let Some(up) = dir.parent()
        {
            dirs.push(up.to_path_buf());
        }
        dirs.push(dir.to_path_buf());
    }
    dirs.push(workspace_root().join("target/debug"));
    dirs
}

/// The workspace root (parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}
