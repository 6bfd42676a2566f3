//! Executes a parsed template: walks the tree, evaluates pipelines, enforces the limits.

use std::collections::HashMap;

use crate::error::{Error, Pos, Result};
use crate::format::print_value;
use crate::funcs;
use crate::parse::{Arg, Branch, Cmd, List, Node, Pipe, Tree};
use crate::value::Val;
use crate::{Limits, SecretSource};

enum Flow {
    Normal,
    Break,
    Continue,
}

/// The state of one execution.
pub struct Exec<'a> {
    pub(crate) tree: &'a Tree,
    pub(crate) src: &'a str,
    pub(crate) source: &'a mut dyn SecretSource,
    pub(crate) limits: Limits,
    out: String,
    vars: Vec<(String, Val)>,
    steps: usize,
    depth: usize,
    missing_key_error: bool,
    /// Results of `secret`/`secrets`/`pkiCert` calls in this render, by call.
    pub(crate) cache: HashMap<String, Val>,
}

impl<'a> Exec<'a> {
    /// A fresh execution of `tree`.
    pub fn new(
        tree: &'a Tree,
        src: &'a str,
        source: &'a mut dyn SecretSource,
        limits: Limits,
    ) -> Self {
        Exec {
            tree,
            src,
            source,
            limits,
            out: String::new(),
            vars: vec![("$".into(), Val::Nil)],
            missing_key_error: false,
            steps: 0,
            depth: 0,
            cache: HashMap::new(),
        }
    }

    /// Fails on `.key` of a map without that key (`missingkey=error`).
    pub fn missing_key_error(mut self, yes: bool) -> Self {
        self.missing_key_error = yes;
        self
    }

    /// Runs the main template (dot is nil, as in consul-template) and returns the output.
    pub fn run(mut self) -> Result<String> {
        let tree = self.tree;
        self.list(&tree.root, &Val::Nil)?;
        Ok(self.out)
    }

    pub(crate) fn pos(&self, at: usize) -> Pos {
        Pos::at(self.src, at)
    }

    /// An execution error at `at` naming the action `ctx`.
    pub(crate) fn err(&self, at: usize, ctx: &str, msg: impl Into<String>) -> Error {
        Error::Exec {
            pos: self.pos(at),
            context: format!("<{ctx}>"),
            msg: msg.into(),
        }
    }

    /// Counts one unit of work (a loop iteration, a function call).
    pub(crate) fn step(&mut self, at: usize) -> Result<()> {
        self.steps += 1;
        if self.steps > self.limits.max_steps {
            return Err(Error::Limit {
                pos: self.pos(at),
                what: "work (loop iterations and function calls)",
                limit: self.limits.max_steps,
            });
        }
        Ok(())
    }

    /// Checks a size produced at `at` (output or a function result) against the output cap.
    pub(crate) fn check_size(&self, len: usize, at: usize) -> Result<()> {
        if len > self.limits.max_output {
            return Err(Error::Limit {
                pos: self.pos(at),
                what: "output size in bytes",
                limit: self.limits.max_output,
            });
        }
        Ok(())
    }

    fn emit(&mut self, s: &str, at: usize) -> Result<()> {
        self.check_size(self.out.len() + s.len(), at)?;
        self.out.push_str(s);
        Ok(())
    }

    fn list(&mut self, list: &List, dot: &Val) -> Result<Flow> {
        for node in list {
            match self.node(node, dot)? {
                Flow::Normal => {}
                f => return Ok(f),
            }
        }
        Ok(Flow::Normal)
    }

    fn node(&mut self, node: &Node, dot: &Val) -> Result<Flow> {
        match node {
            Node::Text(t) => self.emit(t, 0)?,
            Node::Action(p) => {
                let v = self.pipe(p, dot, true)?;
                if p.vars.is_empty() {
                    let s = print_value(&v).map_err(|m| self.err(p.at, &p.text, m))?;
                    self.emit(&s, p.at)?;
                }
            }
            Node::If(b) | Node::With(b) => {
                let mark = self.vars.len();
                let v = self.pipe(&b.pipe, dot, true)?;
                let with = matches!(node, Node::With(_));
                let flow = if v.truthy() {
                    self.list(&b.list, if with { &v } else { dot })?
                } else if let Some(e) = &b.else_list {
                    self.list(e, dot)?
                } else {
                    Flow::Normal
                };
                self.vars.truncate(mark);
                return Ok(flow);
            }
            Node::Range(b) => return self.range(b, dot),
            Node::Break => return Ok(Flow::Break),
            Node::Continue => return Ok(Flow::Continue),
            Node::Template { name, pipe, at } => {
                let Some(list) = self.tree.defines.get(name) else {
                    return Err(self.err(*at, "template", format!("no such template {name:?}")));
                };
                let new_dot = match pipe {
                    Some(p) => self.pipe(p, dot, true)?,
                    None => Val::Nil,
                };
                self.depth += 1;
                if self.depth > self.limits.max_depth {
                    return Err(Error::Limit {
                        pos: self.pos(*at),
                        what: "template call depth",
                        limit: self.limits.max_depth,
                    });
                }
                let saved = std::mem::replace(&mut self.vars, vec![("$".into(), new_dot.clone())]);
                let r = self.list(list, &new_dot);
                self.vars = saved;
                self.depth -= 1;
                r?;
            }
        }
        Ok(Flow::Normal)
    }

