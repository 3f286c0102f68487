//! The test harness: [`spawn_server`] starts the real rollgate (dev mode, in a
//! temporary directory) on port 0 with real TLS, and returns a [`TestServer`]
//! holding the bound addresses, the demo tokens and an HTTPS client that
//! trusts only the dev CA. Fixtures are the AdmissionReview bodies in
//! `tests/data/`.

use std::path::{Path, PathBuf};

use clap::Parser;
use reqwest::StatusCode;
use rollgate::cli::{Cli, Command};
use rollgate::config::Config;
use rollgate::server::RunningServer;
use rollgate::store::StoreConfig;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::fake_api::FakeApi;

/// A running server and everything a test needs to talk to it.
pub struct TestServer {
    pub dir: TempDir,
    server: RunningServer,
    yaml: String,
    store: Option<StoreConfig>,
    /// `https://127.0.0.1:PORT` of the webhook listener.
    pub webhook: String,
    /// `https://127.0.0.1:PORT` of the ticket API.
    pub api: String,
    /// `http://127.0.0.1:PORT` of the admin listener.
    pub admin: String,
    /// Demo tokens from `users.json`: requester, approver, auditor.
    pub alice: String,
    pub bob: String,
    pub carol: String,
    /// Trusts only `DIR/ca.crt`.
    pub http: reqwest::Client,
}

/// An API answer: status, content type and the JSON body (`Null` if none).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub content_type: String,
    pub body: Value,
}

impl Reply {
    /// Asserts an RFC 9457 error with `status` and returns its `detail`.
    pub fn problem(&self, status: StatusCode) -> String {
        assert_eq!(self.status, status, "unexpected answer: {self:?}");
        assert_eq!(
            self.content_type, "application/problem+json",
            "errors are problem+json: {self:?}"
        );
        assert_eq!(self.body["status"], status.as_u16(), "{self:?}");
        self.body["detail"]
            .as_str()
            .unwrap_or_else(|| panic!("problem without detail: {self:?}"))
            .to_owned()
    }
}

/// Starts rollgate in `--dev` mode in a fresh temporary directory, with
/// `yaml` as its config file (e.g. `"{}"` or a `policy:`/`grants:` section).
pub async fn spawn_server(yaml: &str) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    spawn_server_in(dir, yaml).await
}

/// Like [`spawn_server`], on an existing dev directory (its CA, keys, users
/// and store are reused, as `serve --dev` does on a second run).
pub async fn spawn_server_in(dir: TempDir, yaml: &str) -> TestServer {
    spawn_server_with(dir, yaml, None).await
}

/// Like [`spawn_server_in`] on the given store (e.g. a Redis URL).
pub async fn spawn_server_with(dir: TempDir, yaml: &str, store: Option<StoreConfig>) -> TestServer {
    spawn_server_configured(dir, yaml, store, None).await
}

/// Like [`spawn_server`], with `api` served over HTTP on loopback as its
/// cluster, through a kubeconfig kept in the server's directory.
pub async fn spawn_server_on_fake_api(yaml: &str, api: &FakeApi) -> TestServer {
    let addr = api.serve_http().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: fake\n\
             clusters: [{{name: fake, cluster: {{server: 'http://{addr}'}}}}]\n\
             users: [{{name: rollgate, user: {{token: fake-token}}}}]\n\
             contexts: [{{name: fake, context: {{cluster: fake, user: rollgate}}}}]\n"
        ),
    )
    .unwrap();
    spawn_server_configured(dir, yaml, None, Some(kubeconfig)).await
}

