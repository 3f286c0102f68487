//! The admin listener: probes and Prometheus metrics.

use reqwest::StatusCode;

use crate::common::{allowed, fixture, restart_by, spawn_server};

#[tokio::test]
async fn health_and_readiness_probes_answer() {
    let s = spawn_server("{}").await;

    let health = s
        .http
        .get(format!("{}/healthz", s.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);

    let ready = s
        .http
        .get(format!("{}/readyz", s.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body, serde_json::json!({"ready": true, "store": "ok"}));
}

#[tokio::test]
async fn metrics_count_admissions_and_tickets() {
    let s = spawn_server("{}").await;
    s.review(&restart_by("alice")).await;
    s.review(&fixture("scale-review.json")).await;
    s.approved_ticket().await;
    allowed(&s.review(&restart_by("alice")).await);

    let text = s.metrics().await;

    for line in [
        r#"rollgate_admission_requests_total{decision="denied",kind="Deployment",operation="UPDATE"} 1"#,
        r#"rollgate_admission_requests_total{decision="allowed",kind="Deployment",operation="UPDATE"} 1"#,
        r#"rollgate_admission_requests_total{decision="ungated",kind="Scale",operation="UPDATE"} 1"#,
        r#"app_redeploy_ticket_created_total{application="checkout-api",env="production",username="alice"} 1"#,
        r#"app_redeploy_token_created_total{application="checkout-api",result="success",username="alice"} 1"#,
        "app_redeploy_token_active_count 1",
        "rollgate_admission_duration_seconds_count 3",
        "rollgate_store_up 1",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
    assert!(!text.contains(&s.alice), "no tokens in metrics");
}
