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
            out.push_str(&scalar_at(v, 2, 0)?);
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
            return if bl {
                Ordering::Less
            } else {
                Ordering::Greater
            };
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
            an = an
                .wrapping_mul(10)
                .wrapping_add(i64::from(ar[ai] as u8 - b'0'));
            ai += 1;
        }
        let mut bi = i;
        while bi < br.len() && br[bi].is_ascii_digit() {
            bn = bn
                .wrapping_mul(10)
                .wrapping_add(i64::from(br[bi] as u8 - b'0'));
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
    match v {
        Val::Str(s) => string_scalar(s, indent + 2, indent, key),
        _ => scalar_at(v, indent + 2, indent),
    }
}

/// A scalar written at column `col`; its continuation lines are indented by `indent`.
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
                _ => string_scalar(n, indent, col, false)?,
            },
        },
        Val::Str(s) => string_scalar(s, indent, col, false)?,
        Val::Map(_) => "{}".into(),
        Val::List(_) | Val::Strs(_) => "[]".into(),
        Val::Secret(_) | Val::Pem(_) => {
            return Err(format!(
                "toYAML of a whole {} is not supported by vaultlet; use its .Data",
                v.type_name()
            ));
        }
    })
}

fn float(f: f64) -> String {
    go_float_g(f)
}

/// True when yaml.v2 would read the plain text back as something other than a string
/// (its `resolve`), or as a base-60 float (which its encoder also quotes).
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
    match s.as_bytes().first() {
        Some(b'.') => {
            return s.parse::<f64>().is_ok()
                && s.len() > 1
                && s[1..]
                    .bytes()
                    .all(|c| c.is_ascii_digit() || matches!(c, b'e' | b'E' | b'+' | b'-'));
        }
        Some(c) if c.is_ascii_digit() || matches!(c, b'+' | b'-') => {}
        _ => return false,
    }
    if is_timestamp(s) || is_base60(s) {
        return true;
    }
    let plain = s.replace('_', "");
    // Out-of-range floats (1e999) fail strconv.ParseFloat and stay strings.
    go_int_base0(&plain) || (yaml_float(&plain) && plain.parse::<f64>().is_ok_and(f64::is_finite))
}

fn digits(s: &str, radix: u32) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_digit(radix))
}

/// `strconv.ParseInt(s, 0, 64)` syntax (range not checked: such digit strings quote anyway).
fn go_int_base0(s: &str) -> bool {
    let s = s.strip_prefix(['+', '-']).unwrap_or(s);
    let lower = s.to_ascii_lowercase();
    if let Some(h) = lower.strip_prefix("0x") {
        digits(h, 16)
    } else if let Some(o) = lower.strip_prefix("0o") {
        digits(o, 8)
    } else if let Some(b) = lower.strip_prefix("0b") {
        digits(b, 2)
    } else if s.len() > 1 && s.starts_with('0') {
        digits(s, 8)
    } else {
        digits(s, 10)
    }
}

/// `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`
fn yaml_float(s: &str) -> bool {
    let s = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (mant, exp) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let mant_ok = match mant.split_once('.') {
        Some(("", frac)) => digits(frac, 10),
        Some((int, frac)) => digits(int, 10) && (frac.is_empty() || digits(frac, 10)),
        None => digits(mant, 10),
    };
    mant_ok && exp.is_none_or(|e| digits(e.strip_prefix(['+', '-']).unwrap_or(e), 10))
}

/// yaml.v2's timestamps: `YYYY-M-D`, optionally with a `T`/`t`/space and `H:M:S` time.
fn is_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 8 || !b[..4].iter().all(u8::is_ascii_digit) || b[4] != b'-' {
        return false;
    }
    let rest = &s[5..];
    let date_end = rest.find(['T', 't', ' ']).unwrap_or(rest.len());
    let mut parts = rest[..date_end].split('-');
    let ok_num = |p: Option<&str>| p.is_some_and(|p| (1..=2).contains(&p.len()) && digits(p, 10));
    if !(ok_num(parts.next()) && ok_num(parts.next()) && parts.next().is_none()) {
        return false;
    }
    if date_end == rest.len() {
        return true;
    }
    let time = rest[date_end + 1..].trim_start_matches(' ');
    let hms: Vec<&str> = time.splitn(3, ':').collect();
    hms.len() == 3
        && ok_num(Some(hms[0]))
        && ok_num(Some(hms[1]))
        && hms[2].len() >= 2
        && digits(&hms[2][..2], 10)
}

