//! Robustness of `/validate`: bodies that are not reviews, or too large,
//! get 400 or 413, and the server keeps answering good reviews after each.

use reqwest::StatusCode;
use serde_json::Value;

use crate::common::{TestServer, denial, restart_by, spawn_server};

async fn still_serves(s: &TestServer, after: &str) {
    let response = s.review(&restart_by("alice")).await;
    let message = denial(&response);
    assert!(
        message.contains("rollgate ticket request"),
        "after {after}: {message}"
    );
}

#[tokio::test]
async fn malformed_json_is_a_bad_request() {
    let s = spawn_server("{}").await;
    for body in ["{\"kind\":\"AdmissionReview\",", "not json at all", ""] {
        let (status, review) = s.send_review(body.to_owned()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body:?}: {review}");
        assert_eq!(review["response"]["allowed"], false, "{body:?}: {review}");
        assert!(
            review["response"]["status"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("not an AdmissionReview")),
            "{body:?}: {review}"
        );
        still_serves(&s, body).await;
    }
}

#[tokio::test]
async fn review_without_request_is_a_bad_request() {
    let s = spawn_server("{}").await;
    let mut review = restart_by("alice");
    review.as_object_mut().unwrap().remove("request");

    let (status, body) = s.send_review(review.to_string()).await;

    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["response"]["allowed"], false, "{body}");
    assert!(
        body["response"]["status"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("no request")),
        "{body}"
    );
    still_serves(&s, "a review without request").await;
    let records = s.audit("event=ADMISSION").await;
    assert_eq!(records.len(), 1, "only the good review is recorded");
}

#[tokio::test]
async fn body_over_the_limit_is_payload_too_large() {
    let s = spawn_server("{}").await;
    // A well-formed restart review, padded to 6 MiB with an annotation.
    let mut review = restart_by("alice");
    review["request"]["object"]["metadata"]["annotations"]["padding"] =
        Value::String("x".repeat(6 * 1024 * 1024));

    let (status, _) = s.send_review(review.to_string()).await;

    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    still_serves(&s, "a 6 MiB body").await;
    assert!(s.audit("event=ADMISSION").await.len() == 1);

    // Just under the limit is read and answered.
    let mut review = restart_by("alice");
    review["request"]["object"]["metadata"]["annotations"]["padding"] =
        Value::String("x".repeat(3 * 1024 * 1024));
    let response = s.review(&review).await;
    denial(&response);
}

#[tokio::test]
async fn api_body_over_64_kib_is_payload_too_large() {
    let s = spawn_server("{}").await;
    let body = serde_json::json!({
        "namespace": "production",
        "application": "checkout-api",
        "reason": "x".repeat(65 * 1024),
    });

    let reply = s.post(Some(&s.alice), "/v1/tickets", Some(body)).await;

    let detail = reply.problem(StatusCode::PAYLOAD_TOO_LARGE);
    assert!(detail.contains("64 KiB"), "{detail}");
    let resp = s
        .http
        .post(format!("{}/v1/tickets", s.api))
        .bearer_auth(&s.alice)
        .body(r#"{"namespace":"production","application":"checkout-api","reason":"x"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    s.file_ticket(&s.alice, "production", "checkout-api").await;
}
