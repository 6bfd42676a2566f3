//! The value syntaxes of annotations: booleans, words, durations within bounds, quantities,
//! container lists, notification lines, ids and ports. Each returns the reason a value is
//! unusable; the caller adds the annotation's name and value.

use std::collections::BTreeMap;
use std::time::Duration;

use vaultlet_agent::config::{NotifySpec, parse_duration, validate_name, validate_relative_file};

pub(super) fn add_param(params: &mut BTreeMap<String, String>, word: &str) -> Result<(), String> {
    let (k, v) = word
        .split_once('=')
        .ok_or_else(|| format!("parameter {word:?} is not key=value"))?;
    let k = k.trim();
    if k.is_empty()
        || !k
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
    {
        return Err(format!(
            "parameter name {k:?} must be letters, digits, '_', '-' or '.'"
        ));
    }
    if params.insert(k.to_owned(), v.trim().to_owned()).is_some() {
        return Err(format!("parameter {k:?} is given twice"));
    }
    Ok(())
}

/// Parses `true` / `false`.
pub fn parse_bool(v: &str) -> Result<bool, String> {
    match v {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err("expected true or false".into()),
    }
}

pub(super) fn parse_word(v: &str) -> Result<String, String> {
    if v.is_empty() || v.len() > 253 || v.contains(|c: char| c.is_whitespace() || c.is_control()) {
        return Err("expected a non-empty name without whitespace".into());
    }
    Ok(v.to_owned())
}

/// A token audience: what the API server puts in `aud` and Vault's role checks.
pub fn parse_audience(v: &str) -> Result<String, String> {
    if v.is_empty()
        || v.len() > 253
        || v.contains(|c: char| c.is_whitespace() || c.is_control() || c == ',')
    {
        return Err(
            "expected one audience (e.g. vault or https://vault.example.com), no spaces or commas"
                .into(),
        );
    }
    Ok(v.to_owned())
}

pub(super) fn parse_dns_subdomain(v: &str) -> Result<String, String> {
    let ok =
        !v.is_empty() && v.len() <= 253 && v.split('.').all(|label| validate_name(label).is_ok());
    if ok {
        Ok(v.to_owned())
    } else {
        Err("expected a Kubernetes object name (lowercase letters, digits, '-', '.')".into())
    }
}

pub(super) fn parse_bounded(v: &str, min_ms: u64, max_ms: u64) -> Result<Duration, String> {
    let d = parse_duration(v)?;
    let (min, max) = (Duration::from_millis(min_ms), Duration::from_millis(max_ms));
    if d < min || d > max {
        return Err(format!(
            "must be between {} and {}",
            vaultlet_agent::config::format_duration(min),
            vaultlet_agent::config::format_duration(max)
        ));
    }
    Ok(d)
}

pub(super) fn parse_abs_dir(v: &str) -> Result<String, String> {
    let rest = v
        .strip_prefix('/')
        .ok_or("must be an absolute path like /vault/secrets")?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    validate_relative_file(rest).map_err(|r| format!("path {r}"))?;
    no_control(rest)?;
    if v.contains(':') {
        return Err("must not contain ':'".into());
    }
    let dir = format!("/{rest}");
    if let Some((path, what, relation)) = AGENT_PATHS
        .iter()
        .find_map(|(path, what)| overlap(&dir, path).map(|r| (path, what, r)))
    {
        let all: Vec<&str> = AGENT_PATHS.iter().map(|(p, _)| *p).collect();
        return Err(format!(
            "{dir} {relation} {path}, {what}; the secrets directory must neither be, contain \
             nor lie inside an agent path ({}): choose another, e.g. {}",
            all.join(", "),
            vaultlet_agent::config::DEFAULT_SECRETS_DIR
        ));
    }
    Ok(dir)
}

/// The paths the agent container mounts or runs from, other than the secrets directory. The
/// secrets volume over one of them would let a secret file land there (e.g. in the agent's
/// state, beside its token hand-off), or shadow it.
const AGENT_PATHS: &[(&str, &str)] = &[
    (
        vaultlet_agent::config::DEFAULT_STATE_DIR,
        "where the agent keeps its state and token hand-off",
    ),
    (
        "/var/run/secrets",
        "where the service-account tokens are mounted",
    ),
    (
        crate::mutate::APPROLE_DIR,
        "where the AppRole credentials are mounted",
    ),
    (
        crate::mutate::CA_DIR,
        "where the injector's Vault CA is mounted",
    ),
    (
        vaultlet_agent::config::TLS_DIR,
        "where the Pod's Vault CA and client certificate are mounted",
    ),
    (
        vaultlet_agent::config::supervise::BIN_DIR,
        "where the agent copies itself for the env supervisor",
    ),
    (crate::mutate::AGENT_BINARY, "the agent binary"),
];