/// `^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$`
fn is_base60(s: &str) -> bool {
    let s = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (main, frac) = match s.split_once('.') {
        Some((m, f)) => (m, Some(f)),
        None => (s, None),
    };
    if frac.is_some_and(|f| !f.chars().all(|c| c.is_ascii_digit() || c == '_')) {
        return false;
    }
    let mut parts = main.split(':');
    let head = parts.next().unwrap_or_default();
    if !head.starts_with(|c: char| c.is_ascii_digit())
        || !head.chars().all(|c| c.is_ascii_digit() || c == '_')
    {
        return false;
    }
    let mut n = 0;
    for p in parts {
        n += 1;
        let ok = match p.as_bytes() {
            [d] => d.is_ascii_digit(),
            [a, d] => (b'0'..=b'5').contains(a) && d.is_ascii_digit(),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    n > 0
}

/// yaml's `is_printable`: no C0/C1 controls but LF, no DEL, no BOM, nothing above U+FFFF.
fn printable(c: char) -> bool {
    c == '\n'
        || (' '..='~').contains(&c)
        || ('\u{a0}'..='\u{d7ff}').contains(&c)
        || (('\u{e000}'..='\u{fffd}').contains(&c) && c != '\u{feff}')
}

fn is_break(c: char) -> bool {
    matches!(c, '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

fn is_blankz(c: Option<&char>) -> bool {
    c.is_none_or(|c| *c == ' ' || *c == '\t' || is_break(*c))
}

/// What yaml's `analyze_scalar` finds in a string.
struct Analysis {
    block_plain: bool,
    single: bool,
    block: bool,
    line_breaks: bool,
}

fn analyze(s: &str) -> Analysis {
    let c: Vec<char> = s.chars().collect();
    let (mut block_ind, mut special, mut line_breaks) = (false, false, false);
    let (mut lead_sp, mut lead_br, mut trail_sp, mut trail_br) = (false, false, false, false);
    let (mut break_space, mut space_break, mut prev_sp, mut prev_br) = (false, false, false, false);
    if s.starts_with("---") || s.starts_with("...") {
        block_ind = true;
    }
    let mut preceded_ws = true;
    for i in 0..c.len() {
        let ch = c[i];
        let followed_ws = is_blankz(c.get(i + 1));
        if i == 0 {
            block_ind |= matches!(
                ch,
                '#' | ','
                    | '['
                    | ']'
                    | '{'
                    | '}'
                    | '&'
                    | '*'
                    | '!'
                    | '|'
                    | '>'
                    | '\''
                    | '"'
                    | '%'
                    | '@'
                    | '`'
            ) || (matches!(ch, '?' | ':' | '-') && followed_ws);
        } else {
            block_ind |= (ch == ':' && followed_ws) || (ch == '#' && preceded_ws);
        }
        if !printable(ch) {
            special = true;
        }
        let last = i + 1 == c.len();
        if ch == ' ' {
            lead_sp |= i == 0;
            trail_sp |= last;
            break_space |= prev_br;
            prev_sp = true;
            prev_br = false;
        } else if is_break(ch) {
            line_breaks = true;
            lead_br |= i == 0;
            trail_br |= last;
            space_break |= prev_sp;
            prev_sp = false;
            prev_br = true;
        } else {
            prev_sp = false;
            prev_br = false;
        }
        preceded_ws = is_blankz(Some(&ch));
    }
    let mut a = Analysis {
        block_plain: !block_ind,
        single: true,
        block: true,
        line_breaks,
    };
    if lead_sp || lead_br || trail_sp || trail_br || line_breaks {
        a.block_plain = false;
    }
    if trail_sp {
        a.block = false;
    }
    if break_space {
        a.block_plain = false;
        a.single = false;
    }
    if space_break || special {
        a.block_plain = false;
        a.single = false;
        a.block = false;
    }
    a
}

/// A string scalar at column `col`, whose continuation lines are indented by `indent`;
/// `key` for a mapping key (simple-key context).
fn string_scalar(s: &str, indent: usize, col: usize, key: bool) -> Result<String, String> {
    let a = analyze(s);
    if key && (a.line_breaks || s.len() > 128) {
        return Err(
            "toYAML: a key with a line break or over 128 bytes is not supported by vaultlet".into(),
        );
    }
    let literal_wanted = s.contains('\n');
    let double_wanted = !literal_wanted && resolves_to_non_string(s);
    let text = if literal_wanted && a.block && !key {
        return literal(s, indent);
    } else if literal_wanted || double_wanted {
        double(s)
    } else if a.block_plain {
        s.to_string()
    } else if a.single {
        single(s, indent)
    } else {
        double(s)
    };
    if s.contains(' ') && col + text.chars().count() > WIDTH {
        return Err("toYAML: a string with spaces this long would be folded by yaml.v2, which vaultlet does not reproduce".into());
    }
    Ok(text)
}

/// Writes text whose breaks (U+2028, U+2029) are followed by `indent` spaces, as yaml's
/// writer re-indents after every line break.
fn reindent(s: &str, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    let mut after_break = false;
    for ch in s.chars() {
        if is_break(ch) {
            after_break = true;
        } else if after_break {
            out.push_str(&pad);
            after_break = false;
        }
        out.push(ch);
    }
}

fn single(s: &str, indent: usize) -> String {
    let mut out = String::from("'");
    reindent(&s.replace('\'', "''"), indent, &mut out);
    out.push('\'');
    out
}

fn double(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        let escape = !printable(c) || is_break(c) || c == '"' || c == '\\';
        if !escape {
            out.push(c);
            continue;
        }
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
            '\u{2028}' => out.push_str("\\L"),
            '\u{2029}' => out.push_str("\\P"),
            c => {
                let n = c as u32;
                if n <= 0xff {
                    out.push_str(&format!("\\x{n:02X}"));
                } else if n <= 0xffff {
                    out.push_str(&format!("\\u{n:04X}"));
                } else {
                    out.push_str(&format!("\\U{n:08X}"));
                }
            }
        }
    }
    out.push('"');
    out
}

/// A literal block scalar with yaml's indentation and chomping hints; without the final
/// line break, which the caller writes.
fn literal(s: &str, indent: usize) -> Result<String, String> {
    let chars: Vec<char> = s.chars().collect();
    let mut head = String::from("|");
    if chars.first().is_some_and(|c| *c == ' ' || is_break(*c)) {
        head.push('2');
    }
    let n = chars.len();
    let last_break = chars.last().is_some_and(|c| is_break(*c));
    if !last_break {
        head.push('-');
    } else if n == 1 || is_break(chars[n - 2]) {
        head.push('+');
    }
    if last_break && chars[n - 1] != '\n' {
        return Err(
            "toYAML: a string ending in a Unicode line separator is not supported by vaultlet"
                .into(),
        );
    }
    let mut out = head;
    out.push('\n');
    // Every line starts indented; empty lines stay empty.
    let pad = " ".repeat(indent);
    let mut at_line_start = true;
    for ch in chars {
        if is_break(ch) {
            out.push(ch);
            at_line_start = true;
        } else {
            if at_line_start {
                out.push_str(&pad);
                at_line_start = false;
            }
            out.push(ch);
        }
    }
    if last_break {
        out.pop();
    }
    Ok(out)
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
            y(
                r#"{"b":{"x":1,"y":[1,"two"]},"a":"plain","c":"true","d":"a: b","e":"","f":[{"k":1,"l":2}],"g":{},"h":[]}"#
            ),
            "a: plain\nb:\n  x: 1\n  \"y\":\n  - 1\n  - two\nc: \"true\"\nd: 'a: b'\ne: \"\"\nf:\n- k: 1\n  l: 2\ng: {}\nh: []\n"
        );
        assert_eq!(
            y(r#"{"m":"l1\nl2","n":"l1\n"}"#),
            "m: |-\n  l1\n  l2\n\"n\": |\n  l1\n"
        );
        assert_eq!(y(r#"{"a10":1,"a2":2,"B":3}"#), "B: 3\na2: 2\na10: 1\n");
    }

    #[test]
    fn refuses_folding() {
        let long = format!(r#"{{"k":"{}"}}"#, "word ".repeat(20).trim());
        assert!(encode(&json::parse(&long, true).expect("json")).is_err());
    }
}
