//! Serving certificate: loaded from PEM files and reloaded when they change.
//!
//! The directories of the certificate and key are watched (a Secret volume swaps a `..data`
//! symlink, which a watch on the file itself misses), with a periodic check as a fallback.
//! New connections get the new certificate; established ones keep theirs.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use notify::{RecursiveMode, Watcher};
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::metrics::Metrics;

/// How often the files are re-checked even without a watch event.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Why a certificate could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error(
        "cannot read {path}: {source}; check --tls-cert-file/--tls-key-file and the mounted Secret"
    )]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The PEM content is unusable.
    #[error("{path}: {reason}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the pair (e.g. the key does not match the certificate).
    #[error("the certificate and key cannot be used together: {0}")]
    Config(#[from] rustls::Error),
}

/// The PEM bytes last loaded, to detect real changes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Loaded {
    cert: Vec<u8>,
    key: Vec<u8>,
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Builds a server config (TLS 1.2+, ALPN h2 and http/1.1, ring) from PEM bytes.
pub fn server_config(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert_path: &Path,
    key_path: &Path,
) -> Result<ServerConfig, TlsError> {
    let certs = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: cert_path.to_owned(),
            reason: format!("not a PEM certificate chain: {e}"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: cert_path.to_owned(),
            reason: "contains no CERTIFICATE block".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::Pem {
        path: key_path.to_owned(),
        reason: format!("no usable private key: {e}"),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The current serving config, swapped atomically on reload.
#[derive(Debug)]
pub struct CertStore {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: ArcSwapOption<ServerConfig>,
    loaded: std::sync::Mutex<Loaded>,
}

impl CertStore {
    /// A store for these files; nothing is loaded yet.
    pub fn new(cert_path: PathBuf, key_path: PathBuf) -> Self {
        Self {
            cert_path,
            key_path,
            current: ArcSwapOption::empty(),
            loaded: std::sync::Mutex::new(Loaded::default()),
        }
    }

    /// The config for a new connection; `None` until a certificate has loaded.
    pub fn current(&self) -> Option<Arc<ServerConfig>> {
        self.current.load_full()
    }

    /// Whether a certificate is loaded.
    pub fn is_loaded(&self) -> bool {
        self.current.load().is_some()
    }

    /// Re-reads the files; swaps the config when their content changed and is valid.
    /// Returns `Ok(true)` when a new certificate was installed.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let next = Loaded {
            cert: read(&self.cert_path)?,
            key: read(&self.key_path)?,
        };
        let mut loaded = self
            .loaded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *loaded == next && self.is_loaded() {
            return Ok(false);
        }
        let config = server_config(&next.cert, &next.key, &self.cert_path, &self.key_path)?;
        self.current.store(Some(Arc::new(config)));
        *loaded = next;
        Ok(true)
    }

    fn watched_dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = [&self.cert_path, &self.key_path]
            .iter()
            .map(|p| match p.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
                _ => PathBuf::from("."),
            })
            .collect();
        dirs.dedup();
        dirs
    }
}

/// Keeps `store` in sync with its files until `shutdown` fires. Watch events trigger an
/// immediate check; [`POLL_INTERVAL`] bounds the delay when events are missed.
pub async fn watch(
    store: Arc<CertStore>,
    metrics: Arc<Metrics>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Reading the files ourselves raises access events: reacting to those would loop.
        if event.is_ok_and(|e| !matches!(e.kind, notify::EventKind::Access(_))) {
            let _ = tx.send(());
        }
    });
    // Keep the watcher alive for the loop; without it the periodic check still works.
    let _watcher = match watcher {
        Ok(mut w) => {
            for dir in store.watched_dirs() {
                if let Err(e) = w.watch(&dir, RecursiveMode::NonRecursive) {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot watch the certificate directory; relying on periodic checks");
                }
            }
            Some(w)
        }
        Err(e) => {
            tracing::warn!(error = %e, "file watching unavailable; relying on periodic checks");
            None
        }
    };
    let mut last_error: Option<String> = None;
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = rx.recv() => {}
            _ = tokio::time::sleep(POLL_INTERVAL) => {}
        }
        while rx.try_recv().is_ok() {}
        match store.reload() {
            Ok(true) => {
                metrics.cert_reload(true);
                last_error = None;
                tracing::info!(cert = %store.cert_path.display(), "serving certificate reloaded");
            }
            Ok(false) => {}
            Err(e) => {
                let msg = e.to_string();
                // A half-written pair is normal during a rotation: log each distinct error once.
                if last_error.as_deref() != Some(&msg) {
                    metrics.cert_reload(false);
                    tracing::warn!(error = %msg, "serving certificate not reloaded; keeping the previous one");
                    last_error = Some(msg);
                }
            }
        }
    }
}
