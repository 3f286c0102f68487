//! `rollgate certs generate`: the CA and serving certificate a cluster install
//! without cert-manager needs, for the DNS names of rollgate's Services, and
//! optionally the grant signing key. Files only: applying them to a cluster
//! (Secrets, the webhook's `caBundle`) is left to `certs/generate.sh` and
//! kubectl, so this needs no cluster.
//!
//! Rotation: run it again on the same directory. The CA (`ca.crt`/`ca.key`)
//! is reused unless `--new-ca`, so the `caBundle` stays the same and only
//! `tls.crt`/`tls.key` change; the running server re-reads those files
//! ([`crate::tls::ReloadingCert`]). [`dns_names`] is pure; [`generate`] does
//! the file I/O. `serve --dev` makes its certificates through [`Ca`] too.

use std::path::{Path, PathBuf};

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose,
};

/// Certificates or keys could not be made, read or written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot generate a certificate")]
    Generate(#[from] rcgen::Error),
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a usable CA (PEM certificate and its key); pass --new-ca to replace it")]
    BadCa {
        path: PathBuf,
        #[source]
        source: rcgen::Error,
    },
    #[error("cannot write the certificate files")]
    Write(#[from] crate::tls::Error),
    #[error("signing key")]
    Key(#[from] crate::grants::KeyError),
    #[error("{0:?} is not a DNS-1123 label (a Service or namespace name)")]
    BadName(String),
}

/// Validity of a CA made here: ten years, so the `caBundle` rarely changes.
pub const CA_DAYS: i64 = 3650;

/// A certificate authority able to sign serving certificates.
pub struct Ca {
    issuer: rcgen::Issuer<'static, KeyPair>,
    /// The CA certificate, PEM: what the webhook's `caBundle` holds (base64).
    pub cert_pem: String,
    /// The CA's private key, PEM.
    pub key_pem: String,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").finish_non_exhaustive()
    }
}

impl Ca {
    /// A new self-signed CA named `name`, valid [`CA_DAYS`] from an hour ago.
    pub fn new(name: &str) -> Result<Self, rcgen::Error> {
        let now = time::OffsetDateTime::now_utc();
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(CA_DAYS);
        let cert = params.self_signed(&key)?;
        let key_pem = key.serialize_pem();
        Ok(Self {
            cert_pem: cert.pem(),
            key_pem,
            issuer: rcgen::Issuer::new(params, key),
        })
    }

    /// The CA made earlier, from its PEM certificate and key.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, rcgen::Error> {
        let key = KeyPair::from_pem(key_pem)?;
        Ok(Self {
            issuer: rcgen::Issuer::from_ca_cert_pem(cert_pem, key)?,
            cert_pem: cert_pem.to_owned(),
            key_pem: key_pem.to_owned(),
        })
    }

    /// A serving certificate (server auth) for `names` (DNS names or IP
    /// addresses; the first is the common name), valid `days` from an hour
    /// ago. Returns the certificate and its new private key, PEM.
    pub fn sign_serving(
        &self,
        names: &[String],
        days: i64,
    ) -> Result<(String, String), rcgen::Error> {
        let now = time::OffsetDateTime::now_utc();
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(names.to_vec())?;
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            names.first().map(String::as_str).unwrap_or("rollgate"),
        );
        params.distinguished_name = dn;
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(days);
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// The webhook's `caBundle`: the CA certificate PEM, base64.
    pub fn bundle(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.cert_pem.as_bytes())
    }
}

/// What `rollgate certs generate` makes.
#[derive(Debug, Clone)]
pub struct Request {
    /// Service names (e.g. `rollgate-webhook`, `rollgate-api`).
    pub services: Vec<String>,
    pub namespace: String,
    /// More DNS names or IP addresses (an Ingress host of the API).
    pub extra_names: Vec<String>,
    pub out: PathBuf,
    /// Validity of the serving certificate.
    pub days: i64,
    /// Replace an existing CA in `out` instead of reusing it.
    pub new_ca: bool,
    /// Also write `signing-key.pem` (Ed25519, PKCS#8) when `out` has none.
    pub signing_key: bool,
}

/// What [`generate`] did.
#[derive(Debug, Clone)]
pub struct Generated {
    /// base64 of `ca.crt`: the webhook's `clientConfig.caBundle`.
    pub ca_bundle: String,
    /// The serving certificate's names.
    pub names: Vec<String>,
    /// True when an existing CA in `out` signed the new certificate.
    pub reused_ca: bool,
    /// Every file written.
    pub written: Vec<PathBuf>,
}

/// The names a Service answers to inside the cluster, for each service:
/// `S`, `S.N`, `S.N.svc`, `S.N.svc.cluster.local`; then `extra`, without
/// duplicates. The first name is `S.N.svc` of the first service (the name
/// the API server dials for a webhook).
pub fn dns_names(services: &[String], namespace: &str, extra: &[String]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let mut push = |name: String| {
        if !names.contains(&name) {
            names.push(name);
        }
    };
    if let Some(first) = services.first() {
        push(format!("{first}.{namespace}.svc"));
    }
    for service in services {
        push(service.clone());
        push(format!("{service}.{namespace}"));
        push(format!("{service}.{namespace}.svc"));
        push(format!("{service}.{namespace}.svc.cluster.local"));
    }
    for name in extra {
        push(name.clone());
    }
    names
}

