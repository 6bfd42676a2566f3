//! Parses and validates a Pod's `vaultlet.io/*` annotations into a typed [`PodRequest`].
//!
//! [`KNOWN`] is the single table of annotations: the parser uses it to reject unknown keys
//! and `docs/annotations.md` is generated from it ([`reference_markdown`]).

use std::collections::BTreeMap;
use std::time::Duration;

use vaultlet_agent::config::supervise::OnChange;
use vaultlet_agent::config::{
    LogFormat, NotifySpec, OutputFormat, TemplateLanguage, parse_mode, validate_mount,
    validate_name, validate_relative_file, validate_vault_address, validate_vault_path,
};

/// Prefix of every annotation (and of the opt-in label).
pub const PREFIX: &str = "vaultlet.io/";
/// Opt-in label (or annotation) key.
pub const INJECT: &str = "vaultlet.io/inject";
/// Annotation the injector writes on an injected Pod; its presence makes mutation a no-op.
pub const STATUS: &str = "vaultlet.io/status";
/// Value of [`STATUS`] after injection.
pub const STATUS_INJECTED: &str = "injected";

/// Longest annotation value quoted back in an error message.
const MAX_QUOTED: usize = 120;

mod consul;
mod env;
mod known;
mod values;
pub use known::{KNOWN, Known, Scope, nearest, reference_markdown};
use values::{
    add_param, parse_abs_dir, parse_bounded, parse_container_list, parse_dns_subdomain, parse_gid,
    parse_log_level, parse_notify_lines, parse_port, parse_version, parse_word,
};
pub use values::{parse_audience, parse_bool, parse_quantity, quantity_value};

/// Why an annotation was rejected; the message names the annotation and (except for
/// templates) the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnnotationError {
    /// A `vaultlet.io/` key the injector does not know (typo?).
    #[error(
        "annotation {} is not a known vaultlet.io annotation; {}",
        shown_key(.key),
        did_you_mean(.suggestion.as_deref())
    )]
    Unknown {
        /// Full annotation key.
        key: String,
        /// The nearest known annotation, when one is close enough to be meant.
        suggestion: Option<String>,
    },
    /// A known annotation with an unusable value.
    #[error("annotation {}: value {value} is invalid: {reason}", shown_key(.key))]
    Invalid {
        /// Full annotation key.
        key: String,
        /// The value, quoted and shortened (templates are not echoed).
        value: String,
        /// What is wrong and what is expected.
        reason: String,
    },
    /// A per-secret annotation whose `vaultlet.io/secret-<name>` is missing.
    #[error(
        "annotation {} refers to secret {name:?}, but there is no vaultlet.io/secret-{name} annotation; add it or remove {}",
        shown_key(.key),
        shown_key(.key)
    )]
    Orphan {
        /// Full annotation key.
        key: String,
        /// Secret name.
        name: String,
    },
}

fn did_you_mean(suggestion: Option<&str>) -> String {
    match suggestion {
        Some(s) => format!("did you mean {s}? See docs/annotations.md for the list"),
        None => "see docs/annotations.md for the list".to_owned(),
    }
}

impl AnnotationError {
    /// An unknown key, with the nearest known annotation as a suggestion.
    pub fn unknown(key: &str) -> Self {
        Self::Unknown {
            key: key.to_owned(),
            suggestion: key.strip_prefix(PREFIX).and_then(known::nearest),
        }
    }

    fn invalid(key: &str, value: &str, reason: impl Into<String>) -> Self {
        let value =
            if key.starts_with("vaultlet.io/template-") && !key.ends_with("/template-language") {
                "(template body not shown)".to_owned()
            } else {
                quote(value)
            };
        Self::Invalid {
            key: key.to_owned(),
            value,
            reason: reason.into(),
        }
    }

    /// The annotation key the error is about.
    pub fn key(&self) -> &str {
        match self {
            Self::Unknown { key, .. } | Self::Invalid { key, .. } | Self::Orphan { key, .. } => key,
        }
    }
}

