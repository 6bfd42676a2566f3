//! Parses tokens into the template tree (actions, control structures, pipelines).

use std::collections::HashMap;

use crate::error::{Error, Pos, Result};
use crate::lexer::{Spanned, Tok, is_keyword, lex};

/// A sequence of nodes.
pub type List = Vec<Node>;

/// A node of the template tree.
#[derive(Debug, Clone)]
pub enum Node {
    /// Literal text.
    Text(String),
    /// `{{ pipeline }}`: prints the value unless the pipeline declares variables.
    Action(Pipe),
    /// `{{if}}`.
    If(Branch),
    /// `{{with}}`.
    With(Branch),
    /// `{{range}}`.
    Range(Branch),
    /// `{{break}}`.
    Break,
    /// `{{continue}}`.
    Continue,
    /// `{{template "name" pipeline}}`.
    Template {
        /// Template name.
        name: String,
        /// Its dot, when given.
        pipe: Option<Pipe>,
        /// Byte offset.
        at: usize,
    },
}

/// The pipeline, body and else-part of `if`, `with` and `range`.
#[derive(Debug, Clone)]
pub struct Branch {
    /// The condition / value.
    pub pipe: Pipe,
    /// The body.
    pub list: List,
    /// The `{{else}}` part (an `else if` is a nested `If` in it).
    pub else_list: Option<List>,
}

/// A pipeline: optional variable declaration and commands joined by `|`.
#[derive(Debug, Clone)]
pub struct Pipe {
    /// Declared or assigned variables (`$x`), at most two (for range).
    pub vars: Vec<String>,
    /// True for `=` (assign to existing), false for `:=`.
    pub assign: bool,
    /// The commands.
    pub cmds: Vec<Cmd>,
    /// Byte offset of the pipeline.
    pub at: usize,
    /// The source of the action, for error messages.
    pub text: String,
}

/// One command: a function and its arguments, or a single operand.
#[derive(Debug, Clone)]
pub struct Cmd {
    /// Operands; a function call has `Arg::Func` first.
    pub args: Vec<Arg>,
    /// Byte offset.
    pub at: usize,
}

/// An operand.
#[derive(Debug, Clone)]
pub enum Arg {
    /// `.`
    Dot,
    /// `nil`
    Nil,
    /// `true` / `false`
    Bool(bool),
    /// A string literal.
    Str(String),
    /// An integer literal (also character constants).
    Int(i64),
    /// A floating-point literal.
    Float(f64),
    /// `.a.b` on dot.
    Field(Vec<String>),
    /// `$x.a.b`.
    Var(String, Vec<String>),
    /// A function name (byte offset for errors).
    Func(String, usize),
    /// `(pipeline).a.b`.
    Chain(Box<Arg>, Vec<String>),
    /// `(pipeline)`.
    Pipe(Box<Pipe>),
}

/// The parsed template: main list and `define`d templates.
#[derive(Debug, Clone, Default)]
pub struct Tree {
    /// The main template.
    pub root: List,
    /// Named templates from `define` and `block`.
    pub defines: HashMap<String, List>,
}

/// Parses `src` into a tree.
pub fn parse(src: &str) -> Result<Tree> {
    let toks = lex(src)?;
    let mut p = Parser {
        src,
        toks,
        i: 0,
        vars: vec!["$".to_string()],
        range_depth: 0,
        defines: HashMap::new(),
    };
    let (root, end) = p.list(true)?;
    if let Some((word, at)) = end {
        return Err(p.err_at(at, format!("unexpected {{{{{word}}}}}")));
    }
    Ok(Tree {
        root,
        defines: p.defines,
    })
}

struct Parser<'a> {
    src: &'a str,
    toks: Vec<Spanned>,
    i: usize,
    /// Variables in scope (parse-time check, as Go does).
    vars: Vec<String>,
    range_depth: usize,
    defines: HashMap<String, List>,
}

