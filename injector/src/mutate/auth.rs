//! The login method of the agent config: which auth method, mount and credential files, from
//! the Pod's annotations and the injector's defaults.

use vaultlet_agent::config::{AuthConfig, DEFAULT_SA_TOKEN_PATH};

use super::{APPROLE_DIR, Deny, Plan, invalid, missing};
use crate::annotations::{AuthMethod, PodRequest};
use crate::settings::Settings;

pub(super) fn auth_config(req: &PodRequest, s: &Settings, plan: &Plan) -> Result<AuthConfig, Deny> {
    let default_mount = match plan.auth {
        _ if plan.auth == s.vault.auth_method => s.vault.auth_path.clone(),
        other => other.as_str().to_owned(),
    };
    let mount_path = req.auth_path.clone().unwrap_or(default_mount);
    if req.sa_token_audience.is_some() && !plan.auth.uses_sa_token() {
        return Err(Deny::Annotation(invalid(
            "sa-token-audience",
            req.sa_token_audience.as_deref().unwrap_or_default(),
            format!(
                "{} auth sends no service-account token; remove it or use kubernetes or jwt auth",
                plan.auth.as_str()
            ),
        )));
    }
    match plan.auth {
        AuthMethod::Kubernetes => Ok(AuthConfig::Kubernetes {
            role: req.role.clone().ok_or_else(|| {
                missing(
                    "role",
                    "kubernetes auth needs a Vault role; add vaultlet.io/role",
                )
            })?,
            mount_path,
            token_path: DEFAULT_SA_TOKEN_PATH.into(),
        }),
        AuthMethod::Jwt => Ok(AuthConfig::Jwt {
            role: req.role.clone().ok_or_else(|| {
                missing("role", "jwt auth needs a Vault role; add vaultlet.io/role")
            })?,
            mount_path,
            token_path: DEFAULT_SA_TOKEN_PATH.into(),
        }),
        AuthMethod::Cert => {
            if req.tls_client_secret.is_none() {
                return Err(missing(
                    "tls-client-secret",
                    "cert auth logs in with a client certificate; name a kubernetes.io/tls \
                     Secret (keys tls.crt, tls.key) with vaultlet.io/tls-client-secret",
                ));
            }
            Ok(AuthConfig::Cert {
                role: req.role.clone(),
                mount_path,
            })
        }
        AuthMethod::Approle => {
            if req.approle_secret.is_none() {
                return Err(missing(
                    "approle-secret",
                    "approle auth needs the name of a Secret with keys role-id and secret-id",
                ));
            }
            Ok(AuthConfig::Approle {
                mount_path,
                role_id_file: format!("{APPROLE_DIR}/role-id").into(),
                secret_id_file: format!("{APPROLE_DIR}/secret-id").into(),
                secret_id_wrapped: req.approle_secret_id_wrapped,
            })
        }
    }
}
