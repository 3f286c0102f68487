//! rollgate on Redis when Redis fails: gated changes are denied within the
//! store budget with a message saying so (or allowed in fail-open
//! namespaces), ungated ones pass, `/readyz` and `rollgate_store_up` report
//! it, and everything recovers by itself. Also: a grant planted straight
//! into Redis without the signing key admits nothing.

use std::time::{Duration, Instant};

use rollgate::store::StoreConfig;

use crate::common::{TestServer, allowed, by, denial, fixture, restart_by, spawn_server_with};
use crate::store_contract::RedisServer;

const YAML: &str = "storeTimeout: 500ms\npolicy:\n  protectedNamespaces: [production, payments]\n  failOpenNamespaces: [payments]\n";

async fn spawn_on(redis: &RedisServer) -> TestServer {
    let store = StoreConfig::parse(&redis.url()).unwrap();
    spawn_server_with(tempfile::tempdir().unwrap(), YAML, Some(store)).await
}

/// The same restart, in namespace `payments` (fail-open).
fn payments_restart() -> serde_json::Value {
    let mut review = restart_by("alice");
    review["request"]["namespace"] = "payments".into();
    review["request"]["object"]["metadata"]["namespace"] = "payments".into();
    review["request"]["oldObject"]["metadata"]["namespace"] = "payments".into();
    review
}

