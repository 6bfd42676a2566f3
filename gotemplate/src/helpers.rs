//! consul-template's helper functions on strings, numbers, JSON, YAML and base64.

use std::collections::BTreeMap;
use std::rc::Rc;

use base64::Engine;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use crate::builtins::arity;
use crate::funcs::want_str;
use crate::json::{self, Style};
use crate::value::Val;
use crate::yaml;

fn strs<'v, const N: usize>(name: &str, vals: &'v [Val]) -> Result<[&'v str; N], String> {
    arity(name, vals, N)?;
    let mut out = [""; N];
    for (o, v) in out.iter_mut().zip(vals) {
        *o = want_str(v)?;
    }
    Ok(out)
}

fn s(x: impl Into<String>) -> Val {
    Val::from_string(x.into())
}

fn b64(alpha: &alphabet::Alphabet) -> GeneralPurpose {
    GeneralPurpose::new(
        alpha,
        GeneralPurposeConfig::new()
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(DecodePaddingMode::RequireCanonical),
    )
}

fn decode_b64(alpha: &alphabet::Alphabet, name: &str, text: &str) -> Result<Val, String> {
    // Go's decoder skips CR and LF; its error offsets count them.
    let kept: Vec<usize> = text
        .char_indices()
        .filter(|(_, c)| *c != '\r' && *c != '\n')
        .map(|(i, _)| i)
        .collect();
    let clean: String = text.chars().filter(|c| *c != '\r' && *c != '\n').collect();
    let original = |i: usize| kept.get(i).copied().unwrap_or(text.len());
    let bytes = b64(alpha).decode(clean.as_bytes()).map_err(|e| {
        let at = match e {
            base64::DecodeError::InvalidByte(i, _)
            | base64::DecodeError::InvalidLastSymbol(i, _) => original(i),
            _ => original(clean.len() - clean.len() % 4),
        };
        format!("{name}: illegal base64 data at input byte {at}")
    })?;
    String::from_utf8(bytes).map(Val::from_string).map_err(|_| {
        format!("{name}: the decoded bytes are not UTF-8 text, which vaultlet does not render")
    })
}

