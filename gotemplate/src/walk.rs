//! Static analysis of a parsed template: the functions it calls, its Vault calls, its depth.

use crate::error::{Error, Pos, Result};
use crate::parse::{Arg, List, Node, Pipe, Tree};
use crate::{SecretCall, SecretKind, SecretRequest};

/// Every function name used in `list`, with its byte offset, in source order.
pub fn functions(tree: &Tree) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    let visit = |args: &Arg, out: &mut Vec<(String, usize)>| walk_arg(args, out);
    let mut all: Vec<&List> = vec![&tree.root];
    all.extend(tree.defines.values());
    for list in all {
        for_each_pipe(list, &mut |p| {
            for c in &p.cmds {
                for a in &c.args {
                    visit(a, &mut out);
                }
            }
        });
    }
    out.sort_by_key(|(_, at)| *at);
    out
}

fn walk_arg(a: &Arg, out: &mut Vec<(String, usize)>) {
    match a {
        Arg::Func(name, at) => out.push((name.clone(), *at)),
        Arg::Pipe(p) => {
            for c in &p.cmds {
                for a in &c.args {
                    walk_arg(a, out);
                }
            }
        }
        Arg::Chain(inner, _) => walk_arg(inner, out),
        _ => {}
    }
}

/// Calls `f` for every pipeline of `list`, depth first (not inside parenthesised pipelines).
pub fn for_each_pipe<'a>(list: &'a List, f: &mut dyn FnMut(&'a Pipe)) {
    for node in list {
        match node {
            Node::Action(p) => f(p),
            Node::If(b) | Node::With(b) | Node::Range(b) => {
                f(&b.pipe);
                for_each_pipe(&b.list, f);
                if let Some(e) = &b.else_list {
                    for_each_pipe(e, f);
                }
            }
            Node::Template { pipe: Some(p), .. } => f(p),
            _ => {}
        }
    }
}

pub fn collect_calls(src: &str, p: &Pipe, out: &mut Vec<SecretCall>) {
    for cmd in &p.cmds {
        for a in &cmd.args {
            if let Arg::Pipe(inner) = a {
                collect_calls(src, inner, out);
            }
        }
        let Some(Arg::Func(name, at)) = cmd.args.first() else {
            continue;
        };
        let kind = match name.as_str() {
            "secret" if cmd.args.len() > 2 => SecretKind::Write,
            "secret" => SecretKind::Read,
            "secrets" => SecretKind::List,
            "pkiCert" => SecretKind::PkiCert,
            _ => continue,
        };
        let lits: Option<Vec<&str>> = cmd.args[1..]
            .iter()
            .map(|a| match a {
                Arg::Str(s) => Some(s.as_str()),
                _ => None,
            })
            .collect();
        // A piped value is an extra argument known only at render time.
        let piped = !std::ptr::eq(cmd, &p.cmds[0]);
        let request = lits
            .filter(|l| !l.is_empty() && !piped)
            .and_then(|l| SecretRequest::new(kind, l[0], &l[1..]).ok());
        out.push(SecretCall {
            pos: Pos::at(src, *at),
            request,
        });
    }
}

/// How deep `{{if}}`/`(...)` may nest in the source.
const MAX_PARSE_DEPTH: usize = 100;

/// Refuses sources nested deeper than the parser's recursion may safely go.
pub fn check_nesting(src: &str) -> Result<()> {
    // Open blocks, each with the length of its `else if` / `else with` chain (each link
    // nests one level deeper in the tree, and one `{{end}}` closes the whole chain).
    let mut blocks: Vec<usize> = Vec::new();
    let mut parens = 0usize;
    let mut max = 0usize;
    let mut at_max = 0;
    let b = src.as_bytes();
    // Parentheses count only inside actions and outside quoted strings.
    let (mut in_action, mut quote, mut escaped) = (false, None::<u8>, false);
    for i in 0..b.len() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if q == b'"' && b[i] == b'\\' {
                escaped = true;
            } else if b[i] == q {
                quote = None;
            }
            continue;
        }
        if in_action && (b[i] == b'"' || b[i] == b'`') {
            quote = Some(b[i]);
        } else if in_action && b[i..].starts_with(b"}}") {
            in_action = false;
        } else if in_action && b[i] == b'(' {
            parens += 1;
        } else if in_action && b[i] == b')' {
            parens = parens.saturating_sub(1);
        } else if b[i..].starts_with(b"{{") {
            in_action = true;
            let rest = src
                .get(i + 2..)
                .unwrap_or_default()
                .trim_start_matches(['-', ' ', '\t', '\r', '\n']);
            let word = |w: &str| {
                rest.strip_prefix(w).is_some_and(|r| {
                    r.starts_with([' ', '\t', '\r', '\n', '}', '-']) || r.is_empty()
                })
            };
            if ["if", "with", "range", "define", "block"]
                .iter()
                .any(|k| word(k))
            {
                blocks.push(1);
            } else if word("end") {
                blocks.pop();
            } else if word("else") {
                let after = rest.trim_start_matches("else").trim_start();
                if let Some(top) = blocks
                    .last_mut()
                    .filter(|_| after.starts_with("if") || after.starts_with("with"))
                {
                    *top += 1;
                }
            }
        }
        let depth = parens + blocks.iter().sum::<usize>();
        if depth > max {
            max = depth;
            at_max = i;
        }
    }
    if max > MAX_PARSE_DEPTH {
        return Err(Error::Limit {
            pos: Pos::at(src, at_max),
            what: "nesting depth",
            limit: MAX_PARSE_DEPTH,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse;

    #[test]
    fn lists_functions_in_order() {
        let t = parse(r#"{{ with secret "a" }}{{ .Data | toJSON }}{{ end }}{{ (env "X") }}"#)
            .expect("parses");
        let names: Vec<_> = functions(&t).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["secret", "toJSON", "env"]);
    }
}