/// How directory `dir` relates to agent path `path`, compared by whole segments.
fn overlap(dir: &str, path: &str) -> Option<&'static str> {
    let inside = |a: &str, b: &str| a.strip_prefix(b).is_some_and(|r| r.starts_with('/'));
    if dir == path {
        Some("is")
    } else if inside(path, dir) {
        Some("contains")
    } else if inside(dir, path) {
        Some("lies inside")
    } else {
        None
    }
}

/// Paths end up in file names and messages: no control characters at all (the agent's own
/// check refuses only NUL, CR and LF).
pub(super) fn no_control(v: &str) -> Result<(), String> {
    if v.contains(char::is_control) {
        return Err("must not contain control characters".into());
    }
    Ok(())
}

pub(super) fn parse_container_list(v: &str) -> Result<Vec<String>, String> {
    // A Pod has at most this many containers (the review's bounds), so a longer list is wrong.
    let limit = crate::review::bounds::MAX_CONTAINERS;
    let mut names: Vec<String> = Vec::new();
    for (i, n) in v
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .enumerate()
    {
        if i == limit {
            return Err(format!(
                "names more than {limit} containers, more than a Pod vaultlet reviews can have"
            ));
        }
        if !names.iter().any(|known| known == n) {
            names.push(n.to_owned());
        }
    }
    if names.is_empty() {
        return Err("expected a comma-separated list of container names".into());
    }
    for n in &names {
        validate_name(n).map_err(|r| format!("container name {n:?} {r}"))?;
    }
    Ok(names)
}

/// Checks a Kubernetes resource quantity (`10m`, `16Mi`, `1.5`, `1e3`); negative values are refused.
pub fn parse_quantity(v: &str) -> Result<String, String> {
    const ERR: &str = "expected a Kubernetes quantity like 10m, 0.5, 16Mi or 1G";
    let number_len = v
        .bytes()
        .take_while(|b| b.is_ascii_digit() || *b == b'.')
        .count();
    let (number, suffix) = v.split_at(number_len);
    let digits = number.bytes().filter(u8::is_ascii_digit).count();
    if digits == 0 || number.matches('.').count() > 1 || v.starts_with('+') {
        return Err(ERR.into());
    }
    let suffix_ok = matches!(
        suffix,
        "" | "m" | "k" | "M" | "G" | "T" | "P" | "E" | "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei"
    ) || suffix
        .strip_prefix(['e', 'E'])
        .map(|exp| {
            let exp = exp.strip_prefix(['+', '-']).unwrap_or(exp);
            !exp.is_empty() && exp.len() <= 3 && exp.bytes().all(|b| b.is_ascii_digit())
        })
        .unwrap_or(false);
    if !suffix_ok || number_len > 30 {
        return Err(ERR.into());
    }
    Ok(v.to_owned())
}

/// Numeric value of a quantity accepted by [`parse_quantity`].
pub fn quantity_value(q: &str) -> Option<f64> {
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let n: f64 = number.parse().ok()?;
    let factor = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exp => 10f64.powi(exp.get(1..)?.parse::<i32>().ok()?),
    };
    Some(n * factor)
}

pub(super) fn parse_log_level(v: &str) -> Result<String, String> {
    let ok = !v.is_empty()
        && v.len() <= 200
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_=,:.-".contains(&b));
    if ok {
        Ok(v.to_owned())
    } else {
        Err("expected a log filter like info or vaultlet_agent=debug".into())
    }
}

pub(super) fn parse_notify_lines(v: &str) -> Result<Vec<NotifySpec>, String> {
    let specs = v
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| l.parse::<NotifySpec>().map_err(|e| format!("{l:?}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    if specs.is_empty() {
        return Err("expected at least one notification".into());
    }
    Ok(specs)
}

pub(super) fn parse_gid(v: &str) -> Result<u32, String> {
    v.parse::<u32>()
        .map_err(|_| "expected a numeric group id".to_owned())
}

pub(super) fn parse_port(v: &str) -> Result<u16, String> {
    match v.trim().parse::<u16>() {
        Ok(p) if p >= 1024 => Ok(p),
        _ => Err("expected a port number between 1024 and 65535".into()),
    }
}

pub(super) fn parse_version(v: &str) -> Result<u64, String> {
    match v.parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err("expected a KV v2 version number (1, 2, ...)".into()),
    }
}