/// An annotation key as a message shows it: as written when it holds only what Kubernetes
/// allows in a key (letters, digits, `-`, `_`, `.`, `/`), else quoted with every control
/// character escaped, so a key cannot end a log line or forge one.
pub fn shown_key(key: &str) -> std::borrow::Cow<'_, str> {
    let plain = !key.is_empty()
        && key.len() <= MAX_QUOTED
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b));
    if plain { key.into() } else { quote(key).into() }
}

/// `text` with every control character (and the Unicode line and paragraph separators)
/// escaped: the last guard before a message reaches a log line or the API client.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}');
    if !text.contains(unsafe_char) {
        return text.into();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out.into()
}

fn quote(value: &str) -> String {
    if value.chars().count() > MAX_QUOTED {
        let short: String = value.chars().take(MAX_QUOTED).collect();
        format!("{short:?}...")
    } else {
        format!("{value:?}")
    }
}

/// Agent mode requested by `vaultlet.io/mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Agent keeps running beside the app.
    Sidecar,
    /// Render once before the app starts.
    InitOnly,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sidecar" => Ok(Self::Sidecar),
            "init-only" => Ok(Self::InitOnly),
            _ => Err("expected sidecar or init-only".into()),
        }
    }
}

/// Login method a pod may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// Kubernetes auth with a projected service-account token.
    Kubernetes,
    /// AppRole auth with role-id/secret-id from a Secret.
    Approle,
    /// JWT auth with a projected service-account token, verified by Vault (OIDC discovery).
    Jwt,
    /// TLS certificate auth with the client certificate of `tls-client-secret`.
    Cert,
}

impl AuthMethod {
    /// The annotation value (and `--auth-method` value).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Kubernetes => "kubernetes",
            Self::Approle => "approle",
            Self::Jwt => "jwt",
            Self::Cert => "cert",
        }
    }

    /// Whether the agent logs in with the Pod's projected service-account token.
    pub fn uses_sa_token(self) -> bool {
        matches!(self, Self::Kubernetes | Self::Jwt)
    }
}

impl std::str::FromStr for AuthMethod {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "kubernetes" => Ok(Self::Kubernetes),
            "approle" => Ok(Self::Approle),
            "jwt" => Ok(Self::Jwt),
            "cert" => Ok(Self::Cert),
            _ => Err("expected kubernetes, jwt, cert or approle".into()),
        }
    }
}

/// Where the agent goes among existing init containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitPosition {
    /// Before every existing init container.
    First,
    /// After every existing init container.
    Last,
}

impl std::str::FromStr for InitPosition {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "first" => Ok(Self::First),
            "last" => Ok(Self::Last),
            _ => Err("expected first or last".into()),
        }
    }
}

/// One secret as requested by the `*-<name>` annotations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecretRequest {
    /// Vault path.
    pub path: String,
    /// Write parameters (inline words and `params-<name>`).
    pub params: BTreeMap<String, String>,
    /// Handlebars template.
    pub template: Option<String>,
    /// Relative file; defaults to the name.
    pub file: Option<String>,
    /// File mode.
    pub mode: Option<u32>,
    /// Output format without a template.
    pub format: Option<OutputFormat>,
    /// Pinned KV v2 version.
    pub version: Option<u64>,
    /// Per-secret notifications.
    pub notify: Vec<NotifySpec>,
    /// `env-<name>`: loaded into the app containers' environment.
    pub env: bool,
}

