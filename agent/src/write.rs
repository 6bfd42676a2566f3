//! Atomic file writes: temp file in the same directory, fsync, rename; never a partial file.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A file could not be written; the previous file, if any, is untouched.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot write {path}: {step}: {source}; check the volume is mounted writable and has space"
)]
pub struct WriteError {
    /// The target file.
    pub path: PathBuf,
    /// The step that failed.
    pub step: &'static str,
    /// The I/O error.
    pub source: std::io::Error,
}

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// The file already held these bytes (its mode was still corrected).
    Unchanged,
    /// The file did not exist before.
    Created,
    /// The file held other bytes and was replaced.
    Replaced,
}

/// Writes `bytes` to `path` atomically with `mode` and optional `group`, unless the file
/// already holds exactly these bytes. Parent directories are created.
pub fn write_atomic(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    group: Option<u32>,
) -> Result<Written, WriteError> {
    let err = |step: &'static str| {
        move |source: std::io::Error| WriteError {
            path: path.to_owned(),
            step,
            source,
        }
    };
    let existing = fs::read(path).ok();
    if existing.as_deref() == Some(bytes) {
        fix_mode(path, mode).map_err(err("setting the file mode"))?;
        return Ok(Written::Unchanged);
    }
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(err("creating the parent directory"))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = write_temp(&tmp, bytes, mode, group).and_then(|()| fs::rename(&tmp, path));
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(err("writing a temp file and renaming it into place")(e));
    }
    // Make the rename itself durable; a failure here leaves a correct file, so only log-worthy.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(if existing.is_some() {
        Written::Replaced
    } else {
        Written::Created
    })
}

fn write_temp(tmp: &Path, bytes: &[u8], mode: u32, group: Option<u32>) -> std::io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(tmp)?;
    f.write_all(bytes)?;
    if let Some(gid) = group {
        std::os::unix::fs::fchown(&f, None, Some(gid))?;
    }
    // Set the mode explicitly: the umask would otherwise strip bits from `mode`.
    f.set_permissions(Permissions::from_mode(mode))?;
    f.sync_all()
}

fn fix_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    let current = fs::metadata(path)?.permissions().mode() & 0o7777;
    if current != mode {
        fs::set_permissions(path, Permissions::from_mode(mode))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_replaces_and_skips_identical() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("sub/dir/db.env");
        assert_eq!(
            write_atomic(&p, b"a=1\n", 0o440, None).expect("w"),
            Written::Created
        );
        assert_eq!(fs::read(&p).expect("read"), b"a=1\n");
        assert_eq!(
            fs::metadata(&p).expect("meta").permissions().mode() & 0o777,
            0o440
        );
        assert_eq!(
            write_atomic(&p, b"a=1\n", 0o440, None).expect("w"),
            Written::Unchanged
        );
        assert_eq!(
            write_atomic(&p, b"a=2\n", 0o400, None).expect("w"),
            Written::Replaced
        );
        assert_eq!(fs::read(&p).expect("read"), b"a=2\n");
        assert_eq!(
            fs::metadata(&p).expect("meta").permissions().mode() & 0o777,
            0o400
        );
        let leftovers: Vec<_> = fs::read_dir(p.parent().expect("parent"))
            .expect("readdir")
            .collect();
        assert_eq!(leftovers.len(), 1, "temp files left behind");
    }

    #[test]
    fn failure_keeps_the_old_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("db");
        write_atomic(&p, b"good", 0o440, None).expect("w");
        // A directory in the way of the temp file makes the write fail.
        fs::create_dir(dir.path().join(format!(".db.tmp-{}", std::process::id()))).expect("mkdir");
        let err = write_atomic(&p, b"new", 0o440, None).unwrap_err();
        assert!(err.to_string().contains(&p.display().to_string()), "{err}");
        assert_eq!(fs::read(&p).expect("read"), b"good");
    }

    #[test]
    fn own_group_is_accepted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("g");
        let gid = nix::unistd::getegid().as_raw();
        write_atomic(&p, b"x", 0o440, Some(gid)).expect("w");
        use std::os::unix::fs::MetadataExt;
        assert_eq!(fs::metadata(&p).expect("meta").gid(), gid);
    }
}