/// Writes `ca.crt`, `ca.key` (0600), `tls.crt`, `tls.key` (0600) and, when
/// asked, `signing-key.pem` (0600, only if absent) into `request.out`.
pub fn generate(request: &Request) -> Result<Generated, Error> {
    for name in request.services.iter().chain([&request.namespace]) {
        crate::names::validate_dns_label(name).map_err(|_| Error::BadName(name.clone()))?;
    }
    let out = &request.out;
    let (ca_cert, ca_key) = (out.join("ca.crt"), out.join("ca.key"));
    let existing = !request.new_ca && ca_cert.exists() && ca_key.exists();
    let ca = if existing {
        let cert_pem = read(&ca_cert)?;
        let key_pem = read(&ca_key)?;
        Ca::from_pem(&cert_pem, &key_pem).map_err(|source| Error::BadCa {
            path: ca_cert.clone(),
            source,
        })?
    } else {
        Ca::new(&format!("rollgate CA ({})", request.namespace))?
    };
    let names = dns_names(&request.services, &request.namespace, &request.extra_names);
    let (cert, key) = ca.sign_serving(&names, request.days)?;

    let mut written = Vec::new();
    let mut write = |name: &str, contents: &str, private: bool| -> Result<(), Error> {
        let path = out.join(name);
        crate::tls::write_file(&path, contents.as_bytes(), private)?;
        written.push(path);
        Ok(())
    };
    if !existing {
        write("ca.crt", &ca.cert_pem, false)?;
        write("ca.key", &ca.key_pem, true)?;
    }
    // The key first: a server re-reading the pair never sees a new
    // certificate with the old key for longer than this one write.
    write("tls.key", &key, true)?;
    write("tls.crt", &cert, false)?;
    let signing = out.join("signing-key.pem");
    if request.signing_key && !signing.exists() {
        crate::grants::keys::write_private(
            &signing,
            crate::grants::keys::generate_pem()?.as_bytes(),
        )?;
        written.push(signing);
    }
    Ok(Generated {
        ca_bundle: ca.bundle(),
        names,
        reused_ca: existing,
        written,
    })
}

/// A `kubectl patch` command that sets `caBundle` on the first `webhooks`
/// entries of the ValidatingWebhookConfiguration `name` (rollgate's has two).
pub fn patch_command(name: &str, ca_bundle: &str, entries: usize) -> String {
    let ops: Vec<serde_json::Value> = (0..entries)
        .map(|i| {
            serde_json::json!({
                "op": "add",
                "path": format!("/webhooks/{i}/clientConfig/caBundle"),
                "value": ca_bundle,
            })
        })
        .collect();
    format!(
        "kubectl patch validatingwebhookconfiguration {name} --type=json -p '{}'",
        serde_json::Value::Array(ops)
    )
}

fn read(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mk_request(dir: &Path) -> Request {
        Request {
            services: vec!["rollgate-webhook".into(), "rollgate-api".into()],
            namespace: "rollgate".into(),
            extra_names: vec!["rollgate.example.com".into()],
            out: dir.to_owned(),
            days: 30,
            new_ca: false,
            signing_key: true,
        }
    }

    #[test]
    fn dns_names_cover_every_form_of_every_service_once() {
        let names = dns_names(
            &["rollgate-webhook".into(), "rollgate-api".into()],
            "rollgate",
            &["rollgate-api".into()],
        );
        assert_eq!(
            names,
            [
                "rollgate-webhook.rollgate.svc",
                "rollgate-webhook",
                "rollgate-webhook.rollgate",
                "rollgate-webhook.rollgate.svc.cluster.local",
                "rollgate-api",
                "rollgate-api.rollgate",
                "rollgate-api.rollgate.svc",
                "rollgate-api.rollgate.svc.cluster.local",
            ]
        );
    }

    #[test]
    fn a_second_run_keeps_the_ca_and_replaces_the_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let first = generate(&mk_request(dir.path())).unwrap();
        assert!(!first.reused_ca);
        let key = std::fs::read(dir.path().join("signing-key.pem")).unwrap();
        assert!(crate::grants::SigningKey::from_pem(&key).is_some());
        let cert = std::fs::read(dir.path().join("tls.crt")).unwrap();

        let second = generate(&mk_request(dir.path())).unwrap();
        assert!(second.reused_ca, "the CA is reused");
        assert_eq!(second.ca_bundle, first.ca_bundle, "so the caBundle stays");
        assert_ne!(std::fs::read(dir.path().join("tls.crt")).unwrap(), cert);
        assert_eq!(
            std::fs::read(dir.path().join("signing-key.pem")).unwrap(),
            key,
            "an existing signing key is never replaced"
        );
        crate::tls::load_certified_key(&dir.path().join("tls.crt"), &dir.path().join("tls.key"))
            .unwrap();

        let third = generate(&Request {
            new_ca: true,
            ..mk_request(dir.path())
        })
        .unwrap();
        assert_ne!(third.ca_bundle, first.ca_bundle, "--new-ca replaces it");
    }

    #[test]
    fn bad_service_names_and_broken_cas_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let bad = Request {
            services: vec!["Rollgate_Webhook".into()],
            ..mk_request(dir.path())
        };
        assert!(matches!(generate(&bad), Err(Error::BadName(n)) if n == "Rollgate_Webhook"));
        std::fs::write(dir.path().join("ca.crt"), "not a certificate").unwrap();
        std::fs::write(dir.path().join("ca.key"), "not a key").unwrap();
        let err = generate(&mk_request(dir.path())).unwrap_err();
        assert!(err.to_string().contains("--new-ca"), "{err}");
    }

    #[test]
    fn patch_command_sets_every_entry() {
        let command = patch_command("rollgate", "Q0E=", 2);
        assert_eq!(
            command,
            r#"kubectl patch validatingwebhookconfiguration rollgate --type=json -p '[{"op":"add","path":"/webhooks/0/clientConfig/caBundle","value":"Q0E="},{"op":"add","path":"/webhooks/1/clientConfig/caBundle","value":"Q0E="}]'"#
        );
    }
}
