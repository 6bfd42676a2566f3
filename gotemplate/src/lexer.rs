//! Splits template source into text and action tokens, as Go's text/template lexer does.

use crate::error::{Error, Pos, Result};

/// One token; `Text` already has trim markers applied and comments are gone.
#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    /// Literal text between actions.
    Text(String),
    /// `{{` (or `{{- `).
    Open,
    /// `}}` (or ` -}}`).
    Close,
    /// Blanks inside an action (they separate arguments).
    Space,
    /// A function name or keyword.
    Ident(String),
    /// `.Name`.
    Field(String),
    /// `.` alone.
    Dot,
    /// `$` or `$name`.
    Var(String),
    /// A quoted or raw string, unquoted.
    Str(String),
    /// A number literal as written.
    Num(String),
    /// A character constant (an integer in Go).
    Char(i64),
    /// `true` / `false`.
    Bool(bool),
    /// `nil`.
    Nil,
    /// `:=`.
    Declare,
    /// `=`.
    Assign,
    /// `|`.
    Pipe,
    /// `(`.
    LParen,
    /// `)`.
    RParen,
    /// `,`.
    Comma,
}

/// A token and its byte offset in the source.
pub type Spanned = (Tok, usize);

const KEYWORDS: &[&str] = &[
    "if", "else", "end", "range", "with", "define", "template", "block", "break", "continue",
];

/// True for the identifiers the parser treats as keywords.
pub fn is_keyword(s: &str) -> bool {
    KEYWORDS.contains(&s)
}

