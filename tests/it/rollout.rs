//! The rollout follower in the running server: a restart admitted by the
//! webhook is followed in a (fake) cluster reached through a kubeconfig, and
//! its outcome shows on the ADMISSION record and in the metrics. The
//! follower's cases (failure, timeout, watch resume, takeover) are unit
//! tests in `src/rollout/follow_tests.rs`, on the same fake API server.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{allowed, fixture, restart_by, spawn_server_on_fake_api};
use crate::fake_api::FakeApi;

/// The Deployment of the restart fixture as the API server holds it once
/// the restart is applied, with `status`.
fn checkout_api(status: Value) -> Value {
    let mut deployment = fixture("restart-review.json")["request"]["object"].clone();
    deployment["apiVersion"] = "apps/v1".into();
    deployment["kind"] = "Deployment".into();
    deployment["metadata"]["uid"] = "uid-checkout-api".into();
    deployment["metadata"]["generation"] = 9.into();
    deployment["status"] = status;
    deployment
}

fn labelled(kind: &str, name: &str, hash: &str, extra: Value) -> Value {
    let mut object = json!({
        "apiVersion": if kind == "Pod" { "v1" } else { "apps/v1" }, "kind": kind,
        "metadata": {"name": name, "namespace": "production",
                     "labels": {"app.kubernetes.io/name": "checkout-api",
                                "app.kubernetes.io/instance": "checkout-api-prod",
                                "pod-template-hash": hash}},
    });
    if let (Value::Object(o), Value::Object(e)) = (&mut object, extra) {
        o.extend(e);
    }
    object
}

/// A ReplicaSet of checkout-api; its template is the Deployment's, with the
/// restart only from revision 8 on.
fn replica_set(name: &str, hash: &str, revision: u32) -> Value {
    let mut template = checkout_api(json!({}))["spec"]["template"].clone();
    if revision < 8 {
        template["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"] =
            "2026-01-01T00:00:00Z".into();
    }
    let mut rs = labelled(
        "ReplicaSet",
        name,
        hash,
        json!({"spec": {"template": template}}),
    );
    rs["metadata"]["annotations"] =
        json!({"deployment.kubernetes.io/revision": revision.to_string()});
    rs["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "Deployment",
                                                "name": "checkout-api", "uid": "uid-checkout-api"}]);
    rs
}

fn pod(name: &str, hash: &str) -> Value {
    labelled("Pod", name, hash, json!({"status": {"phase": "Running"}}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admitted_restart_is_followed_to_completed_in_the_audit_and_the_metrics() {
    let api = FakeApi::default();
    api.apply(json!({"apiVersion": "v1", "kind": "Namespace",
                     "metadata": {"name": "production", "labels": {"rollgate.io/protected": "true"}}}));
    api.apply(checkout_api(json!({"observedGeneration": 8, "replicas": 6,
                                  "updatedReplicas": 6, "availableReplicas": 6})));
    api.apply(replica_set("checkout-api-old", "old", 7));
    for i in 0..6 {
        api.apply(pod(&format!("checkout-api-old-{i}"), "old"));
    }
    let s = spawn_server_on_fake_api("{}", &api).await;

    s.approved_ticket().await;
    let warnings = allowed(&s.review(&restart_by("alice")).await);
    assert!(!warnings.is_empty());
    let admission = s.audit("event=ADMISSION&decision=ALLOWED").await;
    let id = admission[0]["id"].as_str().unwrap().to_owned();
    let operation = admission[0]["operationId"].as_str().unwrap().to_owned();
    assert_eq!(admission[0]["restartedAt"], "2026-03-02T10:15:04Z");

    // The follower sees the change applied (the old pods still running)...
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while s
        .audit(&format!("operationId={operation}&event=ROLLOUT"))
        .await
        .is_empty()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no PROGRESSING record"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // ...then the controller acts: old pods make way for new ones.
    api.apply(replica_set("checkout-api-new", "new", 8));
    for i in 0..6 {
        api.apply(pod(&format!("checkout-api-new-{i}"), "new"));
        api.delete("Pod", "production", &format!("checkout-api-old-{i}"));
    }
    api.apply(checkout_api(json!({"observedGeneration": 9, "replicas": 6,
                                  "updatedReplicas": 6, "availableReplicas": 6})));

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let shown = loop {
        let reply = s.get(Some(&s.carol), &format!("/v1/audit/{id}")).await;
        if reply.body["rollout"]["rolloutStatus"] == "COMPLETED" {
            break reply.body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not COMPLETED: {:#?}\nrollouts: {:#?}\nrequests: {:#?}",
            reply.body,
            s.audit("event=ROLLOUT").await,
            api.requests()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // The ADMISSION record, with its operation's latest rollout record.
    let outcome = &shown["rollout"];
    assert_eq!(outcome["operationId"], operation.as_str());
    assert_eq!(outcome["success"], true);
    assert_eq!(outcome["newReplicaSet"], "checkout-api-new");
    assert_eq!(outcome["newPods"].as_array().map(Vec::len), Some(6));
    assert_eq!(outcome["terminatedPods"].as_array().map(Vec::len), Some(6));

    let rollouts = s
        .audit(&format!("operationId={operation}&event=ROLLOUT"))
        .await;
    let statuses: Vec<&Value> = rollouts.iter().map(|r| &r["rolloutStatus"]).collect();
    assert_eq!(statuses, ["COMPLETED", "PROGRESSING"], "newest first");
    assert!(s.verify_audit().await["ok"].as_bool().unwrap());
    // The follower counts the operation just after appending its record.
    let counted = "app_redeploy_operations_total{application=\"checkout-api\",namespace=\"production\",result=\"completed\",username=\"alice\"} 1";
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut metrics = s.metrics().await;
    while !metrics.contains(counted) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        metrics = s.metrics().await;
    }
    assert!(metrics.contains(counted), "{metrics}");
}
