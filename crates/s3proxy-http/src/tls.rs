//! HTTPS for the S3 listener: a PEM certificate chain and private key, loaded with
//! rustls, reloaded in place (on SIGHUP, or when the files change) without dropping a
//! connection. A reload that fails keeps the certificate in use and says why.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

/// The certificate and key files of the listener and the configuration built from them.
pub struct TlsFiles {
    cert_file: PathBuf,
    key_file: PathBuf,
    current: RwLock<Loaded>,
}

struct Loaded {
    config: Arc<rustls::ServerConfig>,
    stamps: (Option<SystemTime>, Option<SystemTime>),
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn build(cert_file: &Path, key_file: &Path) -> Result<Arc<rustls::ServerConfig>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .map_err(|e| format!("cannot read {}: {e}", cert_file.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: not a PEM certificate chain: {e}", cert_file.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no certificate", cert_file.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| format!("{}: no PEM private key: {e}", key_file.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS versions: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            format!(
                "{} and {} do not make a certificate and its key: {e}",
                cert_file.display(),
                key_file.display()
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

impl TlsFiles {
    /// Load `cert_file` (PEM chain, leaf first) and `key_file` (PEM private key).
    pub fn load(
        cert_file: impl Into<PathBuf>,
        key_file: impl Into<PathBuf>,
    ) -> Result<Arc<TlsFiles>, String> {
        let (cert_file, key_file) = (cert_file.into(), key_file.into());
        let config = build(&cert_file, &key_file)?;
        let stamps = (modified(&cert_file), modified(&key_file));
        Ok(Arc::new(TlsFiles {
            cert_file,
            key_file,
            current: RwLock::new(Loaded { config, stamps }),
        }))
    }

    /// Read the files again; on failure the configuration in use stays.
    pub fn reload(&self) -> Result<(), String> {
        let config = build(&self.cert_file, &self.key_file)?;
        let stamps = (modified(&self.cert_file), modified(&self.key_file));
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        *current = Loaded { config, stamps };
        Ok(())
    }

    /// Reload when either file's modification time changed since the last load.
    pub fn reload_if_changed(&self) -> Option<Result<(), String>> {
        let now = (modified(&self.cert_file), modified(&self.key_file));
        let seen = self
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .stamps;
        (now != seen).then(|| self.reload())
    }

    /// Check the files every `every` and reload them when they change, logging the
    /// outcome, for as long as the returned task runs.
    pub fn watch(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let files = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match files.reload_if_changed() {
                    Some(Ok(())) => log::info!(
                        "TLS certificate reloaded from {}",
                        files.cert_file.display()
                    ),
                    Some(Err(e)) => {
                        log::error!("TLS reload failed, the previous certificate stays: {e}")
                    }
                    None => {}
                }
            }
        })
    }

    /// An acceptor with the configuration in use now.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        let current = self.current.read().unwrap_or_else(|e| e.into_inner());
        tokio_rustls::TlsAcceptor::from(current.config.clone())
    }
}

impl std::fmt::Debug for TlsFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsFiles")
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .finish_non_exhaustive()
    }
}
