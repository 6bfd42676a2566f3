//! Go's fmt for template values: `print`, `println`, `printf` and the `{{ . }}` output.

use crate::value::{Val, go_float_g};

/// How an action prints its value: Go's `fmt.Fprint` after text/template's checks
/// (a nil interface at the top prints `<no value>`).
pub fn print_value(v: &Val) -> Result<String, String> {
    match v {
        Val::Nil => Ok("<no value>".into()),
        _ => sprint(std::slice::from_ref(v)),
    }
}

/// `fmt.Sprint`: a space between operands when neither is a string.
pub fn sprint(args: &[Val]) -> Result<String, String> {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        let is_str = |v: &Val| v.as_str().is_some();
        if i > 0 && !is_str(a) && !is_str(&args[i - 1]) {
            out.push(' ');
        }
        out.push_str(&fmt_arg(a, &Spec::plain('v'))?);
    }
    Ok(out)
}

/// `fmt.Sprintln`: spaces between all operands, a newline at the end.
pub fn sprintln(args: &[Val]) -> Result<String, String> {
    let parts: Result<Vec<String>, String> =
        args.iter().map(|a| fmt_arg(a, &Spec::plain('v'))).collect();
    Ok(parts?.join(" ") + "\n")
}

/// Bound on one `printf` result while it is built (widths can multiply a short format).
const MAX_FORMATTED: usize = 64 << 20;

/// One verb with its flags, width and precision.
#[derive(Debug, Clone, Default)]
struct Spec {
    verb: char,
    minus: bool,
    plus: bool,
    zero: bool,
    space: bool,
    sharp: bool,
    width: Option<usize>,
    prec: Option<usize>,
}

impl Spec {
    fn plain(verb: char) -> Spec {
        Spec {
            verb,
            ..Spec::default()
        }
    }
}

/// `fmt.Sprintf` for the verbs templates use (`v s d q t f e x X o b c g`), flags `-+0 #`,
/// width and precision. `*` widths and `%[n]` indexes are refused.
pub fn sprintf(format: &str, args: &[Val]) -> Result<String, String> {
    let mut out = String::new();
    let mut argi = 0;
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = Spec::default();
        while let Some(&f) = chars.peek() {
            match f {
                '-' => spec.minus = true,
                '+' => spec.plus = true,
                '0' => spec.zero = true,
                ' ' => spec.space = true,
                '#' => spec.sharp = true,
                _ => break,
            }
            chars.next();
        }
        let num = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>| {
            let mut n: Option<usize> = None;
            while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
                n = Some(
                    n.unwrap_or(0)
                        .saturating_mul(10)
                        .saturating_add(d as usize)
                        .min(1 << 16),
                );
                chars.next();
            }
            n
        };
        spec.width = num(&mut chars);
        if chars.peek() == Some(&'.') {
            chars.next();
            spec.prec = Some(num(&mut chars).unwrap_or(0));
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '*' || verb == '[' {
            return Err(
                "printf: '*' widths and argument indexes are not supported by vaultlet".into(),
            );
        }
        if verb == '%' {
            out.push('%');
            continue;
        }
        spec.verb = verb;
        if out.len() > MAX_FORMATTED {
            return Err(format!("printf: the result exceeds {MAX_FORMATTED} bytes"));
        }
        if spec.sharp && verb == 'v' {
            return Err("printf: %#v (Go syntax) is not supported by vaultlet".into());
        }
        match args.get(argi) {
            None => out.push_str(&format!("%!{verb}(MISSING)")),
            Some(a) => out.push_str(&fmt_arg(a, &spec)?),
        }
        argi += 1;
    }
    if argi < args.len() {
        out.push_str("%!(EXTRA ");
        let extra: Result<Vec<String>, String> = args[argi..]
            .iter()
            .map(|a| {
                Ok(match a {
                    Val::Nil => "<nil>".to_string(),
                    _ => format!("{}={}", a.type_name(), fmt_arg(a, &Spec::plain('v'))?),
                })
            })
            .collect();
        out.push_str(&extra?.join(", "));
        out.push(')');
    }
    Ok(out)
}

