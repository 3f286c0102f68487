//! `rollgate certs generate` as an operator runs it: the built binary writes
//! a CA and a serving certificate for the Services' names and prints the
//! caBundle; the real server serves that certificate, a client trusting only
//! the printed caBundle reaches the webhook under every Service name (and
//! under no other), and a rotation in place is picked up without a restart.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use base64::Engine;
use rollgate::config::TlsFiles;

use crate::common::{mk_config, restart_by};

/// Runs `rollgate certs generate ARGS --out DIR` and returns its stdout.
async fn generate(dir: &Path, extra: &[&str]) -> String {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_rollgate"))
        .args([
            "certs",
            "generate",
            "--service",
            "rollgate-webhook",
            "--service",
            "rollgate-api",
            "--namespace",
            "rollgate",
            "--dns",
            "rollgate.example.com",
            "--out",
        ])
        .arg(dir)
        .args(extra)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "certs generate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// An HTTPS client trusting only the CA in `ca_bundle` (base64 PEM, as in a
/// webhook's `caBundle`) that resolves `name` to `addr`.
fn client_for(ca_bundle: &str, name: &str, addr: SocketAddr) -> reqwest::Client {
    let pem = base64::engine::general_purpose::STANDARD
        .decode(ca_bundle)
        .expect("the caBundle is base64");
    reqwest::Client::builder()
        .tls_backend_rustls()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
        .resolve(name, addr)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Sends alice's restart review to `https://NAME:PORT/validate`.
async fn review_via(
    ca_bundle: &str,
    name: &str,
    addr: SocketAddr,
) -> Result<reqwest::StatusCode, reqwest::Error> {
    let url = format!("https://{name}:{}/validate", addr.port());
    let resp = client_for(ca_bundle, name, addr)
        .post(url)
        .header("content-type", "application/json")
        .body(restart_by("alice").to_string())
        .send()
        .await?;
    Ok(resp.status())
}

#[tokio::test]
async fn generated_certificate_serves_every_service_name_and_rotates_in_place() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let certs = tempfile::tempdir().unwrap();
    let ca_bundle = generate(certs.path(), &["--signing-key"]).await;
    let ca_pem = std::fs::read(certs.path().join("ca.crt")).unwrap();
    assert_eq!(
        ca_bundle,
        base64::engine::general_purpose::STANDARD.encode(&ca_pem),
        "stdout is the caBundle: base64 of ca.crt"
    );

    // The server as the chart runs it: its certificate, key and signing key from those files.
    let dev = tempfile::tempdir().unwrap();
    let mut config = mk_config(dev.path(), "{}");
    config.tls = TlsFiles {
        cert: certs.path().join("tls.crt"),
        key: certs.path().join("tls.key"),
    };
    config.signing_key = certs.path().join("signing-key.pem");
    config.tls_reload_interval = Duration::from_millis(100);
    let server = rollgate::server::start(config).await.unwrap();
    let webhook = server.webhook_addr;

    for name in [
        "rollgate-webhook.rollgate.svc",
        "rollgate-webhook",
        "rollgate-webhook.rollgate",
        "rollgate-webhook.rollgate.svc.cluster.local",
        "rollgate-api",
        "rollgate-api.rollgate",
        "rollgate-api.rollgate.svc",
        "rollgate-api.rollgate.svc.cluster.local",
        "rollgate.example.com",
    ] {
        let status = review_via(&ca_bundle, name, webhook).await;
        assert_eq!(
            status.map_err(|e| format!("{e:?}")),
            Ok(reqwest::StatusCode::OK),
            "the webhook answers over TLS verified for {name}"
        );
    }
    assert!(
        review_via(&ca_bundle, "rollgate-other.rollgate.svc", webhook)
            .await
            .is_err(),
        "a name the certificate does not carry fails verification"
    );

    // Renewal on the same directory keeps the CA, so the caBundle stays.
    assert_eq!(
        generate(certs.path(), &[]).await,
        ca_bundle,
        "a second run reuses the CA"
    );

    // A new CA: the running server re-reads tls.crt/tls.key and serves the new pair.
    let new_bundle = generate(certs.path(), &["--new-ca"]).await;
    assert_ne!(new_bundle, ca_bundle);
    let name = "rollgate-webhook.rollgate.svc";
    let mut served = false;
    for _ in 0..100 {
        if review_via(&new_bundle, name, webhook).await.is_ok() {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        served,
        "the rotated certificate is served without a restart"
    );
    assert!(
        review_via(&ca_bundle, name, webhook).await.is_err(),
        "the old CA no longer verifies the served certificate"
    );

    server.shutdown();
    server.wait().await;
}
