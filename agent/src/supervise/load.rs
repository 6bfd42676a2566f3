//! Reading the env files: the same parser the agent's writer is tested against
//! ([`crate::envfile`]); errors name the file and the line, never a value.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::envfile;

/// The raw contents of every env file, in order; compared to notice a change.
pub type Contents = Vec<Vec<u8>>;

/// Why the env files cannot be used (yet).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    /// The file does not exist (the agent has not rendered it yet) or cannot be read.
    #[error("cannot read env file {path:?}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        reason: String,
    },
    /// The file is not in the env dialect.
    #[error("env file {path:?} is not KEY=value lines: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Line and reason.
        source: envfile::EnvError,
    },
}

/// Reads every file; the first error stops.
pub fn read_all(files: &[PathBuf]) -> Result<Contents, LoadError> {
    files
        .iter()
        .map(|path| {
            std::fs::read(path).map_err(|e| LoadError::Read {
                path: path.clone(),
                reason: e.to_string(),
            })
        })
        .collect()
}

/// The variables of the files, a later file winning over an earlier one, and the names set
/// by more than one file.
pub fn variables(
    files: &[PathBuf],
    contents: &Contents,
) -> Result<(BTreeMap<String, String>, Vec<String>), LoadError> {
    let mut vars = BTreeMap::new();
    let mut twice = Vec::new();
    for (path, bytes) in files.iter().zip(contents) {
        let text = std::str::from_utf8(bytes).map_err(|_| parse_error(path, 1, "not UTF-8"))?;
        let pairs = envfile::parse(text).map_err(|source| LoadError::Parse {
            path: path.clone(),
            source,
        })?;
        for (k, v) in pairs {
            if vars.insert(k.clone(), v).is_some() && !twice.contains(&k) {
                twice.push(k);
            }
        }
    }
    Ok((vars, twice))
}

fn parse_error(path: &Path, line: usize, reason: &'static str) -> LoadError {
    LoadError::Parse {
        path: path.to_owned(),
        source: envfile::EnvError::Parse { line, reason },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_files_win_and_errors_name_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        std::fs::write(&a, "X=1\nY='two words'\n").expect("write");
        std::fs::write(&b, "X=3\n").expect("write");
        let files = vec![a.clone(), b.clone()];
        let contents = read_all(&files).expect("read");
        let (vars, twice) = variables(&files, &contents).expect("parse");
        assert_eq!(vars.get("X").map(String::as_str), Some("3"));
        assert_eq!(vars.get("Y").map(String::as_str), Some("two words"));
        assert_eq!(twice, ["X"]);

        std::fs::write(&b, "X=hunter2 oops\n").expect("write");
        let contents = read_all(&files).expect("read");
        let err = variables(&files, &contents).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "env file {b:?} is not KEY=value lines: env file, line 1: unexpected character after the value"
            )
        );
        let missing = vec![dir.path().join("none")];
        assert!(matches!(read_all(&missing), Err(LoadError::Read { .. })));
    }
}
