//! Tests of the login methods (kubernetes, jwt, cert, approle) and of TLS to Vault per Pod.

use super::*;
use crate::testutil::{emit_for_validation, mk_pod};
use k8s_openapi::api::core::v1::{Container, Volume};
use serde_json::json;
use vaultlet_agent::config::{
    AuthConfig, DEFAULT_SA_TOKEN_PATH, TLS_CA_VOLUME, TLS_CLIENT_VOLUME, TlsOrigin,
};

fn pod_with(annotations: &[(&str, &str)]) -> Pod {
    let mut a = json!({
        "vaultlet.io/secret-db": "secret/data/db",
    });
    for (k, v) in annotations {
        a[*k] = json!(v);
    }
    mk_pod(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "namespace": "default",
                     "labels": {"vaultlet.io/inject": "true"}, "annotations": a},
        "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}
    }))
}

fn inject(name: &str, pod: &Pod, s: &Settings) -> Injection {
    match mutate(pod, s) {
        Ok(Outcome::Injected(i)) => {
            emit_for_validation(name, &i.pod);
            *i
        }
        other => panic!("{name}: expected an injection, got {other:?}"),
    }
}

fn volume<'a>(i: &'a Injection, name: &str) -> Option<&'a Volume> {
    i.pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .and_then(|v| v.iter().find(|v| v.name == name))
}

fn containers(i: &Injection) -> Vec<&Container> {
    let spec = i.pod.spec.as_ref().expect("spec");
    spec.init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
        .collect()
}

/// Names of the containers that mount `volume`.
fn mounted_by(i: &Injection, volume: &str) -> Vec<String> {
    containers(i)
        .into_iter()
        .filter(|c| c.volume_mounts.iter().flatten().any(|m| m.name == volume))
        .map(|c| c.name.clone())
        .collect()
}

fn denial(pod: &Pod, s: &Settings) -> String {
    match mutate(pod, s) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("expected a denial"),
    }
}

#[test]
fn jwt_auth_sends_the_projected_token_with_the_pods_audience() {
    let pod = pod_with(&[
        ("vaultlet.io/auth", "jwt"),
        ("vaultlet.io/role", "app"),
        ("vaultlet.io/sa-token-audience", "https://vault.example.com"),
    ]);
    let i = inject("auth-jwt", &pod, &Settings::defaults());
    assert_eq!(
        i.config.auth,
        AuthConfig::Jwt {
            role: "app".into(),
            mount_path: "jwt".into(),
            token_path: DEFAULT_SA_TOKEN_PATH.into(),
        }
    );
    let projected = volume(&i, SA_TOKEN_VOLUME)
        .and_then(|v| v.projected.as_ref())
        .and_then(|p| p.sources.as_ref())
        .and_then(|s| s[0].service_account_token.as_ref())
        .expect("projected token volume");
    assert_eq!(
        projected.audience.as_deref(),
        Some("https://vault.example.com")
    );
    assert_eq!(mounted_by(&i, SA_TOKEN_VOLUME), vec![AGENT_CONTAINER]);
}

#[test]
fn cert_auth_with_a_per_pod_ca_mounts_both_into_the_agent_only() {
    let pod = pod_with(&[
        ("vaultlet.io/auth", "cert"),
        ("vaultlet.io/role", "web"),
        ("vaultlet.io/tls-client-secret", "web-vault-client"),
        ("vaultlet.io/tls-ca-secret", "vault-ca"),
    ]);
    let i = inject("auth-cert", &pod, &Settings::defaults());
    assert_eq!(
        i.config.auth,
        AuthConfig::Cert {
            role: Some("web".into()),
            mount_path: "cert".into(),
        }
    );
    let v = &i.config.vault;
    assert_eq!(
        (
            v.ca_cert.as_deref(),
            v.client_cert.as_deref(),
            v.client_key.as_deref()
        ),
        (
            Some(std::path::Path::new("/vault/tls/ca/ca.crt")),
            Some(std::path::Path::new("/vault/tls/client/tls.crt")),
            Some(std::path::Path::new("/vault/tls/client/tls.key")),
        )
    );
    assert_eq!(
        v.tls_origin,
        TlsOrigin {
            ca_cert: Some("annotation vaultlet.io/tls-ca-secret: Secret vault-ca, key ca.crt".into()),
            client_cert: Some(
                "annotation vaultlet.io/tls-client-secret: Secret web-vault-client, keys tls.crt and tls.key"
                    .into()
            ),
        }
    );
    // Only the keys the agent needs are projected: a CA Secret may hold the CA's key too.
    let ca = volume(&i, TLS_CA_VOLUME)
        .and_then(|v| v.secret.as_ref())
        .expect("CA volume");
    let keys: Vec<_> = ca.items.iter().flatten().map(|k| k.key.as_str()).collect();
    assert_eq!(
        (ca.secret_name.as_deref(), keys),
        (Some("vault-ca"), vec!["ca.crt"])
    );
    let client = volume(&i, TLS_CLIENT_VOLUME)
        .and_then(|v| v.secret.as_ref())
        .expect("client volume");
    let keys: Vec<_> = client
        .items
        .iter()
        .flatten()
        .map(|k| k.key.as_str())
        .collect();
    assert_eq!(keys, vec!["tls.crt", "tls.key"]);
    assert_eq!(mounted_by(&i, TLS_CA_VOLUME), vec![AGENT_CONTAINER]);
    assert_eq!(mounted_by(&i, TLS_CLIENT_VOLUME), vec![AGENT_CONTAINER]);
    assert!(
        volume(&i, SA_TOKEN_VOLUME).is_none(),
        "cert auth needs no token"
    );
}

