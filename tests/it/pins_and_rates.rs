//! What a ticket pins (its images, its number of uses) and the rate limits
//! (admitted changes per application, tickets per user), end to end.

use reqwest::StatusCode;
use serde_json::json;

use crate::common::{TestServer, allowed, by, denial, fixture, restart_by, spawn_server};

const NEW_IMAGE: &str = "registry.example.com/shop/checkout-api:v3.42.0@sha256:0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9";

/// alice files a ticket for production/checkout-api (extra fields merged
/// in) and bob approves it.
async fn approved_with(s: &TestServer, extra: serde_json::Value) -> serde_json::Value {
    let mut body = json!({"namespace": "production", "application": "checkout-api", "reason": "pinned change"});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    s.approved_ticket_with(body).await
}

#[tokio::test]
async fn a_single_use_ticket_admits_one_restart() {
    let s = spawn_server("{}").await;
    let ticket = approved_with(&s, json!({"action": "restart", "maxUses": 1})).await;
    assert_eq!(ticket["maxUses"], 1);

    allowed(&s.review(&restart_by("alice")).await);
    let message = denial(&s.review(&restart_by("alice")).await);
    assert!(message.contains("used up"), "{message}");
    assert!(
        message.contains("rollgate ticket request -n production checkout-api"),
        "a new ticket is the way: {message}"
    );

    let denied = s.audit("decision=DENIED").await;
    assert_eq!(denied.len(), 1, "the refusal is recorded: {denied:?}");
    assert!(
        denied[0]["reason"].as_str().unwrap().contains("used up"),
        "{denied:?}"
    );
}

/// The dry run of `kubectl rollout restart` of the restart fixture, by alice.
fn dry_run_by_alice() -> serde_json::Value {
    by(fixture("dry-run-restart-review.json"), "alice")
}

#[tokio::test]
async fn a_dry_run_after_the_uses_are_spent_is_denied_as_used_up_and_not_recorded() {
    let s = spawn_server("{}").await;
    approved_with(&s, json!({"action": "restart", "maxUses": 1})).await;
    allowed(&s.review(&restart_by("alice")).await);

    let dry_run = dry_run_by_alice();
    let message = denial(&s.review(&dry_run).await);

    assert!(
        message.contains("your grant is used up: its ticket allowed 1 change(s)"),
        "the answer the real request gets: {message}"
    );
    let admissions = s.audit("event=ADMISSION").await;
    assert_eq!(
        admissions.len(),
        1,
        "only the real restart is recorded: {admissions:?}"
    );
    assert_ne!(admissions[0]["requestUid"], dry_run["request"]["uid"]);
    assert!(s.verify_audit().await["ok"].as_bool().unwrap());
}

#[tokio::test]
async fn a_dry_run_within_the_uses_is_allowed_and_consumes_none() {
    let s = spawn_server("{}").await;
    approved_with(&s, json!({"action": "restart", "maxUses": 1})).await;

    for _ in 0..2 {
        let warnings = allowed(&s.review(&dry_run_by_alice()).await);
        assert!(
            warnings.iter().any(|w| w.contains("allowed by ticket")),
            "{warnings:?}"
        );
    }
    assert!(
        s.audit("event=ADMISSION").await.is_empty(),
        "dry runs are not recorded"
    );

    allowed(&s.review(&restart_by("alice")).await);
    let message = denial(&s.review(&restart_by("alice")).await);
    assert!(
        message.contains("used up"),
        "one use, spent by the real restart: {message}"
    );
    let message = denial(&s.review(&dry_run_by_alice()).await);
    assert!(message.contains("used up"), "{message}");
}

#[tokio::test]
async fn a_dry_run_of_a_rate_limited_application_is_denied_with_the_next_allowed_time() {
    let s = spawn_server("policy:\n  rateLimit: {limit: 1, window: 1h}\n").await;
    s.approved_ticket().await;
    allowed(&s.review(&dry_run_by_alice()).await);
    allowed(&s.review(&restart_by("alice")).await);

    let message = denial(&s.review(&dry_run_by_alice()).await);

    assert!(
        message.contains("had 1 changes admitted in the last 1h00m"),
        "{message}"
    );
    assert!(message.contains("run your command again at"), "{message}");
    assert_eq!(
        s.audit("event=ADMISSION").await.len(),
        1,
        "only the real restart is recorded"
    );
}

#[tokio::test]
async fn a_ticket_pinned_to_an_image_admits_only_that_image() {
    let s = spawn_server("{}").await;
    approved_with(&s, json!({"action": "image", "images": [NEW_IMAGE]})).await;
    allowed(
        &s.review(&by(fixture("set-image-review.json"), "alice"))
            .await,
    );

    let mut other = by(fixture("set-image-review.json"), "alice");
    other["request"]["object"]["spec"]["template"]["spec"]["containers"][0]["image"] =
        "evil.example.com/miner:latest".into();
    let message = denial(&s.review(&other).await);
    assert!(
        message.contains("does not allow image \"evil.example.com/miner:latest\""),
        "{message}"
    );

    let bad = s
        .post(
            Some(&s.alice),
            "/v1/tickets",
            Some(json!({"namespace": "production", "application": "checkout-api", "reason": "x", "action": "restart", "images": [NEW_IMAGE]})),
        )
        .await;
    let detail = bad.problem(StatusCode::BAD_REQUEST);
    assert!(detail.contains("images"), "{detail}");
}

#[tokio::test]
async fn redeploys_of_an_application_are_rate_limited_with_the_next_allowed_time() {
    let s = spawn_server("policy:\n  rateLimit: {limit: 2, window: 1h}\n").await;
    s.approved_ticket().await;
    allowed(&s.review(&restart_by("alice")).await);
    allowed(&s.review(&restart_by("alice")).await);

    let message = denial(&s.review(&restart_by("alice")).await);
    assert!(
        message.contains("had 2 changes admitted in the last 1h00m"),
        "{message}"
    );
    assert!(message.contains("run your command again at"), "{message}");
    assert!(
        !message.contains("rollgate ticket request"),
        "the grant is fine; no new ticket: {message}"
    );
    let denied = s.audit("decision=DENIED").await;
    assert_eq!(denied.len(), 1, "{denied:?}");
    assert!(
        denied[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("rate limit"),
        "{denied:?}"
    );
    assert_eq!(s.audit("decision=ALLOWED").await.len(), 2);
}

#[tokio::test]
async fn filing_tickets_is_rate_limited_per_user() {
    let s = spawn_server("policy:\n  ticketRateLimit: {limit: 2, window: 1h}\n").await;
    s.file_ticket(&s.alice, "production", "checkout-api").await;
    s.file_ticket(&s.alice, "production", "checkout-api").await;
    let third = s
        .http
        .post(format!("{}/v1/tickets", s.api))
        .bearer_auth(&s.alice)
        .json(&json!({"namespace": "production", "application": "checkout-api", "reason": "again"}))
        .send()
        .await
        .unwrap();
    assert_eq!(third.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: i64 = third.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry > 3500 && retry <= 3600, "{retry}");
    let problem: serde_json::Value = third.json().await.unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("alice filed 2 tickets"),
        "{problem}"
    );
    // Another user is not affected.
    s.file_ticket(&s.bob, "production", "checkout-api").await;
}
