//! Admission advice: warnings for settings that are valid but will surprise later, and the
//! refusal of `exec:` notifications the agent image cannot run. Pure checks.

use vaultlet_agent::config::{AgentConfig, AuthConfig, NotifySpec, SecretSpec, TemplateLanguage};

use crate::annotations::{AnnotationError, PREFIX, PodRequest};
use crate::mutate::{Deny, InjectMode};
use crate::settings::Settings;

/// Refuses `exec:` notifications unless the operator declared (`--allow-exec-notify`) that
/// the agent image holds what they run: the shipped image holds only the agent binary (no
/// shell, no tools), so every such command would fail at every change.
pub fn refuse_exec(req: &PodRequest, settings: &Settings) -> Result<(), Deny> {
    if settings.agent.allow_exec_notify {
        return Ok(());
    }
    let pod = std::iter::once(("notify".to_owned(), &req.notify));
    let per_secret = req
        .secrets
        .iter()
        .map(|(name, s)| (format!("notify-{name}"), &s.notify));
    for (key, targets) in pod.chain(per_secret) {
        if let Some(NotifySpec::Exec { command }) = targets
            .iter()
            .find(|t| matches!(t, NotifySpec::Exec { .. }))
        {
            return Err(Deny::Annotation(AnnotationError::Invalid {
                key: format!("{PREFIX}{key}"),
                value: format!("{:?}", format!("exec:{}", command.join(" "))),
                reason: "exec: runs the command inside the agent container, whose image holds \
                         only the agent (no shell or tools); use signal: or http:, or ask the \
                         operator for an agent image with the tools and --allow-exec-notify"
                    .into(),
            }));
        }
    }
    Ok(())
}

/// Every warning for this config and mode, in a stable order.
pub fn warnings(config: &AgentConfig, mode: InjectMode) -> Vec<String> {
    let mut out = Vec::new();
    if mode == InjectMode::InitOnly {
        out.extend(config.secrets.iter().filter_map(|s| {
            let (stem, path) = leased_path(s)?;
            Some(format!(
                "{PREFIX}{stem}-{}: {path} looks like a secret with a lease or an expiry; \
                         in init-only mode nothing renews or re-issues it, so it stops working \
                         when the lease or certificate ends; use {PREFIX}mode: sidecar",
                s.name
            ))
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

/// The annotation stem and the path of the first leased read of a secret: its own path, or
/// for a consul-template secret the first such `secret` / `pkiCert` call of its template.
fn leased_path(s: &SecretSpec) -> Option<(&'static str, String)> {
    if s.language == TemplateLanguage::Handlebars {
        return looks_leased(s).then(|| ("secret", s.path.clone()));
    }
    let t = vaultlet_gotemplate::Template::parse(s.template.as_deref()?).ok()?;
    t.secret_calls().into_iter().find_map(|c| {
        let r = c.request?;
        let leased =
            !r.data.is_empty() || matches!(r.path.split('/').nth(1), Some("creds" | "sts"));
        leased.then_some(("template", r.path))
    })
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

    #[test]
    fn init_only_with_leased_consul_template_reads() {
        let cfg = mk_config(
            k8s(),
            json!([
                { "name": "db", "language": "consul-template", "file": "db",
                  "template": "{{ with secret \"secret/data/x\" }}{{ end }}{{ with secret \"database/creds/app\" }}{{ .Data.username }}{{ end }}" },
                { "name": "kv", "language": "consul-template", "file": "kv",
                  "template": "{{ with secret \"secret/data/creds\" }}{{ .Data.data.x }}{{ end }}" },
                { "name": "tls", "language": "consul-template", "file": "tls",
                  "template": "{{ with pkiCert \"pki/issue/web\" \"common_name=a\" }}{{ .Cert }}{{ end }}" }
            ]),
        );
        assert_eq!(
            warnings(&cfg, InjectMode::InitOnly),
            [
                "vaultlet.io/template-db: database/creds/app looks like a secret with a lease or an expiry; in init-only mode nothing renews or re-issues it, so it stops working when the lease or certificate ends; use vaultlet.io/mode: sidecar",
                "vaultlet.io/template-tls: pki/issue/web looks like a secret with a lease or an expiry; in init-only mode nothing renews or re-issues it, so it stops working when the lease or certificate ends; use vaultlet.io/mode: sidecar",
            ]
        );
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
    fn exec_notifications_are_refused_unless_the_operator_allows_them() {
        use crate::mutate::{Outcome, mutate};
        let pod = crate::testutil::mk_pod(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": { "name": "p", "labels": { "vaultlet.io/inject": "true" },
                          "annotations": { "vaultlet.io/role": "app",
                                           "vaultlet.io/secret-db": "secret/data/db",
                                           "vaultlet.io/notify-db": "exec:/bin/sh -c reload" } },
            "spec": { "containers": [{ "name": "app", "image": "app:1" }] }
        }));
        let mut settings = Settings::defaults();
        let err = mutate(&pod, &settings).expect_err("refused");
        assert_eq!(
            err.to_string(),
            AnnotationError::Invalid {
                key: "vaultlet.io/notify-db".into(),
                value: "\"exec:/bin/sh -c reload\"".into(),
                reason: "exec: runs the command inside the agent container, whose image holds only the agent (no shell or tools); use signal: or http:, or ask the operator for an agent image with the tools and --allow-exec-notify".into(),
            }
            .to_string()
        );
        settings.agent.allow_exec_notify = true;
        assert!(matches!(mutate(&pod, &settings), Ok(Outcome::Injected(_))));
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
