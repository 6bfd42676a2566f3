//! Atomic file writes (temp file in the same directory, fsync, rename; never a partial file)
//! that links placed in the secrets volume cannot redirect.
//!
//! Directories below the secrets dir are walked with `openat(O_NOFOLLOW | O_DIRECTORY)`, so
//! a symlinked subdirectory is refused rather than followed, with no window between a check
//! and the write. The temp file is created exclusively (`O_CREAT | O_EXCL | O_NOFOLLOW`), an
//! existing file is read only when it is a regular file reached without a link, and
//! `renameat` replaces a link at the final name instead of writing through it.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File, Permissions};
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat, renameat};
use nix::sys::stat::{Mode, SFlag, fstatat, mkdirat};
use nix::unistd::{UnlinkatFlags, unlinkat};

/// What to do about an I/O failure.
const SPACE: &str = "check the volume is mounted writable and has space";
/// What to do about a link or another object in the way.
const IN_THE_WAY: &str =
    "remove it: the agent writes only real directories and files inside the secrets directory";

/// A file could not be written; the previous file, if any, is untouched.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {path:?}: {step}: {source}; {hint}")]
pub struct WriteError {
    /// The target file.
    pub path: PathBuf,
    /// The step that failed.
    pub step: &'static str,
    /// The I/O error.
    pub source: std::io::Error,
    /// What to do.
    pub hint: &'static str,
}

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// The file already held these bytes (its mode was still corrected).
    Unchanged,
    /// The file did not exist before (or a link stood at its name and was replaced).
    Created,
    /// The file held other bytes and was replaced.
    Replaced,
}

/// Writes `bytes` to `path` atomically with `mode` and optional `group`, unless the file
/// already holds exactly these bytes. The parent directory (the operator's choice, e.g. the
/// state dir) is created and may be reached through links; the file itself never is.
pub fn write_atomic(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    group: Option<u32>,
) -> Result<Written, WriteError> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or(OsStr::new("file"));
    let dirfd = open_root(path, dir)?;
    write_at(&dirfd, path, name, bytes, mode, group)
}

/// Writes `bytes` to `root/rel` like [`write_atomic`], where `root` is the secrets dir and
/// `rel` a validated relative path: directories below `root` are created as needed and a
/// link among them (or at the file's own name) is never followed; a symlinked directory is
/// an error naming it.
pub fn write_atomic_in(
    root: &Path,
    rel: &Path,
    bytes: &[u8],
    mode: u32,
    group: Option<u32>,
) -> Result<Written, WriteError> {
    let path = root.join(rel);
    let in_the_way = |source: std::io::Error| WriteError {
        path: path.clone(),
        step: "walking the directories inside the secrets directory",
        source,
        hint: IN_THE_WAY,
    };
    let mut names = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(n) => names.push(n),
            _ => {
                return Err(in_the_way(std::io::Error::other(
                    "the path must be relative and stay inside the secrets directory",
                )));
            }
        }
    }
    let Some((name, parents)) = names.split_last() else {
        return Err(in_the_way(std::io::Error::other("the path names no file")));
    };
    let mut dirfd = open_root(&path, root)?;
    for dir in parents {
        dirfd = open_subdir(&dirfd, dir).map_err(in_the_way)?;
    }
    write_at(&dirfd, &path, name, bytes, mode, group)
}

/// Creates and opens a directory the operator chose (links there are the operator's).
fn open_root(path: &Path, dir: &Path) -> Result<OwnedFd, WriteError> {
    let err = |source| WriteError {
        path: path.to_owned(),
        step: "creating the parent directory",
        source,
        hint: SPACE,
    };
    fs::create_dir_all(dir).map_err(err)?;
    File::open(dir).map(OwnedFd::from).map_err(err)
}

/// Opens (creating it if absent) the real directory `name` in `parent`; a link is refused.
fn open_subdir(parent: &OwnedFd, name: &OsStr) -> std::io::Result<OwnedFd> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let open = || openat(parent, name, flags, Mode::empty());
    let opened = match open() {
        Err(Errno::ENOENT) => match mkdirat(parent, name, Mode::from_bits_truncate(0o755)) {
            Ok(()) | Err(Errno::EEXIST) => open(),
            Err(e) => Err(e),
        },
        other => other,
    };
    opened.map_err(|e| match e {
        // O_NOFOLLOW | O_DIRECTORY answers ENOTDIR (or ELOOP) for a link: say which it was.
        Errno::ELOOP | Errno::ENOTDIR => {
            let link = fstatat(parent, name, AtFlags::AT_SYMLINK_NOFOLLOW).is_ok_and(|st| {
                SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFLNK
            });
            let what = if link {
                "is a symbolic link, which is never followed"
            } else {
                "is not a directory"
            };
            std::io::Error::other(format!("{name:?} {what}"))
        }
        e => std::io::Error::from(e),
    })
}

