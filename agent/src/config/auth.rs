//! How the agent reaches Vault (address, TLS files and where they came from) and how it logs
//! in, plus the fixed places in the agent container where the injector mounts TLS material.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{ConfigError, DEFAULT_SA_TOKEN_PATH, validate_mount, validate_vault_address};

/// Pod volume holding the per-Pod Vault CA (a Secret or a ConfigMap with key [`TLS_CA_KEY`]).
pub const TLS_CA_VOLUME: &str = "vaultlet-tls-ca";
/// Where [`TLS_CA_VOLUME`] is mounted in the agent container (and nowhere else).
pub const TLS_CA_DIR: &str = "/vault/tls/ca";
/// Key of the CA certificate in the Secret or ConfigMap (what cert-manager writes).
pub const TLS_CA_KEY: &str = "ca.crt";
/// Pod volume holding the client certificate Secret (type `kubernetes.io/tls`).
pub const TLS_CLIENT_VOLUME: &str = "vaultlet-tls-client";
/// Where [`TLS_CLIENT_VOLUME`] is mounted in the agent container (and nowhere else).
pub const TLS_CLIENT_DIR: &str = "/vault/tls/client";
/// Key of the client certificate chain in its Secret.
pub const TLS_CLIENT_CERT_KEY: &str = "tls.crt";
/// Key of the client private key in its Secret.
pub const TLS_CLIENT_KEY_KEY: &str = "tls.key";
/// Parent of the TLS mounts: reserved, no secrets dir may be placed there.
pub const TLS_DIR: &str = "/vault/tls";

/// `<TLS_CA_DIR>/<TLS_CA_KEY>`.
pub fn tls_ca_file() -> PathBuf {
    PathBuf::from(TLS_CA_DIR).join(TLS_CA_KEY)
}

/// `<TLS_CLIENT_DIR>/<TLS_CLIENT_CERT_KEY>`.
pub fn tls_client_cert_file() -> PathBuf {
    PathBuf::from(TLS_CLIENT_DIR).join(TLS_CLIENT_CERT_KEY)
}

/// `<TLS_CLIENT_DIR>/<TLS_CLIENT_KEY_KEY>`.
pub fn tls_client_key_file() -> PathBuf {
    PathBuf::from(TLS_CLIENT_DIR).join(TLS_CLIENT_KEY_KEY)
}

/// Connection to Vault/OpenBao.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VaultConfig {
    /// Base URL, e.g. `https://vault.vault.svc:8200`.
    pub address: String,
    /// Other Vault nodes (`https://vault-1.vault-internal:8200`, same scheme as `address`) a
    /// redirect from Vault may lead to, e.g. a standby's redirect to the active node. Any
    /// other redirect (another host, port or scheme) is an error: the token and the login
    /// credentials go only to `address` and these. Empty by default.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redirect_addresses: Vec<String>,
    /// Vault Enterprise / OpenBao namespace, sent as `X-Vault-Namespace`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// PEM file with the CA(s) to trust instead of the system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<PathBuf>,
    /// Name to verify the server certificate against, when it differs from the address host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_server_name: Option<String>,
    /// PEM client certificate for mutual TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<PathBuf>,
    /// PEM private key of the client certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key: Option<PathBuf>,
    /// Where the TLS files came from, so TLS errors name what to fix.
    #[serde(default, skip_serializing_if = "TlsOrigin::is_empty")]
    pub tls_origin: TlsOrigin,
}

/// Where the injector took each TLS file from, in words a user recognises (the annotation
/// and the object), e.g. `annotation vaultlet.io/tls-ca-secret (Secret vault-ca)`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsOrigin {
    /// Source of `caCert`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<String>,
    /// Source of `clientCert` and `clientKey`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<String>,
}

impl TlsOrigin {
    /// True when no origin is recorded (a config written by hand).
    pub fn is_empty(&self) -> bool {
        self.ca_cert.is_none() && self.client_cert.is_none()
    }
}