/// Calls consul-template helper `name` with evaluated arguments.
pub fn helper(name: &str, v: &[Val], max: usize) -> Result<Val, String> {
    let too_big = |len: usize| {
        if len > max {
            Err(format!(
                "{name}: the result would exceed the output limit of {max} bytes"
            ))
        } else {
            Ok(())
        }
    };
    let enc = |v: &[Val], escape_html: bool, pretty: bool| {
        arity(name, v, 1)?;
        json::encode(
            &v[0],
            Style {
                escape_html,
                pretty,
            },
        )
        .map(s)
    };
    Ok(match name {
        "toJSON" => enc(v, true, false)?,
        "toJSONPretty" => enc(v, true, true)?,
        "toUnescapedJSON" => enc(v, false, false)?,
        "toUnescapedJSONPretty" => enc(v, false, true)?,
        "toYAML" => {
            arity(name, v, 1)?;
            s(yaml::encode(&v[0])?.trim())
        }
        "toLower" => s(strs::<1>(name, v)?[0]
            .chars()
            .map(go_lower)
            .collect::<String>()),
        "toUpper" => s(strs::<1>(name, v)?[0]
            .chars()
            .map(go_upper)
            .collect::<String>()),
        "toTitle" => s(title(strs::<1>(name, v)?[0])?),
        "trimSpace" => s(strs::<1>(name, v)?[0].trim()),
        "trim" => {
            let [cut, x] = strs::<2>(name, v)?;
            s(x.trim_matches(|c| cut.contains(c)))
        }
        "trimPrefix" => {
            let [pre, x] = strs::<2>(name, v)?;
            s(x.strip_prefix(pre).unwrap_or(x))
        }
        "trimSuffix" => {
            let [suf, x] = strs::<2>(name, v)?;
            s(x.strip_suffix(suf).unwrap_or(x))
        }
        "split" => {
            let [sep, x] = strs::<2>(name, v)?;
            let x = x.trim();
            let parts: Vec<String> = if x.is_empty() {
                Vec::new()
            } else if sep.is_empty() {
                x.chars().map(String::from).collect()
            } else {
                x.split(sep).map(String::from).collect()
            };
            Val::Strs(Rc::new(parts))
        }
        "join" => {
            arity(name, v, 2)?;
            let sep = want_str(&v[0])?;
            match &v[1] {
                Val::Strs(l) => s(l.join(sep)),
                other => {
                    return Err(format!(
                        "wrong type for value; expected []string; got {}",
                        other.type_name()
                    ));
                }
            }
        }
        "replaceAll" => {
            let [from, to, x] = strs::<3>(name, v)?;
            let n = if from.is_empty() {
                x.chars().count() + 1
            } else {
                x.matches(from).count()
            };
            too_big(x.len().saturating_add(n.saturating_mul(to.len())))?;
            s(go_replace(x, from, to))
        }
        "contains" => {
            arity(name, v, 2)?;
            Val::Bool(contained(&v[1], &v[0]))
        }
        "in" => {
            arity(name, v, 2)?;
            Val::Bool(contained(&v[0], &v[1]))
        }
        "base64Encode" => s(b64(&alphabet::STANDARD).encode(strs::<1>(name, v)?[0])),
        "base64URLEncode" => s(b64(&alphabet::URL_SAFE).encode(strs::<1>(name, v)?[0])),
        "base64Decode" => decode_b64(&alphabet::STANDARD, name, strs::<1>(name, v)?[0])?,
        "base64URLDecode" => decode_b64(&alphabet::URL_SAFE, name, strs::<1>(name, v)?[0])?,
        "parseJSON" => {
            let [x] = strs::<1>(name, v)?;
            if x.is_empty() {
                Val::Map(Rc::new(BTreeMap::new()))
            } else {
                json::parse(x, false)?
            }
        }
        "parseBool" => {
            let [x] = strs::<1>(name, v)?;
            Val::Bool(match x {
                "" | "0" | "f" | "F" | "false" | "FALSE" | "False" => false,
                "1" | "t" | "T" | "true" | "TRUE" | "True" => true,
                _ => {
                    return Err(format!(
                        "parseBool: strconv.ParseBool: parsing {x:?}: invalid syntax"
                    ));
                }
            })
        }
        "parseInt" | "parseUint" => {
            let [x] = strs::<1>(name, v)?;
            if x.is_empty() {
                Val::Int(0)
            } else {
                let n: i64 = x.parse().map_err(|_| {
                    format!(
                        "{name}: strconv.{}: parsing {x:?}: invalid syntax",
                        if name == "parseInt" {
                            "ParseInt"
                        } else {
                            "ParseUint"
                        }
                    )
                })?;
                if name == "parseUint" && (n < 0 || x.starts_with('+')) {
                    return Err(format!(
                        "{name}: strconv.ParseUint: parsing {x:?}: invalid syntax"
                    ));
                }
                Val::Int(n)
            }
        }
        "parseFloat" => {
            let [x] = strs::<1>(name, v)?;
            if x.is_empty() {
                Val::Float(0.0)
            } else {
                Val::Float(
                    x.parse::<f64>()
                        .ok()
                        .filter(|f| f.is_finite())
                        .ok_or_else(|| {
                            format!("parseFloat: strconv.ParseFloat: parsing {x:?}: invalid syntax")
                        })?,
                )
            }
        }
        "indent" => {
            arity(name, v, 2)?;
            let Val::Int(n) = v[0] else {
                return Err(format!(
                    "wrong type for value; expected int; got {}",
                    v[0].type_name()
                ));
            };
            let n = usize::try_from(n)
                .map_err(|_| "indent value must be a positive integer".to_string())?;
            let x = want_str(&v[1])?;
            too_big(
                x.len()
                    .saturating_add((x.matches('\n').count() + 1).saturating_mul(n)),
            )?;
            s(indent(n, x))
        }
        "add" | "subtract" | "multiply" | "divide" | "modulo" | "minimum" | "maximum" => {
            arity(name, v, 2)?;
            math(name, &v[1], &v[0])?
        }
        "loop" => {
            let (from, to) = match v {
                [to] => (0, loop_int(to)?),
                [from, to] => (loop_int(from)?, loop_int(to)?),
                _ => {
                    return Err(format!(
                        "loop: wrong number of arguments, expected 1 or 2, but got {}",
                        v.len()
                    ));
                }
            };
            if to.saturating_sub(from) > 1_000_000 {
                return Err("loop: more than 1000000 iterations".into());
            }
            Val::List(Rc::new((from..to).map(Val::Int).collect()))
        }
        _ => return Err(format!("function {name:?} not defined")),
    })
}

