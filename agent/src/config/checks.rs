//! Validation of names, paths and addresses, and the duration syntax (`30s`, `1h30m`) shared
//! by the config and the injector's annotations.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

/// Checks a DNS-label-like secret name: 1-63 of `a-z`, `0-9`, `-`, not starting or ending
/// with `-`.
pub fn validate_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err("must be 1-63 lowercase letters, digits or '-', not starting or ending with '-'".into())
    }
}

/// Checks a file path relative to the secrets dir: not absolute, no `..`, no empty segment.
pub fn validate_relative_file(file: &str) -> Result<(), String> {
    if file.is_empty() {
        return Err("must not be empty".into());
    }
    if file.starts_with('/') {
        return Err("must be relative to the secrets directory, not absolute".into());
    }
    for seg in file.split('/') {
        if seg.is_empty() || seg == "." || seg == ".." {
            return Err(
                "must stay inside the secrets directory (no '..', '.', or empty segments)".into(),
            );
        }
        if seg.starts_with("..") {
            // `..data`-style names collide with Kubernetes' atomic-writer layout.
            return Err("segments must not start with '..'".into());
        }
    }
    if file.contains(['\0', '\n', '\r']) {
        return Err("must not contain control characters".into());
    }
    Ok(())
}

/// Checks a Vault API path: relative, no `..`, no query, no whitespace.
pub fn validate_vault_path(path: &str) -> Result<(), String> {
    if path.is_empty() || path.starts_with('/') {
        return Err("must be a Vault path like secret/data/app (no leading '/')".into());
    }
    if path.starts_with("v1/") {
        return Err("leave out the v1/ prefix".into());
    }
    if path
        .split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return Err("must not contain empty, '.' or '..' segments".into());
    }
    if path.contains(['%', '\\']) {
        // Vault decodes percent-escapes (and some proxies backslashes) after this check, so
        // `a%2F..%2Fb` would be another path than the one admission saw.
        return Err(
            "must not contain '%' or '\\': Vault would decode them into other paths; write the path plainly, as in secret/data/app"
                .into(),
        );
    }
    if path.contains(|c: char| c.is_whitespace() || c == '?' || c == '#' || c.is_control()) {
        return Err("must not contain whitespace, '?' or '#'".into());
    }
    Ok(())
}

/// Checks an auth mount path like `kubernetes` or `k8s/cluster-a`.
pub fn validate_mount(mount: &str) -> Result<(), String> {
    validate_vault_path(mount).map_err(|r| format!("auth mount path {r}"))
}

/// Checks a Vault address: `http(s)://host[:port]`, nothing after the authority but `/`.
pub fn validate_vault_address(addr: &str) -> Result<(), String> {
    let rest = addr
        .strip_prefix("https://")
        .or_else(|| addr.strip_prefix("http://"))
        .ok_or("must start with https:// or http://")?;
    let authority = rest.trim_end_matches('/');
    if authority.is_empty()
        || authority.contains(['/', '?', '#', '@'])
        || authority.contains(char::is_whitespace)
    {
        return Err("must be scheme://host[:port] with no path, user or query".into());
    }
    Ok(())
}

/// Parses a duration such as `500ms`, `30s`, `5m`, `1h`, or a sum like `1h30m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration; use e.g. 30s, 5m, 1h".into());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!("{s:?} is not a duration; use e.g. 30s, 5m, 1h"));
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("{s:?}: number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(|b| b.is_ascii_alphabetic()).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let part = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            "" => return Err(format!("{s:?} needs a unit (ms, s, m, h)")),
            _ => {
                return Err(format!(
                    "{s:?} has unknown unit {unit:?}; use ms, s, m or h"
                ));
            }
        };
        total = total
            .checked_add(part)
            .ok_or_else(|| format!("{s:?} is too long"))?;
    }
    Ok(total)
}

/// Formats a duration in the shortest form [`parse_duration`] reads back exactly.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(3_600_000) && ms > 0 {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) && ms > 0 {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// A [`Duration`] wrapper that displays and parses as `30s` / `5m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_duration(self.0))
    }
}

impl FromStr for HumanDuration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_duration(s).map(Self)
    }
}

/// Serde adapter: durations as `30s`-style strings.
pub mod duration_str {
    use super::*;

    /// Serialises a duration as a string like `30s`.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(*d))
    }

    /// Deserialises a duration from a string like `30s`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s).map_err(serde::de::Error::custom)
    }
}
