//! Where the external binaries (OpenBao, PostgreSQL) live.

use std::path::{Path, PathBuf};

const TOOLS_HINT: &str = "run `source scripts/tools.sh` (installs OpenBao into .venv)";

/// The workspace root (the directory holding the root `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}

/// The `bao` binary: `$VAULTLET_BAO`, else `<workspace>/.venv/bin/bao`.
///
/// # Panics
/// When neither exists, with a message saying to `source scripts/tools.sh`.
pub fn bao_bin() -> PathBuf {
    let venv = workspace_root().join(".venv/bin/bao");
    resolve_bao(std::env::var_os("VAULTLET_BAO").map(PathBuf::from), venv)
        .unwrap_or_else(|msg| panic!("{msg}"))
}

/// `bao` from the env override, else the venv path; an error message saying what to run.
fn resolve_bao(env: Option<PathBuf>, venv: PathBuf) -> Result<PathBuf, String> {
    match env {
        Some(path) if path.is_file() => Ok(path),
        Some(path) => Err(format!(
            "VAULTLET_BAO={} does not exist: {TOOLS_HINT}",
            path.display()
        )),
        None if venv.is_file() => Ok(venv),
        None => Err(format!(
            "OpenBao not found (VAULTLET_BAO unset, no {}): {TOOLS_HINT}",
            venv.display()
        )),
    }
}

/// The PostgreSQL server binaries directory: `$VAULTLET_PG_BIN`, else the newest
/// `/usr/lib/postgresql/*/bin` holding `initdb`.
///
/// # Panics
/// When neither exists, with a message saying to `source scripts/tools.sh`.
pub fn pg_bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("VAULTLET_PG_BIN") {
        let dir = PathBuf::from(dir);
        assert!(
            dir.join("initdb").is_file(),
            "VAULTLET_PG_BIN={} has no initdb: run `source scripts/tools.sh` (installs PostgreSQL)",
            dir.display()
        );
        return dir;
    }
    newest_debian_pg_bin().unwrap_or_else(|| {
        panic!(
            "PostgreSQL not found (VAULTLET_PG_BIN unset, no /usr/lib/postgresql/*/bin/initdb): \
             run `source scripts/tools.sh` (installs PostgreSQL)"
        )
    })
}

/// The highest-versioned Debian PostgreSQL bin directory holding `initdb`.
fn newest_debian_pg_bin() -> Option<PathBuf> {
    let entries = std::fs::read_dir("/usr/lib/postgresql").ok()?;
    entries
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .max_by_key(|(version, _)| *version)
        .map(|(_, bin)| bin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_bao_says_to_source_the_tools_script() {
        let nowhere = PathBuf::from("/nonexistent/bao");
        let err = resolve_bao(None, nowhere.clone()).expect_err("no bao");
        assert!(err.contains("source scripts/tools.sh"), "{err}");
        let err = resolve_bao(Some(nowhere.clone()), nowhere).expect_err("bad override");
        assert!(err.contains("VAULTLET_BAO=/nonexistent/bao"), "{err}");
    }

    #[test]
    fn override_wins_over_the_venv() {
        let real = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
        let got = resolve_bao(Some(real.clone()), PathBuf::from("/nonexistent"));
        assert_eq!(got, Ok(real));
    }
}