fn is_blank(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

/// Lexes the whole template.
pub fn lex(src: &str) -> Result<Vec<Spanned>> {
    let b = src.as_bytes();
    let mut out: Vec<Spanned> = Vec::new();
    let mut i = 0;
    let mut trim_next = false;
    while i < b.len() {
        let open = src[i..].find("{{").map(|o| o + i);
        let end = open.unwrap_or(b.len());
        let mut text = &src[i..end];
        if trim_next {
            text = text.trim_start_matches([' ', '\t', '\r', '\n']);
        }
        let Some(open) = open else {
            push_text(&mut out, text, i);
            break;
        };
        // `{{- ` trims the text before it.
        let trim_left =
            b.get(open + 2) == Some(&b'-') && b.get(open + 3).is_some_and(|c| is_blank(*c));
        if trim_left {
            text = text.trim_end_matches([' ', '\t', '\r', '\n']);
        }
        push_text(&mut out, text, i);
        // After `{{- ` keep the blank: it separates like any other.
        let j = open + if trim_left { 3 } else { 2 };
        // Comment: `{{/* ... */}}`, only right after the delimiter (and trim marker).
        let after = skip_blanks_if(b, j, trim_left);
        if src[after..].starts_with("/*") {
            let close = src[after + 2..]
                .find("*/")
                .map(|c| c + after + 2)
                .ok_or_else(|| perr(src, open, "unclosed comment"))?;
            let mut k = close + 2;
            let trim_right = src[k..].starts_with(" -}}")
                || (b.get(k).is_some_and(|c| is_blank(*c)) && {
                    let s = skip_blanks(b, k);
                    src[s..].starts_with("-}}")
                });
            if trim_right {
                k = skip_blanks(b, k) + 3;
            } else if src[k..].starts_with("}}") {
                k += 2;
            } else {
                return Err(perr(src, close, "comment ends before closing delimiter"));
            }
            trim_next = trim_right;
            i = k;
            continue;
        }
        out.push((Tok::Open, open));
        let (k, trim_right) = lex_action(src, j, &mut out)?;
        trim_next = trim_right;
        i = k;
    }
    Ok(out)
}

fn push_text(out: &mut Vec<Spanned>, text: &str, at: usize) {
    if !text.is_empty() {
        out.push((Tok::Text(text.to_string()), at));
    }
}

fn skip_blanks(b: &[u8], mut i: usize) -> usize {
    while b.get(i).is_some_and(|c| is_blank(*c)) {
        i += 1;
    }
    i
}

fn skip_blanks_if(b: &[u8], i: usize, yes: bool) -> usize {
    if yes { skip_blanks(b, i) } else { i }
}

fn perr(src: &str, at: usize, msg: impl Into<String>) -> Error {
    Error::Parse {
        pos: Pos::at(src, at),
        msg: msg.into(),
    }
}

/// Lexes one action from `i` (just after `{{`); returns the offset after `}}` and whether
/// it ended with a right trim marker.
fn lex_action(src: &str, mut i: usize, out: &mut Vec<Spanned>) -> Result<(usize, bool)> {
    let b = src.as_bytes();
    let mut depth = 0usize;
    loop {
        let Some(&c) = b.get(i) else {
            return Err(perr(src, i, "unclosed action"));
        };
        // ` -}}` closes with a trim; `}}` closes.
        if is_blank(c) {
            let s = skip_blanks(b, i);
            if src[s..].starts_with("-}}") {
                if depth > 0 {
                    return Err(perr(src, s, "unclosed left paren"));
                }
                out.push((Tok::Close, s));
                return Ok((s + 3, true));
            }
            if src[s..].starts_with("}}") {
                if depth > 0 {
                    return Err(perr(src, s, "unclosed left paren"));
                }
                out.push((Tok::Close, s));
                return Ok((s + 2, false));
            }
            if c == b'\n' || b[i..s].contains(&b'\n') {
                // Go allows newlines inside actions since 1.16; they are just spaces.
            }
            out.push((Tok::Space, i));
            i = s;
            continue;
        }
        if src[i..].starts_with("}}") {
            if depth > 0 {
                return Err(perr(src, i, "unclosed left paren"));
            }
            out.push((Tok::Close, i));
            return Ok((i + 2, false));
        }
        let start = i;
        match c {
            b'|' => {
                out.push((Tok::Pipe, i));
                i += 1;
            }
            b'(' => {
                depth += 1;
                out.push((Tok::LParen, i));
                i += 1;
            }
            b')' => {
                if depth == 0 {
                    return Err(perr(src, i, "unexpected right paren"));
                }
                depth -= 1;
                out.push((Tok::RParen, i));
                i += 1;
            }
            b',' => {
                out.push((Tok::Comma, i));
                i += 1;
            }
            b':' => {
                if b.get(i + 1) != Some(&b'=') {
                    return Err(perr(src, i, "expected :="));
                }
                out.push((Tok::Declare, i));
                i += 2;
            }
            b'=' => {
                out.push((Tok::Assign, i));
                i += 1;
            }
            b'"' => {
                let (s, k) = lex_quoted(src, i)?;
                out.push((Tok::Str(s), start));
                i = k;
            }
            b'`' => {
                let close = src[i + 1..]
                    .find('`')
                    .map(|c| c + i + 1)
                    .ok_or_else(|| perr(src, i, "unterminated raw quoted string"))?;
                out.push((Tok::Str(src[i + 1..close].replace('\r', "")), start));
                i = close + 1;
            }
            b'\'' => {
                let (v, k) = lex_char(src, i)?;
                out.push((Tok::Char(v), start));
                i = k;
            }
            b'$' => {
                let k = ident_end(b, i + 1);
                out.push((Tok::Var(src[i..k].to_string()), start));
                i = k;
            }
            b'.' if b.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                let k = number_end(b, i);
                out.push((Tok::Num(src[i..k].to_string()), start));
                i = k;
            }
            b'.' => {
                let k = ident_end(b, i + 1);
                if k == i + 1 {
                    out.push((Tok::Dot, i));
                } else {
                    out.push((Tok::Field(src[i + 1..k].to_string()), start));
                }
                i = k;
            }
            b'0'..=b'9' | b'+' | b'-' => {
                let k = number_end(b, i);
                if k == i + 1 && !c.is_ascii_digit() {
                    return Err(perr(
                        src,
                        i,
                        format!("unexpected {:?} in command", c as char),
                    ));
                }
                out.push((Tok::Num(src[i..k].to_string()), start));
                i = k;
            }
            c if c == b'_' || c.is_ascii_alphabetic() || c >= 0x80 => {
                let k = ident_end(b, i);
                let word = &src[i..k];
                let tok = match word {
                    "true" => Tok::Bool(true),
                    "false" => Tok::Bool(false),
                    "nil" => Tok::Nil,
                    _ => Tok::Ident(word.to_string()),
                };
                out.push((tok, start));
                i = k;
            }
            _ => {
                let ch = src[i..].chars().next().unwrap_or('?');
                return Err(perr(src, i, format!("unexpected {ch:?} in command")));
            }
        }
    }
}

/// End of an identifier (letters, digits, `_`, any non-ASCII) starting at `i`.
fn ident_end(b: &[u8], mut i: usize) -> usize {
    while b
        .get(i)
        .is_some_and(|c| *c == b'_' || c.is_ascii_alphanumeric() || *c >= 0x80)
    {
        i += 1;
    }
    i
}

/// End of a number literal starting at `i` (sign, digits, base prefix, `_`, `.`, exponent).
fn number_end(b: &[u8], mut i: usize) -> usize {
    if matches!(b.get(i), Some(b'+' | b'-')) {
        i += 1;
    }
    let hex = b.get(i) == Some(&b'0') && matches!(b.get(i + 1), Some(b'x' | b'X'));
    let mut prev = 0u8;
    while let Some(&c) = b.get(i) {
        let exp_sign = matches!(c, b'+' | b'-')
            && if hex {
                matches!(prev, b'p' | b'P')
            } else {
                matches!(prev, b'e' | b'E')
            };
        if c.is_ascii_alphanumeric() || c == b'_' || c == b'.' || exp_sign {
            prev = c;
            i += 1;
        } else {
            break;
        }
    }
    i
}