async fn spawn_server_configured(
    dir: TempDir,
    yaml: &str,
    store: Option<StoreConfig>,
    kubeconfig: Option<PathBuf>,
) -> TestServer {
    // reqwest is built with rustls-no-provider: one process-wide provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut config = mk_config(dir.path(), yaml);
    if let Some(store) = store.clone() {
        config.store = store;
    }
    config.kubeconfig = kubeconfig;
    let server = rollgate::server::start(config).await.unwrap();

    let users: rollgate::auth::DevUsersFile =
        serde_json::from_slice(&std::fs::read(dir.path().join("users.json")).unwrap()).unwrap();
    let token = |name: &str| {
        users
            .users
            .iter()
            .find(|u| u.name == name)
            .unwrap_or_else(|| panic!("users.json has no {name}"))
            .token
            .clone()
    };
    let pem = std::fs::read(dir.path().join("ca.crt")).unwrap();
    let http = reqwest::Client::builder()
        .tls_backend_rustls()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
        .timeout(std::time::Duration::from_secs(20))
        .build()
        .unwrap();
    TestServer {
        webhook: format!("https://{}", server.webhook_addr),
        api: format!("https://{}", server.api_addr),
        admin: format!("http://{}", server.admin_addr),
        alice: token("alice"),
        bob: token("bob"),
        carol: token("carol"),
        http,
        server,
        yaml: yaml.to_owned(),
        store,
        dir,
    }
}

/// A second rollgate on the same store with the first one's dev keys, CA and
/// users (as two `serve --dev` processes on one dev dir and one Redis): a replica.
pub async fn spawn_replica(first: &TestServer) -> TestServer {
    spawn_replica_with(first, &first.yaml.clone()).await
}

/// Like [`spawn_replica`] with its own config file `yaml`.
pub async fn spawn_replica_with(first: &TestServer, yaml: &str) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    for file in [
        "ca.crt",
        "tls.crt",
        "tls.key",
        "signing-key.pem",
        "users.json",
    ] {
        std::fs::copy(first.dir.path().join(file), dir.path().join(file)).unwrap();
    }
    spawn_server_with(dir, yaml, first.store.clone()).await
}

/// The config `rollgate serve --dev --dev-dir DIR` with every listener on
/// port 0 would build from `yaml`.
pub fn mk_config(dir: &Path, yaml: &str) -> Config {
    let cli = Cli::try_parse_from([
        "rollgate",
        "serve",
        "--dev",
        "--dev-dir",
        dir.to_str().unwrap(),
        "--webhook-addr",
        "127.0.0.1:0",
        "--api-addr",
        "127.0.0.1:0",
        "--admin-addr",
        "127.0.0.1:0",
    ])
    .unwrap();
    let Command::Serve(args) = cli.command else {
        unreachable!("parsed `serve`")
    };
    let mut config = Config::from_yaml(yaml, &args).unwrap();
    // Hermetic whatever the environment says (ROLLGATE_STORE, KUBECONFIG).
    config.store = StoreConfig::Sqlite(dir.join("rollgate.db"));
    config.kubeconfig = None;
    config
}

impl TestServer {
    /// Stops the server (drains in-flight requests) and hands back its directory.
    pub async fn stop(self) -> (TempDir, String) {
        self.server.shutdown();
        self.server.wait().await;
        (self.dir, self.yaml)
    }

    /// Stops the server and starts a new one on the same directory and config.
    pub async fn restart(self) -> TestServer {
        let store = self.store.clone();
        let (dir, yaml) = self.stop().await;
        spawn_server_with(dir, &yaml, store).await
    }

