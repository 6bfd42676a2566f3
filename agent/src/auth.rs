//! Logging in to Vault (Kubernetes, JWT, TLS certificate, AppRole, token file), renewing and
//! revoking the token.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use crate::client::{ClientError, Secret, VaultClient};
use crate::config::AuthConfig;
use crate::renew::ttl_secs;

/// Errors while obtaining or keeping a token.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// A credential file could not be read.
    #[error("cannot read {what} {path:?}: {source}; check the volume is mounted and readable")]
    ReadFile {
        /// Which credential.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A credential file is empty.
    #[error("{what} {path:?} is empty; it must hold the credential")]
    EmptyFile {
        /// Which credential.
        what: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// Vault refused or failed a step.
    #[error("{step} failed: {source}")]
    Vault {
        /// The step, e.g. `kubernetes login (auth/kubernetes/login)`.
        step: String,
        /// What Vault said.
        source: ClientError,
    },
    /// Vault answered without the expected field.
    #[error("{step}: Vault's answer has no {field}")]
    Missing {
        /// The step.
        step: String,
        /// The missing field.
        field: &'static str,
    },
}

impl AuthError {
    /// True when Vault refused the token itself (403).
    pub fn is_forbidden(&self) -> bool {
        matches!(self, Self::Vault { source, .. } if source.is_forbidden())
    }
}

/// Wraps a client error with the step it happened in.
fn failed_at(step: &str) -> impl FnOnce(ClientError) -> AuthError + '_ {
    move |source| AuthError::Vault {
        step: step.to_owned(),
        source,
    }
}

/// A Vault token and what Vault said about its lifetime.
#[derive(Debug, Clone)]
pub struct Token {
    /// The token itself.
    pub secret: Secret,
    /// Time to live when obtained; zero means it never expires.
    pub ttl: Duration,
    /// Whether `renew-self` can extend it.
    pub renewable: bool,
}

/// Logs in with the configured method; keeps an unwrapped secret-id for re-logins.
#[derive(Debug)]
pub struct Authenticator {
    client: VaultClient,
    cfg: AuthConfig,
    /// (wrapping token, secret-id it unwrapped to): a wrapping token works only once.
    unwrapped: Option<(Secret, Secret)>,
}

impl Authenticator {
    /// An authenticator for one method.
    pub fn new(client: VaultClient, cfg: AuthConfig) -> Self {
        Self {
            client,
            cfg,
            unwrapped: None,
        }
    }

