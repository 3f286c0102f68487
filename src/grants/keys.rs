//! Ed25519 keys: the signing key (PKCS#8 PEM on disk, generated in dev mode)
//! and the static set of verification keys by `kid`, published as JWKS.
//! The `kid` is the RFC 7638 thumbprint of the public key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{DecodingKey, EncodingKey};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{PrivateKeyDer, SubjectPublicKeyInfoDer};
use serde_json::json;
use sha2::{Digest, Sha256};

/// A key could not be loaded or made.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read key file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write key file {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("key file {path} is not a PKCS#8 PEM Ed25519 private key")]
    NotEd25519 { path: PathBuf },
    #[error("public key file {path} is not a PEM Ed25519 public key")]
    NotEd25519Public { path: PathBuf },
    #[error("cannot generate a signing key")]
    Generate(#[source] rcgen::Error),
}

/// DER prefix of an Ed25519 SubjectPublicKeyInfo; the 32-byte key follows.
const SPKI_ED25519_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// rollgate's signing key. `Debug` never shows the private half.
#[derive(Clone)]
pub struct SigningKey {
    pub kid: String,
    pub public: [u8; 32],
    encoding: EncodingKey,
    pkcs8: Vec<u8>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Reads a PKCS#8 PEM Ed25519 key.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let pem = std::fs::read(path).map_err(|source| KeyError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_pem(&pem).ok_or_else(|| KeyError::NotEd25519 {
            path: path.to_owned(),
        })
    }

    /// Reads the key at `path`, or creates one there (mode 0600) when absent.
    pub fn load_or_generate(path: &Path) -> Result<Self, KeyError> {
        if path.exists() {
            return Self::load(path);
        }
        let pem = generate_pem()?;
        write_private(path, pem.as_bytes())?;
        Self::load(path)
    }

    /// Parses PKCS#8 PEM bytes; `None` unless it is an Ed25519 key.
    pub fn from_pem(pem: &[u8]) -> Option<Self> {
        let der = PrivateKeyDer::from_pem_slice(pem).ok()?;
        let PrivateKeyDer::Pkcs8(pkcs8) = der else {
            return None;
        };
        let pkcs8 = pkcs8.secret_pkcs8_der().to_vec();
        let pair = rcgen::KeyPair::try_from(pkcs8.as_slice()).ok()?;
        if pair.algorithm() != &rcgen::PKCS_ED25519 {
            return None;
        }
        let public: [u8; 32] = pair.public_key_raw().try_into().ok()?;
        let encoding = EncodingKey::from_ed_der(&pkcs8);
        Some(Self {
            kid: thumbprint(&public),
            public,
            encoding,
            pkcs8,
        })
    }

    pub fn encoding_key(&self) -> &EncodingKey {
        &self.encoding
    }

    /// Signs arbitrary bytes (audit checkpoints) with the same key.
    pub fn key_pair(&self) -> Option<rcgen::KeyPair> {
        rcgen::KeyPair::try_from(self.pkcs8.as_slice()).ok()
    }

    /// The public key as PEM (SubjectPublicKeyInfo), for offline verification.
    pub fn public_pem(&self) -> String {
        let mut der = SPKI_ED25519_PREFIX.to_vec();
        der.extend_from_slice(&self.public);
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        format!("-----BEGIN PUBLIC KEY-----\n{b64}\n-----END PUBLIC KEY-----\n")
    }
}

/// A fresh Ed25519 key as PKCS#8 PEM.
pub fn generate_pem() -> Result<String, KeyError> {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).map_err(KeyError::Generate)?;
    Ok(pair.serialize_pem())
}

/// Writes a private file readable by its owner only.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let write_err = |source| KeyError::Write {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(write_err)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options.open(path).map_err(write_err)?;
    file.write_all(bytes).map_err(write_err)
}

/// RFC 7638 JWK thumbprint of an Ed25519 public key, base64url.
pub fn thumbprint(public: &[u8; 32]) -> String {
    let x = URL_SAFE_NO_PAD.encode(public);
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

/// The static set of keys grants may be signed with, by `kid`. Header fields
/// that point elsewhere (`jku`, `x5u`, `jwk`) are never consulted.
#[derive(Clone, Default)]
pub struct KeySet {
    keys: BTreeMap<String, ([u8; 32], DecodingKey)>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.keys.keys()).finish()
    }
}