impl Parser<'_> {
    fn err_at(&self, at: usize, msg: impl Into<String>) -> Error {
        Error::Parse {
            pos: Pos::at(self.src, at),
            msg: msg.into(),
        }
    }

    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.i).map(|(t, _)| t)
    }

    fn at(&self) -> usize {
        self.toks.get(self.i).map_or(self.src.len(), |(_, o)| *o)
    }

    fn next(&mut self) -> Option<Spanned> {
        let t = self.toks.get(self.i).cloned();
        self.i += 1;
        t
    }

    fn skip_space(&mut self) {
        while self.peek() == Some(&Tok::Space) {
            self.i += 1;
        }
    }

    fn expect_close(&mut self, what: &str) -> Result<()> {
        self.skip_space();
        match self.next() {
            Some((Tok::Close, _)) => Ok(()),
            Some((t, at)) => Err(self.err_at(at, format!("unexpected {t:?} in {what}"))),
            None => Err(self.err_at(self.src.len(), format!("unclosed {what}"))),
        }
    }

    /// Parses nodes until `{{end}}`/`{{else ...}}` (returned with its offset) or EOF.
    fn list(&mut self, top: bool) -> Result<(List, Option<(String, usize)>)> {
        let mut list = Vec::new();
        while let Some((tok, at)) = self.next() {
            match tok {
                Tok::Text(t) => list.push(Node::Text(t)),
                Tok::Open => {
                    self.skip_space();
                    let word = match self.peek() {
                        Some(Tok::Ident(w)) if is_keyword(w) => w.clone(),
                        _ => {
                            let pipe = self.pipeline(at, true)?;
                            self.expect_close("command")?;
                            list.push(Node::Action(pipe));
                            continue;
                        }
                    };
                    self.i += 1;
                    match word.as_str() {
                        "end" | "else" => return Ok((list, Some((word, at)))),
                        "if" | "with" | "range" => list.push(self.control(&word, at)?),
                        "break" | "continue" => {
                            if self.range_depth == 0 {
                                return Err(self
                                    .err_at(at, format!("{{{{{word}}}}} outside {{{{range}}}}")));
                            }
                            self.expect_close(&word)?;
                            list.push(if word == "break" {
                                Node::Break
                            } else {
                                Node::Continue
                            });
                        }
                        "template" => list.push(self.template_call(at)?),
                        "define" | "block" => {
                            if !top && word == "define" {
                                return Err(
                                    self.err_at(at, "unexpected {{define}}: only at top level")
                                );
                            }
                            if let Some(n) = self.define(&word, at)? {
                                list.push(n);
                            }
                        }
                        _ => return Err(self.err_at(at, format!("unexpected keyword {word}"))),
                    }
                }
                other => return Err(self.err_at(at, format!("unexpected {other:?}"))),
            }
        }
        Ok((list, None))
    }

    fn control(&mut self, word: &str, at: usize) -> Result<Node> {
        let mark = self.vars.len();
        let pipe = self.pipeline(at, true)?;
        if word == "range" && pipe.vars.len() > 2 || word != "range" && pipe.vars.len() > 1 {
            return Err(self.err_at(at, format!("too many declarations in {word}")));
        }
        self.expect_close(word)?;
        if word == "range" {
            self.range_depth += 1;
        }
        let (list, end) = self.list(false)?;
        if word == "range" {
            self.range_depth -= 1;
        }
        let else_list = match end {
            None => {
                return Err(self.err_at(
                    at,
                    format!("unexpected EOF: {{{{{word}}}}} without {{{{end}}}}"),
                ));
            }
            Some((w, _)) if w == "end" => {
                self.expect_close("end")?;
                None
            }
            Some((_, else_at)) => {
                self.skip_space();
                // `{{else if ...}}` / `{{else with ...}}` nest a new control in the else part.
                match self.peek() {
                    Some(Tok::Ident(w)) if w == word && word != "range" => {
                        let w = w.clone();
                        self.i += 1;
                        let nested = self.control(&w, else_at)?;
                        Some(vec![nested])
                    }
                    _ => {
                        self.expect_close("else")?;
                        let (l, end) = self.list(false)?;
                        match end {
                            Some((w, _)) if w == "end" => self.expect_close("end")?,
                            Some((_, a)) => {
                                return Err(self.err_at(a, "expected {{end}} after {{else}}"));
                            }
                            None => {
                                return Err(self.err_at(
                                    at,
                                    format!("unexpected EOF: {{{{{word}}}}} without {{{{end}}}}"),
                                ));
                            }
                        }
                        Some(l)
                    }
                }
            }
        };
        self.vars.truncate(mark);
        let b = Branch {
            pipe,
            list,
            else_list,
        };
        Ok(match word {
            "if" => Node::If(b),
            "with" => Node::With(b),
            _ => Node::Range(b),
        })
    }

    fn string_arg(&mut self, what: &str) -> Result<String> {
        self.skip_space();
        match self.next() {
            Some((Tok::Str(s), _)) => Ok(s),
            Some((_, at)) => Err(self.err_at(at, format!("{what} needs a quoted name"))),
            None => Err(self.err_at(self.src.len(), format!("unclosed {what}"))),
        }
    }

    fn template_call(&mut self, at: usize) -> Result<Node> {
        let name = self.string_arg("template")?;
        self.skip_space();
        let pipe = if self.peek() == Some(&Tok::Close) {
            None
        } else {
            Some(self.pipeline(at, false)?)
        };
        self.expect_close("template")?;
        Ok(Node::Template { name, pipe, at })
    }

    fn define(&mut self, word: &str, at: usize) -> Result<Option<Node>> {
        let name = self.string_arg(word)?;
        let pipe = if word == "block" {
            Some(self.pipeline(at, false)?)
        } else {
            None
        };
        self.expect_close(word)?;
        // A defined template sees only `$` (its own dot).
        let saved = std::mem::replace(&mut self.vars, vec!["$".to_string()]);
        let saved_depth = std::mem::replace(&mut self.range_depth, 0);
        let (list, end) = self.list(false)?;
        self.vars = saved;
        self.range_depth = saved_depth;
        match end {
            Some((w, _)) if w == "end" => self.expect_close("end")?,
            _ => return Err(self.err_at(at, format!("{{{{{word}}}}} without {{{{end}}}}"))),
        }
        self.defines.insert(name.clone(), list);
        Ok((word == "block").then_some(Node::Template { name, pipe, at }))
    }

    /// Parses a pipeline up to (not including) `}}` or `)`.
    fn pipeline(&mut self, at: usize, allow_decl: bool) -> Result<Pipe> {
        self.skip_space();
        let start = self.at();
        let mut vars = Vec::new();
        let mut assign = false;
        if allow_decl {
            let save = self.i;
            let mut names = Vec::new();
            loop {
                self.skip_space();
                let Some((Tok::Var(v), _)) = self.toks.get(self.i).cloned() else {
                    break;
                };
                self.i += 1;
                self.skip_space();
                names.push(v);
                match self.peek() {
                    Some(Tok::Comma) if names.len() == 1 => {
                        self.i += 1;
                        continue;
                    }
                    Some(Tok::Declare) => {
                        self.i += 1;
                        vars = names;
                        break;
                    }
                    Some(Tok::Assign) => {
                        self.i += 1;
                        assign = true;
                        vars = names;
                        break;
                    }
                    _ => break,
                }
            }
            if vars.is_empty() {
                self.i = save;
            } else if assign {
                for v in &vars {
                    if !self.vars.contains(v) {
                        return Err(self.err_at(at, format!("undefined variable {v:?}")));
                    }
                }
            }
        }
        let mut cmds = Vec::new();
        loop {
            self.skip_space();
            let cmd_at = self.at();
            let args = self.command()?;
            if args.is_empty() {
                return Err(self.err_at(cmd_at, "missing value for command"));
            }
            cmds.push(Cmd { args, at: cmd_at });
            self.skip_space();
            if self.peek() == Some(&Tok::Pipe) {
                self.i += 1;
                continue;
            }
            break;
        }
        if !assign {
            self.vars.extend(vars.iter().cloned());
        }
        let end = self.at();
        Ok(Pipe {
            vars,
            assign,
            cmds,
            at: start,
            text: self
                .src
                .get(start..end)
                .unwrap_or_default()
                .trim()
                .to_string(),
        })
    }

    /// Parses operands until `|`, `)` or `}}`.
    fn command(&mut self) -> Result<Vec<Arg>> {
        let mut args = Vec::new();
        loop {
            self.skip_space();
            match self.peek() {
                None | Some(Tok::Close | Tok::Pipe | Tok::RParen) => return Ok(args),
                _ => {}
            }
            let arg = self.operand()?;
            // Operands must be separated by blanks.
            match self.peek() {
                None | Some(Tok::Space | Tok::Close | Tok::Pipe | Tok::RParen) => {}
                Some(t) => {
                    let t = t.clone();
                    return Err(self.err_at(self.at(), format!("unexpected {t:?} in operand")));
                }
            }
            args.push(arg);
        }
    }

    fn fields(&mut self) -> Vec<String> {
        let mut f = Vec::new();
        while let Some(Tok::Field(name)) = self.peek() {
            f.push(name.clone());
            self.i += 1;
        }
        f
    }

    fn operand(&mut self) -> Result<Arg> {
        let Some((tok, at)) = self.next() else {
            return Err(self.err_at(self.src.len(), "unexpected EOF"));
        };
        let term = match tok {
            Tok::Dot => Arg::Dot,
            Tok::Nil => Arg::Nil,
            Tok::Bool(b) => Arg::Bool(b),
            Tok::Str(s) => Arg::Str(s),
            Tok::Char(c) => Arg::Int(c),
            Tok::Num(n) => {
                number(&n).ok_or_else(|| self.err_at(at, format!("bad number syntax: {n:?}")))?
            }
            Tok::Field(name) => {
                let mut f = vec![name];
                f.extend(self.fields());
                return Ok(Arg::Field(f));
            }
            Tok::Var(v) => {
                if !self.vars.contains(&v) {
                    return Err(self.err_at(at, format!("undefined variable {v:?}")));
                }
                let f = self.fields();
                return Ok(Arg::Var(v, f));
            }
            Tok::Ident(name) => {
                if is_keyword(&name) {
                    return Err(self.err_at(at, format!("unexpected keyword {name} in operand")));
                }
                Arg::Func(name, at)
            }
            Tok::LParen => {
                let pipe = self.pipeline(at, true)?;
                self.skip_space();
                match self.next() {
                    Some((Tok::RParen, _)) => {}
                    _ => return Err(self.err_at(at, "unclosed left paren")),
                }
                Arg::Pipe(Box::new(pipe))
            }
            other => return Err(self.err_at(at, format!("unexpected {other:?} in operand"))),
        };
        let f = self.fields();
        if f.is_empty() {
            return Ok(term);
        }
        match term {
            Arg::Pipe(_) | Arg::Dot => Ok(Arg::Chain(Box::new(term), f)),
            _ => Err(self.err_at(at, "unexpected . after term")),
        }
    }
}

