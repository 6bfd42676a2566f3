//! The pure part of the harness: reading a Pod spec, mapping container paths to host paths,
//! and rewriting the agent's config to those host paths.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use serde_json::Value;
use vaultlet_agent::config::{AgentConfig, AuthConfig, NotifySpec};

use super::PodError;

/// Where a container sits in the kubelet's start order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// An init container that runs to completion before the next one starts.
    Init,
    /// An init container with `restartPolicy: Always`: a native sidecar.
    NativeSidecar,
    /// A regular container (app or classic sidecar).
    Regular,
}

/// One container of the Pod, as the harness needs it.
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    /// Container name.
    pub name: String,
    /// Image reference.
    pub image: String,
    /// Start order role.
    pub role: Role,
    /// `command` followed by `args`.
    pub argv: Vec<String>,
    /// The container's `env` entries.
    pub env: Vec<Value>,
    /// `(mountPath, volume name, subPath)` per volumeMount.
    pub mounts: Vec<(String, String, Option<String>)>,
    /// The exec command of the startupProbe, if any, with its period and failure threshold.
    pub startup_probe: Option<Probe>,
    /// The exec command of the `postStart` hook, if any.
    pub post_start: Option<Vec<String>>,
    /// The user the container runs as, from the Pod's and its own `securityContext`; `None`
    /// is the image's default (root here).
    pub identity: Option<Identity>,
}

/// Who a container's processes run as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `runAsUser`.
    pub uid: u32,
    /// `runAsGroup` (0 when unset, like a container runtime).
    pub gid: u32,
    /// Supplementary groups: the Pod's `fsGroup` and `supplementalGroups`.
    pub groups: Vec<u32>,
}

/// The identity of container `c` of `pod`: the container's `runAsUser`/`runAsGroup` over the
/// Pod's, plus the Pod's `fsGroup` and `supplementalGroups`.
pub fn identity(pod: &Value, c: &Value) -> Option<Identity> {
    let (pod_sc, sc) = (&pod["spec"]["securityContext"], &c["securityContext"]);
    let pick = |key: &str| {
        sc[key]
            .as_u64()
            .or_else(|| pod_sc[key].as_u64())
            .and_then(|v| u32::try_from(v).ok())
    };
    let uid = pick("runAsUser")?;
    let mut groups: Vec<u32> = pod_sc["supplementalGroups"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|g| g.as_u64().and_then(|g| u32::try_from(g).ok()))
        .collect();
    groups.extend(fs_group(pod));
    Some(Identity {
        uid,
        gid: pick("runAsGroup").unwrap_or(0),
        groups,
    })
}

/// The Pod's `fsGroup`.
pub fn fs_group(pod: &Value) -> Option<u32> {
    pod["spec"]["securityContext"]["fsGroup"]
        .as_u64()
        .and_then(|g| u32::try_from(g).ok())
}

/// An exec startupProbe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// The command to exec in the container.
    pub command: Vec<String>,
    /// `periodSeconds` (default 10).
    pub period_secs: u64,
    /// `failureThreshold` (default 3).
    pub failure_threshold: u64,
    /// `initialDelaySeconds` (default 0).
    pub initial_delay_secs: u64,
}

impl ContainerSpec {
    /// True for the vaultlet agent (run as the real binary), false for an app (stand-in).
    pub fn is_agent(&self) -> bool {
        self.image.contains("vaultlet/agent") || self.name.starts_with("vaultlet-agent")
    }
}

/// Reads the containers of a Pod in kubelet order: init containers, then regular ones.
pub fn containers(pod: &Value) -> Result<Vec<ContainerSpec>, PodError> {
    let spec = &pod["spec"];
    let mut out = Vec::new();
    for c in list(&spec["initContainers"]) {
        let role = if c["restartPolicy"] == "Always" {
            Role::NativeSidecar
        } else {
            Role::Init
        };
        out.push(container(pod, c, role)?);
    }
    for c in list(&spec["containers"]) {
        out.push(container(pod, c, Role::Regular)?);
    }
    if !out.iter().any(|c| c.role == Role::Regular) {
        return Err(PodError::Spec("the Pod has no containers".into()));
    }
    Ok(out)
}

