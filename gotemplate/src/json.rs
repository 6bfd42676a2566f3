//! JSON in and out the way Go's encoding/json does it: numbers kept as written
//! (`json.Number`) or as float64, output with sorted keys and HTML escaping.

use std::collections::BTreeMap;
use std::rc::Rc;

use crate::value::{Val, go_float_json};

/// How deep JSON may nest before it is refused.
const MAX_DEPTH: usize = 200;

/// Parses JSON text. `numbers_as_text` keeps numbers as `json.Number` (Vault's client
/// decodes with `UseNumber`); otherwise they become float64 (`parseJSON`).
pub fn parse(text: &str, numbers_as_text: bool) -> Result<Val, String> {
    let mut p = P {
        b: text.as_bytes(),
        s: text,
        i: 0,
        num_text: numbers_as_text,
    };
    p.ws();
    let v = p.value(0)?;
    p.ws();
    if p.i != p.b.len() {
        return Err(format!(
            "invalid character after top-level value at offset {}",
            p.i
        ));
    }
    Ok(v)
}

struct P<'a> {
    b: &'a [u8],
    s: &'a str,
    i: usize,
    num_text: bool,
}

impl P<'_> {
    fn ws(&mut self) {
        while matches!(self.b.get(self.i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn err<T>(&self, what: &str) -> Result<T, String> {
        Err(format!("invalid JSON: {what} at offset {}", self.i))
    }

    fn lit(&mut self, word: &str, v: Val) -> Result<Val, String> {
        if self.s[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(v)
        } else {
            self.err("unexpected literal")
        }
    }

    fn value(&mut self, depth: usize) -> Result<Val, String> {
        if depth > MAX_DEPTH {
            return self.err("nesting too deep");
        }
        match self.b.get(self.i) {
            Some(b'{') => {
                self.i += 1;
                let mut m = BTreeMap::new();
                self.ws();
                if self.b.get(self.i) == Some(&b'}') {
                    self.i += 1;
                    return Ok(Val::Map(Rc::new(m)));
                }
                loop {
                    self.ws();
                    if self.b.get(self.i) != Some(&b'"') {
                        return self.err("expected object key");
                    }
                    let k = self.string()?;
                    self.ws();
                    if self.b.get(self.i) != Some(&b':') {
                        return self.err("expected ':'");
                    }
                    self.i += 1;
                    self.ws();
                    let v = self.value(depth + 1)?;
                    m.insert(k, v);
                    self.ws();
                    match self.b.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(Val::Map(Rc::new(m)));
                        }
                        _ => return self.err("expected ',' or '}'"),
                    }
                }
            }
            Some(b'[') => {
                self.i += 1;
                let mut l = Vec::new();
                self.ws();
                if self.b.get(self.i) == Some(&b']') {
                    self.i += 1;
                    return Ok(Val::List(Rc::new(l)));
                }
                loop {
                    self.ws();
                    l.push(self.value(depth + 1)?);
                    self.ws();
                    match self.b.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Val::List(Rc::new(l)));
                        }
                        _ => return self.err("expected ',' or ']'"),
                    }
                }
            }
            Some(b'"') => Ok(Val::str(self.string()?)),
            Some(b't') => self.lit("true", Val::Bool(true)),
            Some(b'f') => self.lit("false", Val::Bool(false)),
            Some(b'n') => self.lit("null", Val::Nil),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => self.err("unexpected character"),
        }
    }

    fn number(&mut self) -> Result<Val, String> {
        let start = self.i;
        if self.b.get(self.i) == Some(&b'-') {
            self.i += 1;
        }
        let digits = |p: &mut Self| {
            let s = p.i;
            while p.b.get(p.i).is_some_and(u8::is_ascii_digit) {
                p.i += 1;
            }
            p.i > s
        };
        if self.b.get(self.i) == Some(&b'0') {
            self.i += 1;
        } else if !digits(self) {
            return self.err("bad number");
        }
        if self.b.get(self.i) == Some(&b'.') {
            self.i += 1;
            if !digits(self) {
                return self.err("bad number");
            }
        }
        if matches!(self.b.get(self.i), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.b.get(self.i), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if !digits(self) {
                return self.err("bad number");
            }
        }
        let text = &self.s[start..self.i];
        if self.num_text {
            Ok(Val::Num(text.into()))
        } else {
            text.parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .map(Val::Float)
                .ok_or_else(|| format!("json: cannot unmarshal number {text} into a float64"))
        }
    }

    fn string(&mut self) -> Result<String, String> {
        self.i += 1;
        let mut out = String::new();
        loop {
            let rest = &self.s[self.i..];
            let stop = rest.find(['"', '\\']).map_or(rest.len(), |o| o);
            if rest[..stop].bytes().any(|c| c < 0x20) {
                return self.err("control character in string");
            }
            out.push_str(&rest[..stop]);
            self.i += stop;
            match self.b.get(self.i) {
                Some(b'"') => {
                    self.i += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.i += 1;
                    let c = self.b.get(self.i).copied();
                    self.i += 1;
                    match c {
                        Some(b'"') => out.push('"'),
                        Some(b'\\') => out.push('\\'),
                        Some(b'/') => out.push('/'),
                        Some(b'b') => out.push('\x08'),
                        Some(b'f') => out.push('\x0c'),
                        Some(b'n') => out.push('\n'),
                        Some(b'r') => out.push('\r'),
                        Some(b't') => out.push('\t'),
                        Some(b'u') => {
                            let hi = self.hex4()?;
                            let ch = if (0xD800..0xDC00).contains(&hi)
                                && self.s[self.i..].starts_with("\\u")
                            {
                                let save = self.i;
                                self.i += 2;
                                let lo = self.hex4()?;
                                if (0xDC00..0xE000).contains(&lo) {
                                    char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))
                                } else {
                                    self.i = save;
                                    None
                                }
                            } else {
                                char::from_u32(hi)
                            };
                            out.push(ch.unwrap_or('\u{FFFD}'));
                        }
                        _ => return self.err("bad escape"),
                    }
                }
                _ => return self.err("unterminated string"),
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let h = self.s.get(self.i..self.i + 4).unwrap_or_default();
        let v = u32::from_str_radix(h, 16).or_else(|_| self.err("bad \\u escape"))?;
        self.i += 4;
        Ok(v)
    }
}

