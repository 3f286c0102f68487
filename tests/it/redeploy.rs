//! The redeploy API over HTTPS: the grant is the Bearer token. Without a
//! cluster it answers 503 "no cluster configured" (the cluster side is
//! covered against a mock API server in `src/redeploy/tests.rs`).

use reqwest::StatusCode;
use serde_json::json;

use crate::common::spawn_server;

#[tokio::test]
async fn redeploy_checks_the_grant_before_saying_no_cluster_is_configured() {
    let s = spawn_server("{}").await;
    let ticket = s.approved_ticket().await;
    let grant = s
        .get(
            Some(&s.alice),
            &format!("/v1/tickets/{}/grant", ticket["id"].as_str().unwrap()),
        )
        .await;
    let token = grant.body["token"].as_str().unwrap().to_owned();

    let no_cluster = s
        .post(
            Some(&token),
            "/v1/applications/production/checkout-api/redeploy",
            None,
        )
        .await;
    let detail = no_cluster.problem(StatusCode::SERVICE_UNAVAILABLE);
    assert!(detail.contains("no cluster configured"), "{detail}");

    // Pods, ReplicaSets and CronJobs are gated, but a restart annotation
    // does not roll them: naming one is a bad request, whatever the cluster.
    for kind in ["Pod", "ReplicaSet", "CronJob", "Job"] {
        let detail = s
            .post(
                Some(&token),
                "/v1/applications/production/checkout-api/redeploy",
                Some(json!({"kind": kind, "name": "checkout-api"})),
            )
            .await
            .problem(StatusCode::BAD_REQUEST);
        assert!(
            detail.contains(&format!(
                "kind \"{kind}\" is not one of Deployment, StatefulSet, DaemonSet"
            )),
            "{kind}: {detail}"
        );
    }

    let other_app = s
        .post(
            Some(&token),
            "/v1/applications/production/ledger/redeploy",
            None,
        )
        .await;
    let detail = other_app.problem(StatusCode::FORBIDDEN);
    assert!(detail.contains("production/checkout-api"), "{detail}");

    let demo_token = s
        .post(
            Some(&s.alice),
            "/v1/applications/production/checkout-api/redeploy",
            None,
        )
        .await;
    let detail = demo_token.problem(StatusCode::UNAUTHORIZED);
    assert!(detail.contains("not a valid grant"), "{detail}");

    let jti = grant.body["jti"].as_str().unwrap();
    let revoked = s
        .post(Some(&s.bob), &format!("/v1/grants/{jti}/revoke"), None)
        .await;
    assert_eq!(revoked.status, StatusCode::OK, "{revoked:?}");
    let after_revoke = s
        .post(
            Some(&token),
            "/v1/applications/production/checkout-api/redeploy",
            None,
        )
        .await;
    let detail = after_revoke.problem(StatusCode::FORBIDDEN);
    assert!(detail.contains("revoked"), "{detail}");
}

#[tokio::test]
async fn image_and_debug_grants_cannot_redeploy() {
    let s = spawn_server("{}").await;
    for (action, allows) in [
        ("image", "allows only an image change"),
        ("debug", "allows only a debug container"),
    ] {
        let filed = s
            .post(
                Some(&s.alice),
                "/v1/tickets",
                Some(
                    json!({"namespace": "production", "application": "checkout-api",
                            "action": action, "reason": "look into the stuck pod"}),
                ),
            )
            .await;
        assert_eq!(filed.status, StatusCode::CREATED, "{action}: {filed:?}");
        let id = filed.body["id"].as_str().unwrap();
        let approved = s
            .post(Some(&s.bob), &format!("/v1/tickets/{id}/approve"), None)
            .await;
        assert_eq!(approved.status, StatusCode::OK, "{action}: {approved:?}");
        let grant = s
            .get(Some(&s.alice), &format!("/v1/tickets/{id}/grant"))
            .await;
        let token = grant.body["token"].as_str().unwrap().to_owned();

        let detail = s
            .post(
                Some(&token),
                "/v1/applications/production/checkout-api/redeploy",
                None,
            )
            .await
            .problem(StatusCode::FORBIDDEN);

        assert!(detail.contains(allows), "{action}: {detail}");
        assert!(
            detail.contains("a redeploy is a restart")
                && detail.contains("request a ticket with --action restart"),
            "{action}: {detail}"
        );
    }
}