/// `%!d(string=x)`: Go prints the value with `%v` but keeps the width, flags and precision.
fn bad_verb(v: &Val, spec: &Spec) -> Result<String, String> {
    Ok(match v {
        Val::Nil => format!("%!{}(<nil>)", spec.verb),
        _ => {
            let as_v = Spec {
                verb: 'v',
                ..spec.clone()
            };
            format!("%!{}({}={})", spec.verb, v.type_name(), fmt_arg(v, &as_v)?)
        }
    })
}

fn pad(s: String, spec: &Spec, numeric: bool) -> String {
    let Some(w) = spec.width else { return s };
    let n = s.chars().count();
    if n >= w {
        return s;
    }
    let fill = w - n;
    if spec.minus {
        s + &" ".repeat(fill)
    } else if spec.zero && numeric {
        // Zeros go after the sign.
        let (sign, rest) = match s.chars().next() {
            Some(c @ ('-' | '+' | ' ')) => (c.to_string(), s[1..].to_string()),
            _ => (String::new(), s),
        };
        format!("{sign}{}{rest}", "0".repeat(fill))
    } else if spec.zero {
        "0".repeat(fill) + &s
    } else {
        " ".repeat(fill) + &s
    }
}

fn fmt_arg(v: &Val, spec: &Spec) -> Result<String, String> {
    match v {
        Val::Nil => match spec.verb {
            'v' => Ok(pad("<nil>".into(), spec, false)),
            _ => bad_verb(v, spec),
        },
        Val::Bool(b) => match spec.verb {
            'v' | 't' => Ok(pad(b.to_string(), spec, false)),
            _ => bad_verb(v, spec),
        },
        Val::Str(s) | Val::Num(s) => fmt_str(v, s, spec),
        Val::Int(i) => fmt_int(v, *i, spec),
        Val::Float(f) => fmt_float(v, *f, spec),
        Val::List(l) => {
            let parts: Result<Vec<String>, String> = l.iter().map(|x| elem(x, spec)).collect();
            Ok(format!("[{}]", parts?.join(" ")))
        }
        Val::Strs(l) => {
            let parts: Result<Vec<String>, String> =
                l.iter().map(|x| fmt_str(v, x, spec)).collect();
            Ok(format!("[{}]", parts?.join(" ")))
        }
        Val::Map(m) => {
            let parts: Result<Vec<String>, String> = m
                .iter()
                .map(|(k, x)| Ok(format!("{}:{}", fmt_str(v, k, spec)?, elem(x, spec)?)))
                .collect();
            Ok(format!("map[{}]", parts?.join(" ")))
        }
        Val::Secret(_) | Val::Pem(_) => Err(format!(
            "printing a whole {} is not supported by vaultlet; print its fields (.Data...)",
            v.type_name()
        )),
    }
}

/// An element of a slice or map: a nil interface prints `<nil>` whatever the verb.
fn elem(v: &Val, spec: &Spec) -> Result<String, String> {
    match v {
        Val::Nil => Ok(pad("<nil>".into(), spec, false)),
        _ => fmt_arg(v, spec),
    }
}

fn fmt_str(whole: &Val, s: &str, spec: &Spec) -> Result<String, String> {
    let s: String = match spec.prec {
        Some(p) if matches!(spec.verb, 'v' | 's' | 'q') => s.chars().take(p).collect(),
        _ => s.to_string(),
    };
    let out = match spec.verb {
        'v' | 's' => s,
        'q' if spec.sharp && !s.contains('`') => format!("`{s}`"),
        'q' => go_quote(&s, spec.plus),
        'x' | 'X' => {
            let bytes = match spec.prec {
                Some(p) => &s.as_bytes()[..p.min(s.len())],
                None => s.as_bytes(),
            };
            let parts: Vec<String> = bytes
                .iter()
                .map(|b| {
                    let h = if spec.verb == 'x' {
                        format!("{b:02x}")
                    } else {
                        format!("{b:02X}")
                    };
                    if spec.sharp {
                        format!("0{}{h}", spec.verb)
                    } else {
                        h
                    }
                })
                .collect();
            parts.join(if spec.space { " " } else { "" })
        }
        _ => {
            return match whole {
                Val::Strs(_) | Val::Map(_) => bad_verb(&Val::str(s), spec),
                _ => bad_verb(whole, spec),
            };
        }
    };
    Ok(pad(out, spec, false))
}

