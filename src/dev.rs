//! `serve --dev`: everything a first run needs, in one directory (default
//! `.rollgate-dev`): a CA and a serving certificate for localhost/127.0.0.1,
//! the grant signing key, demo users (`users.json`), a sample restart review,
//! and the quickstart printed at start. Existing files are reused, so tokens
//! and the store survive restarts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::auth::DevUsersFile;

/// The restart review the quickstart sends, shaped like the API server's.
pub const SAMPLE_REVIEW: &str = include_str!("../tests/data/restart-review.json");
/// Namespace, application and user of [`SAMPLE_REVIEW`] once adapted for dev.
pub const SAMPLE_NAMESPACE: &str = "production";
pub const SAMPLE_APPLICATION: &str = "checkout-api";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot create the dev directory {path}")]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("certificates")]
    Tls(#[from] crate::tls::Error),
    #[error("signing key")]
    Key(#[from] crate::grants::KeyError),
    #[error("cannot read or write {path}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid users file")]
    Users {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// Creates whatever is missing in `dir`.
pub fn prepare(dir: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Dir {
        path: dir.to_owned(),
        source,
    })?;
    let (ca, cert, key) = (dir.join("ca.crt"), dir.join("tls.crt"), dir.join("tls.key"));
    if !(ca.exists() && cert.exists() && key.exists()) {
        let names = vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
        ];
        let generated = crate::tls::generate("rollgate dev CA", &names, 365)?;
        crate::tls::write_file(&ca, generated.ca_cert.as_bytes(), false)?;
        crate::tls::write_file(&cert, generated.cert.as_bytes(), false)?;
        crate::tls::write_file(&key, generated.key.as_bytes(), true)?;
    }
    crate::grants::SigningKey::load_or_generate(&dir.join("signing-key.pem"))?;
    let users = dir.join("users.json");
    if !users.exists() {
        let json = serde_json::to_vec_pretty(&crate::auth::demo_users()).map_err(|source| {
            Error::Users {
                path: users.clone(),
                source,
            }
        })?;
        crate::grants::keys::write_private(&users, &json)?;
    }
    let review = dir.join("restart-review.json");
    if !review.exists() {
        let sample = sample_review("alice");
        std::fs::write(&review, sample).map_err(|source| Error::File {
            path: review.clone(),
            source,
        })?;
    }
    Ok(())
}

/// The sample restart review, by `user`.
pub fn sample_review(user: &str) -> String {
    let mut review: serde_json::Value = serde_json::from_str(SAMPLE_REVIEW).unwrap_or_default();
    review["request"]["userInfo"]["username"] = user.into();
    review["request"]["userInfo"]["groups"] =
        serde_json::json!(["developers", "system:authenticated"]);
    review.to_string()
}

fn read_users(dir: &Path) -> Result<DevUsersFile, Error> {
    let path = dir.join("users.json");
    let bytes = std::fs::read(&path).map_err(|source| Error::File {
        path: path.clone(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|source| Error::Users { path, source })
}

/// The quickstart printed by `serve --dev`: curl and CLI lines that work as
/// printed from any directory (absolute paths, the bound ports, the tokens).
pub fn quickstart(
    dir: &Path,
    webhook: SocketAddr,
    api: SocketAddr,
    admin: SocketAddr,
) -> Result<String, Error> {
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned());
    let users = read_users(&dir)?;
    let token = |name: &str| {
        users
            .users
            .iter()
            .find(|u| u.name == name)
            .map(|u| u.token.clone())
            .unwrap_or_default()
    };
    let bin_dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    let ca = dir.join("ca.crt");
    let review = dir.join("restart-review.json");
    let (ns, app) = (SAMPLE_NAMESPACE, SAMPLE_APPLICATION);
    Ok(format!(
        r#"
rollgate dev mode: state in {dir}, namespace "{ns}" protected
  webhook  https://{webhook}/validate
  api      https://{api}   (openapi: /openapi.json)
  admin    http://{admin}/metrics  /healthz  /readyz
Demo users (users.json): alice requests, bob approves, carol audits.

Walk the flow in another shell (copy as is):
  export PATH="{bin}:$PATH" ROLLGATE_SERVER=https://{api} ROLLGATE_CA={ca}
  ALICE={alice} BOB={bob} CAROL={carol}
  # 1. alice's `kubectl rollout restart` of {ns}/{app} is denied, with instructions:
  curl -sS --cacert {ca} -H 'Content-Type: application/json' --data-binary @{review} https://{webhook}/validate; echo
  # 2. alice files a ticket; bob approves it:
  TICKET=$(rollgate ticket request -n {ns} {app} --action restart --reason "roll out the new TLS bundle" --token "$ALICE" -o name)
  rollgate ticket approve "$TICKET" --comment "ok" --token "$BOB"
  # 3. the same review is now allowed, with a warning naming the ticket:
  curl -sS --cacert {ca} -H 'Content-Type: application/json' --data-binary @{review} https://{webhook}/validate; echo
  # 4. carol sees every decision:
  rollgate audit list --token "$CAROL"
  curl -sS --cacert {ca} -H "Authorization: Bearer $CAROL" https://{api}/v1/audit/verify; echo
The same with curl only:
  curl -sS --cacert {ca} -H "Authorization: Bearer $ALICE" -H 'Content-Type: application/json' -d '{{"namespace":"{ns}","application":"{app}","action":"restart","reason":"roll out the new TLS bundle"}}' https://{api}/v1/tickets; echo
  curl -sS --cacert {ca} -H "Authorization: Bearer $BOB" -X POST https://{api}/v1/tickets/$TICKET/approve; echo
  curl -sS --cacert {ca} -H "Authorization: Bearer $CAROL" "https://{api}/v1/audit?namespace={ns}&limit=10"; echo
"#,
        dir = dir.display(),
        bin = bin_dir.display(),
        ca = ca.display(),
        review = review.display(),
        alice = token("alice"),
        bob = token("bob"),
        carol = token("carol"),
    ))
}