/// Everything a Pod asked for through its annotations; `None` means "use the default".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodRequest {
    /// Opt-in via the annotation (the label is checked by the caller).
    pub inject: Option<bool>,
    /// Already injected (status annotation present).
    pub injected: bool,
    /// `mode`.
    pub mode: Option<Mode>,
    /// `native-sidecar`.
    pub native_sidecar: Option<bool>,
    /// `role`.
    pub role: Option<String>,
    /// `auth`.
    pub auth: Option<AuthMethod>,
    /// `auth-path`.
    pub auth_path: Option<String>,
    /// `approle-secret`.
    pub approle_secret: Option<String>,
    /// `approle-secret-id-wrapped`.
    pub approle_secret_id_wrapped: bool,
    /// `vault-addr` (checked against the allowlist by the mutation).
    pub vault_addr: Option<String>,
    /// `vault-namespace`.
    pub vault_namespace: Option<String>,
    /// `tls-server-name`.
    pub tls_server_name: Option<String>,
    /// `sa-token-audience`.
    pub sa_token_audience: Option<String>,
    /// `tls-ca-secret`.
    pub tls_ca_secret: Option<String>,
    /// `tls-ca-configmap`.
    pub tls_ca_configmap: Option<String>,
    /// `tls-client-secret`.
    pub tls_client_secret: Option<String>,
    /// `refresh-interval`.
    pub refresh_interval: Option<Duration>,
    /// `init-deadline`.
    pub init_deadline: Option<Duration>,
    /// `secrets-dir`.
    pub secrets_dir: Option<String>,
    /// `containers`.
    pub containers: Option<Vec<String>>,
    /// `init-position`.
    pub init_position: Option<InitPosition>,
    /// `cpu-request`.
    pub cpu_request: Option<String>,
    /// `cpu-limit`.
    pub cpu_limit: Option<String>,
    /// `memory-request`.
    pub memory_request: Option<String>,
    /// `memory-limit`.
    pub memory_limit: Option<String>,
    /// `secrets-volume-size`.
    pub secrets_volume_size: Option<String>,
    /// `revoke-on-shutdown`.
    pub revoke_on_shutdown: bool,
    /// `log-format`.
    pub log_format: Option<LogFormat>,
    /// `log-level`.
    pub log_level: Option<String>,
    /// `notify`.
    pub notify: Vec<NotifySpec>,
    /// `group`.
    pub group: Option<u32>,
    /// `metrics-port`.
    pub metrics_port: Option<u16>,
    /// `set-run-as-ids`.
    pub set_run_as_ids: Option<bool>,
    /// `on-env-change`.
    pub on_env_change: Option<OnChange>,
    /// `template-language`: the language of every `template-<name>`.
    pub template_language: TemplateLanguage,
    /// Secrets by name.
    pub secrets: BTreeMap<String, SecretRequest>,
}

impl PodRequest {
    /// Whether any secret is loaded into the app environment (`env-<name>: "true"`).
    pub fn env(&self) -> bool {
        self.secrets.values().any(|s| s.env)
    }

    /// Whether any notification (pod-wide or per secret) sends a signal.
    pub fn signals(&self) -> bool {
        let is_signal = |n: &NotifySpec| matches!(n, NotifySpec::Signal { .. });
        self.notify.iter().any(is_signal)
            || self
                .secrets
                .values()
                .any(|s| s.notify.iter().any(is_signal))
    }
}

/// Parses every `vaultlet.io/*` annotation; other annotations are ignored.
pub fn parse<'a, I>(annotations: I) -> Result<PodRequest, AnnotationError>
where
    I: IntoIterator<Item = (&'a String, &'a String)>,
{
    let mut req = PodRequest::default();
    let mut per_secret: Vec<(&str, &str, &str, &str)> = Vec::new();
    for (key, value) in annotations {
        let Some(rest) = key.strip_prefix(PREFIX) else {
            continue;
        };
        if KNOWN.iter().any(|k| k.scope == Scope::Pod && k.key == rest) {
            parse_pod_level(&mut req, key, rest, value)?;
            continue;
        }
        let (stem, name) = split_secret_key(rest).ok_or_else(|| AnnotationError::unknown(key))?;
        validate_name(name).map_err(|r| {
            AnnotationError::invalid(key, value, format!("secret name {name:?} {r}"))
        })?;
        per_secret.push((key, stem, name, value));
    }
    // Declarations first, so attributes can find their secret regardless of map order.
    for &(key, stem, name, value) in per_secret.iter().filter(|p| p.1 == "secret") {
        let _ = stem;
        req.secrets
            .insert(name.to_owned(), parse_secret_decl(key, value)?);
    }
    if req.template_language == TemplateLanguage::ConsulTemplate {
        consul::declare(&mut req, &per_secret)?;
    }
    for &(key, stem, name, value) in per_secret.iter().filter(|p| p.1 != "secret") {
        let secret = req
            .secrets
            .get_mut(name)
            .ok_or_else(|| AnnotationError::Orphan {
                key: key.to_owned(),
                name: name.to_owned(),
            })?;
        parse_secret_attr(secret, key, stem, value)?;
    }
    if req.template_language == TemplateLanguage::ConsulTemplate {
        consul::check_templates(&req)?;
    }
    check_files_unique(&req)?;
    check_one_ca(&req)?;
    env::check(&req)?;
    Ok(req)
}

