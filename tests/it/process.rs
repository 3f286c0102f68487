//! The real binary under load and faults: SIGTERM while reviews pour in,
//! 1,000 reviews at once, a disk that takes no more writes, and the log an
//! allowed request leaves (none).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;

use rollgate::audit::{AuditDecision, AuditEvent, AuditFilter, AuditLog};

/// Unlimited redeploys: the load admits many restarts of one application.
const CONFIG: &str = "policy:\n  rateLimit: {limit: 0}\n";
/// For the tests that load the binary to test memory or draining, not
/// latency: many reviews queue for the store on two busy cores, so they get
/// the longest store budget there is (10 s), not the 2 s default a loaded
/// machine overruns (and a review it overruns is denied).
const CONFIG_UNDER_LOAD: &str = "policy:\n  rateLimit: {limit: 0}\nstoreTimeout: 10s\n";

/// `rollgate serve --dev` in its own process.
struct Binary {
    child: tokio::process::Child,
    dir: PathBuf,
    webhook: String,
    api: String,
    http: reqwest::Client,
    review: Vec<u8>,
    alice: String,
    bob: String,
    carol: String,
}

impl Binary {
    /// Starts the binary on `dir` (reused across restarts) at the default
    /// log level, its stderr in `dir/stderr.log`. It runs under a shell that
    /// ignores SIGXFSZ, so a file size limit set on it later makes writes
    /// fail (EFBIG) as on a full disk instead of killing it.
    async fn start(dir: &Path) -> Self {
        Self::start_with(dir, CONFIG).await
    }

