//! SIGTERM drains in-flight requests and exits 0 (the real binary).

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

const REVIEW: &str = include_str!("../data/restart-review.json");

#[tokio::test]
async fn sigterm_finishes_the_request_in_flight_then_exits_zero() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_rollgate"))
        .args(["serve", "--dev", "--dev-dir"])
        .arg(dir.path())
        .args([
            "--webhook-addr",
            "127.0.0.1:0",
            "--api-addr",
            "127.0.0.1:0",
            "--admin-addr",
            "127.0.0.1:0",
        ])
        .env_remove("KUBECONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    // The quickstart on stdout names the bound webhook address.
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let webhook = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(url) = line.trim().strip_prefix("webhook  ") {
                return url.to_owned();
            }
        }
        panic!("no webhook line in the quickstart");
    })
    .await
    .unwrap();

    let ca = std::fs::read(dir.path().join("ca.crt")).unwrap();
    let client = reqwest::Client::builder()
        .tls_backend_rustls()
        .tls_certs_only([reqwest::Certificate::from_pem(&ca).unwrap()])
        .build()
        .unwrap();

    // Start a request whose body arrives in two halves, with SIGTERM between them.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(2);
    let body = reqwest::Body::wrap_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    let bytes = REVIEW.as_bytes();
    let (first, second) = bytes.split_at(bytes.len() / 2);
    tx.send(Ok(first.to_vec())).await.unwrap();
    let in_flight = tokio::spawn(
        client
            .post(&webhook)
            .header("content-type", "application/json")
            .header("content-length", bytes.len())
            .body(body)
            .send(),
    );
    // SIGTERM only once the request is on its way (reqwest took the first
    // half of the body), not after a fixed time a busy machine may spend on
    // the TLS handshake; then a moment for the server to read its headers.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tx.capacity() < tx.max_capacity() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the request never started"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    tokio::time::sleep(Duration::from_millis(300)).await;
    tx.send(Ok(second.to_vec())).await.unwrap();
    drop(tx);

    let response = tokio::time::timeout(Duration::from_secs(10), in_flight)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), 200, "the request in flight is answered");
    let review: serde_json::Value = response.json().await.unwrap();
    assert_eq!(review["response"]["allowed"], false);

    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0), "rollgate exits 0 after draining");
}
