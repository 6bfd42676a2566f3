//! `toYAML`: the output of gopkg.in/yaml.v2's Marshal for JSON-shaped values; what it would
//! fold at 80 columns is refused rather than guessed.

use std::cmp::Ordering;

use crate::value::{Val, go_float_g};

/// yaml.v2 folds plain and quoted scalars with spaces past this column.
const WIDTH: usize = 80;

/// Encodes `v` as yaml.v2 does (with its trailing newline).
pub fn encode(v: &Val) -> Result<String, String> {
    let mut out = String::new();
    match v {
        Val::Map(m) if !m.is_empty() => map(v, 0, &mut out)?,
        Val::List(_) | Val::Strs(_) if !is_empty(v) => seq(v, 0, &mut out)?,
        _ => {
            out.push_str(&scalar(v, 0, false)?);
            out.push('\n');
        }
    }
    Ok(out)
}

fn is_empty(v: &Val) -> bool {
    match v {
        Val::Map(m) => m.is_empty(),
        Val::List(l) => l.is_empty(),
        Val::Strs(l) => l.is_empty(),
        _ => false,
    }
}

fn items(v: &Val) -> Vec<Val> {
    match v {
        Val::List(l) => l.to_vec(),
        Val::Strs(l) => l.iter().map(|s| Val::str(s.as_str())).collect(),
        _ => Vec::new(),
    }
}

/// yaml.v2's key order: runs of digits compare as numbers, letters after other characters.
fn key_order(a: &str, b: &str) -> Ordering {
    let (ar, br): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    for i in 0..ar.len().min(br.len()) {
        if ar[i] == br[i] {
            continue;
        }
        let (al, bl) = (ar[i].is_alphabetic(), br[i].is_alphabetic());
        if al && bl {
            return ar[i].cmp(&br[i]);
        }
        if al || bl {
            return if bl { Ordering::Less } else { Ordering::Greater };
        }
        let (mut an, mut bn) = (0i64, 0i64);
        if ar[i] == '0' || br[i] == '0' {
            let mut j = i;
            while j > 0 && ar[j - 1].is_ascii_digit() {
                j -= 1;
                if ar[j] != '0' {
                    an = 1;
                    bn = 1;
                    break;
                }
            }
        }
        let mut ai = i;
        while ai < ar.len() && ar[ai].is_ascii_digit() {
            an = an.wrapping_mul(10).wrapping_add(i64::from(ar[ai] as u8 - b'0'));
            ai += 1;
        }
        let mut bi = i;
        while bi < br.len() && br[bi].is_ascii_digit() {
            bn = bn.wrapping_mul(10).wrapping_add(i64::from(br[bi] as u8 - b'0'));
            bi += 1;
        }
        if an != bn {
            return an.cmp(&bn);
        }
        if ai != bi {
            return ai.cmp(&bi);
        }
        return ar[i].cmp(&br[i]);
    }
    ar.len().cmp(&br.len())
}

fn map(v: &Val, indent: usize, out: &mut String) -> Result<(), String> {
    let Val::Map(m) = v else { return Ok(()) };
    let mut keys: Vec<&String> = m.keys().collect();
    keys.sort_by(|a, b| key_order(a, b));
    let pad = " ".repeat(indent);
    for k in keys {
        let x = &m[k];
        let key = scalar(&Val::str(k.as_str()), indent, true)?;
        out.push_str(&pad);
        out.push_str(&key);
        out.push(':');
        value(x, indent, pad.len() + key.len() + 2, out, false)?;
    }
    Ok(())
}

/// Writes the value after `key:` or `- `, starting on the current line.
fn value(x: &Val, indent: usize, col: usize, out: &mut String, in_seq: bool) -> Result<(), String> {
    match x {
        Val::Map(_) if !is_empty(x) => {
            if in_seq {
                // `- a: 1` continues on the dash's line.
                let mut inner = String::new();
                map(x, indent + 2, &mut inner)?;
                out.push_str(inner.get(indent + 2..).unwrap_or_default());
            } else {
                out.push('\n');
                map(x, indent + 2, out)?;
            }
        }
        Val::List(_) | Val::Strs(_) if !is_empty(x) => {
            if in_seq {
                let mut inner = String::new();
                seq(x, indent + 2, &mut inner)?;
                out.push_str(inner.get(indent + 2..).unwrap_or_default());
            } else {
                // yaml.v2 does not indent a sequence under a mapping key.
                out.push('\n');
                seq(x, indent, out)?;
            }
        }
        _ => {
            if !in_seq {
                out.push(' ');
            }
            let s = scalar_at(x, indent + 2, col)?;
            out.push_str(&s);
            out.push('\n');
        }
    }
    Ok(())
}