/// `strconv.Quote` (or `QuoteToASCII` with `+`).
pub fn go_quote(s: &str, ascii: bool) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\x7f' => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if (ascii && !c.is_ascii()) || !is_print(c) => {
                if (c as u32) < 0x10000 {
                    out.push_str(&format!("\\u{:04x}", c as u32));
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `unicode.IsPrint`: not control, format (Cf), private use, noncharacter, or a space
/// other than U+0020. Unassigned code points (which Go also escapes) are not known here.
pub fn is_print(c: char) -> bool {
    let format = matches!(
        c,
        '\u{00ad}'
            | '\u{0600}'..='\u{0605}'
            | '\u{061c}'
            | '\u{06dd}'
            | '\u{070f}'
            | '\u{0890}'..='\u{0891}'
            | '\u{08e2}'
            | '\u{180e}'
            | '\u{200b}'..='\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206f}'
            | '\u{feff}'
            | '\u{fff9}'..='\u{fffb}'
            | '\u{110bd}'
            | '\u{110cd}'
            | '\u{13430}'..='\u{1343f}'
            | '\u{1bca0}'..='\u{1bca3}'
            | '\u{1d173}'..='\u{1d17a}'
            | '\u{e0001}'
            | '\u{e0020}'..='\u{e007f}'
    );
    let private_or_nonchar = matches!(
        c,
        '\u{e000}'..='\u{f8ff}'
            | '\u{f0000}'..='\u{10ffff}'
            | '\u{fdd0}'..='\u{fdef}'
            | '\u{fffe}'..='\u{ffff}'
    ) || (c as u32 & 0xfffe) == 0xfffe;
    !(c.is_control() || format || private_or_nonchar || (c.is_whitespace() && c != ' '))
}

fn fmt_int(v: &Val, i: i64, spec: &Spec) -> Result<String, String> {
    let sign = if i < 0 {
        "-"
    } else if spec.plus {
        "+"
    } else if spec.space {
        " "
    } else {
        ""
    };
    let u = i.unsigned_abs();
    let digits = match spec.verb {
        'v' | 'd' => u.to_string(),
        'x' => format!("{}{u:x}", if spec.sharp { "0x" } else { "" }),
        'X' => format!("{}{u:X}", if spec.sharp { "0X" } else { "" }),
        'o' => format!("{}{u:o}", if spec.sharp { "0" } else { "" }),
        'b' => format!("{u:b}"),
        'O' => format!("0o{u:o}"),
        'U' => {
            // Go formats the bits as unsigned: -1 is U+FFFFFFFFFFFFFFFF.
            let hex = format!("U+{:04X}", i as u64);
            let hex = if spec.sharp {
                let c = u32::try_from(i)
                    .ok()
                    .and_then(char::from_u32)
                    .unwrap_or('\u{FFFD}');
                format!("{hex} '{c}'")
            } else {
                hex
            };
            return Ok(pad(hex, spec, false));
        }
        'c' => {
            let c = u32::try_from(i)
                .ok()
                .and_then(char::from_u32)
                .unwrap_or('\u{FFFD}');
            return Ok(pad(c.to_string(), spec, false));
        }
        'q' => {
            let c = u32::try_from(i)
                .ok()
                .and_then(char::from_u32)
                .unwrap_or('\u{FFFD}');
            let q = go_quote(&c.to_string(), spec.plus);
            let inner = q[1..q.len() - 1].replace("\\\"", "\"").replace('\'', "\\'");
            return Ok(pad(format!("'{inner}'"), spec, false));
        }
        _ => return bad_verb(v, spec),
    };
    let digits = match spec.prec {
        Some(p) if digits.len() < p => format!("{}{digits}", "0".repeat(p - digits.len())),
        _ => digits,
    };
    Ok(pad(format!("{sign}{digits}"), spec, spec.prec.is_none()))
}

fn fmt_float(v: &Val, f: f64, spec: &Spec) -> Result<String, String> {
    let sign = if f.is_sign_negative() {
        "-"
    } else if spec.plus {
        "+"
    } else if spec.space {
        " "
    } else {
        ""
    };
    let a = f.abs();
    let body = match (spec.verb, spec.prec) {
        ('v' | 'g', None) => go_float_g(a),
        ('f' | 'F', p) => format!("{a:.*}", p.unwrap_or(6)),
        ('e' | 'E', p) => {
            let s = format!("{a:.*e}", p.unwrap_or(6));
            let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
            let e: i32 = e.parse().unwrap_or(0);
            let s = format!("{m}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs());
            if spec.verb == 'E' {
                s.to_uppercase()
            } else {
                s
            }
        }
        ('v' | 'g', Some(_)) | ('b' | 'G' | 'x' | 'X', _) => {
            return Err(format!(
                "printf: %{} of a float64 is not supported by vaultlet",
                spec.verb
            ));
        }
        _ => return bad_verb(v, spec),
    };
    Ok(pad(format!("{sign}{body}"), spec, true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::rc::Rc;

    fn s(x: &str) -> Val {
        Val::str(x)
    }

    #[test]
    fn printf_matches_go() {
        let f = |fmt: &str, args: &[Val]| sprintf(fmt, args).expect("formats");
        assert_eq!(
            f(
                "%5s|%-5s|%05d|%x|%X|%q",
                &[
                    s("ab"),
                    s("ab"),
                    Val::Int(42),
                    s("hi"),
                    Val::Int(255),
                    Val::Int('x' as i64)
                ]
            ),
            "   ab|ab   |00042|6869|FF|'x'"
        );
        assert_eq!(
            f("%s|%v|%d", &[Val::Nil, Val::Nil, Val::Nil]),
            "%!s(<nil>)|<nil>|%!d(<nil>)"
        );
        assert_eq!(
            f("%d %s", &[Val::Num("12".into()), Val::Int(3)]),
            "%!d(json.Number=12) %!s(int=3)"
        );
        assert_eq!(f("%s %s", &[s("a")]), "a %!s(MISSING)");
        assert_eq!(f("%s", &[s("a"), s("b")]), "a%!(EXTRA string=b)");
        assert_eq!(
            f("%q % x", &[s("a\"b\n\u{e9}\x01"), s("hi")]),
            "\"a\\\"b\\né\\x01\" 68 69"
        );
        assert_eq!(
            f(
                "%.2f %e %v %v",
                &[
                    Val::Float(2.0),
                    Val::Float(1e6),
                    Val::Float(1e6),
                    Val::Float(0.5)
                ]
            ),
            "2.00 1.000000e+06 1e+06 0.5"
        );
        let list = Val::List(Rc::new(vec![s("a"), Val::Int(1), Val::Nil]));
        assert_eq!(f("%s", &[list]), "[a %!s(int=1) <nil>]");
        assert_eq!(f("100%%", &[]), "100%");
    }

    #[test]
    fn print_spacing_and_maps() {
        assert_eq!(
            sprint(&[Val::Int(1), Val::Int(2), s("a"), s("b"), Val::Int(3)]).expect("ok"),
            "1 2ab3"
        );
        assert_eq!(sprintln(&[s("x"), Val::Int(1)]).expect("ok"), "x 1\n");
        let mut m = BTreeMap::new();
        m.insert("b".to_string(), Val::Int(2));
        m.insert("a".to_string(), Val::Strs(Rc::new(vec!["x".into()])));
        assert_eq!(
            print_value(&Val::Map(Rc::new(m))).expect("ok"),
            "map[a:[x] b:2]"
        );
        assert_eq!(print_value(&Val::Nil).expect("ok"), "<no value>");
    }
}
