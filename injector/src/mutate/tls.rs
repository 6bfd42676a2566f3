//! TLS to Vault per Pod: which CA and client certificate the agent uses, the volumes that
//! carry them (into the agent container only), and where each came from for error messages.

use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, KeyToPath, SecretVolumeSource, Volume, VolumeMount,
};
use vaultlet_agent::config::{
    TLS_CA_DIR, TLS_CA_KEY, TLS_CA_VOLUME, TLS_CLIENT_CERT_KEY, TLS_CLIENT_DIR, TLS_CLIENT_KEY_KEY,
    TLS_CLIENT_VOLUME, TlsOrigin, VaultConfig, tls_ca_file, tls_client_cert_file,
    tls_client_key_file,
};

use super::{CA_DIR, CA_VOLUME, invalid};
use crate::annotations::{AnnotationError, PodRequest};
use crate::settings::Settings;

/// Where the agent's CA comes from.
enum CaSource<'a> {
    Secret(&'a str),
    PodConfigMap(&'a str),
    ClusterConfigMap(&'a str),
}

fn ca_source<'a>(req: &'a PodRequest, s: &'a Settings) -> Option<CaSource<'a>> {
    match (&req.tls_ca_secret, &req.tls_ca_configmap) {
        (Some(secret), _) => Some(CaSource::Secret(secret)),
        (None, Some(cm)) => Some(CaSource::PodConfigMap(cm)),
        (None, None) => s
            .vault
            .vault_ca_configmap
            .as_deref()
            .map(CaSource::ClusterConfigMap),
    }
}

/// Refuses TLS annotations on a plain-HTTP address, where they could not take effect.
pub(super) fn check_scheme(req: &PodRequest, address: &str) -> Result<(), AnnotationError> {
    if address.starts_with("https://") {
        return Ok(());
    }
    let set = [
        ("tls-ca-secret", &req.tls_ca_secret),
        ("tls-ca-configmap", &req.tls_ca_configmap),
        ("tls-client-secret", &req.tls_client_secret),
        ("tls-server-name", &req.tls_server_name),
    ];
    match set
        .into_iter()
        .find_map(|(k, v)| v.as_ref().map(|v| (k, v)))
    {
        Some((key, value)) => Err(invalid(
            key,
            value,
            format!(
                "the Vault address {address} is plain HTTP, so no TLS setting applies; use an \
                 https:// address (vaultlet.io/vault-addr) or remove the annotation"
            ),
        )),
        None => Ok(()),
    }
}

/// Fills the CA, client certificate and their origins into the agent's Vault section.
pub(super) fn apply_to(vault: &mut VaultConfig, req: &PodRequest, s: &Settings) {
    let mut origin = TlsOrigin::default();
    match ca_source(req, s) {
        Some(CaSource::Secret(name)) => {
            vault.ca_cert = Some(tls_ca_file());
            origin.ca_cert = Some(format!(
                "annotation vaultlet.io/tls-ca-secret: Secret {name}, key {TLS_CA_KEY}"
            ));
        }
        Some(CaSource::PodConfigMap(name)) => {
            vault.ca_cert = Some(tls_ca_file());
            origin.ca_cert = Some(format!(
                "annotation vaultlet.io/tls-ca-configmap: ConfigMap {name}, key {TLS_CA_KEY}"
            ));
        }
        Some(CaSource::ClusterConfigMap(name)) => {
            vault.ca_cert = Some(format!("{CA_DIR}/ca.crt").into());
            origin.ca_cert = Some(format!(
                "injector setting --vault-ca-configmap: ConfigMap {name}, key ca.crt"
            ));
        }
        None => {}
    }
    if let Some(name) = &req.tls_client_secret {
        vault.client_cert = Some(tls_client_cert_file());
        vault.client_key = Some(tls_client_key_file());
        origin.client_cert = Some(format!(
            "annotation vaultlet.io/tls-client-secret: Secret {name}, keys \
             {TLS_CLIENT_CERT_KEY} and {TLS_CLIENT_KEY_KEY}"
        ));
    }
    vault.tls_origin = origin;
}

fn items(keys: &[&str]) -> Option<Vec<KeyToPath>> {
    Some(
        keys.iter()
            .map(|k| KeyToPath {
                key: (*k).to_owned(),
                path: (*k).to_owned(),
                mode: None,
            })
            .collect(),
    )
}

fn secret_volume(volume: &str, secret: &str, keys: &[&str]) -> Volume {
    Volume {
        name: volume.to_owned(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.to_owned()),
            // Only the named keys: a cert-manager CA Secret also holds the CA's own key.
            items: items(keys),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    }
}

fn config_map_volume(volume: &str, cm: &str, keys: Option<&[&str]>) -> Volume {
    Volume {
        name: volume.to_owned(),
        config_map: Some(ConfigMapVolumeSource {
            name: cm.to_owned(),
            items: keys.and_then(items),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    }
}

/// The Pod volumes for the CA and the client certificate.
pub(super) fn volumes(req: &PodRequest, s: &Settings) -> Vec<Volume> {
    let mut out = Vec::new();
    match ca_source(req, s) {
        Some(CaSource::Secret(name)) => out.push(secret_volume(TLS_CA_VOLUME, name, &[TLS_CA_KEY])),
        Some(CaSource::PodConfigMap(name)) => {
            out.push(config_map_volume(TLS_CA_VOLUME, name, Some(&[TLS_CA_KEY])));
        }
        Some(CaSource::ClusterConfigMap(name)) => {
            out.push(config_map_volume(CA_VOLUME, name, None));
        }
        None => {}
    }
    if let Some(name) = &req.tls_client_secret {
        out.push(secret_volume(
            TLS_CLIENT_VOLUME,
            name,
            &[TLS_CLIENT_CERT_KEY, TLS_CLIENT_KEY_KEY],
        ));
    }
    out
}

/// The agent container's mounts of [`volumes`], read-only.
pub(super) fn mounts(req: &PodRequest, s: &Settings) -> Vec<VolumeMount> {
    let mount = |name: &str, path: &str| VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        read_only: Some(true),
        ..VolumeMount::default()
    };
    let mut out = Vec::new();
    match ca_source(req, s) {
        Some(CaSource::Secret(_) | CaSource::PodConfigMap(_)) => {
            out.push(mount(TLS_CA_VOLUME, TLS_CA_DIR));
        }
        Some(CaSource::ClusterConfigMap(_)) => out.push(mount(CA_VOLUME, CA_DIR)),
        None => {}
    }
    if req.tls_client_secret.is_some() {
        out.push(mount(TLS_CLIENT_VOLUME, TLS_CLIENT_DIR));
    }
    out
}