    /// Like [`Binary::start`], with `config` as its config file.
    async fn start_with(dir: &Path, config: &str) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        std::fs::write(dir.join("config.yaml"), config).unwrap();
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("stderr.log"))
            .unwrap();
        let mut serve = tokio::process::Command::new("sh");
        serve
            .args(["-c", "trap '' XFSZ; exec \"$0\" \"$@\""])
            .arg(env!("CARGO_BIN_EXE_rollgate"))
            .args(["serve", "--dev", "--dev-dir"])
            .arg(dir)
            .arg("--config")
            .arg(dir.join("config.yaml"))
            .args(["--webhook-addr", "127.0.0.1:0"])
            .args(["--api-addr", "127.0.0.1:0"])
            .args(["--admin-addr", "127.0.0.1:0"])
            .env_remove("KUBECONFIG")
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("ROLLGATE_") {
                serve.env_remove(key);
            }
        }
        let mut child = serve.spawn().unwrap();
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let (mut webhook, mut api) = (String::new(), String::new());
        let read = async {
            while let Some(line) = lines.next_line().await.unwrap() {
                let url = |l: &str| l.split_whitespace().nth(1).unwrap().to_owned();
                match line.trim_start() {
                    l if l.starts_with("webhook ") => webhook = url(l),
                    l if l.starts_with("api ") => api = url(l),
                    _ => {}
                }
                if !webhook.is_empty() && !api.is_empty() {
                    break;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(30), read)
            .await
            .expect("serve --dev prints its listeners");
        // Keep draining stdout so the binary never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

        let users: rollgate::auth::DevUsersFile =
            serde_json::from_slice(&std::fs::read(dir.join("users.json")).unwrap()).unwrap();
        let token = |name: &str| {
            users
                .users
                .iter()
                .find(|u| u.name == name)
                .unwrap()
                .token
                .clone()
        };
        let ca = std::fs::read(dir.join("ca.crt")).unwrap();
        Self {
            child,
            dir: dir.to_owned(),
            webhook,
            api,
            http: client(&ca),
            review: std::fs::read(dir.join("restart-review.json")).unwrap(),
            alice: token("alice"),
            bob: token("bob"),
            carol: token("carol"),
        }
    }

    fn pid(&self) -> String {
        self.child.id().unwrap().to_string()
    }

    /// alice files a ticket for the sample review's application.
    async fn file_ticket(&self, reason: &str) -> reqwest::Response {
        self.http
            .post(format!("{}/v1/tickets", self.api))
            .bearer_auth(&self.alice)
            .json(
                &json!({"namespace": "production", "application": "checkout-api",
                          "action": "restart", "reason": reason}),
            )
            .send()
            .await
            .unwrap()
    }

    /// alice files a ticket for the sample review's application; bob approves it.
    async fn grant_alice(&self) {
        let ticket: Value = self.file_ticket("load test").await.json().await.unwrap();
        let approved = self
            .http
            .post(format!(
                "{}/v1/tickets/{}/approve",
                self.api,
                ticket["id"].as_str().unwrap()
            ))
            .bearer_auth(&self.bob)
            .json(&json!({"comment": "ok"}))
            .send()
            .await
            .unwrap();
        assert_eq!(approved.status(), StatusCode::OK);
    }

    /// The response to the sample review (alice's restart in `production`)
    /// sent as `user` in `namespace`.
    async fn review(
        &self,
        http: &reqwest::Client,
        user: &str,
        namespace: &str,
    ) -> reqwest::Result<Value> {
        let body = String::from_utf8_lossy(&self.review)
            .replace(
                "\"username\":\"alice\"",
                &format!("\"username\":\"{user}\""),
            )
            .replace(
                "\"namespace\":\"production\"",
                &format!("\"namespace\":\"{namespace}\""),
            );
        let reply = http
            .post(&self.webhook)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?;
        assert_eq!(reply.status(), StatusCode::OK);
        Ok(reply.json::<Value>().await?["response"].clone())
    }

    /// The sample review in `production` (gated), as `user`.
    async fn review_as(&self, http: &reqwest::Client, user: &str) -> reqwest::Result<Value> {
        self.review(http, user, "production").await
    }

    async fn verify(&self) -> Value {
        self.http
            .get(format!("{}/v1/audit/verify", self.api))
            .bearer_auth(&self.carol)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    fn signal(&self, signal: &str) {
        let sent = std::process::Command::new("kill")
            .args([format!("-{signal}"), self.pid()])
            .status()
            .unwrap();
        assert!(sent.success());
    }

    async fn stop(mut self) {
        self.signal("TERM");
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("SIGTERM stops the binary")
            .unwrap();
        assert_eq!(status.code(), Some(0));
    }

    fn status_kib(&self, key: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr.log")).unwrap()
    }
}

fn client(ca: &[u8]) -> reqwest::Client {
    client_waiting(ca, Duration::from_secs(30))
}

/// A client that gives up on an answer after `timeout`.
fn client_waiting(ca: &[u8], timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_backend_rustls()
        .tls_certs_only([reqwest::Certificate::from_pem(ca).unwrap()])
        .timeout(timeout)
        .build()
        .unwrap()
}

/// ADMISSION records with `decision` in the dev store of `dir`.
async fn admissions(dir: &Path, decision: AuditDecision) -> usize {
    let store = rollgate::store::sqlite::SqliteStore::open(&dir.join("rollgate.db"))
        .await
        .unwrap();
    let mut filter = AuditFilter {
        event: Some(AuditEvent::Admission),
        decision: Some(decision),
        limit: Some(rollgate::audit::MAX_PAGE),
        ..AuditFilter::default()
    };
    let mut count = 0;
    loop {
        let page = store.query(&filter).await.unwrap();
        count += page.items.len();
        match page.next {
            Some(next) => filter.after = Some(next),
            None => return count,
        }
    }
}

#[tokio::test]
async fn sigterm_under_load_answers_what_it_took_in_and_records_every_admitted_change() {
    let dir = tempfile::tempdir().unwrap();
    let binary = Arc::new(Binary::start_with(dir.path(), CONFIG_UNDER_LOAD).await);
    binary.grant_alice().await;

    // Sixteen clients, each on its own connection, restart back to back
    // until the server stops taking requests.
    let ca = std::fs::read(dir.path().join("ca.crt")).unwrap();
    let so_far = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (binary, http, so_far) = (binary.clone(), client(&ca), so_far.clone());
        workers.spawn(async move {
            let mut admitted = 0usize;
            while let Ok(response) = binary.review_as(&http, "alice").await {
                assert_eq!(response["allowed"], true, "{response}");
                admitted += 1;
                so_far.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            admitted
        });
    }
    // SIGTERM once the load runs (not after a fixed time a busy machine may
    // spend on TLS handshakes alone).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while so_far.load(std::sync::atomic::Ordering::Relaxed) < 32 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the load did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    binary.signal("TERM");
    let admitted: usize = workers.join_all().await.into_iter().sum();
    let mut binary = Arc::into_inner(binary).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), binary.child.wait())
        .await
        .expect("SIGTERM stops the binary")
        .unwrap();
    assert_eq!(status.code(), Some(0), "drained and exited cleanly");

    assert!(admitted >= 16, "the load ran: {admitted} admitted");
    assert_eq!(
        admissions(dir.path(), AuditDecision::Allowed).await,
        admitted,
        "every change answered `allowed` has its audit record, and no other"
    );
}