/// Go's `unicode.ToUpper`: the simple (one-character) mapping; a character whose only
/// uppercase is several characters (ß, ligatures) stays as it is.
fn go_upper(c: char) -> char {
    let mut up = c.to_uppercase();
    match (up.next(), up.next()) {
        (Some(u), None) => u,
        // Greek with ypogegrammeni map to their titlecase letters.
        _ if ('\u{1f80}'..='\u{1faf}').contains(&c) && (c as u32) & 8 == 0 => {
            char::from_u32(c as u32 + 8).unwrap_or(c)
        }
        _ if matches!(c, '\u{1fb3}' | '\u{1fc3}' | '\u{1ff3}') => {
            char::from_u32(c as u32 + 9).unwrap_or(c)
        }
        _ => c,
    }
}

/// Go's `unicode.ToLower` (simple mapping: İ becomes i).
fn go_lower(c: char) -> char {
    let mut low = c.to_lowercase();
    match (low.next(), low.next()) {
        (Some(l), None) => l,
        _ if c == '\u{130}' => 'i',
        _ => c,
    }
}

fn loop_int(v: &Val) -> Result<i64, String> {
    match v {
        Val::Int(i) => Ok(*i),
        Val::Str(x) => x
            .parse()
            .map_err(|_| format!("parseInt: strconv.ParseInt: parsing {x:?}: invalid syntax")),
        other => Err(format!("loop: bad argument type: {}", other.type_name())),
    }
}

/// Go's `strings.Replace(s, from, to, -1)` (an empty `from` inserts between characters).
fn go_replace(x: &str, from: &str, to: &str) -> String {
    if !from.is_empty() {
        return x.replace(from, to);
    }
    let mut out = String::from(to);
    for c in x.chars() {
        out.push(c);
        out.push_str(to);
    }
    out
}

/// consul-template's `in`: substring of a string, or element of a list (same Go type).
fn contained(list: &Val, v: &Val) -> bool {
    let same = |a: &Val, b: &Val| match (a, b) {
        (Val::Str(x), Val::Str(y)) | (Val::Num(x), Val::Num(y)) => x == y,
        (Val::Int(x), Val::Int(y)) => x == y,
        (Val::Float(x), Val::Float(y)) => x == y,
        _ => false,
    };
    match list {
        Val::Str(x) => matches!(v, Val::Str(y) if x.contains(&**y)),
        Val::Num(x) => matches!(v, Val::Num(y) if x.contains(&**y)),
        Val::List(l) => l.iter().any(|e| same(e, v)),
        Val::Strs(l) => matches!(v, Val::Str(y) if l.iter().any(|e| e == &**y)),
        _ => false,
    }
}

fn indent(n: usize, x: &str) -> String {
    let prefix = " ".repeat(n);
    let mut out = String::with_capacity(x.len());
    let mut at_start = true;
    for c in x.chars() {
        if at_start && c != '\n' {
            out.push_str(&prefix);
        }
        out.push(c);
        at_start = c == '\n';
    }
    out
}

/// `toTitle` for ASCII text: the first letter of each word upper-cased (words joined by
/// `'`, `.` or `:` between letters stay one word, as in Unicode word breaking).
fn title(x: &str) -> Result<String, String> {
    if !x.is_ascii() {
        return Err("toTitle: only ASCII text is supported by vaultlet".into());
    }
    let b = x.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut out = String::with_capacity(x.len());
    // The first letter of each word is upper-cased, also after leading digits ("3Rd").
    let mut want_upper = true;
    for (i, &c) in b.iter().enumerate() {
        let prev = i.checked_sub(1).map(|j| b[j]);
        let joined = prev.is_some_and(|p| matches!(p, b'\'' | b'.' | b':'))
            && i >= 2
            && b[i - 2].is_ascii_alphabetic()
            && c.is_ascii_alphabetic();
        if !prev.is_some_and(word) && !joined {
            want_upper = true;
        }
        if want_upper && c.is_ascii_alphabetic() {
            out.push(c.to_ascii_uppercase() as char);
            want_upper = false;
        } else {
            out.push(c as char);
        }
    }
    Ok(out)
}

