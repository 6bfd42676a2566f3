//! What `secret`, `secrets` and `pkiCert` ask the caller for, and how Vault's answers become
//! consul-template's values; KV v2 path rewriting for callers.

use std::collections::BTreeMap;
use std::rc::Rc;

use crate::json;
use crate::value::{Pem, Secret, Val};

/// Which call a [`SecretRequest`] comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SecretKind {
    /// `secret "path"`: a GET (for KV v2 the caller inserts `data/`, see [`kv2_data_path`]).
    Read,
    /// `secret "path" "k=v"...`: a PUT/POST of `data` (e.g. `pki/issue/role`, `transit/...`).
    Write,
    /// `secrets "path"`: a LIST (for KV v2 the caller inserts `metadata/`, see [`kv2_list_path`]).
    List,
    /// `pkiCert "path" "k=v"...`: a write whose certificate, key and CA are returned.
    PkiCert,
}

/// One call of the template to Vault.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SecretRequest {
    /// The kind of call.
    pub kind: SecretKind,
    /// The path as written, trimmed of blanks and `/` (it may end in `?version=N`).
    pub path: String,
    /// The `k=v` arguments (keys and values trimmed), empty for reads and lists.
    pub data: BTreeMap<String, String>,
}

impl SecretRequest {
    /// Builds a request the way consul-template reads its arguments.
    pub fn new(kind: SecretKind, path: &str, args: &[&str]) -> Result<SecretRequest, String> {
        let path = path.trim().trim_matches('/').to_string();
        if path.is_empty() {
            return Err("invalid format: empty path".into());
        }
        let mut data = BTreeMap::new();
        for a in args {
            if a.is_empty() {
                continue;
            }
            let (k, v) = a
                .split_once('=')
                .ok_or_else(|| format!("not k=v pair {a:?}"))?;
            data.insert(k.trim().to_string(), v.trim().to_string());
        }
        Ok(SecretRequest { kind, path, data })
    }
}

/// The Vault path a KV v2 read uses, given the mount (`"secret/"`) from
/// `sys/internal/ui/mounts/<path>`: `data/` is inserted unless the path has `data/` or
/// `metadata/` after the mount already (as consul-template does).
pub fn kv2_data_path(path: &str, mount: &str) -> String {
    let mount_trim = mount.trim_end_matches('/');
    if path == mount || path == mount_trim {
        return format!("{mount_trim}/data");
    }
    let rest = path.strip_prefix(mount).unwrap_or(path);
    if rest.starts_with("data/") || rest.starts_with("metadata/") {
        return path.to_string();
    }
    format!("{mount_trim}/data/{}", rest.trim_start_matches('/'))
}

/// The Vault path a KV v2 list uses: `metadata/` inserted after the mount.
pub fn kv2_list_path(path: &str, mount: &str) -> String {
    let mount_trim = mount.trim_end_matches('/');
    if path.starts_with(&format!("{mount_trim}/metadata")) {
        return path.to_string();
    }
    let rest = path
        .strip_prefix(mount_trim)
        .unwrap_or(path)
        .trim_start_matches('/');
    format!("{mount_trim}/metadata/{rest}")
}

/// Turns Vault's JSON answer into the value the template sees.
pub fn decode(kind: SecretKind, body: &str) -> Result<Val, String> {
    let v = json::parse(body, true).map_err(|e| format!("Vault's answer is not JSON: {e}"))?;
    let Val::Map(top) = v else {
        return Err("no secret exists at this path".into());
    };
    let data = top.get("data").cloned().unwrap_or(Val::Nil);
    match kind {
        SecretKind::List => {
            let keys = match &data {
                Val::Map(d) => d.get("keys").cloned().unwrap_or(Val::Nil),
                _ => Val::Nil,
            };
            let mut out: Vec<String> = match keys {
                Val::List(l) => l
                    .iter()
                    .filter_map(|k| k.as_str().map(str::to_string))
                    .collect(),
                _ => Vec::new(),
            };
            out.sort();
            Ok(Val::Strs(Rc::new(out)))
        }
        SecretKind::PkiCert => Ok(Val::Pem(Rc::new(pem(&data)))),
        SecretKind::Read | SecretKind::Write => {
            let text = |k: &str| {
                top.get(k)
                    .and_then(Val::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            let lease_duration = match top.get("lease_duration") {
                Some(Val::Num(n)) => n.parse().unwrap_or(0),
                _ => 0,
            };
            let warnings = match top.get("warnings") {
                Some(Val::List(l)) => l
                    .iter()
                    .filter_map(|w| w.as_str().map(str::to_string))
                    .collect(),
                _ => Vec::new(),
            };
            let data = match data {
                Val::Map(_) => data,
                _ => Val::Map(Rc::new(BTreeMap::new())),
            };
            Ok(Val::Secret(Rc::new(Secret {
                request_id: text("request_id"),
                lease_id: text("lease_id"),
                lease_duration,
                renewable: matches!(top.get("renewable"), Some(Val::Bool(true))),
                data,
                warnings,
            })))
        }
    }
}

/// The PEMs of a PKI issue answer, each ending in a newline as Go's `pem.EncodeToMemory` writes.
fn pem(data: &Val) -> Pem {
    let field = |k: &str| match data {
        Val::Map(m) => m
            .get(k)
            .and_then(Val::as_str)
            .map(with_newline)
            .unwrap_or_default(),
        _ => String::new(),
    };
    Pem {
        cert: field("certificate"),
        key: field("private_key"),
        ca: field("issuing_ca"),
    }
}

fn with_newline(s: &str) -> String {
    let t = s.trim_end_matches('\n');
    format!("{t}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kv2_paths_like_consul_template() {
        assert_eq!(kv2_data_path("secret/app", "secret/"), "secret/data/app");
        assert_eq!(
            kv2_data_path("secret/data/app", "secret/"),
            "secret/data/app"
        );
        assert_eq!(kv2_data_path("secret", "secret/"), "secret/data");
        assert_eq!(
            kv2_list_path("secret/apps", "secret/"),
            "secret/metadata/apps"
        );
        assert_eq!(
            kv2_list_path("secret/metadata/apps", "secret/"),
            "secret/metadata/apps"
        );
    }

    #[test]
    fn requests_parse_kv_args() {
        let r = SecretRequest::new(
            SecretKind::Write,
            " /pki/issue/web/ ",
            &["common_name = a.b", "", "ttl=1h"],
        )
        .expect("ok");
        assert_eq!(r.path, "pki/issue/web");
        assert_eq!(r.data.get("common_name").map(String::as_str), Some("a.b"));
        assert!(SecretRequest::new(SecretKind::Write, "p", &["novalue"]).is_err());
    }

    #[test]
    fn decodes_a_read() {
        let v = decode(SecretKind::Read, r#"{"request_id":"r","lease_id":"","lease_duration":60,"renewable":false,"data":{"n":1.50},"warnings":null}"#).expect("ok");
        let Val::Secret(s) = v else { panic!("secret") };
        assert_eq!(s.lease_duration, 60);
        let Val::Map(d) = &s.data else { panic!("map") };
        assert_eq!(d.get("n"), Some(&Val::Num("1.50".into())));
    }
}
