//! Go text/template's builtin functions: comparisons, `len`, `index`, `slice`, printing, escapers.

use std::cmp::Ordering;
use std::rc::Rc;

use crate::format::{sprint, sprintf, sprintln};
use crate::value::Val;

/// The builtins this engine implements (`call` is refused).
pub const BUILTINS: &[&str] = &[
    "and", "or", "not", "len", "index", "slice", "print", "printf", "println", "eq", "ne", "lt",
    "le", "gt", "ge", "html", "js", "urlquery",
];

/// Calls builtin `name` (not `and`/`or`, which short-circuit in the evaluator).
/// `None` when `name` is no builtin.
pub fn call(name: &str, args: &[Val]) -> Option<Result<Val, String>> {
    Some(match name {
        "not" => arity(name, args, 1).map(|_| Val::Bool(!args[0].truthy())),
        "len" => arity(name, args, 1).and_then(|_| len(&args[0])),
        "index" => index(args),
        "slice" => slice(args),
        "print" => sprint(args).map(Val::from_string),
        "println" => sprintln(args).map(Val::from_string),
        "printf" => match args.split_first() {
            Some((Val::Str(f), rest)) => sprintf(f, rest).map(Val::from_string),
            Some((other, _)) => Err(format!(
                "wrong type for value; expected string; got {}",
                other.type_name()
            )),
            None => Err("wrong number of args for printf: want at least 1 got 0".into()),
        },
        "eq" => eq(args).map(Val::Bool),
        "ne" => arity(name, args, 2).and_then(|_| eq(args).map(|b| Val::Bool(!b))),
        "lt" => arity(name, args, 2).and_then(|_| lt(&args[0], &args[1]).map(Val::Bool)),
        "le" => arity(name, args, 2).and_then(|_| le(&args[0], &args[1]).map(Val::Bool)),
        "gt" => arity(name, args, 2).and_then(|_| le(&args[0], &args[1]).map(|b| Val::Bool(!b))),
        "ge" => arity(name, args, 2).and_then(|_| lt(&args[0], &args[1]).map(|b| Val::Bool(!b))),
        "html" => escaper_arg(args).map(|s| Val::from_string(html(&s))),
        "js" => escaper_arg(args).map(|s| Val::from_string(js(&s))),
        "urlquery" => escaper_arg(args).map(|s| Val::from_string(urlquery(&s))),
        _ => return None,
    })
}

impl Val {
    /// A `string` from an owned String.
    pub fn from_string(s: String) -> Val {
        Val::Str(s.into())
    }
}

/// Checks the argument count as Go does for fixed-arity functions.
pub fn arity(name: &str, args: &[Val], want: usize) -> Result<(), String> {
    if args.len() == want {
        Ok(())
    } else {
        Err(format!(
            "wrong number of args for {name}: want {want} got {}",
            args.len()
        ))
    }
}

/// Go's `evalArgs`: one string as is, else `fmt.Sprint` with nil shown as `<no value>`.
fn escaper_arg(args: &[Val]) -> Result<String, String> {
    match args {
        [Val::Str(s)] => Ok(s.to_string()),
        _ => {
            let shown: Vec<Val> = args
                .iter()
                .map(|a| match a {
                    Val::Nil => Val::str("<no value>"),
                    other => other.clone(),
                })
                .collect();
            sprint(&shown)
        }
    }
}

fn len(v: &Val) -> Result<Val, String> {
    let n = match v {
        Val::Str(s) | Val::Num(s) => s.len(),
        Val::List(l) => l.len(),
        Val::Strs(l) => l.len(),
        Val::Map(m) => m.len(),
        Val::Nil => return Err("len of nil pointer".into()),
        other => return Err(format!("len of type {}", other.type_name())),
    };
    Ok(Val::Int(n as i64))
}

fn int_index(v: &Val) -> Result<i64, String> {
    match v {
        Val::Int(i) => Ok(*i),
        Val::Nil => Err("cannot index slice/array with nil".into()),
        other => Err(format!(
            "cannot index slice/array with type {}",
            other.type_name()
        )),
    }
}