fn seq(v: &Val, indent: usize, out: &mut String) -> Result<(), String> {
    let pad = " ".repeat(indent);
    for x in items(v) {
        out.push_str(&pad);
        out.push_str("- ");
        value(&x, indent, indent + 2, out, true)?;
    }
    Ok(())
}

fn scalar(v: &Val, indent: usize, key: bool) -> Result<String, String> {
    if key {
        if let Val::Str(s) = v {
            if s.contains('\n') {
                return Err("toYAML: a key with a line break is not supported by vaultlet".into());
            }
        }
    }
    scalar_at(v, indent, if key { indent } else { 0 })
}

/// A scalar written at column `col`; block scalars indent their lines by `indent`.
fn scalar_at(v: &Val, indent: usize, col: usize) -> Result<String, String> {
    Ok(match v {
        Val::Nil => "null".into(),
        Val::Bool(b) => b.to_string(),
        Val::Int(i) => i.to_string(),
        Val::Float(f) => float(*f),
        // yaml.v2 turns a json.Number into an int64, else a float64, else a string.
        Val::Num(n) => match n.parse::<i64>() {
            Ok(i) => i.to_string(),
            Err(_) => match n.parse::<f64>() {
                Ok(f) if f.is_finite() => float(f),
                _ => string(n, indent, col)?,
            },
        },
        Val::Str(s) => string(s, indent, col)?,
        Val::Map(_) => "{}".into(),
        Val::List(_) | Val::Strs(_) => "[]".into(),
        Val::Secret(_) | Val::Pem(_) => {
            return Err(format!("toYAML of a whole {} is not supported by vaultlet; use its .Data", v.type_name()));
        }
    })
}

fn float(f: f64) -> String {
    go_float_g(f)
}

/// True when yaml.v2 would read the plain text back as something other than a string.
fn resolves_to_non_string(s: &str) -> bool {
    const WORDS: &[&str] = &[
        "", "~", "null", "Null", "NULL", "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO",
        "true", "True", "TRUE", "false", "False", "FALSE", "on", "On", "ON", "off", "Off", "OFF",
        ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", "-.inf", "-.Inf", "-.INF", ".nan",
        ".NaN", ".NAN", "<<",
    ];
    if WORDS.contains(&s) {
        return true;
    }
    let first = s.chars().next().unwrap_or(' ');
    if !(first.is_ascii_digit() || matches!(first, '+' | '-' | '.')) {
        return false;
    }
    // Numbers (with `_`, base prefixes, exponents), dates and base-60 floats all start so;
    // anything made only of number characters is taken as possibly numeric: quote it.
    s.chars().all(|c| c.is_ascii_hexdigit() || matches!(c, '+' | '-' | '.' | '_' | ':' | 'x' | 'X' | 'o' | 'O' | 'T' | 't' | 'Z' | 'z' | ' '))
}

fn printable(c: char) -> bool {
    matches!(c, '\n' | '\u{85}') || (' '..='~').contains(&c) || (('\u{a0}'..='\u{d7ff}').contains(&c) || ('\u{e000}'..='\u{fffd}').contains(&c) || c >= '\u{10000}') && c != '\u{feff}'
}

