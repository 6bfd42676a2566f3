//! Rendering fetched secrets into file contents: Handlebars templates or a default format.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use handlebars::{
    Context, Handlebars, Helper, HelperResult, Output, RenderContext, RenderError,
    RenderErrorReason,
};
use serde_json::{Map, Value};

use crate::config::{OutputFormat, SecretSpec, loads_code, spelled_out};
use crate::envfile::{self, EnvError};

mod limits;
use limits::{Bounded, check_compiled, check_nesting};
pub use limits::{DEFAULT_MAX_FILE_SIZE, MAX_EACH_NESTING, MAX_NESTING};

/// Errors while rendering; messages name the secret and never contain secret values.
#[derive(Debug, thiserror::Error)]
pub enum RenderFailure {
    /// The template does not parse.
    #[error("secret {secret:?}: template does not parse: {reason:?}; fix the template annotation")]
    Template {
        /// Secret name.
        secret: String,
        /// Parser message.
        reason: String,
    },
    /// The template uses what the agent refuses (partials, decorators, deep nesting).
    #[error("secret {secret:?}: template does not parse: {reason}; fix the template annotation")]
    Refused {
        /// Secret name.
        secret: String,
        /// What is refused and what to do (the agent's own words, no template text).
        reason: String,
    },
    /// The rendered file would not fit the bound (the secrets volume's size).
    #[error(
        "secret {secret:?}: the rendered file would be larger than {max} bytes (paths.maxFileSize, the secrets volume's size); render less, or raise the secrets volume size"
    )]
    TooLarge {
        /// Secret name.
        secret: String,
        /// The bound in bytes.
        max: u64,
    },
    /// The template refers to a key the data lacks, or a helper failed.
    #[error(
        "secret {secret:?}: cannot render: {reason:?}; check the template's keys against the secret (see `secrets.<name>.<key>` for other secrets)"
    )]
    Render {
        /// Secret name.
        secret: String,
        /// Handlebars' message (template position and key name).
        reason: String,
    },
    /// The data cannot be written in the requested format.
    #[error("secret {secret:?}: cannot format as {format}: {reason:?}")]
    Format {
        /// Secret name.
        secret: String,
        /// Requested format.
        format: &'static str,
        /// Serialiser message.
        reason: String,
    },
    /// The data cannot be written as env lines (a key that is no variable name, a NUL byte).
    #[error(transparent)]
    Env(#[from] EnvError),
    /// The template of a secret loaded into the environment rendered something that is not
    /// env lines (only the line and the reason are named: a key may come from the data).
    #[error(
        "secret {secret:?}: vaultlet.io/env-{secret} loads it into the environment, but its template rendered line {line}{} that is not KEY=value: {reason}; make the template write KEY='value' lines with keys [A-Za-z_][A-Za-z0-9_]*",
        key.as_ref().map(|k| format!(" (key {k:?})")).unwrap_or_default()
    )]
    EnvTemplate {
        /// Secret name.
        secret: String,
        /// 1-based line of the rendered output.
        line: usize,
        /// The line's key, only when it is text of the template or a key of the secret's
        /// data (never what a value rendered into the key's place).
        key: Option<String>,
        /// What is wrong (never the value).
        reason: &'static str,
    },
}

/// Holds the compiled templates of every secret.
pub struct Renderer {
    hb: Handlebars<'static>,
    max_output: u64,
}

impl std::fmt::Debug for Renderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Renderer").finish_non_exhaustive()
    }
}

impl Renderer {
    /// Compiles the templates of `specs`; a template that does not parse is an error now,
    /// not at the first render.
    pub fn new(specs: &[SecretSpec]) -> Result<Self, RenderFailure> {
        let mut hb = Handlebars::new();
        hb.set_strict_mode(true);
        hb.register_escape_fn(handlebars::no_escape);
        hb.register_helper("base64Encode", Box::new(base64_encode));
        hb.register_helper("base64Decode", Box::new(base64_decode));
        hb.register_helper("json", Box::new(json_helper));
        hb.register_helper("default", Box::new(default_helper));
        for spec in specs {
            if let Some(t) = &spec.template {
                let refused = |reason| RenderFailure::Refused {
                    secret: spec.name.clone(),
                    reason,
                };
                // Before the parser, which recurses once per level.
                check_nesting(t).map_err(refused)?;
                hb.register_template_string(&spec.name, t).map_err(|e| {
                    RenderFailure::Template {
                        secret: spec.name.clone(),
                        reason: e.to_string(),
                    }
                })?;
                if let Some(compiled) = hb.get_template(&spec.name) {
                    check_compiled(compiled).map_err(refused)?;
                }
            }
        }
        Ok(Self {
            hb,
            max_output: DEFAULT_MAX_FILE_SIZE,
        })
    }