/// Lexes a `"..."` string at `i` with Go's escapes; returns it and the offset after it.
fn lex_quoted(src: &str, i: usize) -> Result<(String, usize)> {
    let mut out = String::new();
    let mut chars = src[i + 1..].char_indices();
    while let Some((o, c)) = chars.next() {
        match c {
            '"' => return Ok((out, i + 1 + o + 1)),
            '\n' => break,
            '\\' => {
                let (_, e) = chars
                    .next()
                    .ok_or_else(|| perr(src, i, "unterminated quoted string"))?;
                let simple = match e {
                    'a' => Some('\x07'),
                    'b' => Some('\x08'),
                    'f' => Some('\x0c'),
                    'n' => Some('\n'),
                    'r' => Some('\r'),
                    't' => Some('\t'),
                    'v' => Some('\x0b'),
                    '\\' => Some('\\'),
                    '"' => Some('"'),
                    _ => None,
                };
                if let Some(s) = simple {
                    out.push(s);
                    continue;
                }
                let (n, radix) = match e {
                    'x' => (2, 16),
                    'u' => (4, 16),
                    'U' => (8, 16),
                    '0'..='7' => (2, 8),
                    _ => return Err(perr(src, i + 1 + o, format!("invalid escape \\{e}"))),
                };
                let mut digits = String::new();
                if radix == 8 {
                    digits.push(e);
                }
                for _ in 0..n {
                    let (_, d) = chars
                        .next()
                        .ok_or_else(|| perr(src, i, "unterminated quoted string"))?;
                    digits.push(d);
                }
                let v = u32::from_str_radix(&digits, radix)
                    .map_err(|_| perr(src, i + 1 + o, "invalid escape in string"))?;
                if e == 'x' || radix == 8 {
                    // A byte: only ASCII keeps the string valid UTF-8.
                    if v >= 0x80 {
                        return Err(perr(
                            src,
                            i + 1 + o,
                            "non-ASCII byte escape is not supported",
                        ));
                    }
                }
                out.push(
                    char::from_u32(v)
                        .ok_or_else(|| perr(src, i + 1 + o, "invalid Unicode escape"))?,
                );
            }
            c => out.push(c),
        }
    }
    Err(perr(src, i, "unterminated quoted string"))
}

/// Lexes a `'x'` character constant at `i`.
fn lex_char(src: &str, i: usize) -> Result<(i64, usize)> {
    let rest = &src[i + 1..];
    let close = rest
        .find('\'')
        .filter(|c| *c > 0)
        .ok_or_else(|| perr(src, i, "unterminated character constant"))?;
    let body = &rest[..close];
    let mut cs = body.chars();
    let v = match (cs.next(), cs.next()) {
        (Some(c), None) if c != '\\' => c as i64,
        _ => {
            let (s, _) = lex_quoted(&format!("\"{}\"", body.replace('"', "\\\"")), 0)
                .map_err(|_| perr(src, i, "invalid character constant"))?;
            let mut sc = s.chars();
            match (sc.next(), sc.next()) {
                (Some(c), None) => c as i64,
                _ => return Err(perr(src, i, "invalid character constant")),
            }
        }
    };
    Ok((v, i + 1 + close + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(src: &str) -> Vec<Tok> {
        lex(src)
            .expect("lexes")
            .into_iter()
            .map(|(t, _)| t)
            .collect()
    }

    #[test]
    fn trim_markers_and_comments() {
        assert_eq!(
            toks("a  {{- .x -}}\n b{{/* c */}}d"),
            vec![
                Tok::Text("a".into()),
                Tok::Open,
                Tok::Space,
                Tok::Field("x".into()),
                Tok::Close,
                Tok::Text("b".into()),
                Tok::Text("d".into()),
            ]
        );
        assert_eq!(
            toks("x {{- /* c */ -}} y"),
            vec![Tok::Text("x".into()), Tok::Text("y".into())]
        );
        // `{{-3}}` is the number -3, not a trim marker.
        assert_eq!(
            toks("{{-3}}"),
            vec![Tok::Open, Tok::Num("-3".into()), Tok::Close]
        );
    }

    #[test]
    fn literals() {
        assert_eq!(
            toks(r#"{{"a\n\u00e9" `r\n` 'x' 1.5e3 $v $ .a.b}}"#),
            vec![
                Tok::Open,
                Tok::Str("a\né".into()),
                Tok::Space,
                Tok::Str("r\\n".into()),
                Tok::Space,
                Tok::Char(120),
                Tok::Space,
                Tok::Num("1.5e3".into()),
                Tok::Space,
                Tok::Var("$v".into()),
                Tok::Space,
                Tok::Var("$".into()),
                Tok::Space,
                Tok::Field("a".into()),
                Tok::Field("b".into()),
                Tok::Close,
            ]
        );
    }

    #[test]
    fn errors_have_positions() {
        let err = lex("ab\n{{ \"x }}").expect_err("unterminated");
        assert_eq!(err.pos(), Pos { line: 2, col: 4 });
        assert!(lex("{{ .x ").is_err());
        assert!(lex("{{ ) }}").is_err());
    }
}