fn split_secret_key(rest: &str) -> Option<(&'static str, &str)> {
    KNOWN
        .iter()
        .filter(|k| k.scope == Scope::Secret)
        .find_map(|k| {
            rest.strip_prefix(k.key)
                .and_then(|r| r.strip_prefix('-'))
                .map(|name| (k.key, name))
        })
}

fn parse_pod_level(
    req: &mut PodRequest,
    key: &str,
    short: &str,
    value: &str,
) -> Result<(), AnnotationError> {
    let bad = |reason: String| AnnotationError::invalid(key, value, reason);
    let v = value.trim();
    match short {
        "inject" => req.inject = Some(parse_bool(v).map_err(bad)?),
        "status" => req.injected = true,
        "mode" => req.mode = Some(v.parse().map_err(bad)?),
        "native-sidecar" => req.native_sidecar = Some(parse_bool(v).map_err(bad)?),
        "role" => req.role = Some(parse_word(v).map_err(bad)?),
        "auth" => req.auth = Some(v.parse().map_err(bad)?),
        "auth-path" => {
            validate_mount(v).map_err(bad)?;
            req.auth_path = Some(v.to_owned());
        }
        "approle-secret" => req.approle_secret = Some(parse_dns_subdomain(v).map_err(bad)?),
        "approle-secret-id-wrapped" => {
            req.approle_secret_id_wrapped = parse_bool(v).map_err(bad)?;
        }
        "vault-addr" => {
            validate_vault_address(v).map_err(bad)?;
            req.vault_addr = Some(v.to_owned());
        }
        "vault-namespace" => req.vault_namespace = Some(parse_word(v).map_err(bad)?),
        "tls-server-name" => req.tls_server_name = Some(parse_word(v).map_err(bad)?),
        "sa-token-audience" => req.sa_token_audience = Some(parse_audience(v).map_err(bad)?),
        "tls-ca-secret" => req.tls_ca_secret = Some(parse_dns_subdomain(v).map_err(bad)?),
        "tls-ca-configmap" => req.tls_ca_configmap = Some(parse_dns_subdomain(v).map_err(bad)?),
        "tls-client-secret" => {
            req.tls_client_secret = Some(parse_dns_subdomain(v).map_err(bad)?);
        }
        "refresh-interval" => {
            req.refresh_interval = Some(parse_bounded(v, 100, 24 * 3_600_000).map_err(bad)?);
        }
        "init-deadline" => {
            req.init_deadline = Some(parse_bounded(v, 1000, 3_600_000).map_err(bad)?);
        }
        "secrets-dir" => req.secrets_dir = Some(parse_abs_dir(v).map_err(bad)?),
        "containers" => req.containers = Some(parse_container_list(v).map_err(bad)?),
        "init-position" => req.init_position = Some(v.parse().map_err(bad)?),
        "cpu-request" => req.cpu_request = Some(parse_quantity(v).map_err(bad)?),
        "cpu-limit" => req.cpu_limit = Some(parse_quantity(v).map_err(bad)?),
        "memory-request" => req.memory_request = Some(parse_quantity(v).map_err(bad)?),
        "memory-limit" => req.memory_limit = Some(parse_quantity(v).map_err(bad)?),
        "secrets-volume-size" => req.secrets_volume_size = Some(parse_quantity(v).map_err(bad)?),
        "revoke-on-shutdown" => req.revoke_on_shutdown = parse_bool(v).map_err(bad)?,
        "log-format" => req.log_format = Some(v.parse().map_err(bad)?),
        "log-level" => req.log_level = Some(parse_log_level(v).map_err(bad)?),
        "notify" => req.notify = parse_notify_lines(v).map_err(bad)?,
        "group" => req.group = Some(parse_gid(v).map_err(bad)?),
        "metrics-port" => req.metrics_port = Some(parse_port(v).map_err(bad)?),
        "set-run-as-ids" => req.set_run_as_ids = Some(parse_bool(v).map_err(bad)?),
        "on-env-change" => req.on_env_change = Some(v.parse().map_err(bad)?),
        "template-language" => req.template_language = v.parse().map_err(bad)?,
        // Every pod-scoped key in KNOWN has an arm above; the table test enforces it.
        _ => return Err(AnnotationError::unknown(key)),
    }
    Ok(())
}

