//! Notifications: a real local receiver (an axum server on 127.0.0.1:0 that
//! records every request) and a real rollgate configured to notify it. What
//! arrives, in which order, with which command to act, and never a token;
//! retries; and receivers that hang or refuse never slow the API.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpSocket};

use crate::common::{TestServer, spawn_server};

/// One request the sink received.
#[derive(Debug, Clone)]
struct Received {
    headers: HeaderMap,
    body: String,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    fn text(&self) -> String {
        let body = self.json();
        let keys: Vec<_> = body.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["text"], "a Slack body is just {{\"text\"}}: {body}");
        body["text"].as_str().unwrap().to_owned()
    }
}

/// A receiver recording requests by path: `POST /flaky` answers 500 twice
/// then 200, `POST /broken` answers 400, any other path 200.
#[derive(Clone, Default)]
struct Sink {
    received: Arc<Mutex<Vec<(String, Received)>>>,
}

impl Sink {
    /// Serves on 127.0.0.1:0 and returns the sink and its `http://` base URL.
    async fn spawn() -> (Self, String) {
        let sink = Self::default();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let router = Router::new()
            .route("/{name}", post(receive))
            .with_state(sink.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        (sink, base)
    }

    fn at(&self, path: &str) -> Vec<Received> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, r)| r.clone())
            .collect()
    }

    /// Waits until `path` has received `n` requests; panics after `within`.
    async fn wait_for(&self, path: &str, n: usize, within: Duration) -> Vec<Received> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.at(path);
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "/{path} received {} of {n} notifications within {within:?}: {got:#?}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

async fn receive(
    State(sink): State<Sink>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: String,
) -> StatusCode {
    let mut received = sink.received.lock().unwrap();
    received.push((name.clone(), Received { headers, body }));
    let seen = received.iter().filter(|(p, _)| *p == name).count();
    match name.as_str() {
        "flaky" if seen <= 2 => StatusCode::INTERNAL_SERVER_ERROR,
        "broken" => StatusCode::BAD_REQUEST,
        _ => StatusCode::OK,
    }
}

/// A receiver that accepts TCP connections and never answers; returns its
/// URL and how many connections it accepted.
async fn spawn_silent() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            held.push(socket);
        }
    });
    (url, accepted)
}

/// Waits until the metrics show `line`; panics after `within`.
async fn wait_for_metric(s: &TestServer, line: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let text = s.metrics().await;
        if text.lines().any(|l| l == line) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{line} not in the metrics within {within:?}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn str_of<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} missing: {value}"))
}