    fn range(&mut self, b: &Branch, dot: &Val) -> Result<Flow> {
        let mark = self.vars.len();
        let v = self.pipe(&b.pipe, dot, false)?;
        let items: Vec<(Val, Val)> = match &v {
            Val::Map(m) => m
                .iter()
                .map(|(k, x)| (Val::str(k.as_str()), x.clone()))
                .collect(),
            Val::List(l) => l
                .iter()
                .enumerate()
                .map(|(i, x)| (Val::Int(i as i64), x.clone()))
                .collect(),
            Val::Strs(l) => l
                .iter()
                .enumerate()
                .map(|(i, x)| (Val::Int(i as i64), Val::str(x.as_str())))
                .collect(),
            Val::Int(n) => {
                if b.pipe.vars.len() > 1 {
                    return Err(self.err(
                        b.pipe.at,
                        &b.pipe.text,
                        "can't use two variables ranging over an integer",
                    ));
                }
                if *n > self.limits.max_steps as i64 {
                    return Err(Error::Limit {
                        pos: self.pos(b.pipe.at),
                        what: "loop iterations",
                        limit: self.limits.max_steps,
                    });
                }
                (0..*n).map(|i| (Val::Int(i), Val::Int(i))).collect()
            }
            Val::Nil => Vec::new(),
            other => {
                return Err(self.err(
                    b.pipe.at,
                    &b.pipe.text,
                    format!(
                        "range can't iterate over {}",
                        print_value(other).unwrap_or_default()
                    ),
                ));
            }
        };
        if items.is_empty() {
            let flow = match &b.else_list {
                Some(e) => self.list(e, dot)?,
                None => Flow::Normal,
            };
            self.vars.truncate(mark);
            return Ok(flow);
        }
        for (k, elem) in items {
            self.step(b.pipe.at)?;
            let inner = self.vars.len();
            match b.pipe.vars.as_slice() {
                [] => {}
                [one] => self.bind(one, elem.clone(), b.pipe.assign),
                [key, val, ..] => {
                    self.bind(key, k, b.pipe.assign);
                    self.bind(val, elem.clone(), b.pipe.assign);
                }
            }
            let flow = self.list(&b.list, &elem)?;
            self.vars.truncate(inner);
            if matches!(flow, Flow::Break) {
                break;
            }
        }
        self.vars.truncate(mark);
        Ok(Flow::Normal)
    }

    /// Declares (`:=`) or assigns (`=`) a variable.
    fn bind(&mut self, name: &str, v: Val, assign: bool) {
        if let Some(slot) = self
            .vars
            .iter_mut()
            .rev()
            .find(|(n, _)| assign && n == name)
        {
            slot.1 = v;
            return;
        }
        self.vars.push((name.to_string(), v));
    }

    /// Evaluates a pipeline; declares its variables when `declare`.
    pub(crate) fn pipe(&mut self, p: &Pipe, dot: &Val, declare: bool) -> Result<Val> {
        let mut val: Option<Val> = None;
        for cmd in &p.cmds {
            val = Some(self.cmd(cmd, p, dot, val)?);
        }
        let v = val.unwrap_or(Val::Nil);
        if declare {
            for name in &p.vars {
                self.bind(name, v.clone(), p.assign);
            }
        }
        Ok(v)
    }

