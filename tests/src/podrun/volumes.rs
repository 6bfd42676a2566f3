//! Pod volumes as directories: emptyDir, Secret, ConfigMap and projected (incl. service
//! account tokens minted by the test's TokenReview stand-in).

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::spec::fs_group;
use super::{
    ContainerSpec, PodError, SecretData, TokenMinter, TokenRequest, io_err, pod_namespace,
    service_account,
};

/// What volumes are filled from.
pub(super) struct Sources<'a, 'm> {
    /// The Pod (volumes, namespace, service account).
    pub pod: &'a Value,
    /// Kubernetes Secrets by name.
    pub secrets: &'a SecretData,
    /// ConfigMaps by name.
    pub config_maps: &'a SecretData,
    /// Service-account token minter.
    pub minter: Option<&'a TokenMinter<'m>>,
}

/// Creates `<root>/<volume>` for every volume of the Pod and fills it; returns name -> dir.
pub(super) fn materialise(
    src: &Sources<'_, '_>,
    root: &Path,
) -> Result<BTreeMap<String, PathBuf>, PodError> {
    let mut out = BTreeMap::new();
    let volumes = src.pod["spec"]["volumes"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    for v in volumes {
        let name = v["name"].as_str().unwrap_or_default().to_string();
        let dir = root.join(&name);
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        fill_volume(src, v, &dir).map_err(|reason| PodError::Volume {
            volume: name.clone(),
            reason,
        })?;
        out.insert(name, dir);
    }
    Ok(out)
}

fn fill_volume(src: &Sources<'_, '_>, v: &Value, dir: &Path) -> Result<(), String> {
    if v.get("emptyDir").is_some() {
        Ok(())
    } else if let Some(s) = v.get("secret") {
        let name = s["secretName"].as_str().unwrap_or_default();
        fill_keys(dir, "Secret", name, src.secrets, s)
    } else if let Some(c) = v.get("configMap") {
        let name = c["name"].as_str().unwrap_or_default();
        fill_keys(dir, "ConfigMap", name, src.config_maps, c)
    } else if let Some(p) = v.get("projected") {
        let sources = p["sources"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        sources.iter().try_for_each(|s| fill_projected(src, dir, s))
    } else {
        Err("only emptyDir, secret, configMap and projected volumes are supported".into())
    }
}

fn fill_projected(src: &Sources<'_, '_>, dir: &Path, source: &Value) -> Result<(), String> {
    if let Some(t) = source.get("serviceAccountToken") {
        let minter = src.minter.ok_or(
            "the Pod mounts a projected serviceAccountToken; give the harness a token_minter",
        )?;
        let req = TokenRequest {
            namespace: pod_namespace(src.pod),
            service_account: service_account(src.pod),
            audience: t["audience"].as_str().unwrap_or("kubernetes").to_string(),
            expiration_secs: t["expirationSeconds"].as_u64().unwrap_or(3600),
        };
        let path = t["path"].as_str().unwrap_or("token");
        write_file(&dir.join(path), &minter(&req), 0o600)
    } else if let Some(s) = source.get("secret") {
        let name = s["name"].as_str().unwrap_or_default();
        fill_keys(dir, "Secret", name, src.secrets, s)
    } else if let Some(c) = source.get("configMap") {
        let name = c["name"].as_str().unwrap_or_default();
        fill_keys(dir, "ConfigMap", name, src.config_maps, c)
    } else {
        // downwardAPI, clusterTrustBundle: nothing the agent reads.
        Ok(())
    }
}

/// Writes a Secret's or ConfigMap's keys (or just its `items`) as files.
fn fill_keys(
    dir: &Path,
    kind: &str,
    name: &str,
    store: &SecretData,
    source: &Value,
) -> Result<(), String> {
    let Some(data) = store.get(name) else {
        if source["optional"] == true {
            return Ok(());
        }
        return Err(format!(
            "the Pod mounts {kind} {name:?}, which the test did not provide"
        ));
    };
    let mode = source["defaultMode"]
        .as_u64()
        .and_then(|m| u32::try_from(m).ok())
        .unwrap_or(0o644);
    match source["items"].as_array() {
        Some(items) => {
            for item in items {
                let key = item["key"].as_str().unwrap_or_default();
                let value = data
                    .get(key)
                    .ok_or_else(|| format!("{kind} {name:?} has no key {key:?}"))?;
                let path = item["path"].as_str().unwrap_or(key);
                write_file(&dir.join(path), value, mode)?;
            }
        }
        None => {
            for (key, value) in data {
                write_file(&dir.join(key), value, mode)?;
            }
        }
    }
    Ok(())
}

fn write_file(path: &Path, content: &str, mode: u32) -> Result<(), String> {
    let fail = |p: &Path, e: std::io::Error| format!("{}: {e}", p.display());
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| fail(parent, e))?;
    }
    std::fs::write(path, content).map_err(|e| fail(path, e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|e| fail(path, e))
}

/// Gives volumes the owners and modes a kubelet would, so that containers running as their
/// `securityContext` users can use them: emptyDirs `0777`, everything group-owned by the
/// Pod's `fsGroup` (setgid dirs), service-account tokens owned by the user that mounts them.
/// Also lets those users reach the work dir.
pub(super) fn apply_ownership(
    pod: &Value,
    specs: &[ContainerSpec],
    volumes: &BTreeMap<String, PathBuf>,
    work_dir: &Path,
) -> Result<(), PodError> {
    open_up(work_dir)?;
    let fs_group = fs_group(pod);
    for v in pod["spec"]["volumes"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let name = v["name"].as_str().unwrap_or_default();
        let Some(dir) = volumes.get(name) else {
            continue;
        };
        let user = specs
            .iter()
            .filter(|c| c.mounts.iter().any(|(_, vol, _)| vol == name))
            .find_map(|c| c.identity.as_ref().map(|i| i.uid));
        let dir_mode = if v.get("emptyDir").is_some() {
            0o777
        } else {
            0o755
        };
        let setgid = if fs_group.is_some() { 0o2000 } else { 0 };
        chown_mode(dir, None, fs_group, Some(dir_mode | setgid))?;
        let has_token = v["projected"]["sources"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s.get("serviceAccountToken").is_some()));
        for file in files_under(dir) {
            let (owner, mode) = if has_token && file.file_name().is_some_and(|f| f == "token") {
                (user, Some(if fs_group.is_some() { 0o640 } else { 0o600 }))
            } else {
                (None, None)
            };
            chown_mode(&file, owner, fs_group, mode)?;
        }
    }
    Ok(())
}

/// `work_dir` and its `volumes`/`logs` become `0755`; ancestors inside the temp dir get `o+x`.
fn open_up(work_dir: &Path) -> Result<(), PodError> {
    for d in [
        work_dir.to_path_buf(),
        work_dir.join("volumes"),
        work_dir.join("logs"),
    ] {
        chown_mode(&d, None, None, Some(0o755))?;
    }
    let temp = std::env::temp_dir();
    for a in work_dir.ancestors().skip(1) {
        if !a.starts_with(&temp) || a == temp {
            break;
        }
        let mode = std::fs::metadata(a)
            .map_err(io_err(a))?
            .permissions()
            .mode();
        chown_mode(a, None, None, Some((mode & 0o7777) | 0o001))?;
    }
    Ok(())
}

fn chown_mode(
    path: &Path,
    uid: Option<u32>,
    gid: Option<u32>,
    mode: Option<u32>,
) -> Result<(), PodError> {
    if uid.is_some() || gid.is_some() {
        std::os::unix::fs::chown(path, uid, gid).map_err(io_err(path))?;
    }
    if let Some(mode) = mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(io_err(path))?;
    }
    Ok(())
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path.clone());
            }
            out.push(path);
        }
    }
    out
}