    /// Sets the largest file a render may produce (`paths.maxFileSize`).
    pub fn with_max_output(mut self, max: u64) -> Self {
        self.max_output = max;
        self
    }

    /// Renders one secret: its own fields at the top level, every secret under `secrets`.
    pub fn render(
        &self,
        spec: &SecretSpec,
        own: &Map<String, Value>,
        all: &BTreeMap<String, Map<String, Value>>,
    ) -> Result<Vec<u8>, RenderFailure> {
        let too_large = || RenderFailure::TooLarge {
            secret: spec.name.clone(),
            max: self.max_output,
        };
        if spec.template.is_none() {
            let bytes = default_format(&spec.name, spec.format, own)?;
            if bytes.len() as u64 > self.max_output {
                return Err(too_large());
            }
            return Ok(bytes);
        }
        let mut ctx = own.clone();
        ctx.insert(
            "secrets".into(),
            Value::Object(
                all.iter()
                    .map(|(k, v)| (k.clone(), Value::Object(v.clone())))
                    .collect(),
            ),
        );
        // Output beyond the bound stops the render there: memory stays bounded.
        let mut out = Bounded::new(usize::try_from(self.max_output).unwrap_or(usize::MAX));
        if let Err(e) = self.hb.render_to_write(&spec.name, &ctx, &mut out) {
            if out.exceeded {
                return Err(too_large());
            }
            return Err(RenderFailure::Render {
                secret: spec.name.clone(),
                reason: e.to_string(),
            });
        }
        let text = String::from_utf8(out.buf).map_err(|_| RenderFailure::Render {
            secret: spec.name.clone(),
            reason: "the output is not UTF-8".into(),
        })?;
        if spec.env {
            check_env_output(spec, own, &text)?;
        }
        Ok(text.into_bytes())
    }
}

