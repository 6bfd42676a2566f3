//! TLS to Vault: the rustls config built from the CA, server name and client certificate
//! settings, and the explanation of a failed handshake in terms of those files.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use super::ClientError;
use crate::config::VaultConfig;

/// The TLS files of a client and where they came from, to explain a failed handshake.
#[derive(Debug, Default)]
pub(super) struct TlsFiles {
    /// `<file> (from <origin>)` of the CA, when one is set.
    ca: Option<String>,
    /// Same for the client certificate.
    client: Option<String>,
}

impl TlsFiles {
    pub(super) fn new(cfg: &VaultConfig) -> Self {
        let describe = |setting: &str, file: &Option<PathBuf>, origin: &Option<String>| {
            file.as_ref().map(|f| {
                let from = origin.as_deref().unwrap_or(setting);
                format!("{} (from {from})", f.display())
            })
        };
        Self {
            ca: describe("vault.caCert", &cfg.ca_cert, &cfg.tls_origin.ca_cert),
            client: describe(
                "vault.clientCert",
                &cfg.client_cert,
                &cfg.tls_origin.client_cert,
            ),
        }
    }

    /// What to check when a request failed with `reason`, if it was a TLS failure a setting
    /// explains (matched on rustls' messages, which name the alert or certificate error).
    pub(super) fn hint(&self, reason: &str) -> Option<String> {
        if reason.contains("invalid peer certificate") {
            return Some(match &self.ca {
                Some(ca) => format!(
                    "the CA file {ca} did not verify Vault's certificate; put the CA that \
                     signed Vault's certificate there (and check vaultlet.io/tls-server-name \
                     if the name differs)"
                ),
                None => "Vault's certificate is not signed by a CA the system trusts; name \
                         the CA with vaultlet.io/tls-ca-secret or vaultlet.io/tls-ca-configmap \
                         (vault.caCert)"
                    .to_owned(),
            });
        }
        let alert = |name: &str| reason.contains(&format!("received fatal alert: {name}"));
        if alert("CertificateRequired") || (self.client.is_none() && alert("BadCertificate")) {
            return Some(match &self.client {
                None => "Vault requires a client certificate and none is configured; name a \
                         kubernetes.io/tls Secret with vaultlet.io/tls-client-secret \
                         (vault.clientCert, vault.clientKey)"
                    .to_owned(),
                Some(client) => format!(
                    "Vault asked for a client certificate but did not take {client}; check it \
                     is the certificate Vault expects"
                ),
            });
        }
        let refused = [
            "BadCertificate",
            "UnknownCA",
            "CertificateUnknown",
            "AccessDenied",
        ];
        if let Some(client) = &self.client
            && refused.iter().any(|a| alert(a))
        {
            return Some(format!(
                "Vault refused the client certificate {client}; it must be signed by a CA \
                 Vault's listener trusts (tls_client_ca_file) and still be valid"
            ));
        }
        None
    }
}

/// A hash of the TLS files' contents (CA, client certificate and key), to notice a change;
/// `None` when the config names none or one cannot be read (then nothing is reloaded).
pub(super) fn tls_stamp(cfg: &VaultConfig) -> Option<u64> {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let files = [&cfg.ca_cert, &cfg.client_cert, &cfg.client_key];
    if files.iter().all(|f| f.is_none()) {
        return None;
    }
    let mut hasher = DefaultHasher::new();
    for file in files.into_iter().flatten() {
        std::fs::read(file).ok()?.hash(&mut hasher);
    }
    Some(hasher.finish())
}

/// Builds a rustls config when the defaults (system roots, URL host) are not enough.
pub(super) fn tls_config(cfg: &VaultConfig) -> Result<Option<rustls::ClientConfig>, ClientError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls_err = |e: rustls::Error| ClientError::Tls(e.to_string());
    if cfg.address.starts_with("http://") {
        // Plain HTTP never uses TLS: skip loading (and holding) the system roots.
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(tls_err)?
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        return Ok(Some(config));
    }
    if cfg.ca_cert.is_none() && cfg.client_cert.is_none() && cfg.tls_server_name.is_none() {
        return Ok(None);
    }
    let label = |setting: &str, origin: &Option<String>| match origin {
        Some(from) => format!("{setting} (from {from})"),
        None => setting.to_owned(),
    };
    let ca_label = label("vault.caCert", &cfg.tls_origin.ca_cert);
    let mut verifier: Arc<dyn ServerCertVerifier> = match &cfg.ca_cert {
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in read_certs(&ca_label, path)? {
                roots.add(cert).map_err(|e| ClientError::TlsFile {
                    what: ca_label.clone(),
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            }
            rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots),
                provider.clone(),
            )
            .build()
            .map_err(|e| ClientError::Tls(e.to_string()))?
        }
        None => {
            Arc::new(rustls_platform_verifier::Verifier::new(provider.clone()).map_err(tls_err)?)
        }
    };
    if let Some(name) = &cfg.tls_server_name {
        let name = ServerName::try_from(name.clone())
            .map_err(|e| ClientError::Tls(format!("vault.tlsServerName {name:?}: {e}")))?;
        verifier = Arc::new(NamedVerifier {
            inner: verifier,
            name,
        });
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls_err)?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match (&cfg.client_cert, &cfg.client_key) {
        (Some(cert), Some(key)) => {
            let certs = read_certs(
                &label("vault.clientCert", &cfg.tls_origin.client_cert),
                cert,
            )?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| ClientError::TlsFile {
                what: label("vault.clientKey", &cfg.tls_origin.client_cert),
                path: key.clone(),
                reason: e.to_string(),
            })?;
            builder.with_client_auth_cert(certs, key).map_err(|e| {
                ClientError::Tls(format!(
                    "{}: the key does not fit the certificate ({e})",
                    label("vault.clientCert", &cfg.tls_origin.client_cert)
                ))
            })?
        }
        _ => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(config))
}