/// The login method.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "lowercase", deny_unknown_fields)]
pub enum AuthConfig {
    /// Kubernetes auth with the pod's (projected) service-account token.
    #[serde(rename_all = "camelCase")]
    Kubernetes {
        /// Vault role.
        role: String,
        /// Mount path of the auth method, without `auth/`.
        #[serde(default = "default_k8s_mount")]
        mount_path: String,
        /// Service-account token file; re-read at each login because it rotates.
        #[serde(default = "default_sa_token_path")]
        token_path: PathBuf,
    },
    /// JWT auth: the pod's projected service-account token, verified by Vault itself (OIDC
    /// discovery or the issuer's public keys) rather than by a TokenReview.
    #[serde(rename_all = "camelCase")]
    Jwt {
        /// Vault role.
        role: String,
        /// Mount path of the auth method, without `auth/`.
        #[serde(default = "default_jwt_mount")]
        mount_path: String,
        /// The JWT file; re-read at each login because it rotates.
        #[serde(default = "default_sa_token_path")]
        token_path: PathBuf,
    },
    /// TLS certificate auth: the client certificate of `vault.clientCert` presented over
    /// mutual TLS is the credential.
    #[serde(rename_all = "camelCase")]
    Cert {
        /// Certificate role (`name` of the login); Vault tries every role when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        role: Option<String>,
        /// Mount path of the auth method, without `auth/`.
        #[serde(default = "default_cert_mount")]
        mount_path: String,
    },
    /// AppRole auth with role-id and secret-id read from files.
    #[serde(rename_all = "camelCase")]
    Approle {
        /// Mount path of the auth method, without `auth/`.
        #[serde(default = "default_approle_mount")]
        mount_path: String,
        /// File holding the role-id.
        role_id_file: PathBuf,
        /// File holding the secret-id (or a wrapping token, see `secret_id_wrapped`).
        secret_id_file: PathBuf,
        /// The secret-id file holds a response-wrapping token to unwrap first.
        #[serde(default)]
        secret_id_wrapped: bool,
    },
    /// A token read from a file (development and tests).
    #[serde(rename_all = "camelCase")]
    Token {
        /// File holding the token.
        token_file: PathBuf,
    },
}

fn default_k8s_mount() -> String {
    "kubernetes".into()
}

fn default_jwt_mount() -> String {
    "jwt".into()
}

fn default_cert_mount() -> String {
    "cert".into()
}

fn default_approle_mount() -> String {
    "approle".into()
}

fn default_sa_token_path() -> PathBuf {
    DEFAULT_SA_TOKEN_PATH.into()
}

impl AuthConfig {
    /// Short name of the method, as used in the `vaultlet.io/auth` annotation.
    pub fn method(&self) -> &'static str {
        match self {
            Self::Kubernetes { .. } => "kubernetes",
            Self::Jwt { .. } => "jwt",
            Self::Cert { .. } => "cert",
            Self::Approle { .. } => "approle",
            Self::Token { .. } => "token",
        }
    }
}

/// Most nodes `vault.redirectAddresses` may list.
pub const MAX_REDIRECT_ADDRESSES: usize = 16;

/// Checks `vault.redirectAddresses`: Vault addresses with the scheme of `vault.address`.
fn validate_redirect_addresses(vault: &VaultConfig) -> Result<(), ConfigError> {
    let field = "vault.redirectAddresses";
    if vault.redirect_addresses.len() > MAX_REDIRECT_ADDRESSES {
        return Err(ConfigError::invalid(
            field,
            format!("lists more than {MAX_REDIRECT_ADDRESSES} nodes"),
        ));
    }
    let scheme = |a: &str| a.split_once("://").map(|(s, _)| s.to_owned());
    for a in &vault.redirect_addresses {
        validate_vault_address(a).map_err(|r| ConfigError::invalid(field, format!("{a:?} {r}")))?;
        if scheme(a) != scheme(&vault.address) {
            return Err(ConfigError::invalid(
                field,
                format!(
                    "{a:?} must use the scheme of vault.address ({}); a redirect never downgrades https to http",
                    scheme(&vault.address).unwrap_or_default()
                ),
            ));
        }
    }
    Ok(())
}

/// Checks the Vault section and the login method together (cert auth needs mutual TLS).
pub(super) fn validate(vault: &VaultConfig, auth: &AuthConfig) -> Result<(), ConfigError> {
    validate_vault_address(&vault.address).map_err(|r| ConfigError::invalid("vault.address", r))?;
    validate_redirect_addresses(vault)?;
    if vault.client_cert.is_some() != vault.client_key.is_some() {
        return Err(ConfigError::invalid(
            "vault.clientCert",
            "clientCert and clientKey go together; set both or neither",
        ));
    }
    let mount = |m: &str| validate_mount(m).map_err(|r| ConfigError::invalid("auth.mountPath", r));
    match auth {
        AuthConfig::Kubernetes {
            role, mount_path, ..
        }
        | AuthConfig::Jwt {
            role, mount_path, ..
        } => {
            if role.trim().is_empty() {
                return Err(ConfigError::invalid(
                    "auth.role",
                    format!("{} auth needs a Vault role", auth.method()),
                ));
            }
            mount(mount_path)?;
        }
        AuthConfig::Cert { role, mount_path } => {
            if role.as_ref().is_some_and(|r| r.trim().is_empty()) {
                return Err(ConfigError::invalid(
                    "auth.role",
                    "leave the certificate role out rather than empty",
                ));
            }
            mount(mount_path)?;
            if vault.client_cert.is_none() {
                return Err(ConfigError::invalid(
                    "auth.method",
                    "cert auth logs in with the TLS client certificate; set vault.clientCert and vault.clientKey",
                ));
            }
            if !vault.address.starts_with("https://") {
                return Err(ConfigError::invalid(
                    "vault.address",
                    "cert auth needs mutual TLS, so an https:// address",
                ));
            }
        }
        AuthConfig::Approle { mount_path, .. } => mount(mount_path)?,
        AuthConfig::Token { .. } => {}
    }
    Ok(())
}
