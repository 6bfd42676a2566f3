//! The errors of parsing and executing a template, each with its line:column.

use std::fmt;

/// A position in the template source: 1-based line and column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
}

impl Pos {
    /// The line:column of byte `offset` in `src`.
    pub fn at(src: &str, offset: usize) -> Pos {
        let offset = offset.min(src.len());
        let before = src.get(..offset).unwrap_or(src);
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        Pos { line, col }
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// Why a template cannot be parsed or rendered. Messages never contain secret values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The template is not valid Go text/template syntax.
    #[error("template:{pos}: {msg}; fix the template syntax")]
    Parse {
        /// Where.
        pos: Pos,
        /// What is wrong.
        msg: String,
    },
    /// The template calls a function this engine refuses (or that does not exist).
    #[error(
        "template:{pos}: function {name:?} is not supported by vaultlet{why}; supported: {supported}"
    )]
    Unsupported {
        /// Where.
        pos: Pos,
        /// The function's name.
        name: String,
        /// Why it is refused (empty, or `" (...)"`).
        why: String,
        /// The supported functions, comma-separated.
        supported: String,
    },
    /// Execution failed (wrong type, missing field, bad argument...).
    #[error("template:{pos}: executing {context}: {msg}; fix the template or the secret's data")]
    Exec {
        /// Where.
        pos: Pos,
        /// The action being executed, as written in the template.
        context: String,
        /// What went wrong.
        msg: String,
    },
    /// The secret source failed for a `secret`/`secrets`/`pkiCert` call.
    #[error("template:{pos}: {func} {path:?}: {msg}")]
    Source {
        /// Where.
        pos: Pos,
        /// `secret`, `secrets` or `pkiCert`.
        func: &'static str,
        /// The Vault path.
        path: String,
        /// The source's message.
        msg: String,
    },
    /// A limit of [`Limits`](crate::Limits) was reached.
    #[error("template:{pos}: {what} exceeds the limit of {limit}; simplify the template")]
    Limit {
        /// Where.
        pos: Pos,
        /// Which limit ("output size in bytes", "loop iterations", "nesting depth").
        what: &'static str,
        /// The limit.
        limit: usize,
    },
}

impl Error {
    /// The position the error refers to.
    pub fn pos(&self) -> Pos {
        match self {
            Error::Parse { pos, .. }
            | Error::Unsupported { pos, .. }
            | Error::Exec { pos, .. }
            | Error::Source { pos, .. }
            | Error::Limit { pos, .. } => *pos,
        }
    }
}

/// Result of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based() {
        let src = "ab\ncd{{x}}";
        assert_eq!(Pos::at(src, 0), Pos { line: 1, col: 1 });
        assert_eq!(Pos::at(src, 5), Pos { line: 2, col: 3 });
        assert_eq!(Pos::at(src, 999), Pos { line: 2, col: 8 });
    }
}