fn list(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or_default()
}

fn strings(v: &Value) -> Vec<String> {
    list(v)
        .iter()
        .map(|s| s.as_str().unwrap_or_default().to_string())
        .collect()
}

fn container(pod: &Value, c: &Value, role: Role) -> Result<ContainerSpec, PodError> {
    let name = c["name"]
        .as_str()
        .ok_or_else(|| PodError::Spec("a container has no name".into()))?
        .to_string();
    let mut argv = strings(&c["command"]);
    argv.extend(strings(&c["args"]));
    let mounts = list(&c["volumeMounts"])
        .iter()
        .map(|m| {
            (
                m["mountPath"].as_str().unwrap_or_default().to_string(),
                m["name"].as_str().unwrap_or_default().to_string(),
                m["subPath"]
                    .as_str()
                    .filter(|s| !s.is_empty())
                    .map(String::from),
            )
        })
        .collect();
    let startup_probe = c.get("startupProbe").and_then(|p| {
        let command = strings(&p["exec"]["command"]);
        let num = |k: &str, d: u64| p[k].as_u64().unwrap_or(d);
        (!command.is_empty()).then(|| Probe {
            command,
            period_secs: num("periodSeconds", 10),
            failure_threshold: num("failureThreshold", 3),
            initial_delay_secs: num("initialDelaySeconds", 0),
        })
    });
    let post_start = Some(strings(&c["lifecycle"]["postStart"]["exec"]["command"]))
        .filter(|command| !command.is_empty());
    Ok(ContainerSpec {
        image: c["image"].as_str().unwrap_or_default().to_string(),
        role,
        argv,
        env: list(&c["env"]).to_vec(),
        mounts,
        startup_probe,
        post_start,
        identity: identity(pod, c),
        name,
    })
}

/// How a container's paths map to host paths: longest mountPath prefix wins.
#[derive(Debug, Clone, Default)]
pub struct MountMap {
    container: String,
    mounts: Vec<(PathBuf, PathBuf)>,
}

impl MountMap {
    /// Builds the map of `container` from its mounts and the host dirs of the Pod's volumes.
    pub fn new(
        container: &ContainerSpec,
        volumes: &BTreeMap<String, PathBuf>,
    ) -> Result<MountMap, PodError> {
        let mut mounts = Vec::new();
        for (mount_path, volume, sub_path) in &container.mounts {
            let host = volumes.get(volume).ok_or_else(|| {
                PodError::Spec(format!(
                    "container {} mounts volume {volume:?}, which the Pod does not declare",
                    container.name
                ))
            })?;
            let host = match sub_path {
                Some(sub) => host.join(sub),
                None => host.clone(),
            };
            mounts.push((PathBuf::from(mount_path), host));
        }
        Ok(MountMap {
            container: container.name.clone(),
            mounts,
        })
    }

    /// The host path of `path` as the container sees it.
    pub fn map(&self, path: &Path) -> Result<PathBuf, PodError> {
        let unmapped = || PodError::Unmapped {
            container: self.container.clone(),
            path: path.display().to_string(),
        };
        if !path.is_absolute() || path.components().any(|c| c == Component::ParentDir) {
            return Err(unmapped());
        }
        self.mounts
            .iter()
            .filter_map(|(mount, host)| {
                path.strip_prefix(mount)
                    .ok()
                    .map(|rest| (mount, host, rest))
            })
            .max_by_key(|(mount, _, _)| mount.components().count())
            .map(|(_, host, rest)| {
                if rest.as_os_str().is_empty() {
                    host.clone()
                } else {
                    host.join(rest)
                }
            })
            .ok_or_else(unmapped)
    }

    /// `(mountPath, host dir)` pairs.
    pub fn mounts(&self) -> &[(PathBuf, PathBuf)] {
        &self.mounts
    }
}