#[tokio::test]
async fn a_thousand_concurrent_reviews_are_all_answered_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let binary = Arc::new(Binary::start_with(dir.path(), CONFIG_UNDER_LOAD).await);
    binary.grant_alice().await;
    let idle_kib = binary.status_kib("VmRSS");
    // A thousand handshakes queue on two busy cores: the test is about
    // memory, so every review may take long, it just has to be answered.
    let http = client_waiting(
        &std::fs::read(dir.path().join("ca.crt")).unwrap(),
        Duration::from_secs(180),
    );

    let wave = || {
        let mut reviews = tokio::task::JoinSet::new();
        for i in 0..1000 {
            let (binary, http) = (binary.clone(), http.clone());
            reviews.spawn(async move {
                // alice holds a grant, mallory does not; the same review in
                // `staging` is not gated.
                let user = if i % 2 == 0 { "alice" } else { "mallory" };
                let staging = i % 3 == 0;
                let namespace = if staging { "staging" } else { "production" };
                let response = binary
                    .review(&http, user, namespace)
                    .await
                    .expect("every review is answered");
                let expected = staging || user == "alice";
                assert_eq!(response["allowed"], expected, "{response}");
            });
        }
        reviews.join_all()
    };
    wave().await;
    let after_first = binary.status_kib("VmRSS");
    wave().await;
    let after_second = binary.status_kib("VmRSS");
    let peak = binary.status_kib("VmHWM");
    eprintln!(
        "RSS idle {idle_kib} KiB, after 1,000 reviews {after_first} KiB, after 2,000 {after_second} KiB, peak {peak} KiB"
    );
    assert!(
        peak < 256 * 1024,
        "1,000 concurrent reviews fit in bounded memory: peak {peak} KiB"
    );
    assert!(
        after_second < after_first + 16 * 1024,
        "a second wave does not keep what the first one used: {after_first} then {after_second} KiB"
    );
    assert_eq!(binary.verify().await["ok"], true);
}

#[tokio::test]
async fn a_disk_that_takes_no_more_writes_fails_closed_and_corrupts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let binary = Binary::start(dir.path()).await;
    binary.grant_alice().await;
    assert_eq!(
        binary.review_as(&binary.http, "alice").await.unwrap()["allowed"],
        true
    );

    // No file of the process may grow from here on: every write of the
    // store fails as on a full (or read-only) disk.
    let limit = |size: &str| {
        let set = std::process::Command::new("prlimit")
            // The soft limit only: raising a hard limit again needs a
            // capability containers often lack.
            .args(["--pid", &binary.pid(), &format!("--fsize={size}:unlimited")])
            .status()
            .unwrap();
        assert!(set.success(), "prlimit failed");
    };
    limit("0");
    let denied = binary
        .review_as(&binary.http, "alice")
        .await
        .unwrap_or_else(|e| panic!("{e}; log: {}", binary.log()));
    assert_eq!(denied["allowed"], false, "{denied}");
    let message = denied["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("cannot reach its audit log") && message.contains("fails closed"),
        "{message}"
    );
    let ungated = binary
        .review(&binary.http, "alice", "staging")
        .await
        .unwrap();
    assert_eq!(ungated["allowed"], true, "ungated still pass");
    let ticket = binary.file_ticket("while the disk is full").await;
    assert!(
        ticket.status().is_server_error(),
        "a ticket that cannot be stored is refused: {}",
        ticket.status()
    );
    let error: Value = ticket.json().await.unwrap();
    assert!(
        error["detail"]
            .as_str()
            .is_some_and(|m| m.contains("nothing was changed")),
        "{error}"
    );

    // Space again: it carries on by itself, with an intact chain.
    limit("unlimited");
    assert_eq!(
        binary.review_as(&binary.http, "alice").await.unwrap()["allowed"],
        true
    );
    assert_eq!(binary.verify().await["ok"], true);
    binary.stop().await;

    let restarted = Binary::start(dir.path()).await;
    assert_eq!(
        restarted.verify().await["ok"],
        true,
        "nothing corrupted on disk"
    );
    assert_eq!(admissions(dir.path(), AuditDecision::Allowed).await, 2);
    assert_eq!(admissions(dir.path(), AuditDecision::Denied).await, 0);
    restarted.stop().await;
}

#[tokio::test]
async fn allowed_requests_write_no_log_line_at_the_default_level() {
    let dir = tempfile::tempdir().unwrap();
    let binary = Binary::start(dir.path()).await;
    binary.grant_alice().await;
    // Let start-up finish logging.
    assert_eq!(
        binary.review_as(&binary.http, "alice").await.unwrap()["allowed"],
        true
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = binary.log();

    for _ in 0..25 {
        for namespace in ["production", "staging"] {
            let response = binary.review(&binary.http, "alice", namespace).await;
            assert_eq!(response.unwrap()["allowed"], true, "{namespace}");
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = binary.log();
    assert_eq!(
        after.strip_prefix(before.as_str()).unwrap_or(&after),
        "",
        "50 allowed requests logged nothing"
    );
    // A denial is logged, so the log is not simply off.
    let denied = binary.review_as(&binary.http, "mallory").await.unwrap();
    assert_eq!(denied["allowed"], false);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !binary.log().contains("gated change") {
        assert!(tokio::time::Instant::now() < deadline, "{}", binary.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    binary.stop().await;
}