fn index(args: &[Val]) -> Result<Val, String> {
    let Some((first, keys)) = args.split_first() else {
        return Err("wrong number of args for index: want at least 1 got 0".into());
    };
    if matches!(first, Val::Nil) {
        return Err("error calling index: index of untyped nil".into());
    }
    let mut v = first.clone();
    for k in keys {
        v = match &v {
            Val::Map(m) => match k {
                Val::Str(s) => m.get(&**s).cloned().unwrap_or(Val::Nil),
                Val::Nil => return Err("value is nil; should be of type string".into()),
                other => {
                    return Err(format!(
                        "value has type {}; should be string",
                        other.type_name()
                    ));
                }
            },
            Val::List(_) | Val::Strs(_) | Val::Str(_) | Val::Num(_) => {
                let i = int_index(k)?;
                let n = match &v {
                    Val::List(l) => l.len(),
                    Val::Strs(l) => l.len(),
                    Val::Str(s) | Val::Num(s) => s.len(),
                    _ => 0,
                };
                let Some(i) = usize::try_from(i).ok().filter(|i| *i < n) else {
                    return Err(format!("error calling index: index out of range: {i}"));
                };
                match &v {
                    Val::List(l) => l[i].clone(),
                    Val::Strs(l) => Val::str(l[i].as_str()),
                    Val::Str(s) | Val::Num(s) => Val::Int(i64::from(s.as_bytes()[i])),
                    _ => Val::Nil,
                }
            }
            Val::Nil => return Err("error calling index: index of untyped nil".into()),
            other => {
                return Err(format!(
                    "error calling index: can't index item of type {}",
                    other.type_name()
                ));
            }
        };
    }
    Ok(v)
}

fn slice(args: &[Val]) -> Result<Val, String> {
    let Some((first, idx)) = args.split_first() else {
        return Err("wrong number of args for slice: want at least 1 got 0".into());
    };
    if idx.len() > 3 {
        return Err(format!(
            "error calling slice: too many slice indexes: {}",
            idx.len()
        ));
    }
    let len = match first {
        Val::Str(s) | Val::Num(s) => s.len(),
        Val::List(l) => l.len(),
        Val::Strs(l) => l.len(),
        Val::Nil => return Err("error calling slice: slice of untyped nil".into()),
        other => {
            return Err(format!(
                "error calling slice: can't slice item of type {}",
                other.type_name()
            ));
        }
    };
    if matches!(first, Val::Str(_) | Val::Num(_)) && idx.len() == 3 {
        return Err("error calling slice: cannot 3-index slice a string".into());
    }
    let mut ix = [0usize, len, len];
    for (n, k) in idx.iter().enumerate() {
        let i = int_index(k)?;
        ix[n] = usize::try_from(i)
            .ok()
            .filter(|i| *i <= len)
            .ok_or_else(|| format!("error calling slice: index out of range: {i}"))?;
    }
    if idx.len() < 2 {
        ix[1] = len;
    }
    if ix[0] > ix[1] || (idx.len() == 3 && ix[1] > ix[2]) {
        return Err(format!(
            "error calling slice: invalid slice index: {} > {}",
            ix[0], ix[1]
        ));
    }
    Ok(match first {
        Val::Str(s) | Val::Num(s) => {
            let part = s
                .get(ix[0]..ix[1])
                .ok_or("error calling slice: slicing inside a UTF-8 character is not supported by vaultlet")?;
            // A slice keeps its type: a json.Number stays one.
            if matches!(first, Val::Num(_)) {
                Val::Num(part.into())
            } else {
                Val::str(part)
            }
        }
        Val::List(l) => Val::List(Rc::new(l[ix[0]..ix[1]].to_vec())),
        Val::Strs(l) => Val::Strs(Rc::new(l[ix[0]..ix[1]].to_vec())),
        _ => Val::Nil,
    })
}

#[derive(PartialEq, Clone, Copy, Debug)]
enum Kind {
    Invalid,
    Bool,
    Int,
    Float,
    Str,
    Other,
}

fn kind(v: &Val) -> Kind {
    match v {
        Val::Nil => Kind::Invalid,
        Val::Bool(_) => Kind::Bool,
        Val::Int(_) => Kind::Int,
        Val::Float(_) => Kind::Float,
        Val::Str(_) | Val::Num(_) => Kind::Str,
        _ => Kind::Other,
    }
}

/// Go's `eq arg1 arg2...`: true when arg1 equals any of the others.
fn eq(args: &[Val]) -> Result<bool, String> {
    let Some((a, rest)) = args.split_first() else {
        return Err("wrong number of args for eq: want at least 1 got 0".into());
    };
    if rest.is_empty() {
        return Err("error calling eq: missing argument for comparison".into());
    }
    let k1 = kind(a);
    for b in rest {
        let k2 = kind(b);
        let truth = if k1 != k2 {
            if k1 != Kind::Invalid && k2 != Kind::Invalid {
                return Err(format!(
                    "error calling eq: incompatible types for comparison: {} and {}",
                    a.type_name(),
                    b.type_name()
                ));
            }
            false
        } else {
            match (a, b) {
                (Val::Bool(x), Val::Bool(y)) => x == y,
                (Val::Int(x), Val::Int(y)) => x == y,
                (Val::Float(x), Val::Float(y)) => x == y,
                (Val::Nil, Val::Nil) => true,
                _ => match (a.as_str(), b.as_str()) {
                    (Some(x), Some(y)) => x == y,
                    _ => {
                        return Err(format!(
                            "error calling eq: non-comparable type {}",
                            a.type_name()
                        ));
                    }
                },
            }
        };
        if truth {
            return Ok(true);
        }
    }
    Ok(false)
}

