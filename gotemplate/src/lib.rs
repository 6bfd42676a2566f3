//! Renders consul-template templates (the language of Vault Agent and vault-k8s: Go
//! text/template plus consul-template's Vault functions) to the same bytes Vault Agent writes.
//!
//! No I/O happens here: the caller implements [`SecretSource`] (the HTTP calls to Vault, KV v2
//! path rewriting with [`kv2_data_path`]) and gets the Vault paths a template needs before
//! rendering with [`Template::secret_calls`]. An async caller fetches those first and renders
//! with [`Template::render_prefetched`], which names any computed path still to fetch.
//!
//! ```
//! use vaultlet_gotemplate::{SecretRequest, SecretSource, Template, Limits};
//!
//! struct Fixed;
//! impl SecretSource for Fixed {
//!     fn fetch(&mut self, _req: &SecretRequest) -> Result<String, String> {
//!         Ok(r#"{"data":{"data":{"user":"app","pass":"s3<cr>t"}}}"#.into())
//!     }
//! }
//!
//! let t = Template::parse(r#"{{ with secret "secret/app" }}{{ .Data.data | toJSON }}{{ end }}"#)?;
//! let out = t.render(&mut Fixed, Limits::default())?;
//! assert_eq!(out, r#"{"pass":"s3\u003ccr\u003et","user":"app"}"#);
//! # Ok::<(), vaultlet_gotemplate::Error>(())
//! ```

#![forbid(unsafe_code)]

mod builtins;
mod error;
mod exec;
mod format;
mod funcs;
mod helpers;
mod json;
mod lexer;
mod parse;
mod prefetch;
mod value;
mod vault;
mod walk;
mod yaml;

pub use error::{Error, Pos, Result};
pub use prefetch::{Answers, Outcome};
pub use vault::{SecretKind, SecretRequest, kv2_data_path, kv2_list_path};

/// Answers the template's calls to Vault. Implemented by the caller, who does the HTTP.
pub trait SecretSource {
    /// Performs `req` and returns Vault's whole JSON answer (`{"request_id":..,"data":..}`).
    ///
    /// For [`SecretKind::Read`] of a KV v2 secret, read [`kv2_data_path`]; for
    /// [`SecretKind::List`] on KV v2, list [`kv2_list_path`]. An `Err` (missing secret,
    /// permission denied) fails the render with the message, which must not hold secrets.
    fn fetch(&mut self, req: &SecretRequest) -> std::result::Result<String, String>;
}

/// Bounds on the work a (tenant-written) template may cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest output (and largest string a function may build), in bytes.
    pub max_output: usize,
    /// Loop iterations plus function calls.
    pub max_steps: usize,
    /// Depth of `{{template}}` calls and nested parenthesised pipelines.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_output: 4 << 20,
            max_steps: 1_000_000,
            max_depth: 64,
        }
    }
}

/// A `secret`/`secrets`/`pkiCert` call found in the template source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretCall {
    /// Where the call is.
    pub pos: Pos,
    /// The request, when all its arguments are string literals; `None` when they are computed
    /// at render time (known only then).
    pub request: Option<SecretRequest>,
}

/// A parsed template, ready to render any number of times.
#[derive(Debug, Clone)]
pub struct Template {
    src: String,
    tree: parse::Tree,
    error_on_missing_key: bool,
}

impl Template {
    /// Parses `src`; refuses (by name) any function vaultlet does not support.
    pub fn parse(src: &str) -> Result<Template> {
        walk::check_nesting(src)?;
        let tree = parse::parse(src)?;
        for (name, at) in walk::functions(&tree) {
            if let Some(e) = funcs::refusal(&name, Pos::at(src, at)) {
                return Err(e);
            }
        }
        Ok(Template {
            src: src.to_string(),
            tree,
            error_on_missing_key: false,
        })
    }

    /// Every `secret`, `secrets` and `pkiCert` call, in source order.
    pub fn secret_calls(&self) -> Vec<SecretCall> {
        let mut out = Vec::new();
        let mut lists: Vec<&parse::List> = vec![&self.tree.root];
        lists.extend(self.tree.defines.values());
        for list in lists {
            walk::for_each_pipe(list, &mut |p| walk::collect_calls(&self.src, p, &mut out));
        }
        out.sort_by_key(|c| (c.pos.line, c.pos.col));
        out
    }

    /// Renders the template, asking `source` for each Vault call (once per distinct call).
    pub fn render(&self, source: &mut dyn SecretSource, limits: Limits) -> Result<String> {
        exec::Exec::new(&self.tree, &self.src, source, limits)
            .missing_key_error(self.error_on_missing_key)
            .run()
    }

    /// Vault Agent's `error_on_missing_key = true`: `.key` on a map without it fails the
    /// render (Go's `missingkey=error`) instead of printing `<no value>`.
    pub fn error_on_missing_key(mut self, yes: bool) -> Self {
        self.error_on_missing_key = yes;
        self
    }
}

#[cfg(test)]
mod tests;