#[tokio::test]
async fn ticket_and_grant_events_reach_slack_and_json_receivers_with_the_command_to_act() {
    let (sink, base) = Sink::spawn().await;
    let secrets = tempfile::tempdir().unwrap();
    let auth_file = secrets.path().join("authorization");
    std::fs::write(&auth_file, "Bearer sink-secret\n").unwrap();
    let s = spawn_server(&format!(
        r#"
notifications:
  - name: chat
    url: {base}/slack
    format: slack
  - name: events
    url: {base}/json
    format: json
    headers: {{X-Source: rollgate-test}}
    headerFiles: {{Authorization: {auth}}}
  - name: approvals
    url: {base}/approvals
    format: json
    events: [TICKET_APPROVED]
"#,
        auth = auth_file.display()
    ))
    .await;

    // Ticket 1: filed, approved, its grant fetched then revoked.
    let first = s.file_ticket(&s.alice, "production", "checkout-api").await;
    let id1 = str_of(&first, "id").to_owned();
    let approved = s
        .post(
            Some(&s.bob),
            &format!("/v1/tickets/{id1}/approve"),
            Some(json!({"comment": "go ahead"})),
        )
        .await;
    assert_eq!(approved.status, StatusCode::OK, "{approved:?}");
    let grant = s
        .get(Some(&s.alice), &format!("/v1/tickets/{id1}/grant"))
        .await;
    assert_eq!(grant.status, StatusCode::OK, "{grant:?}");
    let token = str_of(&grant.body, "token").to_owned();
    let jti = str_of(&grant.body, "jti").to_owned();
    let revoked = s
        .post(
            Some(&s.bob),
            &format!("/v1/grants/{jti}/revoke"),
            Some(json!({"reason": "wrong change window"})),
        )
        .await;
    assert_eq!(revoked.status, StatusCode::OK, "{revoked:?}");

    // Ticket 2: rejected. Ticket 3: cancelled by its requester.
    let second = s.file_ticket(&s.alice, "production", "checkout-api").await;
    let id2 = str_of(&second, "id").to_owned();
    let rejected = s
        .post(
            Some(&s.bob),
            &format!("/v1/tickets/{id2}/reject"),
            Some(json!({"comment": "not during the sale"})),
        )
        .await;
    assert_eq!(rejected.status, StatusCode::OK, "{rejected:?}");
    let third = s.file_ticket(&s.alice, "production", "checkout-api").await;
    let id3 = str_of(&third, "id").to_owned();
    let cancelled = s
        .post(Some(&s.alice), &format!("/v1/tickets/{id3}/cancel"), None)
        .await;
    assert_eq!(cancelled.status, StatusCode::OK, "{cancelled:?}");

    // The JSON receiver: every event, in order, with the public ticket and links.
    let events = sink.wait_for("json", 7, Duration::from_secs(30)).await;
    let bodies: Vec<Value> = events.iter().map(Received::json).collect();
    let names: Vec<&str> = bodies.iter().map(|b| str_of(b, "event")).collect();
    assert_eq!(
        names,
        [
            "TICKET_CREATED",
            "TICKET_APPROVED",
            "GRANT_REVOKED",
            "TICKET_CREATED",
            "TICKET_REJECTED",
            "TICKET_CREATED",
            "TICKET_CANCELLED",
        ]
    );
    let url1 = format!("{}/v1/tickets/{id1}", s.api);
    let created = &bodies[0];
    assert_eq!(created["ticket"]["id"], id1.as_str(), "{created}");
    assert_eq!(created["ticket"]["number"], first["number"], "{created}");
    assert_eq!(created["ticket"]["namespace"], "production", "{created}");
    assert_eq!(
        created["ticket"]["application"], "checkout-api",
        "{created}"
    );
    assert_eq!(created["ticket"]["requester"], "alice", "{created}");
    assert_eq!(created["ticket"]["status"], "PENDING", "{created}");
    assert_eq!(created["actor"], "alice", "{created}");
    assert_eq!(
        created["reason"], "roll out the rotated database credentials",
        "{created}"
    );
    assert_eq!(created["links"]["ticket"], url1.as_str(), "{created}");
    assert_eq!(
        created["links"]["approve"],
        format!("rollgate ticket approve {id1}"),
        "{created}"
    );
    assert_eq!(
        created["links"]["reject"],
        format!("rollgate ticket reject {id1}"),
        "{created}"
    );
    assert!(created["timestamp"].is_string(), "{created}");
    let approval = &bodies[1];
    assert_eq!(approval["actor"], "bob", "{approval}");
    assert_eq!(approval["reason"], "go ahead", "{approval}");
    assert_eq!(approval["ticket"]["status"], "APPROVED", "{approval}");
    assert_eq!(
        approval["ticket"]["grant"]["jti"],
        jti.as_str(),
        "{approval}"
    );
    assert_eq!(
        approval["links"]["redeploy"], "rollgate redeploy -n production checkout-api",
        "{approval}"
    );
    let revocation = &bodies[2];
    assert_eq!(revocation["actor"], "bob", "{revocation}");
    assert_eq!(revocation["reason"], "wrong change window", "{revocation}");
    assert_eq!(revocation["grantJti"], jti.as_str(), "{revocation}");
    assert_eq!(revocation["ticket"]["id"], id1.as_str(), "{revocation}");
    let rejection = &bodies[4];
    assert_eq!(rejection["ticket"]["id"], id2.as_str(), "{rejection}");
    assert_eq!(rejection["actor"], "bob", "{rejection}");
    assert_eq!(rejection["reason"], "not during the sale", "{rejection}");
    let cancellation = &bodies[6];
    assert_eq!(cancellation["ticket"]["id"], id3.as_str(), "{cancellation}");
    assert_eq!(cancellation["actor"], "alice", "{cancellation}");
    for event in &events {
        assert_eq!(event.headers["authorization"], "Bearer sink-secret");
        assert_eq!(event.headers["x-source"], "rollgate-test");
        assert_eq!(event.headers["content-type"], "application/json");
    }

    // The Slack receiver: the same events as readable text with the command to act.
    let texts: Vec<String> = sink
        .wait_for("slack", 7, Duration::from_secs(30))
        .await
        .iter()
        .map(Received::text)
        .collect();
    let number1 = str_of(&first, "number");
    for (row, text, wants) in [
        (
            "created",
            &texts[0],
            vec![
                format!("{number1}: alice asks to restart production/checkout-api"),
                format!("`rollgate ticket approve {id1}`"),
                format!("`rollgate ticket reject {id1}`"),
                url1.clone(),
            ],
        ),
        (
            "approved",
            &texts[1],
            vec![
                format!("{number1} approved by bob (\"go ahead\")"),
                "`rollgate redeploy -n production checkout-api`".into(),
                "kubectl rollout restart".into(),
            ],
        ),
        (
            "revoked",
            &texts[2],
            vec![format!(
                "Grant of {number1} revoked by bob (\"wrong change window\")"
            )],
        ),
        (
            "rejected",
            &texts[4],
            vec![
                "rejected by bob (\"not during the sale\")".into(),
                "`rollgate ticket request -n production checkout-api --action restart".into(),
            ],
        ),
        ("cancelled", &texts[6], vec!["cancelled by alice".into()]),
    ] {
        for want in wants {
            assert!(
                text.contains(&want),
                "{row}: {want:?} missing from {text:?}"
            );
        }
    }

    // A receiver listing events gets only those.
    let approvals = sink.wait_for("approvals", 1, Duration::from_secs(30)).await;
    assert_eq!(approvals[0].json()["event"], "TICKET_APPROVED");

    // No token or secret in any notification.
    for (path, received) in sink.received.lock().unwrap().iter() {
        for secret in [
            token.as_str(),
            s.alice.as_str(),
            s.bob.as_str(),
            "sink-secret",
        ] {
            assert!(
                !received.body.contains(secret),
                "/{path} got a secret: {}",
                received.body
            );
        }
    }
    for line in [
        r#"rollgate_notifications_total{receiver="chat",result="sent"} 7"#,
        r#"rollgate_notifications_total{receiver="events",result="sent"} 7"#,
        r#"rollgate_notifications_total{receiver="approvals",result="sent"} 1"#,
    ] {
        wait_for_metric(&s, line, Duration::from_secs(30)).await;
    }
    assert_eq!(sink.at("approvals").len(), 1, "only TICKET_APPROVED");
}