    /// Logs in and returns a fresh token. Credential files are re-read each time, and the
    /// TLS files too: a renewed client certificate is what cert auth logs in with.
    pub async fn login(&mut self) -> Result<Token, AuthError> {
        match self.client.reload_tls() {
            Ok(true) => tracing::info!("Vault TLS files changed; new connections use them"),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, "Vault TLS files changed but cannot be used; keeping the previous ones")
            }
        }
        match self.cfg.clone() {
            AuthConfig::Kubernetes {
                role,
                mount_path,
                token_path,
            } => {
                let jwt = read_secret_file("service-account token", &token_path)?;
                let body = json!({ "role": role, "jwt": jwt.expose() });
                self.login_at(&format!("auth/{mount_path}/login"), "kubernetes", &body)
                    .await
            }
            AuthConfig::Jwt {
                role,
                mount_path,
                token_path,
            } => {
                let jwt = read_secret_file("JWT (service-account token)", &token_path)?;
                let body = json!({ "role": role, "jwt": jwt.expose() });
                self.login_at(&format!("auth/{mount_path}/login"), "jwt", &body)
                    .await
            }
            AuthConfig::Cert { role, mount_path } => {
                // The credential is the client certificate of the TLS connection itself.
                let body = match role {
                    Some(name) => json!({ "name": name }),
                    None => json!({}),
                };
                self.login_at(&format!("auth/{mount_path}/login"), "cert", &body)
                    .await
            }
            AuthConfig::Approle {
                mount_path,
                role_id_file,
                secret_id_file,
                secret_id_wrapped,
            } => {
                let role_id = read_secret_file("AppRole role-id", &role_id_file)?;
                let mut secret_id = read_secret_file("AppRole secret-id", &secret_id_file)?;
                if secret_id_wrapped {
                    secret_id = self.unwrap_secret_id(secret_id).await?;
                }
                let body = json!({ "role_id": role_id.expose(), "secret_id": secret_id.expose() });
                self.login_at(&format!("auth/{mount_path}/login"), "approle", &body)
                    .await
            }
            AuthConfig::Token { token_file } => {
                let secret = read_secret_file("token file", &token_file)?;
                self.lookup(secret).await
            }
        }
    }

    async fn login_at(
        &self,
        path: &str,
        method: &str,
        body: &serde_json::Value,
    ) -> Result<Token, AuthError> {
        let step = format!("{method} login ({path})");
        let resp = self
            .client
            .write(path, None, body)
            .await
            .map_err(failed_at(&step))?;
        let auth = resp.and_then(|r| r.auth).ok_or(AuthError::Missing {
            step,
            field: "auth.client_token",
        })?;
        Ok(Token {
            secret: auth.client_token,
            ttl: ttl_secs(auth.lease_duration),
            renewable: auth.renewable,
        })
    }

    /// Unwraps a response-wrapped secret-id, once per wrapping token.
    async fn unwrap_secret_id(&mut self, wrapping: Secret) -> Result<Secret, AuthError> {
        if let Some((w, id)) = &self.unwrapped
            && *w == wrapping
        {
            return Ok(id.clone());
        }
        let step = "unwrapping the AppRole secret-id (sys/wrapping/unwrap)".to_owned();
        let resp = self
            .client
            .write("sys/wrapping/unwrap", Some(&wrapping), &json!({}))
            .await
            .map_err(failed_at(&step))?;
        let id = resp
            .and_then(|r| r.data)
            .and_then(|d| d.get("secret_id").and_then(|v| v.as_str()).map(Secret::new))
            .ok_or(AuthError::Missing {
                step,
                field: "data.secret_id",
            })?;
        self.unwrapped = Some((wrapping, id.clone()));
        Ok(id)
    }

    /// Looks up a token read from a file to learn its TTL.
    async fn lookup(&self, secret: Secret) -> Result<Token, AuthError> {
        let step = "token lookup (auth/token/lookup-self)".to_owned();
        let resp = self
            .client
            .read("auth/token/lookup-self", &secret)
            .await
            .map_err(failed_at(&step))?;
        let data = resp.and_then(|r| r.data).ok_or(AuthError::Missing {
            step,
            field: "data",
        })?;
        Ok(Token {
            secret,
            ttl: ttl_secs(data.get("ttl").and_then(|v| v.as_u64()).unwrap_or(0)),
            renewable: data
                .get("renewable")
                .and_then(|v| v.as_bool())
                .unwrap_or(false),
        })
    }

    /// Renews the token (`auth/token/renew-self`) and returns its new lifetime.
    pub async fn renew(&self, token: &Secret) -> Result<Token, AuthError> {
        let step = "token renewal (auth/token/renew-self)".to_owned();
        let resp = self
            .client
            .write("auth/token/renew-self", Some(token), &json!({}))
            .await
            .map_err(failed_at(&step))?;
        let auth = resp.and_then(|r| r.auth).ok_or(AuthError::Missing {
            step,
            field: "auth",
        })?;
        Ok(Token {
            secret: token.clone(),
            ttl: ttl_secs(auth.lease_duration),
            renewable: auth.renewable,
        })
    }

    /// Revokes the token and, with it, every lease it created.
    pub async fn revoke(&self, token: &Secret) -> Result<(), AuthError> {
        self.client
            .write("auth/token/revoke-self", Some(token), &json!({}))
            .await
            .map(|_| ())
            .map_err(failed_at("token revocation (auth/token/revoke-self)"))
    }
}

/// Reads a credential file, trimming surrounding whitespace.
fn read_secret_file(what: &'static str, path: &Path) -> Result<Secret, AuthError> {
    let raw = std::fs::read_to_string(path).map_err(|source| AuthError::ReadFile {
        what,
        path: path.to_owned(),
        source,
    })?;
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(AuthError::EmptyFile {
            what,
            path: path.to_owned(),
        });
    }
    Ok(Secret::new(trimmed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_files_are_trimmed_and_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("role-id");
        std::fs::write(&p, "  abc-123\n").expect("write");
        assert_eq!(
            read_secret_file("role-id", &p).expect("read").expose(),
            "abc-123"
        );
        std::fs::write(&p, "\n").expect("write");
        let err = read_secret_file("role-id", &p).unwrap_err().to_string();
        assert!(err.contains("is empty"), "{err}");
        let err = read_secret_file("role-id", &dir.path().join("nope"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("cannot read role-id"), "{err}");
    }
}