impl KeySet {
    /// A set holding `signing`'s public key.
    pub fn new(signing: &SigningKey) -> Self {
        let mut set = Self::default();
        set.insert(signing.public);
        set
    }

    /// Adds a public key (e.g. the previous key during rotation).
    pub fn insert(&mut self, public: [u8; 32]) {
        let decoding = DecodingKey::from_ed_der(&public);
        self.keys.insert(thumbprint(&public), (public, decoding));
    }

    /// Adds a PEM public key (SubjectPublicKeyInfo) read from `path`.
    pub fn insert_pem_file(&mut self, path: &Path) -> Result<(), KeyError> {
        let pem = std::fs::read(path).map_err(|source| KeyError::Read {
            path: path.to_owned(),
            source,
        })?;
        let bad = || KeyError::NotEd25519Public {
            path: path.to_owned(),
        };
        let spki = SubjectPublicKeyInfoDer::from_pem_slice(&pem).map_err(|_| bad())?;
        let raw = spki
            .as_ref()
            .strip_prefix(&SPKI_ED25519_PREFIX[..])
            .ok_or_else(bad)?;
        self.insert(raw.try_into().map_err(|_| bad())?);
        Ok(())
    }

    pub fn get(&self, kid: &str) -> Option<&DecodingKey> {
        self.keys.get(kid).map(|(_, k)| k)
    }

    /// The Ed25519 keys of a JWKS document (as [`KeySet::jwks`] writes it),
    /// for verifying offline; `None` when it is not JWKS or holds none.
    pub fn from_jwks(doc: &[u8]) -> Option<Self> {
        let doc: serde_json::Value = serde_json::from_slice(doc).ok()?;
        let mut set = Self::default();
        for key in doc.get("keys")?.as_array()? {
            if key["kty"] != "OKP" || key["crv"] != "Ed25519" {
                continue;
            }
            let x = URL_SAFE_NO_PAD.decode(key["x"].as_str()?).ok()?;
            set.insert(x.try_into().ok()?);
        }
        (!set.keys.is_empty()).then_some(set)
    }

    /// The JWKS document served at `/.well-known/jwks.json`.
    pub fn jwks(&self) -> serde_json::Value {
        let keys: Vec<_> = self
            .keys
            .iter()
            .map(|(kid, (public, _))| {
                json!({"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig",
                       "kid": kid, "x": URL_SAFE_NO_PAD.encode(public)})
            })
            .collect();
        json!({ "keys": keys })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_key_round_trips_through_pem_and_has_a_stable_kid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        let first = SigningKey::load_or_generate(&path).unwrap();
        let again = SigningKey::load_or_generate(&path).unwrap();
        assert_eq!(first.kid, again.kid, "reloading must not make a new key");
        assert_eq!(first.kid.len(), 43);
        let jwks = KeySet::new(&first).jwks();
        assert_eq!(jwks["keys"][0]["kid"], first.kid);
        assert_eq!(jwks["keys"][0]["crv"], "Ed25519");
    }

    #[test]
    fn public_pem_loads_into_a_key_set() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::load_or_generate(&dir.path().join("k.pem")).unwrap();
        let pub_path = dir.path().join("k.pub");
        std::fs::write(&pub_path, key.public_pem()).unwrap();
        let mut set = KeySet::default();
        set.insert_pem_file(&pub_path).unwrap();
        assert!(set.get(&key.kid).is_some());
    }

    #[test]
    fn jwks_reads_back_into_the_same_key_set() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::load_or_generate(&dir.path().join("k.pem")).unwrap();
        let jwks = KeySet::new(&key).jwks().to_string();
        let set = KeySet::from_jwks(jwks.as_bytes()).unwrap();
        assert!(set.get(&key.kid).is_some());
        assert!(KeySet::from_jwks(br#"{"keys":[]}"#).is_none());
        assert!(KeySet::from_jwks(b"-----BEGIN PUBLIC KEY-----").is_none());
    }

    #[test]
    fn non_ed25519_keys_are_refused() {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        assert!(SigningKey::from_pem(pair.serialize_pem().as_bytes()).is_none());
        assert!(SigningKey::from_pem(b"not a key").is_none());
    }
}
