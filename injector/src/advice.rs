//! Admission warnings for settings that are valid but will surprise later: pure checks on
//! the resolved agent config and injection mode.

use vaultlet_agent::config::{AgentConfig, AuthConfig, SecretSpec};

use crate::annotations::PREFIX;
use crate::mutate::InjectMode;

/// Every warning for this config and mode, in a stable order.
pub fn warnings(config: &AgentConfig, mode: InjectMode) -> Vec<String> {
    let mut out = Vec::new();
    if mode == InjectMode::InitOnly {
        out.extend(config.secrets.iter().filter(|s| looks_leased(s)).map(|s| {
            format!(
                "{PREFIX}secret-{}: {} looks like a secret with a lease or an expiry; \
                         in init-only mode nothing renews or re-issues it, so it stops working \
                         when the lease or certificate ends; use {PREFIX}mode: sidecar",
                s.name, s.path
            )
        }));
    }
    if mode == InjectMode::Classic
        && matches!(
            config.auth,
            AuthConfig::Approle {
                secret_id_wrapped: true,
                ..
            }
        )
    {
        out.push(format!(
            "{PREFIX}approle-secret-id-wrapped: a wrapped secret-id can be unwrapped once, but \
             in classic mode the init agent and the sidecar each log in, so the sidecar's login \
             fails; use native sidecars or a secret-id that is not wrapped"
        ));
    }
    out
}

/// Dynamic credentials (`<mount>/creds/<role>`, AWS `<mount>/sts/<role>`) and writes such
/// as PKI `issue` come with a lease or an expiry; KV reads do not.
fn looks_leased(s: &SecretSpec) -> bool {
    !s.params.is_empty() || matches!(s.path.split('/').nth(1), Some("creds" | "sts"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mk_config(auth: serde_json::Value, secrets: serde_json::Value) -> AgentConfig {
        serde_json::from_value(json!({
            "version": 1,
            "vault": { "address": "https://vault:8200" },
            "auth": auth,
            "secrets": secrets,
        }))
        .expect("config")
    }

    fn k8s() -> serde_json::Value {
        json!({ "method": "kubernetes", "role": "app" })
    }

    #[test]
    fn init_only_with_leased_secrets() {
        let cfg = mk_config(
            k8s(),
            json!([
                { "name": "db", "path": "database/creds/app", "file": "db" },
                { "name": "kv", "path": "secret/data/creds", "file": "kv" },
                { "name": "tls", "path": "pki/issue/web", "file": "tls", "params": { "common_name": "a" } }
            ]),
        );
        assert_eq!(
            warnings(&cfg, InjectMode::InitOnly),
            [
                "vaultlet.io/secret-db: database/creds/app looks like a secret with a lease or an expiry; in init-only mode nothing renews or re-issues it, so it stops working when the lease or certificate ends; use vaultlet.io/mode: sidecar",
                "vaultlet.io/secret-tls: pki/issue/web looks like a secret with a lease or an expiry; in init-only mode nothing renews or re-issues it, so it stops working when the lease or certificate ends; use vaultlet.io/mode: sidecar",
            ]
        );
        assert!(warnings(&cfg, InjectMode::NativeSidecar).is_empty());
        assert!(warnings(&cfg, InjectMode::Classic).is_empty());
    }

    /// Through the webhook's own mutation: the warnings reach the admission response.
    #[test]
    fn mutation_carries_the_warnings() {
        use crate::mutate::{Outcome, mutate};
        use crate::settings::Settings;
        let pod = |annotations: serde_json::Value| {
            crate::testutil::mk_pod(json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": { "name": "p", "labels": { "vaultlet.io/inject": "true" },
                              "annotations": annotations },
                "spec": { "containers": [{ "name": "app", "image": "app:1" }] }
            }))
        };
        let warnings = |annotations| match mutate(&pod(annotations), &Settings::defaults()) {
            Ok(Outcome::Injected(i)) => i.warnings,
            other => panic!("not injected: {other:?}"),
        };
        assert_eq!(
            warnings(
                json!({ "vaultlet.io/role": "app", "vaultlet.io/mode": "init-only",
                             "vaultlet.io/secret-db": "database/creds/app" })
            ),
            [
                "vaultlet.io/secret-db: database/creds/app looks like a secret with a lease or an expiry; in init-only mode nothing renews or re-issues it, so it stops working when the lease or certificate ends; use vaultlet.io/mode: sidecar"
            ]
        );
        assert_eq!(
            warnings(
                json!({ "vaultlet.io/auth": "approle", "vaultlet.io/approle-secret": "app-approle",
                             "vaultlet.io/approle-secret-id-wrapped": "true",
                             "vaultlet.io/native-sidecar": "false",
                             "vaultlet.io/secret-kv": "secret/data/app" })
            ),
            [
                "vaultlet.io/approle-secret-id-wrapped: a wrapped secret-id can be unwrapped once, but in classic mode the init agent and the sidecar each log in, so the sidecar's login fails; use native sidecars or a secret-id that is not wrapped"
            ]
        );
    }

    #[test]
    fn wrapped_secret_id_in_classic_mode() {
        let approle = |wrapped: bool| json!({ "method": "approle", "roleIdFile": "/r", "secretIdFile": "/s", "secretIdWrapped": wrapped });
        let kv = json!([{ "name": "kv", "path": "secret/data/app", "file": "kv" }]);
        let cfg = mk_config(approle(true), kv.clone());
        assert_eq!(
            warnings(&cfg, InjectMode::Classic),
            [
                "vaultlet.io/approle-secret-id-wrapped: a wrapped secret-id can be unwrapped once, but in classic mode the init agent and the sidecar each log in, so the sidecar's login fails; use native sidecars or a secret-id that is not wrapped"
            ]
        );
        assert!(warnings(&cfg, InjectMode::NativeSidecar).is_empty());
        assert!(warnings(&mk_config(approle(false), kv), InjectMode::Classic).is_empty());
    }
}