    fn cmd(&mut self, cmd: &Cmd, p: &Pipe, dot: &Val, fin: Option<Val>) -> Result<Val> {
        let Some(first) = cmd.args.first() else {
            return Err(self.err(cmd.at, &p.text, "empty command"));
        };
        if let Arg::Func(name, at) = first {
            return funcs::call(self, name, *at, &cmd.args[1..], p, dot, fin);
        }
        if cmd.args.len() > 1 || fin.is_some() {
            let what = match first {
                Arg::Field(f) | Arg::Var(_, f) | Arg::Chain(_, f) if !f.is_empty() => {
                    format!(
                        "{} is not a method but has arguments",
                        f.last().map_or("", |s| s.as_str())
                    )
                }
                _ => "can't give argument to non-function".to_string(),
            };
            return Err(self.err(cmd.at, &p.text, what));
        }
        if matches!(first, Arg::Nil) {
            return Err(self.err(cmd.at, &p.text, "nil is not a command"));
        }
        self.arg(first, p, dot)
    }

    /// Evaluates one operand.
    pub(crate) fn arg(&mut self, a: &Arg, p: &Pipe, dot: &Val) -> Result<Val> {
        Ok(match a {
            Arg::Dot => dot.clone(),
            Arg::Nil => Val::Nil,
            Arg::Bool(b) => Val::Bool(*b),
            Arg::Str(s) => Val::str(s.as_str()),
            Arg::Int(i) => Val::Int(*i),
            Arg::Float(f) => Val::Float(*f),
            Arg::Field(f) => self.fields(dot.clone(), f, p)?,
            Arg::Var(name, f) => {
                let v = self
                    .vars
                    .iter()
                    .rev()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.clone())
                    .ok_or_else(|| {
                        self.err(p.at, &p.text, format!("undefined variable: {name}"))
                    })?;
                self.fields(v, f, p)?
            }
            Arg::Func(name, at) => funcs::call(self, name, *at, &[], p, dot, None)?,
            Arg::Chain(inner, f) => {
                let v = self.arg(inner, p, dot)?;
                self.fields(v, f, p)?
            }
            Arg::Pipe(inner) => {
                self.depth += 1;
                if self.depth > self.limits.max_depth {
                    return Err(Error::Limit {
                        pos: self.pos(inner.at),
                        what: "nesting depth",
                        limit: self.limits.max_depth,
                    });
                }
                let r = self.pipe(inner, dot, true);
                self.depth -= 1;
                r?
            }
        })
    }

    /// Follows a field chain `.a.b.c` from `v`.
    fn fields(&self, mut v: Val, chain: &[String], p: &Pipe) -> Result<Val> {
        for name in chain {
            let missing = matches!(&v, Val::Map(m) if !m.contains_key(name));
            if self.missing_key_error && missing {
                return Err(self.err(p.at, &p.text, format!("map has no entry for key {name:?}")));
            }
            v = field(&v, name).map_err(|m| self.err(p.at, &p.text, m))?;
        }
        Ok(v)
    }
}

/// `.name` on a value: map key (missing -> nil, as `missingkey=zero`), or a struct field.
pub fn field(v: &Val, name: &str) -> Result<Val, String> {
    match v {
        Val::Map(m) => Ok(m.get(name).cloned().unwrap_or(Val::Nil)),
        Val::Secret(s) => Ok(match name {
            "Data" => s.data.clone(),
            "LeaseID" => Val::str(s.lease_id.as_str()),
            "LeaseDuration" => Val::Int(s.lease_duration),
            "Renewable" => Val::Bool(s.renewable),
            "RequestID" => Val::str(s.request_id.as_str()),
            "Warnings" => Val::Strs(std::rc::Rc::new(s.warnings.clone())),
            "Auth" | "WrapInfo" => Val::Nil,
            _ => {
                return Err(format!(
                    "can't evaluate field {name} in type *dependency.Secret"
                ));
            }
        }),
        Val::Pem(pem) => Ok(match name {
            "Cert" => Val::str(pem.cert.as_str()),
            "Key" => Val::str(pem.key.as_str()),
            "CA" => Val::str(pem.ca.as_str()),
            "Data" => v.clone(),
            _ => {
                return Err(format!(
                    "can't evaluate field {name} in type dependency.PemEncoded"
                ));
            }
        }),
        Val::Nil => Err(format!("nil pointer evaluating interface {{}}.{name}")),
        // Values out of Vault's JSON sit in interface{} slots; function results keep their type.
        Val::Strs(_) | Val::Int(_) => Err(format!(
            "can't evaluate field {name} in type {}",
            v.type_name()
        )),
        _ => Err(format!(
            "can't evaluate field {name} in type interface {{}}"
        )),
    }
}
