#![allow(clippy::unwrap_used)]
//! Webhook benchmark: prints figures, asserts nothing.
//!
//! `cargo bench --bench webhook` loads the team's fixture (a 7 KB
//! `kubectl rollout restart` review, `tests/data/restart-review.json`, from
//! `shared/fixtures`) so figures compare across runs:
//! 1. the pure path (parse + classify + decide) in-process;
//! 2. full HTTPS round trips against the real server: ungated (same body in
//!    namespace `staging`), gated and denied, gated and allowed by a grant;
//!    sequential latency percentiles and throughput with 32 concurrent clients.
//!
//! Under `cargo test` (no `--bench` flag) it runs a few iterations only.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rollgate::config::Config;
use rollgate::grants::GrantSettings;
use rollgate::grants::verify::GrantIssuer;
use rollgate::grants::{GrantVerifier, KeySet, SigningKey, StoredGrant};
use rollgate::policy::{self, Gate, Policy};

const FIXTURE: &str = include_str!("../tests/data/restart-review.json");

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn report(name: &str, mut samples: Vec<Duration>, wall: Duration) {
    samples.sort();
    let n = samples.len();
    println!(
        "{name:<34} n={n:<6} p50={:>9.1?} p99={:>9.1?} max={:>9.1?} ({:.0} req/s)",
        percentile(&samples, 0.50),
        percentile(&samples, 0.99),
        samples[n - 1],
        n as f64 / wall.as_secs_f64()
    );
}

fn pure_path(iterations: usize) {
    let mut policy = Policy::default();
    policy.protected_namespaces.insert("production".into());
    let key =
        SigningKey::from_pem(rollgate::grants::keys::generate_pem().unwrap().as_bytes()).unwrap();
    let settings = GrantSettings::default();
    let issuer = GrantIssuer::new(key.clone(), &settings);
    let verifier = GrantVerifier::new(KeySet::new(&key), &settings);
    let now = jiff::Timestamp::now().as_second();
    let claims = issuer.claims(
        "alice@example.com",
        "production",
        "checkout-api",
        "1",
        "RG-000001",
        "any",
        "j".into(),
        now,
    );
    let grant = StoredGrant::from_claims(&claims, issuer.sign(&claims).unwrap());
    let labelled = std::collections::BTreeSet::new();

    let mut samples = Vec::with_capacity(iterations);
    let wall = Instant::now();
    for _ in 0..iterations {
        let t = Instant::now();
        let req = rollgate::admission::parse_review(FIXTURE.as_bytes()).unwrap();
        let Gate::Gated(change) = policy::classify(&req, &policy, &labelled) else {
            panic!("fixture must be gated")
        };
        let decision = rollgate::admission::decide(
            &change,
            Ok(vec![grant.clone()]),
            &verifier,
            policy.failure_mode,
            now,
        );
        assert!(decision.allowed());
        samples.push(t.elapsed());
    }
    report("pure: parse+classify+decide", samples, wall.elapsed());
}

async fn http_path(sequential: usize, concurrent: usize) {
    let dir = tempfile::tempdir().unwrap();
    // Thousands of allowed restarts of one application: no rate limit here.
    let yaml = "policy:\n  rateLimit: {limit: 0}\n";
    let args = <ServeCli as clap::Parser>::parse_from([
        "x",
        "--dev",
        "--dev-dir",
        dir.path().to_str().unwrap(),
        "--webhook-addr",
        "127.0.0.1:0",
        "--api-addr",
        "127.0.0.1:0",
        "--admin-addr",
        "127.0.0.1:0",
    ])
    .args;
    let config = Config::from_yaml(yaml, &args).unwrap();
    let server = rollgate::server::start(config).await.unwrap();
    let ca = std::fs::read(dir.path().join("ca.crt")).unwrap();
    let client = reqwest::Client::builder()
        .tls_backend_rustls()
        .tls_certs_only([reqwest::Certificate::from_pem(&ca).unwrap()])
        .build()
        .unwrap();
    let url = format!("https://{}/validate", server.webhook_addr);

    let mut alice_review: serde_json::Value = serde_json::from_str(FIXTURE).unwrap();
    alice_review["request"]["userInfo"]["username"] = "alice".into();
    let mut ungated = alice_review.clone();
    ungated["request"]["namespace"] = "staging".into();
    ungated["request"]["object"]["metadata"]["namespace"] = "staging".into();
    ungated["request"]["oldObject"]["metadata"]["namespace"] = "staging".into();
    let ungated = Arc::new(ungated.to_string());
    let gated = Arc::new(alice_review.to_string());

    let run = |name: &'static str, body: Arc<String>, n: usize| {
        let client = client.clone();
        let url = url.clone();
        async move {
            let mut samples = Vec::with_capacity(n);
            let wall = Instant::now();
            for _ in 0..n {
                let t = Instant::now();
                let resp = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.as_bytes().to_vec())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 200);
                let _ = resp.bytes().await.unwrap();
                samples.push(t.elapsed());
            }
            report(name, samples, wall.elapsed());
        }
    };
    run("https: ungated", ungated.clone(), sequential).await;
    run(
        "https: gated, denied (2 store ops)",
        gated.clone(),
        sequential / 4,
    )
    .await;

    // Give alice a grant through the real API.
    let users: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("users.json")).unwrap()).unwrap();
    let token = |name: &str| {
        users["users"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["name"] == name)
            .unwrap()["token"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let api = format!("https://{}", server.api_addr);
    let ticket: serde_json::Value = client
        .post(format!("{api}/v1/tickets"))
        .bearer_auth(token("alice"))
        .json(&serde_json::json!({"namespace":"production","application":"checkout-api","reason":"bench"}))
        .send().await.unwrap().json().await.unwrap();
    let id = ticket["id"].as_str().unwrap();
    let approved = client
        .post(format!("{api}/v1/tickets/{id}/approve"))
        .bearer_auth(token("bob"))
        .send()
        .await
        .unwrap();
    assert_eq!(approved.status(), 200);
    run(
        "https: gated, allowed (2 store ops)",
        gated.clone(),
        sequential / 4,
    )
    .await;

    // Throughput with concurrent clients, ungated.
    let per_task = (concurrent / 32).max(1);
    let wall = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let client = client.clone();
        let url = url.clone();
        let body = ungated.clone();
        tasks.spawn(async move {
            let mut samples = Vec::with_capacity(per_task);
            for _ in 0..per_task {
                let t = Instant::now();
                let resp = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.as_bytes().to_vec())
                    .send()
                    .await
                    .unwrap();
                let _ = resp.bytes().await.unwrap();
                samples.push(t.elapsed());
            }
            samples
        });
    }
    let mut all = Vec::new();
    while let Some(samples) = tasks.join_next().await {
        all.extend(samples.unwrap());
    }
    report("https: ungated, 32 concurrent", all, wall.elapsed());
    server.shutdown();
    server.wait().await;
}

#[derive(clap::Parser)]
struct ServeCli {
    #[command(flatten)]
    args: rollgate::cli::ServeArgs,
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let full = std::env::args().any(|a| a == "--bench");
    let (pure, seq, conc) = if full {
        (20_000, 4_000, 20_000)
    } else {
        (20, 20, 64)
    };
    println!(
        "rollgate webhook benchmark ({} run), fixture {} bytes",
        if full { "full" } else { "smoke" },
        FIXTURE.len()
    );
    pure_path(pure);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(http_path(seq, conc));
}