#[test]
fn a_pod_ca_replaces_the_cluster_wide_configmap() {
    let mut s = Settings::defaults();
    s.vault.vault_ca_configmap = Some("cluster-ca".into());
    let default = inject("ca-cluster", &pod_with(&[("vaultlet.io/role", "app")]), &s);
    assert_eq!(
        default.config.vault.tls_origin.ca_cert.as_deref(),
        Some("injector setting --vault-ca-configmap: ConfigMap cluster-ca, key ca.crt")
    );
    assert!(volume(&default, CA_VOLUME).is_some());

    let pod = pod_with(&[
        ("vaultlet.io/role", "app"),
        ("vaultlet.io/tls-ca-configmap", "team-ca"),
    ]);
    let i = inject("ca-pod-configmap", &pod, &s);
    assert!(
        volume(&i, CA_VOLUME).is_none(),
        "the cluster CA is not needed"
    );
    let cm = volume(&i, TLS_CA_VOLUME)
        .and_then(|v| v.config_map.as_ref())
        .expect("CA ConfigMap volume");
    assert_eq!(cm.name, "team-ca");
    assert_eq!(
        i.config.vault.ca_cert.as_deref(),
        Some(std::path::Path::new("/vault/tls/ca/ca.crt"))
    );
    assert_eq!(i.config.vault.client_cert, None);
    assert_eq!(mounted_by(&i, TLS_CA_VOLUME), vec![AGENT_CONTAINER]);
}

#[test]
fn bad_auth_and_tls_annotations_are_denied_naming_them() {
    let mut http = Settings::defaults();
    http.vault.vault_addr = "http://127.0.0.1:8200".into();
    let s = Settings::defaults();
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a Settings, &'a str);
    let cases: &[Case] = &[
        (
            &[("vaultlet.io/auth", "cert")],
            &s,
            "annotation vaultlet.io/tls-client-secret: value \"\" is invalid: cert auth logs in \
             with a client certificate; name a kubernetes.io/tls Secret (keys tls.crt, tls.key) \
             with vaultlet.io/tls-client-secret",
        ),
        (
            &[("vaultlet.io/auth", "oidc")],
            &s,
            "annotation vaultlet.io/auth: value \"oidc\" is invalid: expected kubernetes, jwt, \
             cert or approle",
        ),
        (
            &[("vaultlet.io/auth", "jwt")],
            &s,
            "annotation vaultlet.io/role: value \"\" is invalid: jwt auth needs a Vault role; \
             add vaultlet.io/role",
        ),
        (
            &[
                ("vaultlet.io/role", "a"),
                ("vaultlet.io/tls-ca-secret", "Vault_CA"),
            ],
            &s,
            "annotation vaultlet.io/tls-ca-secret: value \"Vault_CA\" is invalid: expected a \
             Kubernetes object name (lowercase letters, digits, '-', '.')",
        ),
        (
            &[
                ("vaultlet.io/role", "a"),
                ("vaultlet.io/tls-ca-secret", "ca"),
                ("vaultlet.io/tls-ca-configmap", "ca"),
            ],
            &s,
            "annotation vaultlet.io/tls-ca-configmap: value \"ca\" is invalid: \
             vaultlet.io/tls-ca-secret names the CA already; keep one of the two",
        ),
        (
            &[
                ("vaultlet.io/role", "a"),
                ("vaultlet.io/sa-token-audience", "a b"),
            ],
            &s,
            "annotation vaultlet.io/sa-token-audience: value \"a b\" is invalid: expected one \
             audience (e.g. vault or https://vault.example.com), no spaces or commas",
        ),
        (
            &[
                ("vaultlet.io/auth", "approle"),
                ("vaultlet.io/approle-secret", "x"),
                ("vaultlet.io/sa-token-audience", "vault"),
            ],
            &s,
            "annotation vaultlet.io/sa-token-audience: value \"vault\" is invalid: approle auth \
             sends no service-account token; remove it or use kubernetes or jwt auth",
        ),
        (
            &[
                ("vaultlet.io/role", "a"),
                ("vaultlet.io/tls-client-secret", "c"),
            ],
            &http,
            "annotation vaultlet.io/tls-client-secret: value \"c\" is invalid: the Vault \
             address http://127.0.0.1:8200 is plain HTTP, so no TLS setting applies; use an \
             https:// address (vaultlet.io/vault-addr) or remove the annotation",
        ),
        (
            &[
                ("vaultlet.io/role", "a"),
                ("vaultlet.io/secrets-dir", "/vault/tls/x"),
            ],
            &s,
            "annotation vaultlet.io/secrets-dir: value \"/vault/tls/x\" is invalid: \
             /vault/tls/x lies inside /vault/tls, where the Pod's Vault CA and client \
             certificate are mounted; the secrets directory must neither be, contain nor lie \
             inside an agent path (/vault/agent, /var/run/secrets, /vault/approle, /vault/ca, \
             /vault/tls, /vaultlet/bin, /vaultlet-agent): choose another, e.g. /vault/secrets",
        ),
    ];
    for (annotations, settings, want) in cases {
        assert_eq!(&denial(&pod_with(annotations), settings), want);
    }
}