/// consul-template's math on int/float (`add b a` is a + b; `subtract b a` is a - b).
fn math(name: &str, a: &Val, b: &Val) -> Result<Val, String> {
    let num = |v: &Val| match v {
        Val::Int(i) => Ok((Some(*i), *i as f64)),
        Val::Float(f) => Ok((None, *f)),
        other => Err(format!(
            "{name}: unknown type for {:?} ({})",
            crate::format::sprint(std::slice::from_ref(other)).unwrap_or_default(),
            other.type_name()
        )),
    };
    let ((ai, af), (bi, bf)) = (num(a)?, num(b)?);
    Ok(match (ai, bi) {
        (Some(x), Some(y)) => Val::Int(match name {
            "add" => x.wrapping_add(y),
            "subtract" => x.wrapping_sub(y),
            "multiply" => x.wrapping_mul(y),
            "divide" | "modulo" if y == 0 => {
                return Err("runtime error: integer divide by zero".into());
            }
            "divide" => x.wrapping_div(y),
            "modulo" => x.wrapping_rem(y),
            "minimum" => x.min(y),
            _ => x.max(y),
        }),
        _ => match name {
            "modulo" => {
                return Err(format!(
                    "modulo: unknown type for {} (float64)",
                    crate::value::go_float_g(bf)
                ));
            }
            "add" => Val::Float(af + bf),
            "subtract" => Val::Float(af - bf),
            "multiply" => Val::Float(af * bf),
            "divide" => Val::Float(af / bf),
            // minimum/maximum keep the winner's own type.
            "minimum" => {
                if af < bf {
                    a.clone()
                } else {
                    b.clone()
                }
            }
            _ => {
                if af > bf {
                    a.clone()
                } else {
                    b.clone()
                }
            }
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn helper_(name: &str, v: &[Val]) -> Result<Val, String> {
        helper(name, v, 1 << 20)
    }

    #[test]
    fn huge_results_are_refused_before_they_are_built() {
        let v = |x: &str| Val::str(x);
        let lines = "\n".repeat(1000);
        assert!(helper("indent", &[Val::Int(1 << 40), v(&lines)], 1 << 20).is_err());
        assert!(
            helper(
                "replaceAll",
                &[v(""), v(&"x".repeat(1000)), v(&"y".repeat(2000))],
                1 << 20
            )
            .is_err()
        );
    }

    #[test]
    fn string_helpers() {
        let v = |x: &str| Val::str(x);
        assert_eq!(
            helper_("split", &[v(","), v(" a,b ")]),
            Ok(Val::Strs(Rc::new(vec!["a".into(), "b".into()])))
        );
        assert_eq!(
            helper_("replaceAll", &[v("-"), v("_"), v("a-b-c")]),
            Ok(v("a_b_c"))
        );
        assert_eq!(helper_("base64Decode", &[v("aGk=\n")]), Ok(v("hi")));
        assert!(helper_("base64Decode", &[v("aGk")]).is_err());
        assert_eq!(
            helper_("base64URLEncode", &[v("\u{fb}\u{ff}")]),
            Ok(v("w7vDvw=="))
        );
        assert_eq!(
            helper_("toTitle", &[v("hello wide-world don't foo_bar")]),
            Ok(v("Hello Wide-World Don't Foo_bar"))
        );
        assert_eq!(
            helper_("toTitle", &[v("3rd x.y a:b")]),
            Ok(v("3Rd X.y A:b"))
        );
        assert_eq!(
            helper_("indent", &[Val::Int(2), v("a\n\nb")]),
            Ok(v("  a\n\n  b"))
        );
        assert_eq!(
            helper_("subtract", &[Val::Int(1), Val::Int(5)]),
            Ok(Val::Int(4))
        );
        assert!(helper_("join", &[v(","), Val::List(Rc::new(vec![]))]).is_err());
        assert!(helper_("toUpper", &[Val::Num("1".into())]).is_err());
        assert_eq!(
            helper_("toUpper", &[v("ßŉǰᾀﬀ straße")]),
            Ok(v("ßŉǰᾈﬀ STRAßE"))
        );
        assert_eq!(
            helper_("toLower", &[v("İSTANBUL ΣΑΣ ᾈ")]),
            Ok(v("istanbul σασ ᾀ"))
        );
    }
}