/// Rewrites every path of the agent config in `json` to the host through `map`, and the
/// Vault address when `vault_addr` is given. Returns the new JSON.
pub fn rewrite_agent_config(
    container: &str,
    json: &str,
    map: &MountMap,
    vault_addr: Option<&str>,
    ports: &BTreeMap<u16, u16>,
) -> Result<String, PodError> {
    let bad = |reason: String| PodError::AgentConfig {
        container: container.into(),
        reason,
    };
    let mut cfg: AgentConfig = serde_json::from_str(json).map_err(|e| bad(e.to_string()))?;
    let m = |p: &mut PathBuf| -> Result<(), PodError> {
        *p = map.map(p)?;
        Ok(())
    };
    m(&mut cfg.paths.secrets_dir)?;
    m(&mut cfg.paths.state_dir)?;
    if let Some(p) = cfg.paths.token_sink.as_mut() {
        m(p)?;
    }
    match &mut cfg.auth {
        AuthConfig::Kubernetes { token_path, .. } | AuthConfig::Jwt { token_path, .. } => {
            m(token_path)?;
        }
        AuthConfig::Cert { .. } => {}
        AuthConfig::Approle {
            role_id_file,
            secret_id_file,
            ..
        } => {
            m(role_id_file)?;
            m(secret_id_file)?;
        }
        AuthConfig::Token { token_file } => m(token_file)?,
    }
    for p in [
        &mut cfg.vault.ca_cert,
        &mut cfg.vault.client_cert,
        &mut cfg.vault.client_key,
    ]
    .into_iter()
    .flatten()
    {
        m(p)?;
    }
    if let Some(addr) = vault_addr {
        cfg.vault.address = addr.to_string();
    }
    let notifies = cfg
        .notify
        .iter_mut()
        .chain(cfg.secrets.iter_mut().flat_map(|s| s.notify.iter_mut()));
    for n in notifies {
        if let NotifySpec::Http { url, .. } = n {
            *url = remap_loopback_port(url, ports);
        }
    }
    Ok(cfg.to_json())
}