fn parse_secret_decl(key: &str, value: &str) -> Result<SecretRequest, AnnotationError> {
    let bad = |reason: String| AnnotationError::invalid(key, value, reason);
    let mut words = value.split_whitespace();
    let path = words
        .next()
        .ok_or_else(|| bad("expected a Vault path like secret/data/app".into()))?;
    validate_vault_path(path).map_err(bad)?;
    let mut params = BTreeMap::new();
    for word in words {
        add_param(&mut params, word).map_err(bad)?;
    }
    Ok(SecretRequest {
        path: path.to_owned(),
        params,
        ..SecretRequest::default()
    })
}

fn parse_secret_attr(
    secret: &mut SecretRequest,
    key: &str,
    stem: &str,
    value: &str,
) -> Result<(), AnnotationError> {
    let bad = |reason: String| AnnotationError::invalid(key, value, reason);
    let v = value.trim();
    match stem {
        "template" => {
            if v.is_empty() {
                return Err(bad("the template is empty".into()));
            }
            secret.template = Some(value.to_owned());
        }
        "file" => {
            validate_relative_file(v).map_err(bad)?;
            values::no_control(v).map_err(bad)?;
            secret.file = Some(v.to_owned());
        }
        "perms" => secret.mode = Some(parse_mode(v).map_err(bad)?),
        "format" => secret.format = Some(v.parse().map_err(bad)?),
        "params" => {
            for line in v.lines().map(str::trim).filter(|l| !l.is_empty()) {
                add_param(&mut secret.params, line).map_err(bad)?;
            }
        }
        "version" => secret.version = Some(parse_version(v).map_err(bad)?),
        "notify" => secret.notify = parse_notify_lines(v).map_err(bad)?,
        "env" => secret.env = parse_bool(v).map_err(bad)?,
        _ => return Err(AnnotationError::unknown(key)),
    }
    Ok(())
}

fn check_files_unique(req: &PodRequest) -> Result<(), AnnotationError> {
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    for (name, s) in &req.secrets {
        let file = s.file.as_deref().unwrap_or(name);
        if let Some(other) = seen.insert(file, name) {
            let key = format!("{PREFIX}file-{name}");
            return Err(AnnotationError::invalid(
                &key,
                file,
                format!("secret {other:?} already writes this file; choose another file"),
            ));
        }
    }
    Ok(())
}

fn check_one_ca(req: &PodRequest) -> Result<(), AnnotationError> {
    if let (Some(_), Some(cm)) = (&req.tls_ca_secret, &req.tls_ca_configmap) {
        return Err(AnnotationError::invalid(
            &format!("{PREFIX}tls-ca-configmap"),
            cm,
            "vaultlet.io/tls-ca-secret names the CA already; keep one of the two",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