/// Output options of the encoder.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    /// Escape `<`, `>`, `&` as `\u003c`... (json.Marshal does; toUnescapedJSON does not).
    pub escape_html: bool,
    /// Indent with two spaces per level (MarshalIndent with `""`, `"  "`).
    pub pretty: bool,
}

/// Encodes `v` as Go's encoding/json would. Secrets and PEM structs are refused.
pub fn encode(v: &Val, style: Style) -> Result<String, String> {
    let mut out = String::new();
    enc(v, style, 0, &mut out)?;
    Ok(out)
}

fn newline(out: &mut String, style: Style, depth: usize) {
    if style.pretty {
        out.push('\n');
        for _ in 0..depth {
            out.push_str("  ");
        }
    }
}

fn enc(v: &Val, style: Style, depth: usize, out: &mut String) -> Result<(), String> {
    match v {
        Val::Nil => out.push_str("null"),
        Val::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Val::Str(s) => quote(s, style.escape_html, out),
        Val::Num(n) => out.push_str(n),
        Val::Int(i) => out.push_str(&i.to_string()),
        Val::Float(f) => out.push_str(&go_float_json(*f)),
        Val::List(l) => {
            list(l.iter(), style, depth, out, |x, o| {
                enc(x, style, depth + 1, o)
            })?;
        }
        Val::Strs(l) => {
            list(l.iter(), style, depth, out, |x, o| {
                quote(x, style.escape_html, o);
                Ok(())
            })?;
        }
        Val::Map(m) => {
            if m.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            out.push('{');
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(out, style, depth + 1);
                quote(k, style.escape_html, out);
                out.push(':');
                if style.pretty {
                    out.push(' ');
                }
                enc(x, style, depth + 1, out)?;
            }
            newline(out, style, depth);
            out.push('}');
        }
        Val::Secret(_) | Val::Pem(_) => {
            return Err(format!(
                "encoding a whole {} is not supported by vaultlet; encode its .Data",
                v.type_name()
            ));
        }
    }
    Ok(())
}

fn list<'a, T: 'a>(
    items: impl ExactSizeIterator<Item = &'a T>,
    style: Style,
    depth: usize,
    out: &mut String,
    mut each: impl FnMut(&'a T, &mut String) -> Result<(), String>,
) -> Result<(), String> {
    if items.len() == 0 {
        out.push_str("[]");
        return Ok(());
    }
    out.push('[');
    for (i, x) in items.enumerate() {
        if i > 0 {
            out.push(',');
        }
        newline(out, style, depth + 1);
        each(x, out)?;
    }
    newline(out, style, depth);
    out.push(']');
    Ok(())
}

/// A JSON string as Go writes it.
pub fn quote(s: &str, escape_html: bool, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '<' | '>' | '&' if escape_html => out.push_str(&format!("\\u{:04x}", c as u32)),
            '\u{2028}' | '\u{2029}' => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMPACT: Style = Style {
        escape_html: true,
        pretty: false,
    };

    #[test]
    fn round_trips_like_go() {
        let v = parse(
            r#"{"b":[1,"x<y>&z",true,null,{}],"a":1e6,"c":"\u2028\b\u0001"}"#,
            true,
        )
        .expect("parses");
        assert_eq!(
            encode(&v, COMPACT).expect("encodes"),
            r#"{"a":1e6,"b":[1,"x\u003cy\u003e\u0026z",true,null,{}],"c":"\u2028\b\u0001"}"#
        );
        let pretty = Style {
            escape_html: true,
            pretty: true,
        };
        let v = parse(r#"{"a":[1,2],"b":{},"c":[]}"#, true).expect("parses");
        assert_eq!(
            encode(&v, pretty).expect("encodes"),
            "{\n  \"a\": [\n    1,\n    2\n  ],\n  \"b\": {},\n  \"c\": []\n}"
        );
    }

    #[test]
    fn float_mode_and_errors() {
        let v = parse("[1e6, 0.5]", false).expect("parses");
        assert_eq!(encode(&v, COMPACT).expect("encodes"), "[1000000,0.5]");
        for bad in ["", "{", "[1,]", "\"\\x\"", "01", "1 2", "{\"a\" 1}", "nul"] {
            assert!(parse(bad, true).is_err(), "{bad}");
        }
    }
}
