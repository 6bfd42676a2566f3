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
    find("vaultlet-agent", "VAULTLET_AGENT_BIN")
}

/// `vaultlet-injector`: `$VAULTLET_INJECTOR`, else beside this executable in the target dir.
pub fn injector_bin() -> Result<PathBuf, BinError> {
    find("vaultlet-injector", "VAULTLET_INJECTOR")
}

fn find(name: &str, env: &str) -> Result<PathBuf, BinError> {
    if let Some(path) = std::env::var_os(env) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(missing(name, env, &[path]))
        };
    }
    let candidates: Vec<PathBuf> = target_dirs().iter().map(|d| d.join(name)).collect();
    let found = candidates
        .iter()
        .find(|p| p.is_file())
        .ok_or_else(|| missing(name, env, &candidates))?;
    // A binary older than the sources it was built from (cargo's dep-info beside it) would
    // test yesterday's code.
    if let (Some(built), Some(edited)) = (mtime(found), newest_source(found))
        && built < edited
    {
        return Err(BinError::Stale {
            path: found.display().to_string(),
            name: name.into(),
        });
    }
    Ok(found.clone())
}

fn missing(name: &str, env: &str, looked: &[PathBuf]) -> BinError {
    BinError::Missing {
        name: name.into(),
        package: name.into(),
        env: env.into(),
        looked: looked
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    }
}

fn mtime(path: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The newest modification time of the workspace sources listed in `<bin>.d`, cargo's
/// dep-info for the binary (`target: dep dep ...`, spaces in paths escaped as `\ `).
fn newest_source(bin: &Path) -> Option<std::time::SystemTime> {
    let mut dep_info = bin.as_os_str().to_owned();
    dep_info.push(".d");
    let text = std::fs::read_to_string(PathBuf::from(dep_info)).ok()?;
    let deps = text
        .lines()
        .next()?
        .split_once(": ")?
        .1
        .replace("\\ ", "\0");
    let root = workspace_root();
    deps.split_whitespace()
        .map(|d| PathBuf::from(d.replace('\0', " ")))
        .filter(|p| p.starts_with(&root))
        .filter_map(|p| mtime(&p))
        .max()
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