/// A number literal as Go's parser types it: int when it is an integer, else float64.
fn number(text: &str) -> Option<Arg> {
    let clean = text.replace('_', "");
    let (neg, body) = match clean.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, clean.strip_prefix('+').unwrap_or(&clean)),
    };
    let lower = body.to_ascii_lowercase();
    let int = if let Some(h) = lower.strip_prefix("0x") {
        i64::from_str_radix(h, 16).ok()
    } else if let Some(o) = lower.strip_prefix("0o") {
        i64::from_str_radix(o, 8).ok()
    } else if let Some(b) = lower.strip_prefix("0b") {
        i64::from_str_radix(b, 2).ok()
    } else if lower.len() > 1 && lower.starts_with('0') && lower.bytes().all(|c| c.is_ascii_digit())
    {
        i64::from_str_radix(&lower[1..], 8).ok()
    } else {
        lower.parse::<i64>().ok()
    };
    if let Some(v) = int {
        return Some(Arg::Int(if neg { -v } else { v }));
    }
    if lower.starts_with("0x") || lower.ends_with('i') {
        return None;
    }
    let f: f64 = lower.parse().ok()?;
    f.is_finite()
        .then_some(Arg::Float(if neg { -f } else { f }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_control_structures() {
        let t = parse("{{ range $k, $v := .x }}{{ $k }}{{ else }}none{{ end }}{{ if .a }}1{{ else if .b }}2{{ else }}3{{ end }}")
            .expect("parses");
        assert_eq!(t.root.len(), 2);
        let Node::If(b) = &t.root[1] else {
            panic!("if")
        };
        let Some(e) = &b.else_list else {
            panic!("else")
        };
        assert!(matches!(e[0], Node::If(_)));
    }

    #[test]
    fn rejects_bad_syntax_with_position() {
        for (src, want) in [
            ("{{ if .x }}", "without {{end}}"),
            ("{{ $y }}", "undefined variable"),
            ("{{ end }}", "unexpected {{end}}"),
            ("{{ break }}", "outside {{range}}"),
            ("a\n {{ .x.y( }}", "template:2:"),
        ] {
            let err = parse(src).expect_err(src).to_string();
            assert!(err.contains(want), "{src}: {err}");
        }
    }

    #[test]
    fn number_literals_are_typed_like_go() {
        assert!(matches!(number("42"), Some(Arg::Int(42))));
        assert!(matches!(number("-0x1f"), Some(Arg::Int(-31))));
        assert!(matches!(number("1e3"), Some(Arg::Float(f)) if f == 1000.0));
        assert!(number("1x").is_none());
    }
}