/// Checks that a template's output is what the supervisor can load, with the parser it uses.
pub(crate) fn check_env_output(
    spec: &SecretSpec,
    own: &Map<String, Value>,
    text: &str,
) -> Result<(), RenderFailure> {
    match envfile::parse(text) {
        Ok(pairs) => {
            // A key the template did not write itself came from data: no code-loading names.
            let template = spec.template.as_deref().unwrap_or_default();
            match pairs
                .iter()
                .find(|(k, _)| loads_code(k) && !spelled_out(template, k))
            {
                Some((key, _)) => Err(EnvError::CodeLoading {
                    secret: spec.name.clone(),
                    key: key.clone(),
                }
                .into()),
                None => Ok(()),
            }
        }
        Err(EnvError::Parse { line, reason }) => {
            // The key may be shown when it cannot be a value: template text or a data key.
            let key = text
                .lines()
                .nth(line.saturating_sub(1))
                .and_then(|l| l.split_once('='))
                .map(|(k, _)| k)
                .filter(|k| {
                    !k.is_empty()
                        && (own.contains_key(*k)
                            || spec.template.as_deref().is_some_and(|t| t.contains(*k)))
                })
                .map(str::to_owned);
            Err(RenderFailure::EnvTemplate {
                secret: spec.name.clone(),
                line,
                key,
                reason,
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// True when a template may refer to other secrets (`secrets.<name>`), so it waits for all.
pub fn uses_other_secrets(spec: &SecretSpec) -> bool {
    spec.template
        .as_deref()
        .is_some_and(|t| t.contains("secrets"))
}

/// Renders data without a template: `key=value` lines (sorted), JSON or YAML.
pub fn default_format(
    secret: &str,
    format: OutputFormat,
    data: &Map<String, Value>,
) -> Result<Vec<u8>, RenderFailure> {
    let fail = |format: &'static str, reason: String| RenderFailure::Format {
        secret: secret.into(),
        format,
        reason,
    };
    match format {
        OutputFormat::Env => {
            let values: Vec<(&str, String)> =
                data.iter().map(|(k, v)| (k.as_str(), plain(v))).collect();
            let text = envfile::write(secret, values.iter().map(|(k, v)| (*k, v.as_str())))?;
            Ok(text.into_bytes())
        }
        OutputFormat::Json => serde_json::to_vec_pretty(data)
            .map(|mut v| {
                v.push(b'\n');
                v
            })
            .map_err(|e| fail("json", e.to_string())),
        OutputFormat::Yaml => serde_saphyr::to_string(data)
            .map(String::into_bytes)
            .map_err(|e| fail("yaml", e.to_string())),
    }
}

/// A value as text: strings as-is, everything else as JSON.
fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn param<'a>(h: &'a Helper<'_>, name: &'static str) -> Result<&'a Value, RenderError> {
    let p = h
        .param(0)
        .ok_or(RenderErrorReason::ParamNotFoundForIndex(name, 0))?;
    if p.is_value_missing() {
        let key = p.relative_path().cloned().unwrap_or_default();
        return Err(RenderErrorReason::Other(format!("{name}: missing value {key:?}")).into());
    }
    Ok(p.value())
}

fn base64_encode(
    h: &Helper<'_>,
    _: &Handlebars<'_>,
    _: &Context,
    _: &mut RenderContext<'_, '_>,
    out: &mut dyn Output,
) -> HelperResult {
    let v = param(h, "base64Encode")?;
    out.write(&B64.encode(plain(v)))?;
    Ok(())
}

fn base64_decode(
    h: &Helper<'_>,
    _: &Handlebars<'_>,
    _: &Context,
    _: &mut RenderContext<'_, '_>,
    out: &mut dyn Output,
) -> HelperResult {
    let v = param(h, "base64Decode")?;
    let bytes = B64.decode(plain(v).trim()).map_err(|_| {
        // The value itself stays out of the message.
        RenderErrorReason::Other("base64Decode: the value is not valid base64".into())
    })?;
    let text = String::from_utf8(bytes).map_err(|_| {
        RenderErrorReason::Other("base64Decode: the decoded value is not UTF-8".into())
    })?;
    out.write(&text)?;
    Ok(())
}

fn json_helper(
    h: &Helper<'_>,
    _: &Handlebars<'_>,
    _: &Context,
    _: &mut RenderContext<'_, '_>,
    out: &mut dyn Output,
) -> HelperResult {
    let v = param(h, "json")?;
    let pretty = h
        .hash_get("pretty")
        .is_some_and(|p| p.value().as_bool() == Some(true));
    let s = if pretty {
        serde_json::to_string_pretty(v)
    } else {
        serde_json::to_string(v)
    }
    .map_err(|e| RenderErrorReason::Other(format!("json: {e}")))?;
    out.write(&s)?;
    Ok(())
}

/// `{{default value "fallback"}}`: the fallback when the value is missing, null or empty.
fn default_helper(
    h: &Helper<'_>,
    _: &Handlebars<'_>,
    _: &Context,
    _: &mut RenderContext<'_, '_>,
    out: &mut dyn Output,
) -> HelperResult {
    let fallback = h
        .param(1)
        .ok_or(RenderErrorReason::ParamNotFoundForIndex("default", 1))?;
    let chosen = match h.param(0) {
        Some(p)
            if !p.is_value_missing() && !matches!(p.value(), Value::Null) && p.value() != "" =>
        {
            p.value()
        }
        _ => fallback.value(),
    };
    out.write(&plain(chosen))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mk_spec(name: &str, template: Option<&str>) -> SecretSpec {
        let mut s: SecretSpec = serde_json::from_value(json!({
            "name": name, "path": "secret/data/x", "file": name
        }))
        .expect("spec");
        s.template = template.map(String::from);
        s
    }

    #[test]
    fn env_templates_must_render_env_lines() {
        let mut spec = mk_spec("db", Some("DB_USER={{u}}\nDB PASS={{p}}\n"));
        spec.env = true;
        let r = Renderer::new(std::slice::from_ref(&spec)).expect("compiles");
        let own = mk_data(json!({"u": "app", "p": "hunter2"}));
        let err = r.render(&spec, &own, &BTreeMap::new()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "secret \"db\": vaultlet.io/env-db loads it into the environment, but its template rendered line 2 (key \"DB PASS\") that is not KEY=value: the key is not [A-Za-z_][A-Za-z0-9_]*; make the template write KEY='value' lines with keys [A-Za-z_][A-Za-z0-9_]*"
        );
        // A value rendered where a key goes is never shown.
        let mut leak = mk_spec("db", Some("{{p}}=x\n"));
        leak.env = true;
        let r2 = Renderer::new(std::slice::from_ref(&leak)).expect("compiles");
        let own2 = mk_data(json!({"p": "hunter2 x"}));
        let err = r2.render(&leak, &own2, &BTreeMap::new()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "secret \"db\": vaultlet.io/env-db loads it into the environment, but its template rendered line 1 that is not KEY=value: the key is not [A-Za-z_][A-Za-z0-9_]*; make the template write KEY='value' lines with keys [A-Za-z_][A-Za-z0-9_]*"
        );
        // Keys of the data are names, not values: shown.
        let mut each = mk_spec("db", Some("{{#each this}}{{@key}}={{this}}\n{{/each}}"));
        each.env = true;
        let r3 = Renderer::new(std::slice::from_ref(&each)).expect("compiles");
        let own3 = mk_data(json!({"api-key": "k"}));
        let err = r3.render(&each, &own3, &BTreeMap::new()).unwrap_err();
        assert!(
            err.to_string().contains("line 1 (key \"api-key\")"),
            "{err}"
        );
        spec.env = false;
        assert!(r.render(&spec, &own, &BTreeMap::new()).is_ok());
        let mut ok = mk_spec("db", Some("DB_USER={{u}}\nDB_PASS='{{p}}'\n"));
        ok.env = true;
        let r = Renderer::new(std::slice::from_ref(&ok)).expect("compiles");
        assert!(r.render(&ok, &own, &BTreeMap::new()).is_ok());
    }

    fn mk_data(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    fn render_one(template: &str, data: Value) -> Result<String, RenderFailure> {
        let spec = mk_spec("db", Some(template));
        let r = Renderer::new(std::slice::from_ref(&spec))?;
        let own = mk_data(data);
        let all = BTreeMap::from([("db".to_owned(), own.clone())]);
        r.render(&spec, &own, &all)
            .map(|b| String::from_utf8(b).expect("utf8"))
    }

    #[test]
    fn no_html_escaping() {
        let out = render_one("pw={{pw}}", json!({"pw": "<a&b>\"'"})).expect("render");
        assert_eq!(out, "pw=<a&b>\"'");
    }

    #[test]
    fn missing_key_is_a_clear_error_without_values() {
        let err = render_one(
            "{{user}}:{{passwrd}}",
            json!({"user": "u", "pw": "hunter2"}),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("passwrd"), "{err}");
        assert!(err.contains("\"db\""), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn template_syntax_error_names_the_secret() {
        let spec = mk_spec("web", Some("{{#if x}}unclosed"));
        let err = Renderer::new(&[spec]).unwrap_err().to_string();
        assert!(
            err.starts_with("secret \"web\": template does not parse"),
            "{err}"
        );
    }

    #[test]
    fn helpers() {
        let data = json!({"pw": "hunter2", "enc": "aGVsbG8=", "obj": {"a": 1}, "empty": ""});
        assert_eq!(
            render_one("{{base64Encode pw}}", data.clone()).expect("enc"),
            "aHVudGVyMg=="
        );
        assert_eq!(
            render_one("{{base64Decode enc}}", data.clone()).expect("dec"),
            "hello"
        );
        assert_eq!(
            render_one("{{json obj}}", data.clone()).expect("json"),
            r#"{"a":1}"#
        );
        assert_eq!(
            render_one(
                r#"{{default port "5432"}}/{{default empty "x"}}/{{default pw "y"}}"#,
                data.clone()
            )
            .expect("default"),
            "5432/x/hunter2"
        );
        let err = render_one("{{base64Decode pw}}", data.clone())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("not valid base64") && !err.contains("hunter2"),
            "{err}"
        );
        let err = render_one("{{base64Encode nope}}", data)
            .unwrap_err()
            .to_string();
        assert!(err.contains("nope"), "{err}");
    }

    #[test]
    fn other_secrets_by_name() {
        let db = mk_spec("db", None);
        let app = mk_spec("app", Some("{{secrets.db.username}}@{{host}}"));
        let r = Renderer::new(&[db, app.clone()]).expect("renderer");
        let all = BTreeMap::from([
            ("db".to_owned(), mk_data(json!({"username": "dbuser"}))),
            ("app".to_owned(), mk_data(json!({"host": "h"}))),
        ]);
        let out = r.render(&app, &all["app"], &all).expect("render");
        assert_eq!(out, b"dbuser@h");
        assert!(uses_other_secrets(&app));
    }

    #[test]
    fn default_formats() {
        let data = mk_data(json!({"user": "app", "pw": "a b\"c", "n": 5, "cert": "L1\nL2"}));
        let env = String::from_utf8(default_format("x", OutputFormat::Env, &data).expect("env"))
            .expect("utf8");
        assert_eq!(env, "cert='L1\nL2'\nn=5\npw='a b\"c'\nuser=app\n");
        let js = default_format("x", OutputFormat::Json, &data).expect("json");
        let back: Value = serde_json::from_slice(&js).expect("parse");
        assert_eq!(back["pw"], "a b\"c");
        let yaml = String::from_utf8(default_format("x", OutputFormat::Yaml, &data).expect("yaml"))
            .expect("utf8");
        let back: BTreeMap<String, Value> = serde_saphyr::from_str(&yaml).expect("yaml parse");
        assert_eq!(back["cert"], "L1\nL2");
        assert_eq!(back["user"], "app");
    }
}