#[tokio::test]
async fn a_ticket_nobody_decides_is_announced_as_expired() {
    let (sink, base) = Sink::spawn().await;
    let s = spawn_server(&format!(
        "pendingTicketTtl: 1s\nnotifications:\n  - {{name: events, url: {base}/json, format: json, events: [TICKET_EXPIRED]}}\n"
    ))
    .await;
    let ticket = s.file_ticket(&s.alice, "production", "checkout-api").await;
    let id = str_of(&ticket, "id");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let late = s
        .post(Some(&s.bob), &format!("/v1/tickets/{id}/approve"), None)
        .await;
    assert_eq!(late.status, StatusCode::CONFLICT, "{late:?}");

    let expired = sink.wait_for("json", 1, Duration::from_secs(30)).await[0].json();
    assert_eq!(expired["event"], "TICKET_EXPIRED", "{expired}");
    assert_eq!(expired["ticket"]["id"], id, "{expired}");
    assert_eq!(expired["ticket"]["status"], "EXPIRED", "{expired}");
    assert_eq!(expired["actor"], "rollgate", "{expired}");
    assert!(
        str_of(&expired["links"], "request")
            .starts_with("rollgate ticket request -n production checkout-api"),
        "{expired}"
    );
}

#[tokio::test]
async fn a_receiver_failing_twice_with_500_gets_the_event_on_retry_and_a_400_is_not_retried() {
    let (sink, base) = Sink::spawn().await;
    let s = spawn_server(&format!(
        "notifications:\n  - {{name: flaky, url: {base}/flaky, format: json}}\n  - {{name: broken, url: {base}/broken, format: json}}\n"
    ))
    .await;
    s.file_ticket(&s.alice, "production", "checkout-api").await;

    // 500, 500, then 200 after waiting 1 s and 2 s.
    let attempts = sink.wait_for("flaky", 3, Duration::from_secs(30)).await;
    assert!(
        attempts.iter().all(|a| a.body == attempts[0].body),
        "every attempt sends the same event"
    );
    assert_eq!(attempts[0].json()["event"], "TICKET_CREATED");
    wait_for_metric(
        &s,
        r#"rollgate_notifications_total{receiver="flaky",result="sent"} 1"#,
        Duration::from_secs(30),
    )
    .await;
    wait_for_metric(
        &s,
        r#"rollgate_notifications_total{receiver="broken",result="failed"} 1"#,
        Duration::from_secs(30),
    )
    .await;
    let text = s.metrics().await;
    assert!(
        text.contains(r#"rollgate_notifications_total{receiver="flaky",result="failed"} 0"#),
        "{text}"
    );
    // By now a retried 400 would have been sent again (after 1 s).
    assert_eq!(sink.at("broken").len(), 1, "a 400 is final");
    assert!(sink.at("flaky").len() == 3, "no attempt after success");
}

#[tokio::test]
async fn receivers_that_hang_or_refuse_slow_neither_the_api_nor_other_receivers() {
    let (sink, base) = Sink::spawn().await;
    let (silent, accepted) = spawn_silent().await;
    // Bound but not listening: the port stays ours and every connect is refused.
    let refusing = TcpSocket::new_v4().unwrap();
    refusing.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let refused = format!("http://{}/hook", refusing.local_addr().unwrap());
    let s = spawn_server(&format!(
        "notifications:\n  - {{name: silent, url: {silent}, format: slack}}\n  - {{name: refused, url: {refused}, format: json}}\n  - {{name: chat, url: {base}/slack, format: slack}}\n"
    ))
    .await;

    // One delivery may take 4 attempts of up to 5 s with 7 s of waits between:
    // the API must answer long before any of that.
    let started = Instant::now();
    let ticket = s.file_ticket(&s.alice, "production", "checkout-api").await;
    let filing = started.elapsed();
    let started = Instant::now();
    let approve = format!("/v1/tickets/{}/approve", str_of(&ticket, "id"));
    let approved = s.post(Some(&s.bob), &approve, None).await;
    let approving = started.elapsed();
    assert_eq!(approved.status, StatusCode::OK, "{approved:?}");
    for (call, took) in [("file", filing), ("approve", approving)] {
        assert!(
            // A first attempt at the silent receiver alone takes its 5 s
            // request timeout; the rest of the margin is for a busy machine.
            took < Duration::from_secs(4),
            "{call} took {took:?} with dead receivers"
        );
    }

    // The healthy receiver gets both events well within one request timeout.
    let texts = sink.wait_for("slack", 2, Duration::from_secs(4)).await;
    assert!(texts[1].text().contains("approved by bob"), "{texts:?}");
    assert!(
        accepted.load(Ordering::SeqCst) >= 1,
        "the silent receiver was tried"
    );

    // The refused receiver gives up after its retries (1 + 2 + 4 s) and is counted.
    wait_for_metric(
        &s,
        r#"rollgate_notifications_total{receiver="refused",result="failed"} 1"#,
        Duration::from_secs(20),
    )
    .await;
    let text = s.metrics().await;
    for line in [
        r#"rollgate_notifications_total{receiver="silent",result="sent"} 0"#,
        r#"rollgate_notifications_total{receiver="chat",result="sent"} 2"#,
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
    }
    drop(refusing);
}