fn order(a: &Val, b: &Val) -> Result<Ordering, String> {
    let (k1, k2) = (kind(a), kind(b));
    if matches!(k1, Kind::Invalid | Kind::Bool | Kind::Other)
        || matches!(k2, Kind::Invalid | Kind::Bool | Kind::Other)
    {
        return Err("error calling lt: invalid type for comparison".into());
    }
    if k1 != k2 {
        return Err(format!(
            "error calling lt: incompatible types for comparison: {} and {}",
            a.type_name(),
            b.type_name()
        ));
    }
    Ok(match (a, b) {
        (Val::Int(x), Val::Int(y)) => x.cmp(y),
        (Val::Float(x), Val::Float(y)) => x.partial_cmp(y).unwrap_or(Ordering::Greater),
        _ => a
            .as_str()
            .unwrap_or_default()
            .cmp(b.as_str().unwrap_or_default()),
    })
}

fn lt(a: &Val, b: &Val) -> Result<bool, String> {
    order(a, b).map(|o| o == Ordering::Less)
}

fn le(a: &Val, b: &Val) -> Result<bool, String> {
    order(a, b).map(|o| o != Ordering::Greater)
}

/// Go's `template.HTMLEscapeString`.
pub fn html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\0' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// Go's `template.JSEscapeString`.
pub fn js(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '<' => out.push_str("\\u003C"),
            '>' => out.push_str("\\u003E"),
            '&' => out.push_str("\\u0026"),
            '=' => out.push_str("\\u003D"),
            c if (c as u32) < 0x20 || c == '\x7f' => out.push_str(&format!("\\u{:04X}", c as u32)),
            c if !crate::format::is_print(c) => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Go's `url.QueryEscape`.
pub fn urlquery(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(name: &str, args: &[Val]) -> Result<Val, String> {
        call(name, args).expect("builtin")
    }

    #[test]
    fn comparisons_follow_go_kinds() {
        let s = |x: &str| Val::str(x);
        assert_eq!(
            c("eq", &[Val::Num("5".into()), s("5")]),
            Ok(Val::Bool(true))
        );
        assert_eq!(c("eq", &[Val::Nil, s("x")]), Ok(Val::Bool(false)));
        assert_eq!(c("eq", &[s("a"), s("b"), s("a")]), Ok(Val::Bool(true)));
        assert!(c("eq", &[Val::Int(1), s("1")]).is_err());
        assert_eq!(c("lt", &[Val::Int(1), Val::Int(2)]), Ok(Val::Bool(true)));
        assert_eq!(c("ge", &[s("b"), s("a")]), Ok(Val::Bool(true)));
        assert!(c("lt", &[Val::Int(1), Val::Float(2.0)]).is_err());
        assert!(c("lt", &[Val::Bool(true), Val::Bool(false)]).is_err());
    }

    #[test]
    fn index_slice_len() {
        let l = Val::List(Rc::new(vec![Val::str("a"), Val::str("b")]));
        assert_eq!(c("index", &[l.clone(), Val::Int(1)]), Ok(Val::str("b")));
        assert!(c("index", &[l.clone(), Val::Int(2)]).is_err());
        assert_eq!(c("len", std::slice::from_ref(&l)), Ok(Val::Int(2)));
        assert_eq!(
            c("slice", &[Val::str("hello"), Val::Int(1), Val::Int(3)]),
            Ok(Val::str("el"))
        );
        assert_eq!(c("index", &[Val::str("ab"), Val::Int(0)]), Ok(Val::Int(97)));
    }

    #[test]
    fn escapers() {
        assert_eq!(
            html("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&#34;&lt;/a&gt;"
        );
        assert_eq!(urlquery("a b&c=d/é"), "a+b%26c%3Dd%2F%C3%A9");
        assert_eq!(js("a'b\"<=\n"), "a\\'b\\\"\\u003C\\u003D\\u000A");
    }
}