async fn readyz(s: &TestServer) -> (u16, serde_json::Value) {
    let resp = s
        .http
        .get(format!("{}/readyz", s.admin))
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

/// Polls until `check` holds (the store watch ticks every 5 s).
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(15);
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within 15 s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn a_paused_or_dead_redis_fails_closed_within_budget_and_recovers() {
    let mut redis = RedisServer::start(&[]);
    let s = spawn_on(&redis).await;
    s.approved_ticket().await;
    allowed(&s.review(&restart_by("alice")).await);

    redis.signal("STOP");
    let started = Instant::now();
    let message = denial(&s.review(&restart_by("alice")).await);
    let took = started.elapsed();
    assert!(
        message.contains("cannot reach its grant store"),
        "{message}"
    );
    assert!(
        !message.contains("rollgate ticket request"),
        "no ticket advice when the store is down: {message}"
    );
    // Without the budget the review would hang on the paused store until
    // the client gives up (20 s); the margin over 500 ms is for a busy machine.
    assert!(
        took < Duration::from_secs(10),
        "the 500 ms budget holds: {took:?}"
    );

    let ungated = s.review(&fixture("scale-review.json")).await;
    assert_eq!(
        ungated["allowed"], true,
        "ungated changes never touch the store"
    );
    let warnings = allowed(&s.review(&payments_restart()).await);
    assert!(
        warnings.iter().any(|w| w.contains("failure mode is open")),
        "{warnings:?}"
    );

    eventually("readyz reporting the store", || async {
        let (status, body) = readyz(&s).await;
        assert_eq!(status, 200, "readiness never fails on the store");
        body["store"]
            .as_str()
            .is_some_and(|v| v.starts_with("unavailable"))
    })
    .await;
    assert!(s.metrics().await.contains("rollgate_store_up 0"));

    redis.signal("CONT");
    eventually("the grant to work again", || async {
        s.review(&restart_by("alice")).await["allowed"] == true
    })
    .await;

    redis.restart();
    eventually("recovery after a Redis restart", || async {
        s.review(&restart_by("alice")).await["allowed"] == true
    })
    .await;
    eventually("readyz store ok", || async {
        readyz(&s).await.1["store"] == "ok"
    })
    .await;
    assert!(s.metrics().await.contains("rollgate_store_up 1"));
}

#[tokio::test]
async fn a_grant_planted_in_redis_without_the_signing_key_admits_nothing() {
    let redis = RedisServer::start(&[]);
    let s = spawn_on(&redis).await;
    let now = jiff::Timestamp::now().as_second();
    let planted = serde_json::json!({
        "jti": "planted", "user": "alice", "namespace": "production", "application": "checkout-api",
        "ticketId": "1", "ticketNumber": "RG-000001", "expiresAt": now + 3600,
        "token": "eyJhbGciOiJFZERTQSIsInR5cCI6InJvbGxnYXRlLWdyYW50K2p3dCJ9.e30.c2ln",
    });
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("SET")
        .arg("{rollgate}:grant:planted")
        .arg(planted.to_string())
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = redis::cmd("ZADD")
        .arg("{rollgate}:grants:sub:production/checkout-api/alice")
        .arg(now + 3600)
        .arg("planted")
        .query_async(&mut conn)
        .await
        .unwrap();

    let message = denial(&s.review(&restart_by("alice")).await);
    assert!(
        message.contains("your grant does not count"),
        "the planted row was found and rejected: {message}"
    );
}

#[tokio::test]
async fn a_change_that_cannot_be_recorded_is_not_made() {
    let redis = RedisServer::start(&[]);
    let s = spawn_on(&redis).await;
    s.approved_ticket().await;
    allowed(&s.review(&restart_by("alice")).await);

    // Break only the audit stream: the grant lookup still answers, the append cannot.
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("RENAME")
        .arg("{rollgate}:audit")
        .arg("{rollgate}:audit:moved")
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg("{rollgate}:audit")
        .arg("not a stream")
        .query_async(&mut conn)
        .await
        .unwrap();

    let message = denial(&s.review(&restart_by("alice")).await);
    assert!(message.contains("cannot reach its audit log"), "{message}");
    let ungated = s.review(&fixture("scale-review.json")).await;
    assert_eq!(
        ungated["allowed"], true,
        "ungated changes are never recorded, so they pass"
    );
}

#[tokio::test]
async fn a_dry_run_whose_limits_cannot_be_checked_fails_closed_as_its_append_would() {
    let redis = RedisServer::start(&[]);
    let s = spawn_on(&redis).await;
    let filed = s
        .post(
            Some(&s.alice),
            "/v1/tickets",
            Some(
                serde_json::json!({"namespace": "production", "application": "checkout-api",
                                    "reason": "one restart", "action": "restart", "maxUses": 1}),
            ),
        )
        .await;
    let id = filed.body["id"].as_str().unwrap();
    let approved = s
        .post(Some(&s.bob), &format!("/v1/tickets/{id}/approve"), None)
        .await;
    let jti = approved.body["grant"]["jti"].as_str().unwrap();
    let dry_run = || by(fixture("dry-run-restart-review.json"), "alice");
    allowed(&s.review(&dry_run()).await);

    // Break only the grant's use counter: the grant lookup still answers,
    // reading the counter (or counting on it) fails.
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("HSET")
        .arg(format!("{{rollgate}}:grant:uses:{jti}"))
        .arg("not")
        .arg("a count")
        .query_async(&mut conn)
        .await
        .unwrap();

    let message = denial(&s.review(&dry_run()).await);
    assert!(message.contains("cannot reach its audit log"), "{message}");
    let message = denial(&s.review(&restart_by("alice")).await);
    assert!(
        message.contains("cannot reach its audit log"),
        "the real request fails the same way: {message}"
    );
    assert!(
        s.metrics()
            .await
            .contains(r#"decision="denied_unavailable",kind="Deployment""#),
        "counted as unavailable"
    );
}

/// One review a load worker sent while Redis was up, down or back.
struct Answer {
    sent: Instant,
    took: Duration,
    allowed: bool,
    message: String,
}

#[tokio::test]
async fn redis_killed_under_load_denies_gated_changes_within_budget_and_recovers() {
    let mut redis = RedisServer::start(&[]);
    // A 2 s budget: admissions before the kill must not time out on a busy
    // machine, and a store call left to hang (the client gives up after
    // 20 s) is still far beyond it.
    let yaml = format!("{}  rateLimit: {{limit: 0}}\n", YAML.replace("500ms", "2s"));
    let store = StoreConfig::parse(&redis.url()).unwrap();
    let s = std::sync::Arc::new(
        spawn_server_with(tempfile::tempdir().unwrap(), &yaml, Some(store)).await,
    );
    s.approved_ticket().await;
    allowed(&s.review(&restart_by("alice")).await);

    // Eight clients send gated and ungated reviews back to back throughout.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let answered = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Instant>::new()));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (s, stop, answered) = (s.clone(), stop.clone(), answered.clone());
        workers.spawn(async move {
            let mut answers = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let sent = Instant::now();
                let response = s.review(&restart_by("alice")).await;
                answers.push(Answer {
                    sent,
                    took: sent.elapsed(),
                    allowed: response["allowed"] == true,
                    message: response["status"]["message"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                });
                answered.lock().unwrap().push(sent);
                let ungated = s.review(&fixture("scale-review.json")).await;
                assert_eq!(ungated["allowed"], true, "ungated passes throughout");
            }
            answers
        });
    }
    // Each phase lasts until enough answers were seen in it, not a fixed
    // time a busy machine may spend on a handful of requests.
    let answers_sent_after = |since: Instant, n: usize| {
        let answered = answered.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            while answered
                .lock()
                .unwrap()
                .iter()
                .filter(|&&t| t > since)
                .count()
                < n
            {
                assert!(Instant::now() < deadline, "fewer than {n} answers in 60 s");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    answers_sent_after(Instant::now(), 8).await;
    redis.kill();
    let killed = Instant::now();
    answers_sent_after(killed, 16).await;
    let restarted = Instant::now();
    redis.restart();
    eventually("gated changes admitted again", || async {
        s.review(&restart_by("alice")).await["allowed"] == true
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let answers: Vec<Answer> = workers.join_all().await.into_iter().flatten().collect();

    let before: Vec<&Answer> = answers
        .iter()
        .filter(|a| a.sent + a.took < killed)
        .collect();
    let during: Vec<&Answer> = answers
        .iter()
        .filter(|a| a.sent > killed && a.sent + a.took < restarted)
        .collect();
    assert!(before.iter().all(|a| a.allowed), "admitted before the kill");
    assert!(
        during.len() >= 8,
        "reviews kept being answered while Redis was down: {}",
        during.len()
    );
    for answer in &during {
        assert!(!answer.allowed, "a gated change passed without its store");
        assert!(
            answer.message.contains("cannot reach its grant store")
                || answer.message.contains("cannot reach its audit log"),
            "{}",
            answer.message
        );
        // The budget is 2 s; the margin is for a busy machine, far below
        // a store call left to hang (the client gives up after 20 s).
        assert!(
            answer.took < Duration::from_secs(8),
            "answered within the 2 s store budget: {:?}",
            answer.took
        );
    }
}
