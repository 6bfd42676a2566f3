//! The agent copies its own binary into the volume it shares with the app containers, so
//! their `command` can start the supervisor with no change to the app's image.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::config::supervise::BIN_NAME;

/// The binary could not be copied; the app containers would not find their supervisor.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot copy the agent binary into {dir} for the app's supervisor (vaultlet.io/env-*): {step}: {source}; the injector mounts a writable volume there, check the Pod spec was not edited"
)]
pub struct InstallError {
    /// The target directory.
    pub dir: PathBuf,
    /// What failed.
    pub step: &'static str,
    /// The I/O error.
    pub source: std::io::Error,
}

/// Copies the running binary to `<dir>/vaultlet-agent` (mode 0555) through a temp file and a
/// rename, so an app container never starts a half-written file. Returns the path.
pub fn install_self(dir: &Path) -> Result<PathBuf, InstallError> {
    let err = |step: &'static str| {
        move |source: std::io::Error| InstallError {
            dir: dir.to_owned(),
            step,
            source,
        }
    };
    let exe = std::env::current_exe().map_err(err("finding the running binary"))?;
    fs::create_dir_all(dir).map_err(err("creating the directory"))?;
    let target = dir.join(BIN_NAME);
    let tmp = dir.join(format!(".{BIN_NAME}.tmp-{}", std::process::id()));
    let result = fs::copy(&exe, &tmp)
        .and_then(|_| fs::set_permissions(&tmp, fs::Permissions::from_mode(0o555)))
        .and_then(|()| fs::rename(&tmp, &target));
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(err("copying")(e));
    }
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_an_executable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = install_self(&dir.path().join("bin")).expect("install");
        let meta = fs::metadata(&path).expect("meta");
        assert_eq!(meta.permissions().mode() & 0o777, 0o555);
        let exe = std::env::current_exe().expect("exe");
        assert_eq!(meta.len(), fs::metadata(exe).expect("exe meta").len());
        // A second start replaces it in place.
        install_self(&dir.path().join("bin")).expect("again");
    }
}
