//! A second, TLS listener on a dev server that requires and verifies client certificates
//! (`tls_require_and_verify_client_cert`), and TLS certificate auth set up against it.

use std::net::TcpStream;
use std::path::Path;

use serde_json::json;

use super::{OpenBao, START_TIMEOUT};
use crate::pki::{CertFiles, TestPki};
use crate::{util, wait_until};

/// The TLS listener of [`OpenBao::dev_mtls`].
#[derive(Debug, Clone)]
pub(super) struct TlsListener {
    pub(super) port: u16,
    pub(super) config: std::path::PathBuf,
}

impl OpenBao {
    /// A dev server (root token, KV v2 at `secret/`, plain HTTP for the helpers) with a second
    /// listener on `https://127.0.0.1:<port>` serving `server` (a certificate of `pki`, say
    /// from [`TestPki::issue`]) that requires a client certificate signed by `client_ca`.
    pub fn dev_mtls(server: &CertFiles, client_ca: &Path) -> OpenBao {
        let port = util::free_port();
        let mut bao = OpenBao::dev_unstarted();
        let config = bao.dir.join("tls.hcl");
        let hcl = format!(
            r#"listener "tcp" {{
  address                            = "127.0.0.1:{port}"
  tls_cert_file                      = "{cert}"
  tls_key_file                       = "{key}"
  tls_client_ca_file                 = "{ca}"
  tls_require_and_verify_client_cert = true
}}
"#,
            cert = server.cert.display(),
            key = server.key.display(),
            ca = client_ca.display(),
        );
        std::fs::write(&config, hcl).expect("write the TLS listener config");
        bao.tls = Some(TlsListener { port, config });
        bao.spawn();
        bao.wait_health(|status| status == 200, "OpenBao dev server healthy");
        wait_until(START_TIMEOUT, "OpenBao's TLS listener accepts", || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        bao
    }

    /// `https://127.0.0.1:<port>` of the TLS listener.
    ///
    /// # Panics
    /// When the server has none (not started with [`dev_mtls`](Self::dev_mtls)).
    pub fn tls_addr(&self) -> String {
        let tls = self
            .tls
            .as_ref()
            .expect("OpenBao started without a TLS listener");
        format!("https://127.0.0.1:{}", tls.port)
    }

    /// The TLS listener's port.
    pub fn tls_port(&self) -> u16 {
        self.tls_addr()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_default()
    }

    /// Enables TLS certificate auth at `cert/` (once) with role `role` trusting client
    /// certificates signed by `pki`'s CA, with `policies`.
    pub fn enable_cert(&self, role: &str, pki: &TestPki, policies: &[&str]) {
        self.enable_auth("cert", "cert");
        self.write(
            &format!("auth/cert/certs/{role}"),
            json!({
                "certificate": pki.ca_pem(),
                "token_policies": policies,
                "token_ttl": "1h",
            }),
        );
    }
}