/// The atomic write of `name` in the open directory `dir`; `path` only names it in errors.
fn write_at(
    dir: &OwnedFd,
    path: &Path,
    name: &OsStr,
    bytes: &[u8],
    mode: u32,
    group: Option<u32>,
) -> Result<Written, WriteError> {
    let err = |step: &'static str| {
        move |source: std::io::Error| WriteError {
            path: path.to_owned(),
            step,
            source,
            hint: SPACE,
        }
    };
    let current = existing(dir, name, bytes);
    if let Some((file, true)) = &current {
        fix_mode(file, mode).map_err(err("setting the file mode"))?;
        return Ok(Written::Unchanged);
    }
    let replaced = current.is_some();
    let mut tmp = OsString::from(".");
    tmp.push(name);
    tmp.push(format!(".tmp-{}", std::process::id()));
    let result = create_temp(dir, &tmp)
        .and_then(|f| write_temp(f, bytes, mode, group))
        .and_then(|()| renameat(dir, tmp.as_os_str(), dir, name).map_err(std::io::Error::from));
    if let Err(e) = result {
        let _ = unlinkat(dir, tmp.as_os_str(), UnlinkatFlags::NoRemoveDir);
        return Err(err("writing a temp file and renaming it into place")(e));
    }
    // Make the rename itself durable; a failure here leaves a correct file, so only log-worthy.
    if let Ok(d) = dir.try_clone() {
        let _ = File::from(d).sync_all();
    }
    Ok(if replaced {
        Written::Replaced
    } else {
        Written::Created
    })
}

/// The regular file at `name` (never through a link, a FIFO never blocks) and whether it
/// holds exactly `bytes`; `None` when absent, a link or anything but a regular file.
fn existing(dir: &OwnedFd, name: &OsStr, bytes: &[u8]) -> Option<(File, bool)> {
    let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
    let file = File::from(openat(dir, name, flags, Mode::empty()).ok()?);
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut content = Vec::new();
    // One byte more than `bytes` tells a longer file apart without reading all of it.
    (&file)
        .take(bytes.len() as u64 + 1)
        .read_to_end(&mut content)
        .ok()?;
    let same = content == bytes;
    Some((file, same))
}

/// Creates the temp file exclusively; a stale one (or a link) at its name is removed first.
fn create_temp(dir: &OwnedFd, tmp: &OsStr) -> std::io::Result<File> {
    let flags =
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let create = || openat(dir, tmp, flags, Mode::from_bits_truncate(0o600));
    let fd = match create() {
        Err(Errno::EEXIST) => {
            // Unlinks a stale temp file or a link itself, never what a link points at.
            let _ = unlinkat(dir, tmp, UnlinkatFlags::NoRemoveDir);
            create()
        }
        other => other,
    }
    .map_err(std::io::Error::from)?;
    Ok(File::from(fd))
}

fn write_temp(mut f: File, bytes: &[u8], mode: u32, group: Option<u32>) -> std::io::Result<()> {
    f.write_all(bytes)?;
    if let Some(gid) = group {
        std::os::unix::fs::fchown(&f, None, Some(gid))?;
    }
    // Set the mode explicitly: the umask would otherwise strip bits from `mode`.
    f.set_permissions(Permissions::from_mode(mode))?;
    f.sync_all()
}

/// Corrects the mode through the open file, so a link swapped in meanwhile is not chmodded.
fn fix_mode(file: &File, mode: u32) -> std::io::Result<()> {
    let current = file.metadata()?.permissions().mode() & 0o7777;
    if current != mode {
        file.set_permissions(Permissions::from_mode(mode))?;
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

    #[test]
    fn a_symlinked_directory_is_refused_and_nothing_outside_is_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outside = tempfile::tempdir().expect("outside");
        let root = dir.path().join("secrets");
        fs::create_dir(&root).expect("mkdir");
        std::os::unix::fs::symlink(outside.path(), root.join("sub")).expect("link");
        let err = write_atomic_in(&root, Path::new("sub/deeper/db"), b"x", 0o440, None)
            .expect_err("through a linked dir");
        assert_eq!(
            err.to_string(),
            format!(
                "cannot write {:?}: walking the directories inside the secrets directory: \"sub\" is a symbolic link, which is never followed; {IN_THE_WAY}",
                root.join("sub/deeper/db")
            )
        );
        assert_eq!(fs::read_dir(outside.path()).expect("readdir").count(), 0);
        // Real directories are created as needed.
        let w = write_atomic_in(&root, Path::new("a/b/db"), b"x", 0o440, None).expect("w");
        assert_eq!(w, Written::Created);
        assert_eq!(fs::read(root.join("a/b/db")).expect("read"), b"x");
        assert!(write_atomic_in(&root, Path::new("../db"), b"x", 0o440, None).is_err());
    }

    #[test]
    fn a_fifo_at_the_name_does_not_block_and_is_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("db");
        nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("fifo");
        assert_eq!(
            write_atomic_in(dir.path(), Path::new("db"), b"x", 0o440, None).expect("w"),
            Written::Created
        );
        assert_eq!(fs::read(&p).expect("read"), b"x");
    }
}
