//! The `env` file dialect: `KEY=value` lines that POSIX `sh` can source without expanding or
//! running anything and that dotenv parsers read the same; the agent writes it and the
//! process supervisor reads it back with [`parse`].
//!
//! A value is written in the first of these forms that fits it:
//! 1. bare, when it is non-empty and only holds `A-Za-z0-9_-.,:/@%+=`;
//! 2. single-quoted, when it holds no `'` and no backslash that a dotenv parser would treat
//!    as an escape (`\\`, or a trailing `\`);
//! 3. double-quoted with `\\` and `\"` as the only escapes, when it holds no `$` and no
//!    backtick (the characters a shell still expands between double quotes);
//! 4. single-quoted with each `'` written as `'\''`. The shell reads this exactly; dotenv
//!    parsers do not know the form, so only values mixing (`'` or a backslash escape) with
//!    (`$` or a backtick) are read differently by them.

use std::fmt;

/// Errors of the env dialect; messages name the secret and key, never a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    /// A key that is not a portable environment variable name.
    #[error(
        "secret {secret:?}: key {key:?} is not a valid environment variable name ([A-Za-z_][A-Za-z0-9_]*); rename it in Vault or render the secret with a template"
    )]
    Key {
        /// Secret name.
        secret: String,
        /// The offending key.
        key: String,
    },
    /// A key of Vault data that would set a variable changing how the app loads code
    /// ([`crate::config::loads_code`]); only a template may spell such a name out.
    #[error(
        "secret {secret:?}: key {key:?} of the secret's data would change how the app loads code (LD_*, PATH, NODE_OPTIONS, ...) and is never taken from Vault data; rename the key in Vault, or spell the variable out in the template (vaultlet.io/template-{secret}) if the Pod's author means it"
    )]
    CodeLoading {
        /// Secret name.
        secret: String,
        /// The refused key.
        key: String,
    },
    /// A value holding a NUL byte, which no environment variable can carry.
    #[error(
        "secret {secret:?}: the value of key {key:?} contains a NUL byte, which an environment variable cannot hold; use the json format or a template"
    )]
    Nul {
        /// Secret name.
        secret: String,
        /// The key whose value holds the NUL byte.
        key: String,
    },
    /// A file that is not in this dialect.
    #[error("env file, line {line}: {reason}")]
    Parse {
        /// 1-based line number where the entry starts.
        line: usize,
        /// What is wrong (never the value).
        reason: &'static str,
    },
}

/// True for a portable environment variable name: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn valid_key(key: &str) -> bool {
    let mut bytes = key.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn bare_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"_-.,:/@%+=".contains(&b)
}

/// Writes `pairs` as env lines, in the given order; refuses bad keys and NUL bytes.
pub fn write<'a>(
    secret: &str,
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<String, EnvError> {
    let mut out = String::new();
    for (key, value) in pairs {
        if !valid_key(key) {
            return Err(EnvError::Key {
                secret: secret.into(),
                key: key.into(),
            });
        }
        if crate::config::loads_code(key) {
            return Err(EnvError::CodeLoading {
                secret: secret.into(),
                key: key.into(),
            });
        }
        if value.contains('\0') {
            return Err(EnvError::Nul {
                secret: secret.into(),
                key: key.into(),
            });
        }
        out.push_str(key);
        out.push('=');
        out.push_str(&Quoted(value).to_string());
        out.push('\n');
    }
    Ok(out)
}

/// A value in its env form (see the module docs for the choice of form).
#[derive(Clone, Copy)]
pub struct Quoted<'a>(pub &'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        if !v.is_empty() && v.bytes().all(bare_byte) {
            return f.write_str(v);
        }
        let dotenv_escape = v.contains("\\\\") || v.ends_with('\\');
        if !v.contains('\'') && !dotenv_escape {
            return write!(f, "'{v}'");
        }
        if !v.contains(['$', '`']) {
            f.write_str("\"")?;
            for c in v.chars() {
                if matches!(c, '\\' | '"') {
                    f.write_str("\\")?;
                }
                write!(f, "{c}")?;
            }
            return f.write_str("\"");
        }
        f.write_str("'")?;
        for (i, part) in v.split('\'').enumerate() {
            if i > 0 {
                f.write_str("'\\''")?;
            }
            f.write_str(part)?;
        }
        f.write_str("'")
    }
}

// Never show a value through Debug.
impl fmt::Debug for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Quoted(..)")
    }
}

/// Parses a file of this dialect (what [`write`] produces; blank lines are skipped) into
/// its pairs, in file order.
pub fn parse(text: &str) -> Result<Vec<(String, String)>, EnvError> {
    let mut p = Parser {
        rest: text,
        line: 1,
    };
    let mut out = Vec::new();
    while !p.rest.is_empty() {
        if p.eat('\n') {
            p.line += 1;
            continue;
        }
        let start = p.line;
        let fail = |reason| EnvError::Parse {
            line: start,
            reason,
        };
        let key_len = p.rest.find('=').ok_or(fail("no '=' after the key"))?;
        let key = &p.rest[..key_len];
        if !valid_key(key) {
            return Err(fail("the key is not [A-Za-z_][A-Za-z0-9_]*"));
        }
        p.rest = &p.rest[key_len + 1..];
        let value = p.value().map_err(fail)?;
        out.push((key.to_owned(), value));
        if !p.rest.is_empty() && !p.eat('\n') {
            return Err(fail("unexpected character after the value"));
        }
        p.line += 1;
    }
    Ok(out)
}

struct Parser<'a> {
    rest: &'a str,
    line: usize,
}

