//! What each pod-wide vault-k8s annotation becomes, and the small parsers the mapping uses.

use vaultlet_agent::config::SIGNALS;

use crate::annotations::{parse_quantity, printable};

/// Converts a value: `Ok(Some(v))` the vaultlet value, `Ok(None)` nothing to write (the
/// default), `Err(todo)` refused with what to do.
pub type Conv = fn(&str) -> Result<Option<String>, String>;

/// What a pod-wide vault-k8s annotation becomes.
pub enum Rule {
    /// A vaultlet annotation (key after `vaultlet.io/`).
    To(&'static str, Conv),
    /// Nothing: it has no effect with vaultlet, for the reason given.
    Drop(&'static str),
    /// Refused unless the value is harmless (`false`, empty); the construct and what to do.
    RefuseUnless(fn(&str) -> bool, &'static str, &'static str),
}

/// Go's `strconv.ParseBool`, which vault-k8s uses.
pub fn parse_go_bool(v: &str) -> Option<bool> {
    match v.trim() {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

fn off(v: &str) -> bool {
    v.is_empty() || parse_go_bool(v) == Some(false)
}

fn empty(v: &str) -> bool {
    v.is_empty()
}

fn same(v: &str) -> Result<Option<String>, String> {
    Ok(Some(v.to_owned()))
}

fn quantity(v: &str) -> Result<Option<String>, String> {
    if v.is_empty() {
        return Ok(None);
    }
    parse_quantity(v).map(Some)
}

fn boolean(v: &str) -> Result<Option<String>, String> {
    parse_go_bool(v)
        .map(|b| Some(b.to_string()))
        .ok_or_else(|| "expected true or false".into())
}

fn auth_type(v: &str) -> Result<Option<String>, String> {
    match v {
        "kubernetes" => Ok(Some("kubernetes".into())),
        "jwt" => Err("vault-k8s's jwt auth reads a token file named by auth-config-path; with vaultlet use vaultlet.io/auth: jwt (the Pod's projected token) after checking the role's bound_audiences".into()),
        "approle" => Err("vault-k8s's approle auth reads role-id/secret-id files from auth-config-*; with vaultlet put them in a Secret (keys role-id, secret-id) and set vaultlet.io/auth: approle and vaultlet.io/approle-secret".into()),
        "cert" => Err("set vaultlet.io/auth: cert and vaultlet.io/tls-client-secret to a kubernetes.io/tls Secret".into()),
        _ => Err("vaultlet logs in with kubernetes, jwt, cert or approle auth only".into()),
    }
}

fn auth_path(v: &str) -> Result<Option<String>, String> {
    let p = v.trim_matches('/');
    Ok(Some(p.strip_prefix("auth/").unwrap_or(p).to_owned()))
}

fn log_level(v: &str) -> Result<Option<String>, String> {
    match v.to_ascii_lowercase().as_str() {
        l @ ("trace" | "debug" | "info" | "warn" | "error") => Ok(Some(l.to_owned())),
        "warning" => Ok(Some("warn".into())),
        "err" => Ok(Some("error".into())),
        _ => Err("use trace, debug, info, warn or error".into()),
    }
}

fn log_format(v: &str) -> Result<Option<String>, String> {
    match v {
        "standard" | "" => Ok(Some("text".into())),
        "json" => Ok(Some("json".into())),
        _ => Err("use standard or json".into()),
    }
}

fn set_security_context(v: &str) -> Result<Option<String>, String> {
    match parse_go_bool(v) {
        Some(true) => Ok(None),
        Some(false) => Ok(Some("false".into())),
        None => Err("expected true or false".into()),
    }
}

fn containers(v: &str) -> Result<Option<String>, String> {
    let names: Vec<&str> = v
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    Ok((!names.is_empty()).then(|| names.join(",")))
}

const NO_CACHE: &str = "the agent cache (a Vault proxy for the app on localhost)";
const FILES: &str = "files or config the agent container reads";

/// The rule of a pod-wide key (after the prefix); per-secret keys are handled by the mapping.
pub fn rule(rest: &str) -> Option<Rule> {
    use Rule::{Drop, RefuseUnless, To};
    let r = match rest {
        "role" => To("role", same),
        "namespace" => To("vault-namespace", same),
        "service" => To("vault-addr", same),
        "auth-type" => To("auth", auth_type),
        "auth-path" => To("auth-path", auth_path),
        "tls-server-name" => To("tls-server-name", same),
        "agent-inject-containers" => To("containers", containers),
        "agent-limits-cpu" => To("cpu-limit", quantity),
        "agent-limits-mem" => To("memory-limit", quantity),
        "agent-requests-cpu" => To("cpu-request", quantity),
        "agent-requests-mem" => To("memory-request", quantity),
        "agent-revoke-on-shutdown" => To("revoke-on-shutdown", boolean),
        "log-level" => To("log-level", log_level),
        "log-format" => To("log-format", log_format),
        "template-static-secret-render-interval" => To("refresh-interval", same),
        "agent-set-security-context" => To("set-run-as-ids", set_security_context),
        "agent-image" => Drop("vaultlet runs its own agent image (chart value agent.image)"),
        "agent-request-namespace" => Drop("written by vault-k8s itself"),
        "agent-revoke-grace" => {
            Drop("vaultlet revokes within the Pod's terminationGracePeriodSeconds")
        }
        "client-max-retries" | "client-timeout" | "auth-min-backoff" | "auth-max-backoff" => {
            Drop("vaultlet retries Vault with its own backoff and keeps the last good files")
        }
        "go-max-procs" => Drop("Go runtime setting of Vault Agent"),
        "template-config-exit-on-retry-failure" | "agent-auto-auth-exit-on-err" => Drop(
            "vaultlet never exits on a failed refresh: it keeps the last good files and retries",
        ),
        "template-max-connections-per-host"
        | "agent-disable-idle-connections"
        | "agent-disable-keep-alives" => Drop("HTTP connection tuning of Vault Agent"),
        "agent-enable-quit" => {
            Drop("vaultlet's agent stops by itself when a Job's app containers finish")
        }
        "agent-cache-use-auto-auth-token"
        | "agent-cache-listener-port"
        | "agent-cache-exit-on-err" => Drop("only used with agent-cache-enable"),
        "agent-cache-enable" => RefuseUnless(
            off,
            NO_CACHE,
            "vaultlet has no Vault proxy: have the app read rendered files instead, then remove the annotation",
        ),
        "agent-inject-token" => RefuseUnless(
            off,
            "the agent's token written into the app's volume",
            "vaultlet keeps its token out of the app's volume: give the app its own Vault login, or render what it needs with a template",
        ),
        "agent-configmap" => RefuseUnless(
            empty,
            "a Vault Agent configuration from a ConfigMap",
            "move each template into agent-inject-template-<name> annotations and auth settings into annotations, then convert again",
        ),
        "agent-extra-secret" => RefuseUnless(
            empty,
            FILES,
            "vaultlet mounts only the Secrets its annotations name (tls-ca-secret, tls-client-secret, approle-secret)",
        ),
        "agent-copy-volume-mounts" => RefuseUnless(
            empty,
            FILES,
            "templates cannot read files with vaultlet; put the data in Vault",
        ),
        "agent-json-patch" | "agent-init-json-patch" => RefuseUnless(
            empty,
            "a JSON patch of the agent container",
            "use the vaultlet.io resource and mode annotations; the agent container is the injector's",
        ),
        "agent-limits-ephemeral" | "agent-requests-ephemeral" => RefuseUnless(
            empty,
            "ephemeral storage of the agent",
            "remove it: vaultlet's agent writes only the memory-backed secrets volume",
        ),
        "agent-run-as-user" | "agent-run-as-group" => RefuseUnless(
            empty,
            "a user or group for the agent alone",
            "vaultlet runs the agent as the Pod's runAsUser/runAsGroup (else 65532): set them in the Pod's securityContext, then remove the annotation",
        ),
        "agent-run-as-same-user" => RefuseUnless(
            off,
            "the agent as the first container's user",
            "set runAsUser in the Pod's securityContext (vaultlet runs the agent as the Pod's user), then remove the annotation",
        ),
        "agent-service-account-token-volume-name" => RefuseUnless(
            empty,
            "a service-account token volume of the Pod",
            "remove it: vaultlet projects its own token for the agent (audience vaultlet.io/sa-token-audience)",
        ),
        "proxy-address" => RefuseUnless(
            empty,
            "an HTTP proxy to Vault",
            "vaultlet talks to Vault directly; remove it",
        ),
        "tls-skip-verify" => RefuseUnless(
            off,
            "TLS without verification",
            "give Vault's CA (vaultlet.io/tls-ca-secret) instead",
        ),
        "ca-key" => RefuseUnless(
            empty,
            "a CA directory of the agent container",
            "put the CA in a Secret and use vaultlet.io/tls-ca-secret",
        ),
        "agent-metrics-listener-port" => RefuseUnless(
            empty,
            "Vault Agent's telemetry listener",
            "use vaultlet.io/metrics-port (vaultlet's own metric names) and update the scrape config",
        ),
        _ if rest.starts_with("auth-config-") => RefuseUnless(
            empty,
            "auth method parameters",
            "vaultlet's kubernetes and jwt auth need only vaultlet.io/role (and auth-path); remove it, or for approle use vaultlet.io/approle-secret",
        ),
        _ if rest.starts_with("agent-telemetry-") => RefuseUnless(
            empty,
            "Vault Agent telemetry",
            "use vaultlet.io/metrics-port and scrape /metrics",
        ),
        _ => return None,
    };
    Some(r)
}

/// A vaultlet secret name for a vault-k8s one: lowercase letters, digits and `-`.
pub fn vaultlet_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() { c } else { '-' }
        })
        .collect();
    out = out.trim_matches('-').to_owned();
    out.truncate(63);
    let out = out.trim_end_matches('-').to_owned();
    if out.is_empty() { "secret".into() } else { out }
}

/// Go's `path.Clean` of an absolute path (no `..` above the root).
pub fn clean(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

/// `agent-inject-file-<name>` as vault-k8s joins it to the mount path, relative to it;
/// `None` when `..` leaves the volume.
pub fn relative_file(f: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for c in f.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// `kill -HUP $(pidof nginx)`, `pkill -HUP nginx`, `killall -s HUP nginx` ->
/// `signal:SIGHUP:nginx`; anything else is `None`.
pub fn signal_command(c: &str) -> Option<String> {
    let words: Vec<&str> = c.split_whitespace().collect();
    let (signal, process) = match words.as_slice() {
        ["kill", sig, pidof] => (dash_signal(sig)?, pidof_process(pidof, None)?),
        ["kill", "-s", sig, pidof] => (signal_name(sig)?, pidof_process(pidof, None)?),
        ["kill", sig, pidof, p] => (dash_signal(sig)?, pidof_process(pidof, Some(p))?),
        ["kill", "-s", sig, pidof, p] => (signal_name(sig)?, pidof_process(pidof, Some(p))?),
        ["pkill" | "killall", sig, p] => (dash_signal(sig)?, plain(p)?),
        ["pkill" | "killall", "-s", sig, p] => (signal_name(sig)?, plain(p)?),
        _ => return None,
    };
    Some(format!("signal:{signal}:{process}"))
}

fn dash_signal(s: &str) -> Option<String> {
    signal_name(s.strip_prefix('-')?)
}

fn signal_name(s: &str) -> Option<String> {
    let upper = s.to_ascii_uppercase();
    let name = match upper.as_str() {
        "1" => "SIGHUP".to_owned(),
        "2" => "SIGINT".to_owned(),
        "3" => "SIGQUIT".to_owned(),
        "10" => "SIGUSR1".to_owned(),
        "12" => "SIGUSR2".to_owned(),
        "15" => "SIGTERM".to_owned(),
        u if u.starts_with("SIG") => u.to_owned(),
        u => format!("SIG{u}"),
    };
    SIGNALS.contains(&name.as_str()).then_some(name)
}

/// `$(pidof nginx)` as one word, or `$(pidof` + `nginx)` as two.
fn pidof_process(first: &str, second: Option<&&str>) -> Option<String> {
    let inner = match second {
        None => first.strip_prefix("$(pidof")?.strip_suffix(')')?.to_owned(),
        Some(p) if first == "$(pidof" => p.strip_suffix(')')?.to_owned(),
        Some(_) => return None,
    };
    plain(&inner)
}

fn plain(p: &str) -> Option<String> {
    let ok = !p.is_empty()
        && p.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    ok.then(|| p.to_owned())
}

/// A value quoted for a message.
pub fn quoted(v: &str) -> String {
    let short: String = v.chars().take(120).collect();
    let dots = if short.len() < v.len() { "..." } else { "" };
    format!("{:?}{dots}", printable(&short))
}
