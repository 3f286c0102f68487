//! TLS for the webhook and API listeners: rustls (ring), TLS 1.2 and 1.3
//! only, with a certificate resolver that re-reads the certificate and key
//! files when they change on disk (cert-manager rotation, Secret updates)
//! without a restart. Also makes a CA and serving certificate (rcgen) for
//! `--dev` and `rollgate certs generate`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A certificate or key could not be loaded or made.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path} holds no usable PEM private key")]
    BadKey { path: PathBuf },
    #[error("the key in {key} does not match the certificate in {cert}")]
    Mismatch { cert: PathBuf, key: PathBuf },
    #[error("cannot generate a certificate")]
    Generate(#[from] rcgen::Error),
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS configuration")]
    Rustls(#[from] rustls::Error),
}

/// Loads a PEM certificate chain and private key into a rustls `CertifiedKey`.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, Error> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })
    };
    let cert_pem = read(cert)?;
    let key_pem = read(key)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .filter_map(Result::ok)
        .collect();
    if chain.is_empty() {
        return Err(Error::NoCertificate {
            path: cert.to_owned(),
        });
    }
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| Error::BadKey {
        path: key.to_owned(),
    })?;
    let provider = rustls::crypto::ring::default_provider();
    let certified = CertifiedKey::from_der(chain, key_der, &provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => Error::Mismatch {
            cert: cert.to_owned(),
            key: key.to_owned(),
        },
        _ => Error::BadKey {
            path: key.to_owned(),
        },
    })?;
    Ok(certified)
}

/// Serves the current certificate; [`ReloadingCert::reload_if_changed`]
/// swaps in a new one when the files change. A broken new pair is logged and
/// the previous certificate kept, so a half-written rotation never takes the
/// webhook down.
#[derive(Debug)]
pub struct ReloadingCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<(Arc<CertifiedKey>, Fingerprint)>,
}

type Fingerprint = (Option<SystemTime>, Option<SystemTime>, u64, u64);

fn fingerprint(cert: &Path, key: &Path) -> Fingerprint {
    // Kubernetes updates mounted Secrets by swapping a symlink, so metadata
    // is read through the link; size joins mtime against coarse clocks.
    let meta = |p: &Path| std::fs::metadata(p).ok();
    let (c, k) = (meta(cert), meta(key));
    (
        c.as_ref().and_then(|m| m.modified().ok()),
        k.as_ref().and_then(|m| m.modified().ok()),
        c.map_or(0, |m| m.len()),
        k.map_or(0, |m| m.len()),
    )
}

impl ReloadingCert {
    pub fn new(cert_path: &Path, key_path: &Path) -> Result<Self, Error> {
        let print = fingerprint(cert_path, key_path);
        let key = load_certified_key(cert_path, key_path)?;
        Ok(Self {
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
            current: RwLock::new((Arc::new(key), print)),
        })
    }

    /// Reloads the pair when its files changed. True when a new certificate is now served.
    pub fn reload_if_changed(&self) -> bool {
        let print = fingerprint(&self.cert_path, &self.key_path);
        if self.current.read().map(|c| c.1 == print).unwrap_or(false) {
            return false;
        }
        match load_certified_key(&self.cert_path, &self.key_path) {
            Ok(key) => {
                let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
                *current = (Arc::new(key), print);
                tracing::info!(cert = %self.cert_path.display(), "serving certificate reloaded");
                true
            }
            Err(error) => {
                tracing::warn!(error = %crate::error::error_chain(&error), "new certificate not loaded; still serving the previous one");
                false
            }
        }
    }

    /// Checks the files every `interval` until the process ends.
    pub fn spawn_reloader(self: &Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                this.reload_if_changed();
            }
        })
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .0
                .clone(),
        )
    }
}

/// A rustls server config (TLS 1.2/1.3, ALPN h2 and http/1.1) using `resolver`.
pub fn server_config(resolver: Arc<ReloadingCert>) -> Result<Arc<ServerConfig>, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A CA and a serving certificate signed by it, as PEM.
pub struct GeneratedCerts {
    pub ca_cert: String,
    pub cert: String,
    pub key: String,
}

impl std::fmt::Debug for GeneratedCerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeneratedCerts").finish_non_exhaustive()
    }
}

/// Makes a CA (valid 10 years) and a serving certificate (valid `days`) for
/// `names` (DNS names or IP addresses).
pub fn generate(ca_name: &str, names: &[String], days: i64) -> Result<GeneratedCerts, Error> {
    let ca = crate::certs::Ca::new(ca_name)?;
    let (cert, key) = ca.sign_serving(names, days)?;
    Ok(GeneratedCerts {
        ca_cert: ca.cert_pem,
        cert,
        key,
    })
}

/// Writes `contents` to `path`, creating parent directories.
pub fn write_file(path: &Path, contents: &[u8], private: bool) -> Result<(), Error> {
    if private {
        return crate::grants::keys::write_private(path, contents).map_err(|e| match e {
            crate::grants::KeyError::Write { path, source } => Error::Write { path, source },
            other => Error::Write {
                path: path.to_owned(),
                source: std::io::Error::other(other.to_string()),
            },
        });
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| Error::Write {
            path: dir.to_owned(),
            source,
        })?;
    }
    std::fs::write(path, contents).map_err(|source| Error::Write {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let certs = generate("test CA", &[name.to_owned()], 30).unwrap();
        let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
        std::fs::write(&cert, certs.cert).unwrap();
        std::fs::write(&key, certs.key).unwrap();
        (cert, key)
    }

    fn served_cert(r: &ReloadingCert) -> Vec<u8> {
        r.current.read().unwrap().0.cert[0].to_vec()
    }

    #[test]
    fn rotated_files_are_served_and_broken_ones_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = write_pair(dir.path(), "one.example");
        let resolver = ReloadingCert::new(&cert, &key).unwrap();
        let first = served_cert(&resolver);
        assert!(
            !resolver.reload_if_changed(),
            "unchanged files are not reloaded"
        );

        std::thread::sleep(Duration::from_millis(20));
        write_pair(dir.path(), "two.example.with.a.longer.name");
        assert!(resolver.reload_if_changed());
        let second = served_cert(&resolver);
        assert_ne!(first, second);

        std::fs::write(&key, "garbage that is not a key at all").unwrap();
        assert!(!resolver.reload_if_changed());
        assert_eq!(
            served_cert(&resolver),
            second,
            "a broken rotation keeps the old certificate"
        );
    }

    #[test]
    fn a_key_that_does_not_match_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, _) = write_pair(dir.path(), "a.example");
        let other = generate("x", &["b.example".to_owned()], 30).unwrap();
        let key = dir.path().join("other.key");
        std::fs::write(&key, other.key).unwrap();
        assert!(matches!(
            load_certified_key(&cert, &key),
            Err(Error::Mismatch { .. })
        ));
    }
}
