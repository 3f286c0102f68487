//! Namespaces protected by label, with a (fake) cluster reached through a
//! kubeconfig: when the API server calls about a namespace the watch has not
//! shown labelled yet, rollgate looks it up before it answers, and denies
//! what it cannot confirm.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{TestServer, allowed, denial, fixture, restart_by, spawn_server_on_fake_api};
use crate::fake_api::FakeApi;

fn mk_namespace(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}})
}

/// The restart fixture by alice, moved to `namespace`.
fn restart_in(namespace: &str) -> Value {
    let mut review = restart_by("alice");
    review["request"]["namespace"] = namespace.into();
    review["request"]["object"]["metadata"]["namespace"] = namespace.into();
    review["request"]["oldObject"]["metadata"]["namespace"] = namespace.into();
    review
}

/// rollgate on `api` (over a kubeconfig), once its namespace index has
/// synced (`/readyz` waits for it).
async fn spawn_on(api: &FakeApi) -> TestServer {
    let s = spawn_server_on_fake_api("{}", api).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let ready = s
            .http
            .get(format!("{}/readyz", s.admin))
            .send()
            .await
            .unwrap();
        if ready.status() == reqwest::StatusCode::OK {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the namespace index did not sync: {:?}",
            api.requests()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s
}

fn lookups_of(api: &FakeApi, namespace: &str) -> usize {
    let get = format!("GET /api/v1/namespaces/{namespace}?");
    api.requests().iter().filter(|r| **r == get).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_labelled_a_moment_ago_is_gated_before_the_watch_sees_it() {
    let api = FakeApi::default();
    api.apply(mk_namespace("payments", json!({})));
    api.apply(mk_namespace("sandbox", json!({})));
    let s = spawn_on(&api).await;

    // Labelled where the API server's selector sees it, not yet where the watch does.
    api.apply_unwatched(mk_namespace(
        "payments",
        json!({"rollgate.io/protected": "true"}),
    ));
    let message = denial(&s.review(&restart_in("payments")).await);

    assert!(
        message.contains("rollgate ticket request -n payments checkout-api"),
        "gated, without a grant: {message}"
    );
    assert_eq!(lookups_of(&api, "payments"), 1, "{:?}", api.requests());
    denial(&s.review(&restart_in("payments")).await);
    assert_eq!(
        lookups_of(&api, "payments"),
        1,
        "the index learnt the label: no second lookup"
    );
    let denied = s.audit("event=ADMISSION&namespace=payments").await;
    assert_eq!(denied.len(), 2, "{denied:?}");
    assert_eq!(denied[0]["decision"], "DENIED");

    // An unlabelled namespace stays open, and is looked up once for a while.
    for _ in 0..3 {
        allowed(&s.review(&restart_in("sandbox")).await);
    }
    assert_eq!(lookups_of(&api, "sandbox"), 1, "{:?}", api.requests());
    assert!(
        s.audit("event=ADMISSION&namespace=sandbox")
            .await
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_rollgate_cannot_look_up_is_denied_as_unconfirmed() {
    let api = FakeApi::default();
    api.apply(mk_namespace("ledger", json!({})));
    let s = spawn_on(&api).await;
    api.forbid();

    let review = restart_in("ledger");
    let response = s.review(&review).await;

    let message = denial(&response);
    for part in [
        "rollgate cannot confirm whether namespace ledger is protected",
        "forbidden",
        "so it fails closed",
        "retry in a minute",
        "tell the platform team",
    ] {
        assert!(message.contains(part), "{part:?} missing from {message}");
    }
    assert_eq!(response["status"]["reason"], "Forbidden");
    assert_eq!(lookups_of(&api, "ledger"), 1, "{:?}", api.requests());
    assert!(
        s.metrics().await.contains(
            r#"rollgate_admission_requests_total{decision="denied_unavailable",kind="Deployment",operation="UPDATE"} 1"#
        ),
        "counted as unavailable"
    );
    // A request ungated whatever its namespace needs no lookup.
    let mut scale = fixture("scale-review.json");
    scale["request"]["namespace"] = "ledger".into();
    allowed(&s.review(&scale).await);
    assert_eq!(lookups_of(&api, "ledger"), 1);
}
