//! Throwaway certificate authorities for TLS tests, made with the `openssl` CLI: a CA, server
//! and client certificates it signs, each as PEM files in a temp dir.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::TempDir;

/// A certificate and its private key, as PEM files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM, PKCS#8).
    pub key: PathBuf,
}

/// A CA in a temp dir (removed on drop) that issues certificates for servers and clients.
#[derive(Debug)]
pub struct TestPki {
    dir: PathBuf,
    ca: CertFiles,
    _temp: TempDir,
}

fn openssl(dir: &Path, script: &str, args: &[&str]) {
    let out = Command::new("bash")
        .args(["-c", &format!("set -e\n{script}"), "pki"])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TestPki {
    /// A new self-signed CA with common name `cn`.
    pub fn new(cn: &str) -> TestPki {
        let temp = TempDir::with_prefix("vaultlet-pki-").expect("temp dir");
        let dir = temp.path().to_path_buf();
        openssl(
            &dir,
            r#"openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj "/CN=$1" -addext basicConstraints=critical,CA:TRUE \
  -addext keyUsage=critical,keyCertSign,cRLSign -keyout ca.key -out ca.crt 2>/dev/null"#,
            &[cn],
        );
        TestPki {
            ca: CertFiles {
                cert: dir.join("ca.crt"),
                key: dir.join("ca.key"),
            },
            dir,
            _temp: temp,
        }
    }

    /// The CA certificate (PEM file).
    pub fn ca_cert(&self) -> &Path {
        &self.ca.cert
    }

    /// The CA's private key (PEM file), for tools that issue their own certificates from it.
    pub fn ca_key(&self) -> &Path {
        &self.ca.key
    }

    /// The CA certificate as PEM text.
    pub fn ca_pem(&self) -> String {
        std::fs::read_to_string(&self.ca.cert).expect("read the test CA")
    }

    /// A certificate for `cn` with subject alternative names `sans` (`IP:127.0.0.1`,
    /// `DNS:vault`), usable by a server and a client, written as `<name>.crt`/`<name>.key`.
    pub fn issue(&self, name: &str, cn: &str, sans: &[&str]) -> CertFiles {
        let san = if sans.is_empty() {
            format!("DNS:{cn}")
        } else {
            sans.join(",")
        };
        openssl(
            &self.dir,
            r#"openssl ecparam -name prime256v1 -genkey -noout -out "$1.ec.key"
openssl pkcs8 -topk8 -nocrypt -in "$1.ec.key" -out "$1.key"
openssl req -new -key "$1.key" -subj "/CN=$2" -out "$1.csr"
printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n' "$3" >"$1.ext"
openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 1 \
  -extfile "$1.ext" -out "$1.crt" 2>/dev/null"#,
            &[name, cn, &san],
        );
        CertFiles {
            cert: self.dir.join(format!("{name}.crt")),
            key: self.dir.join(format!("{name}.key")),
        }
    }
}
