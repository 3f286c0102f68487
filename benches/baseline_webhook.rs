//! The baselines `scripts/bench` compares rollgate with: minimal validating
//! webhooks on rollgate's own stack (its TLS config, its connection loop,
//! axum), differing from it by the handler alone.
//!
//! - `noop`: reads `request.uid` and answers allowed: the ceiling.
//! - `full-parse`: parses the whole review into a `serde_json::Value` first,
//!   as any webhook that reads both objects does.
//!
//! ```text
//! baseline-webhook --mode noop --listen 127.0.0.1:9443 --cert tls.crt --key tls.key
//! ```
//! prints `listening on ADDR` once it accepts connections.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use clap::{Parser, ValueEnum};
use kube::core::admission::AdmissionResponse;
use kube::core::{Status, TypeMeta};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Mode {
    Noop,
    FullParse,
}

#[derive(Parser)]
struct Args {
    #[arg(long, value_enum)]
    mode: Mode,
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    #[arg(long)]
    cert: PathBuf,
    #[arg(long)]
    key: PathBuf,
}

#[derive(Deserialize)]
struct UidOnly<'a> {
    #[serde(borrow)]
    request: RequestUid<'a>,
}

#[derive(Deserialize)]
struct RequestUid<'a> {
    #[serde(borrow)]
    uid: Cow<'a, str>,
}

/// The answer rollgate gives an ungated request: kube's allowed response.
fn allowed(uid: &str) -> Response {
    let mut response = AdmissionResponse::invalid("");
    response.types = TypeMeta {
        api_version: "admission.k8s.io/v1".into(),
        kind: "AdmissionReview".into(),
    };
    response.uid = uid.to_owned();
    response.allowed = true;
    response.result = Status::default();
    match serde_json::to_vec(&response.into_review()) {
        Ok(body) => (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn noop(body: Bytes) -> Response {
    match serde_json::from_slice::<UidOnly>(&body) {
        Ok(review) => allowed(&review.request.uid),
        Err(_) => StatusCode::BAD_REQUEST.into_response(),
    }
}

async fn full_parse(body: Bytes) -> Response {
    let review: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(review) => review,
        Err(_) => return StatusCode::BAD_REQUEST.into_response(),
    };
    match review.pointer("/request/uid").and_then(|u| u.as_str()) {
        Some(uid) => allowed(uid),
        None => StatusCode::BAD_REQUEST.into_response(),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let resolver = Arc::new(rollgate::tls::ReloadingCert::new(&args.cert, &args.key)?);
    let tls = rollgate::tls::server_config(resolver)?;
    let handler = match args.mode {
        Mode::Noop => post(noop),
        Mode::FullParse => post(full_parse),
    };
    // The layers of rollgate's webhook router.
    let router = Router::new()
        .route("/validate", handler)
        .layer(axum::extract::DefaultBodyLimit::max(
            rollgate::admission::MAX_REVIEW_BYTES,
        ))
        .layer(tower::limit::ConcurrencyLimitLayer::new(
            rollgate::server::MAX_CONCURRENT_REQUESTS,
        ));
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("listening on {}", listener.local_addr()?);
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        stop.cancel();
    });
    rollgate::server::serve_tls("baseline", listener, router, tls, shutdown).await;
    Ok(())
}