    /// The embedded store's database file.
    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("rollgate.db")
    }

    /// A second connection to the server's SQLite database, for tampering.
    pub fn db(&self) -> rusqlite::Connection {
        let conn = rusqlite::Connection::open(self.db_path()).unwrap();
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .unwrap();
        conn
    }

    /// Sends `review` to `POST /validate`; returns the HTTP status and body.
    pub async fn send_review(&self, body: impl Into<reqwest::Body>) -> (StatusCode, Value) {
        let resp = self
            .http
            .post(format!("{}/validate", self.webhook))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Sends a well-formed review and returns its `response`, checking the
    /// envelope the API server expects (HTTP 200, AdmissionReview v1, uid echoed).
    pub async fn review(&self, review: &Value) -> Value {
        let (status, body) = self.send_review(review.to_string()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["apiVersion"], "admission.k8s.io/v1", "{body}");
        assert_eq!(body["kind"], "AdmissionReview", "{body}");
        let response = body["response"].clone();
        assert_eq!(response["uid"], review["request"]["uid"], "uid echoed");
        response
    }

    pub async fn get(&self, token: Option<&str>, path: &str) -> Reply {
        let mut req = self.http.get(format!("{}{path}", self.api));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        reply(req.send().await.unwrap()).await
    }

    pub async fn post(&self, token: Option<&str>, path: &str, body: Option<Value>) -> Reply {
        let mut req = self.http.post(format!("{}{path}", self.api));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        reply(req.send().await.unwrap()).await
    }

    /// `token`'s user files a ticket; asserts 201 and returns the ticket.
    pub async fn file_ticket(&self, token: &str, namespace: &str, application: &str) -> Value {
        let reply = self
            .post(
                Some(token),
                "/v1/tickets",
                Some(json!({
                    "namespace": namespace,
                    "application": application,
                    "action": "restart",
                    "reason": "roll out the rotated database credentials",
                })),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
        reply.body
    }

    /// Alice files the ticket `body` (namespace, application, action, pins…;
    /// a reason is added when missing) and bob approves it; returns the
    /// approved ticket.
    pub async fn approved_ticket_with(&self, mut body: Value) -> Value {
        if body.get("reason").is_none() {
            body["reason"] = json!("incident 4711");
        }
        let filed = self
            .post(Some(&self.alice), "/v1/tickets", Some(body))
            .await;
        assert_eq!(filed.status, StatusCode::CREATED, "{filed:?}");
        let path = format!("/v1/tickets/{}/approve", filed.body["id"].as_str().unwrap());
        let approved = self.post(Some(&self.bob), &path, None).await;
        assert_eq!(approved.status, StatusCode::OK, "{approved:?}");
        approved.body
    }

    /// Alice files a ticket for production/`application` with `action`
    /// (and the `extra` fields, e.g. `images`), bob approves it.
    pub async fn grant(&self, application: &str, action: &str, extra: Value) {
        let mut body =
            json!({"namespace": "production", "application": application, "action": action});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().cloned().unwrap_or_default());
        self.approved_ticket_with(body).await;
    }

    /// Alice files a restart ticket for production/checkout-api and bob
    /// approves it; returns the approved ticket.
    pub async fn approved_ticket(&self) -> Value {
        let ticket = self
            .file_ticket(&self.alice, "production", "checkout-api")
            .await;
        let path = format!("/v1/tickets/{}/approve", ticket["id"].as_str().unwrap());
        let reply = self
            .post(Some(&self.bob), &path, Some(json!({"comment": "ok"})))
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        assert_eq!(reply.body["status"], "APPROVED", "{reply:?}");
        reply.body
    }

    /// Audit records matching `query` (e.g. `"event=ADMISSION"`), read by carol.
    pub async fn audit(&self, query: &str) -> Vec<Value> {
        let reply = self
            .get(Some(&self.carol), &format!("/v1/audit?{query}"))
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        reply.body["items"].as_array().unwrap().clone()
    }

    /// `GET /v1/audit/verify` as carol.
    pub async fn verify_audit(&self) -> Value {
        let reply = self.get(Some(&self.carol), "/v1/audit/verify").await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        reply.body
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> String {
        let resp = self
            .http
            .get(format!("{}/metrics", self.admin))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        resp.text().await.unwrap()
    }
}

async fn reply(resp: reqwest::Response) -> Reply {
    let status = resp.status();
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = resp.text().await.unwrap();
    Reply {
        status,
        content_type,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
    }
}

/// A fixture from `tests/data/`.
pub fn fixture(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// `review` as sent for `user` (e.g. the demo user "alice"), with a fresh uid.
pub fn by(mut review: Value, user: &str) -> Value {
    review["request"]["userInfo"]["username"] = user.into();
    review["request"]["uid"] = rollgate::names::random_id().into();
    review
}

/// The captured `kubectl rollout restart` of production/checkout-api, by `user`.
pub fn restart_by(user: &str) -> Value {
    by(fixture("restart-review.json"), user)
}

/// Asserts a denial as kubectl shows it and returns its message.
pub fn denial(response: &Value) -> String {
    assert_eq!(response["allowed"], false, "{response}");
    assert_eq!(response["status"]["code"], 403, "{response}");
    response["status"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("denial without message: {response}"))
        .to_owned()
}

/// Asserts an allow and returns its warnings.
pub fn allowed(response: &Value) -> Vec<String> {
    assert_eq!(response["allowed"], true, "{response}");
    response["warnings"]
        .as_array()
        .map(|w| {
            w.iter()
                .map(|s| s.as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}