fn string(s: &str, indent: usize, col: usize) -> Result<String, String> {
    let chars: Vec<char> = s.chars().collect();
    let special = chars.iter().any(|c| !printable(*c));
    let has_break = s.contains('\n');
    let space_break = s.contains(" \n");
    let break_space = s.contains("\n ");
    let leading_space = s.starts_with(' ') || s.starts_with('\n');
    let trailing_space = s.ends_with(' ');
    let mut indicators = false;
    for (i, &c) in chars.iter().enumerate() {
        let next_ws = chars.get(i + 1).is_none_or(|n| matches!(n, ' ' | '\n'));
        let prev_ws = i == 0 || matches!(chars[i - 1], ' ' | '\n');
        if i == 0 {
            indicators |= matches!(c, '#' | ',' | '[' | ']' | '{' | '}' | '&' | '*' | '!' | '|' | '>' | '\'' | '"' | '%' | '@' | '`')
                || (matches!(c, '?' | ':' | '-') && next_ws);
        } else {
            indicators |= (c == ':' && next_ws) || (c == '#' && prev_ws);
        }
    }
    if has_break {
        if special || space_break || trailing_space {
            return double(s, col);
        }
        return Ok(literal(s, indent));
    }
    let plain_ok = !special && !indicators && !leading_space && !trailing_space && !resolves_to_non_string(s) && !s.starts_with("---") && !s.starts_with("...");
    let text = if plain_ok {
        s.to_string()
    } else if resolves_to_non_string(s) && !special && !indicators && !leading_space && !trailing_space {
        return double(s, col);
    } else if !special && !break_space {
        format!("'{}'", s.replace('\'', "''"))
    } else {
        return double(s, col);
    };
    if s.contains(' ') && col + text.chars().count() > WIDTH {
        return Err("toYAML: a string with spaces this long would be folded by yaml.v2, which vaultlet does not reproduce".into());
    }
    Ok(text)
}

fn double(s: &str, col: usize) -> Result<String, String> {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '\0' => out.push_str("\\0"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\x0b' => out.push_str("\\v"),
            '\x0c' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            '\x1b' => out.push_str("\\e"),
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{85}' => out.push_str("\\N"),
            '\u{a0}' => out.push_str("\\_"),
            '\u{2028}' => out.push_str("\\L"),
            '\u{2029}' => out.push_str("\\P"),
            c if !printable(c) || c == '\u{feff}' => {
                let n = c as u32;
                if n <= 0xff {
                    out.push_str(&format!("\\x{n:02X}"));
                } else if n <= 0xffff {
                    out.push_str(&format!("\\u{n:04X}"));
                } else {
                    out.push_str(&format!("\\U{n:08X}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    if s.contains(' ') && col + out.chars().count() > WIDTH {
        return Err("toYAML: a quoted string with spaces this long would be folded by yaml.v2, which vaultlet does not reproduce".into());
    }
    Ok(out)
}

/// A literal block scalar `|-` with yaml.v2's chomping and indentation hints.
fn literal(s: &str, indent: usize) -> String {
    let mut head = String::from("|");
    if s.starts_with(' ') || s.starts_with('\n') {
        head.push('2');
    }
    let trailing = s.len() - s.trim_end_matches('\n').len();
    match trailing {
        0 => head.push('-'),
        1 => {}
        _ => head.push('+'),
    }
    let body = if trailing == 1 { &s[..s.len() - 1] } else { s };
    let pad = " ".repeat(indent);
    let mut out = head;
    let lines: Vec<&str> = body.split('\n').collect();
    let last = lines.len() - 1;
    for (i, line) in lines.iter().enumerate() {
        out.push('\n');
        if !line.is_empty() {
            out.push_str(&pad);
            out.push_str(line);
        }
        let _ = (i, last);
    }
    if trailing > 1 {
        // Keep-chomped breaks end the block themselves.
        out.truncate(out.trim_end_matches('\n').len());
        out.push_str(&"\n".repeat(trailing - 1));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json;

    fn y(j: &str) -> String {
        encode(&json::parse(j, true).expect("json")).expect("yaml")
    }

    #[test]
    fn maps_lists_and_scalars() {
        assert_eq!(
            y(r#"{"b":{"x":1,"y":[1,"two"]},"a":"plain","c":"true","d":"a: b","e":"","f":[{"k":1,"l":2}],"g":{},"h":[]}"#),
            "a: plain\nb:\n  x: 1\n  \"y\":\n  - 1\n  - two\nc: \"true\"\nd: 'a: b'\ne: \"\"\nf:\n- k: 1\n  l: 2\ng: {}\nh: []\n"
        );
        assert_eq!(y(r#"{"m":"l1\nl2","n":"l1\n"}"#), "m: |-\n  l1\n  l2\n\"n\": |\n  l1\n");
        assert_eq!(y(r#"{"a10":1,"a2":2,"B":3}"#), "B: 3\na2: 2\na10: 1\n");
    }

    #[test]
    fn refuses_folding() {
        let long = format!(r#"{{"k":"{}"}}"#, "word ".repeat(20).trim());
        assert!(encode(&json::parse(&long, true).expect("json")).is_err());
    }
}