/// `http://127.0.0.1:P/x` (or `localhost`) with `P` in `ports` -> `http://127.0.0.1:<ports[P]>/x`.
///
/// The Pod's loopback is its own in Kubernetes; here it is the host's, so the test gives each
/// port the app listens on a free host port.
pub fn remap_loopback_port(url: &str, ports: &BTreeMap<u16, u16>) -> String {
    let Some(rest) = url.strip_prefix("http://") else {
        return url.to_string();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let Some((host, port)) = authority.rsplit_once(':') else {
        return url.to_string();
    };
    match (host, port.parse::<u16>().ok().and_then(|p| ports.get(&p))) {
        ("127.0.0.1" | "localhost", Some(mapped)) => format!("http://127.0.0.1:{mapped}{path}"),
        _ => url.to_string(),
    }
}

/// Resolves a container's `env` to `(name, value)` pairs. `value`, `fieldRef` (name, namespace,
/// serviceAccountName) and `secretKeyRef` (from the test's Secrets) are supported.
pub fn resolve_env(
    container: &str,
    pod: &Value,
    env: &[Value],
    secrets: &BTreeMap<String, BTreeMap<String, String>>,
) -> Result<Vec<(String, String)>, PodError> {
    let mut out = Vec::new();
    for e in env {
        let name = e["name"].as_str().unwrap_or_default().to_string();
        let unsupported = || {
            PodError::Spec(format!(
                "container {container}: env {name} uses an unsupported valueFrom"
            ))
        };
        let value = if let Some(v) = e.get("value") {
            v.as_str().unwrap_or_default().to_string()
        } else if let Some(field) = e["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
            match field {
                "metadata.name" => pod_name(pod),
                "metadata.namespace" => pod_namespace(pod),
                "spec.serviceAccountName" => service_account(pod),
                _ => return Err(unsupported()),
            }
        } else if let Some(r) = e["valueFrom"].get("secretKeyRef") {
            let (sname, key) = (
                r["name"].as_str().unwrap_or_default(),
                r["key"].as_str().unwrap_or_default(),
            );
            match secrets.get(sname).and_then(|s| s.get(key)) {
                Some(v) => v.clone(),
                None if r["optional"] == true => continue,
                None => {
                    return Err(PodError::Spec(format!(
                        "container {container}: env {name} refers to Secret {sname} key {key}, which the test did not provide"
                    )));
                }
            }
        } else if e.get("valueFrom").is_some() {
            return Err(unsupported());
        } else {
            String::new()
        };
        out.push((name, value));
    }
    Ok(out)
}

/// The Pod's name (`generateName` + `x` when only that is set).
pub fn pod_name(pod: &Value) -> String {
    let meta = &pod["metadata"];
    meta["name"]
        .as_str()
        .map(String::from)
        .or_else(|| meta["generateName"].as_str().map(|g| format!("{g}x")))
        .unwrap_or_else(|| "pod".into())
}

/// The Pod's namespace, `default` when unset.
pub fn pod_namespace(pod: &Value) -> String {
    pod["metadata"]["namespace"]
        .as_str()
        .unwrap_or("default")
        .to_string()
}

/// The Pod's service account, `default` when unset.
pub fn service_account(pod: &Value) -> String {
    pod["spec"]["serviceAccountName"]
        .as_str()
        .unwrap_or("default")
        .to_string()
}

/// An env var name for a volume: `vaultlet-secrets` -> `VOLUME_VAULTLET_SECRETS`.
pub fn volume_env_name(volume: &str) -> String {
    let upper: String = volume
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("VOLUME_{upper}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mk_map() -> MountMap {
        let c = container(
            &json!({}),
            &json!({"name": "a", "volumeMounts": [
                {"name": "s", "mountPath": "/vault/secrets"},
                {"name": "t", "mountPath": "/vault/secrets/tls"},
                {"name": "r", "mountPath": "/vault"},
            ]}),
            Role::Regular,
        )
        .expect("container");
        let vols = [("s", "/h/s"), ("t", "/h/t"), ("r", "/h/r")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), PathBuf::from(v)))
            .collect();
        MountMap::new(&c, &vols).expect("map")
    }

    #[test]
    fn longest_mount_prefix_wins() {
        let m = mk_map();
        let map = |p: &str| m.map(Path::new(p)).map(|p| p.display().to_string());
        assert_eq!(map("/vault/secrets/app").ok().as_deref(), Some("/h/s/app"));
        assert_eq!(
            map("/vault/secrets/tls/crt").ok().as_deref(),
            Some("/h/t/crt")
        );
        assert_eq!(map("/vault/secrets").ok().as_deref(), Some("/h/s"));
        assert_eq!(map("/vault/agent").ok().as_deref(), Some("/h/r/agent"));
        // A prefix of a component is not a mount.
        assert!(map("/vaultx/a").is_err());
        assert!(map("/etc/passwd").is_err());
        assert!(map("/vault/../etc").is_err());
        assert!(map("relative").is_err());
    }

    #[test]
    fn kubelet_roles_and_probe() {
        let pod = json!({"spec": {
            "initContainers": [
                {"name": "i", "image": "busybox"},
                {"name": "vaultlet-agent", "image": "vaultlet/agent:0.1.0", "restartPolicy": "Always",
                 "command": ["/vaultlet-agent"], "args": ["run"],
                 "startupProbe": {"exec": {"command": ["/vaultlet-agent", "probe"]}, "periodSeconds": 1, "failureThreshold": 30}},
            ],
            "containers": [{"name": "app", "image": "nginx"}],
        }});
        let cs = containers(&pod).expect("containers");
        let roles: Vec<_> = cs
            .iter()
            .map(|c| (c.name.as_str(), c.role, c.is_agent()))
            .collect();
        assert_eq!(
            roles,
            [
                ("i", Role::Init, false),
                ("vaultlet-agent", Role::NativeSidecar, true),
                ("app", Role::Regular, false)
            ]
        );
        assert_eq!(cs[1].argv, ["/vaultlet-agent", "run"]);
        let probe = cs[1].startup_probe.clone().expect("probe");
        assert_eq!((probe.period_secs, probe.failure_threshold), (1, 30));
        assert!(containers(&json!({"spec": {}})).is_err());
    }

    #[test]
    fn agent_config_paths_are_rewritten() {
        let cfg = r#"{"version":1,"vault":{"address":"https://vault:8200","caCert":"/vault/tls/ca.crt"},
            "auth":{"method":"approle","roleIdFile":"/vault/approle/role-id","secretIdFile":"/vault/approle/secret-id"},
            "secrets":[{"name":"db","path":"secret/data/db","file":"db"}],
            "paths":{"secretsDir":"/vault/secrets","stateDir":"/vault/agent"}}"#;
        let out = rewrite_agent_config(
            "a",
            cfg,
            &mk_map(),
            Some("http://127.0.0.1:1"),
            &BTreeMap::new(),
        )
        .expect("rewrite");
        let cfg: AgentConfig = serde_json::from_str(&out).expect("json");
        assert_eq!(cfg.paths.secrets_dir, Path::new("/h/s"));
        assert_eq!(cfg.paths.state_dir, Path::new("/h/r/agent"));
        assert_eq!(
            cfg.vault.ca_cert.as_deref(),
            Some(Path::new("/h/r/tls/ca.crt"))
        );
        assert_eq!(cfg.vault.address, "http://127.0.0.1:1");
        let AuthConfig::Approle { role_id_file, .. } = cfg.auth else {
            panic!("auth method changed")
        };
        assert_eq!(role_id_file, Path::new("/h/r/approle/role-id"));
    }

    #[test]
    fn agent_config_outside_mounts_is_an_error() {
        let cfg = r#"{"version":1,"vault":{"address":"https://vault:8200"},
            "auth":{"method":"kubernetes","role":"app"},
            "secrets":[{"name":"db","path":"secret/data/db","file":"db"}]}"#;
        // The default SA token path is not under any mount of mk_map.
        let err = rewrite_agent_config("a", cfg, &mk_map(), None, &BTreeMap::new())
            .expect_err("unmapped path");
        assert!(
            err.to_string()
                .contains("/var/run/secrets/vaultlet.io/serviceaccount/token"),
            "{err}"
        );
    }

    #[test]
    fn identities_follow_security_contexts() {
        let pod = json!({"spec": {"securityContext": {"runAsUser": 101, "runAsGroup": 102, "fsGroup": 103, "supplementalGroups": [7]}}});
        let id = identity(&pod, &json!({"securityContext": {"runAsUser": 65532}}));
        assert_eq!(
            id,
            Some(Identity {
                uid: 65532,
                gid: 102,
                groups: vec![7, 103]
            })
        );
        assert_eq!(identity(&pod, &json!({})).map(|i| i.uid), Some(101));
        assert_eq!(identity(&json!({"spec": {}}), &json!({})), None);
        let no_group = identity(
            &json!({"spec": {}}),
            &json!({"securityContext": {"runAsUser": 5}}),
        );
        assert_eq!(
            no_group,
            Some(Identity {
                uid: 5,
                gid: 0,
                groups: vec![]
            })
        );
    }

    #[test]
    fn loopback_ports_are_remapped() {
        let ports = [(9090, 41000)].into();
        let remap = |u: &str| remap_loopback_port(u, &ports);
        assert_eq!(
            remap("http://127.0.0.1:9090/-/reload"),
            "http://127.0.0.1:41000/-/reload"
        );
        assert_eq!(remap("http://localhost:9090"), "http://127.0.0.1:41000");
        assert_eq!(remap("http://127.0.0.1:8080/x"), "http://127.0.0.1:8080/x");
        assert_eq!(remap("http://app:9090/x"), "http://app:9090/x");
        assert_eq!(
            remap("https://127.0.0.1:9090/x"),
            "https://127.0.0.1:9090/x"
        );
    }

    #[test]
    fn env_resolution() {
        let pod = json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": {}});
        let secrets = [("s".to_string(), [("k".to_string(), "v".to_string())].into())].into();
        let env = [
            json!({"name": "A", "value": "1"}),
            json!({"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}),
            json!({"name": "S", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}),
        ];
        let got = resolve_env("c", &pod, &env, &secrets).expect("env");
        assert_eq!(
            got,
            [
                ("A".into(), "1".into()),
                ("NS".into(), "ns".into()),
                ("S".into(), "v".into())
            ]
        );
        let missing =
            [json!({"name": "S", "valueFrom": {"secretKeyRef": {"name": "x", "key": "k"}}})];
        assert!(resolve_env("c", &pod, &missing, &secrets).is_err());
    }
}