impl Parser<'_> {
    fn eat(&mut self, c: char) -> bool {
        match self.rest.strip_prefix(c) {
            Some(r) => {
                self.rest = r;
                true
            }
            None => false,
        }
    }

    /// One value: bare characters and quoted parts, up to the end of the line.
    fn value(&mut self) -> Result<String, &'static str> {
        let mut v = String::new();
        loop {
            let bare = self.rest.bytes().take_while(|&b| bare_byte(b)).count();
            v.push_str(&self.rest[..bare]);
            self.rest = &self.rest[bare..];
            if self.eat('\'') {
                let end = self.rest.find('\'').ok_or("unterminated single quote")?;
                self.count_lines(&self.rest[..end]);
                v.push_str(&self.rest[..end]);
                self.rest = &self.rest[end + 1..];
            } else if self.rest.starts_with("\\'") {
                v.push('\'');
                self.rest = &self.rest[2..];
            } else if self.eat('"') {
                self.double_quoted(&mut v)?;
            } else {
                return Ok(v);
            }
        }
    }

    fn double_quoted(&mut self, v: &mut String) -> Result<(), &'static str> {
        let mut chars = self.rest.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.rest = &self.rest[i + 1..];
                    return Ok(());
                }
                '\\' => match chars.next() {
                    Some((_, e @ ('\\' | '"'))) => v.push(e),
                    _ => return Err("only \\\\ and \\\" may follow a backslash in double quotes"),
                },
                '$' | '`' => return Err("$ and ` are not allowed in double quotes"),
                c => {
                    if c == '\n' {
                        self.line += 1;
                    }
                    v.push(c);
                }
            }
        }
        Err("unterminated double quote")
    }

    fn count_lines(&mut self, s: &str) {
        self.line += s.matches('\n').count();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(v: &str) -> String {
        Quoted(v).to_string()
    }

    #[test]
    fn forms() {
        assert_eq!(q("db.local:5432"), "db.local:5432");
        assert_eq!(q(""), "''");
        assert_eq!(q("pa$word"), "'pa$word'");
        assert_eq!(q("a `id` b"), "'a `id` b'");
        assert_eq!(q("C:\\dir"), "'C:\\dir'");
        assert_eq!(q("L1\nL2"), "'L1\nL2'");
        assert_eq!(q("it's"), "\"it's\"");
        assert_eq!(q("a\\\\b \"q\""), "\"a\\\\\\\\b \\\"q\\\"\"");
        assert_eq!(q("end\\"), "\"end\\\\\"");
        assert_eq!(q("it's $HOME"), "'it'\\''s $HOME'");
        assert_eq!(q("''"), "\"''\"");
    }

    #[test]
    fn keys() {
        for k in ["A", "_", "user_name", "X9"] {
            assert!(valid_key(k), "{k}");
        }
        for k in ["", "9x", "a-b", "a.b", "a b", "ä", "a=b"] {
            assert!(!valid_key(k), "{k}");
        }
        let err = write("db", [("user", "u"), ("pass-word", "hunter2")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "secret \"db\": key \"pass-word\" is not a valid environment variable name ([A-Za-z_][A-Za-z0-9_]*); rename it in Vault or render the secret with a template"
        );
        let err = write("db", [("pw", "a\0hunter2")]).unwrap_err();
        assert_eq!(
            err,
            EnvError::Nul {
                secret: "db".into(),
                key: "pw".into()
            }
        );
        assert!(!err.to_string().contains("hunter2"));
    }

    #[test]
    fn writes_lines_in_order() {
        let out = write("x", [("b", "2"), ("a", "x y")]).expect("write");
        assert_eq!(out, "b=2\na='x y'\n");
    }

    #[test]
    fn parse_errors_name_the_line_not_the_value() {
        let cases = [
            ("a=1\nb\n", 2, "no '=' after the key"),
            ("a-b=1\n", 1, "the key is not [A-Za-z_][A-Za-z0-9_]*"),
            ("a='secret\n", 1, "unterminated single quote"),
            ("a=\"x$y\"\n", 1, "$ and ` are not allowed in double quotes"),
            ("a=x y\n", 1, "unexpected character after the value"),
            (
                "a='1'\nb=\"unterminated\n\n",
                2,
                "unterminated double quote",
            ),
            (
                "a='x\ny'\nb=hidden value\n",
                3,
                "unexpected character after the value",
            ),
        ];
        for (text, line, reason) in cases {
            assert_eq!(
                parse(text),
                Err(EnvError::Parse { line, reason }),
                "{text:?}"
            );
        }
    }

    #[test]
    fn parses_what_it_writes() {
        let text = "a=1\n\nb='x y'\nc=\"it's\"\nd='it'\\''s $x'\ne=''\n";
        let got = parse(text).expect("parse");
        let want = [
            ("a", "1"),
            ("b", "x y"),
            ("c", "it's"),
            ("d", "it's $x"),
            ("e", ""),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        assert_eq!(got, want);
    }

    /// A small deterministic generator (xorshift), so the property test needs no crate.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    const ALPHABET: &[char] = &[
        'a', 'Z', '0', '_', '-', '=', ' ', '\t', '\n', '\r', '$', '`', '\'', '"', '\\', '#', '{',
        '}', '(', ')', ';', '&', '|', '*', '?', '!', '~', 'é', '€', '😀', '\u{7f}', '\u{1}',
    ];

    #[test]
    fn round_trip_property() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..20_000 {
            let n = rng.below(5);
            let pairs: Vec<(String, String)> = (0..n)
                .map(|i| {
                    let len = rng.below(12);
                    let v: String = (0..len)
                        .map(|_| ALPHABET[rng.below(ALPHABET.len())])
                        .collect();
                    (format!("K{i}"), v)
                })
                .collect();
            let text =
                write("s", pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))).expect("write");
            assert_eq!(parse(&text).as_ref(), Ok(&pairs), "{text:?}");
        }
    }
}