fn read_certs(what: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, ClientError> {
    let err = |reason: String| ClientError::TlsFile {
        what: what.to_owned(),
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no PEM certificate found".into()));
    }
    Ok(certs)
}

/// Verifies the server certificate against a configured name instead of the URL host.
#[derive(Debug)]
struct NamedVerifier {
    inner: Arc<dyn ServerCertVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for NamedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::VaultClient;
    use crate::config::TlsOrigin;

    fn mk_files(ca: bool, client: bool) -> TlsFiles {
        TlsFiles::new(&VaultConfig {
            address: "https://vault:8200".into(),
            ca_cert: ca.then(|| "/vault/tls/ca/ca.crt".into()),
            client_cert: client.then(|| "/vault/tls/client/tls.crt".into()),
            client_key: client.then(|| "/vault/tls/client/tls.key".into()),
            tls_origin: TlsOrigin {
                ca_cert: ca
                    .then(|| "annotation vaultlet.io/tls-ca-secret (Secret vault-ca)".into()),
                client_cert: None,
            },
            ..VaultConfig::default()
        })
    }

    #[test]
    fn tls_failures_name_the_file_and_its_origin() {
        let files = mk_files(true, true);
        assert_eq!(
            files.hint("invalid peer certificate: UnknownIssuer"),
            Some(
                "the CA file /vault/tls/ca/ca.crt (from annotation vaultlet.io/tls-ca-secret \
                 (Secret vault-ca)) did not verify Vault's certificate; put the CA that signed \
                 Vault's certificate there (and check vaultlet.io/tls-server-name if the name \
                 differs)"
                    .to_owned()
            )
        );
        let refused = files.hint("received fatal alert: BadCertificate");
        assert!(
            refused.as_deref().is_some_and(|h| h.starts_with(
                "Vault refused the client certificate /vault/tls/client/tls.crt (from vault.clientCert)"
            )),
            "{refused:?}"
        );
        let missing = mk_files(false, false).hint("received fatal alert: CertificateRequired");
        assert!(
            missing
                .as_deref()
                .is_some_and(|h| h.contains("vaultlet.io/tls-client-secret")),
            "{missing:?}"
        );
        assert_eq!(files.hint("Connection refused (os error 111)"), None);
    }

    fn mk_vault(dir: &Path, with_key: &str) -> VaultConfig {
        let ck = rcgen::generate_simple_self_signed(vec!["vault.test".to_owned()]).expect("cert");
        let other = rcgen::generate_simple_self_signed(vec!["x".to_owned()]).expect("cert");
        let (cert, ca, key) = (dir.join("c.pem"), dir.join("ca.pem"), dir.join("k.pem"));
        std::fs::write(&cert, ck.cert.pem()).expect("write");
        std::fs::write(&ca, ck.cert.pem()).expect("write");
        let key_pem = match with_key {
            "own" => ck.signing_key.serialize_pem(),
            "other" => other.signing_key.serialize_pem(),
            _ => "garbage".to_owned(),
        };
        std::fs::write(&key, key_pem).expect("write");
        VaultConfig {
            address: "https://127.0.0.1:8200".into(),
            namespace: None,
            ca_cert: Some(ca),
            tls_server_name: Some("vault.test".into()),
            client_cert: Some(cert),
            client_key: Some(key),
            tls_origin: TlsOrigin::default(),
            redirect_addresses: Vec::new(),
        }
    }

    #[test]
    fn client_certificate_and_key_must_match() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(VaultClient::new(&mk_vault(dir.path(), "own")).is_ok());
        let err = VaultClient::new(&mk_vault(dir.path(), "other"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("invalid TLS settings"), "{err}");
        let err = VaultClient::new(&mk_vault(dir.path(), "none"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("vault.clientKey"), "{err}");
    }

    #[test]
    fn missing_ca_file_names_the_setting() {
        let err = VaultClient::new(&VaultConfig {
            address: "https://vault:8200".into(),
            namespace: None,
            ca_cert: Some("/nonexistent/ca.pem".into()),
            tls_server_name: None,
            client_cert: None,
            client_key: None,
            tls_origin: TlsOrigin::default(),
            redirect_addresses: Vec::new(),
        })
        .unwrap_err();
        assert!(err.to_string().starts_with("vault.caCert"), "{err}");
    }
}
