//! The rollout follower in the running server: a change admitted by the
//! webhook is followed in a (fake) cluster reached through a kubeconfig, and
//! its outcome shows on the ADMISSION record, in the ROLLOUT records and in
//! the metrics: a Deployment's restart, and the kinds without a rollout
//! (issue #12), each sent as its fixture review and stored as the fixture's
//! own objects. The follower's cases (failure, timeout, watch resume,
//! takeover) are unit tests in `src/rollout/follow_tests.rs`, on the same
//! fake API server.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{TestServer, allowed, by, fixture, restart_by, spawn_server_on_fake_api};
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
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut metrics = s.metrics().await;
    while !metrics.contains(counted) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        metrics = s.metrics().await;
    }
    assert!(metrics.contains(counted), "{metrics}");
}

// === ReplicaSet, CronJob, Pod (#12) ===

const POD: &str = "checkout-api-6d9f7c8b5d-x2k9p";
const OLD_IMAGE: &str = "registry.example.com/shop/checkout-api:v3.41.2@sha256:9f2b5c1d7e3a4b6c8d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e";
const MINER: &str = "evil.example.com/miner:1";

/// The object of fixture `review` as the API server stores it before the
/// change (`which` = `oldObject`) or after it (`object`).
pub(crate) fn stored(review: &str, which: &str) -> Value {
    fixture(review)["request"][which].clone()
}

/// rollgate on a fake cluster holding the protected namespace production
/// and `objects`.
pub(crate) async fn cluster_with(
    objects: impl IntoIterator<Item = Value>,
) -> (FakeApi, TestServer) {
    let api = FakeApi::default();
    api.apply(json!({"apiVersion": "v1", "kind": "Namespace",
                     "metadata": {"name": "production", "labels": {"rollgate.io/protected": "true"}}}));
    for object in objects {
        api.apply(object);
    }
    let s = spawn_server_on_fake_api("{}", &api).await;
    (api, s)
}

/// Sends fixture `review` as alice, asserts it is admitted and answers its
/// operation id.
pub(crate) async fn admitted(s: &TestServer, review: &str) -> String {
    allowed(&s.review(&by(fixture(review), "alice")).await);
    let admission = s.audit("event=ADMISSION&decision=ALLOWED&limit=1").await;
    assert_eq!(admission[0]["rolloutStatus"], "STARTED", "{admission:?}");
    admission[0]["operationId"].as_str().unwrap().to_owned()
}

/// The ROLLOUT records of `operation`, newest first, once the newest is
/// `status` (within 20 s).
pub(crate) async fn rollouts_until(
    s: &TestServer,
    api: &FakeApi,
    operation: &str,
    status: &str,
) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let rollouts = s
            .audit(&format!("operationId={operation}&event=ROLLOUT"))
            .await;
        if rollouts
            .first()
            .is_some_and(|r| r["rolloutStatus"] == status)
        {
            return rollouts;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {status} record: {rollouts:#?}\nrequests: {:#?}",
            api.requests()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn statuses(rollouts: &[Value]) -> Vec<&Value> {
    rollouts.iter().map(|r| &r["rolloutStatus"]).collect()
}

/// A running container status as the kubelet reports it.
fn running(name: &str, image: &str, ready: bool) -> Value {
    json!({"name": name, "image": image, "imageID": format!("{image}@sha256:5d41402abc4b2a76b9719d911017c592"),
           "ready": ready, "restartCount": 1, "started": true,
           "state": {"running": {"startedAt": "2026-03-02T10:16:02Z"}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admitted_pod_image_change_is_completed_once_the_kubelet_runs_the_new_image() {
    const REVIEW: &str = "pod-set-image-review.json";
    let (api, s) = cluster_with([stored(REVIEW, "oldObject")]).await;
    s.grant("checkout-api", "image", json!({})).await;
    let operation = admitted(&s, REVIEW).await;

    // The API server stores the new image; the old container still runs.
    let mut pod = stored(REVIEW, "object");
    api.apply(pod.clone());
    rollouts_until(&s, &api, &operation, "PROGRESSING").await;
    // The kubelet restarts container app in place with the new image.
    pod["status"]["containerStatuses"] = json!([running("app", MINER, true)]);
    api.apply(pod);

    let rollouts = rollouts_until(&s, &api, &operation, "COMPLETED").await;
    assert_eq!(statuses(&rollouts), ["COMPLETED", "PROGRESSING"]);
    let done = &rollouts[0];
    assert_eq!(
        (&done["kind"], &done["deploymentName"], &done["change"]),
        (&json!("Pod"), &json!(POD), &json!("IMAGE"))
    );
    assert_eq!(
        done["newPods"],
        json!([POD]),
        "the same pod, restarted: {done}"
    );
    assert_eq!(done["terminatedPods"], json!([]), "{done}");
    assert_eq!(
        (&done["success"], &done["errorMessage"], &done["reason"]),
        (&json!(true), &Value::Null, &Value::Null),
        "{done}"
    );
    assert_eq!(
        (&done["previousImage"], &done["currentImage"]),
        (&json!(OLD_IMAGE), &json!(MINER))
    );
    assert!(
        api.requests()
            .iter()
            .filter(|r| r.contains("/pods"))
            .all(|r| r.contains(POD)),
        "the pod is watched by name: {:#?}",
        api.requests()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admitted_kubectl_debug_is_completed_once_its_debug_container_runs() {
    const REVIEW: &str = "pod-debug-review.json";
    let (api, s) = cluster_with([stored(REVIEW, "oldObject")]).await;
    s.grant("checkout-api", "debug", json!({})).await;
    let operation = admitted(&s, REVIEW).await;

    // The pod has its ephemeral container; the kubelet has not started it.
    let mut pod = stored(REVIEW, "object");
    api.apply(pod.clone());
    rollouts_until(&s, &api, &operation, "PROGRESSING").await;
    pod["status"]["ephemeralContainerStatuses"] = json!([running(
        "debugger-x7k2p",
        "docker.io/library/busybox:1.36",
        false
    )]);
    api.apply(pod);

    let rollouts = rollouts_until(&s, &api, &operation, "COMPLETED").await;
    assert_eq!(statuses(&rollouts), ["COMPLETED", "PROGRESSING"]);
    let done = &rollouts[0];
    assert_eq!(
        (&done["kind"], &done["change"]),
        (&json!("Pod"), &json!("DEBUG"))
    );
    assert_eq!(done["newPods"], json!([POD]), "{done}");
    assert_eq!(done["terminatedPods"], json!([]), "{done}");
    assert_eq!(
        (&done["success"], &done["errorMessage"]),
        (&json!(true), &Value::Null),
        "{done}"
    );
    assert_eq!(
        (&done["previousImage"], &done["currentImage"]),
        (&Value::Null, &json!("busybox:1.36")),
        "a debug container had no previous image: {done}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admitted_replica_set_change_is_completed_once_stored_saying_its_pods_keep_the_old_template()
 {
    const REVIEW: &str = "replicaset-set-image-review.json";
    // Two of its pods, as they run before the change.
    let first = stored("pod-set-image-review.json", "oldObject");
    let mut second = first.clone();
    second["metadata"]["name"] = "checkout-api-6d9f7c8b5d-q7m4z".into();
    let (api, s) = cluster_with([stored(REVIEW, "oldObject"), first, second]).await;
    s.grant("checkout-api", "image", json!({})).await;
    let operation = admitted(&s, REVIEW).await;

    api.apply(stored(REVIEW, "object"));

    let rollouts = rollouts_until(&s, &api, &operation, "COMPLETED").await;
    assert_eq!(statuses(&rollouts), ["COMPLETED"], "nothing to progress");
    let done = &rollouts[0];
    assert_eq!(
        done["reason"],
        "ReplicaSet production/checkout-api-6d9f7c8b5d stores the new pod template; its 2 running pods \
         keep the old template until they are replaced: only pods it creates from now on use the new one"
    );
    assert_eq!(done["newPods"], json!([]), "no pod is replaced: {done}");
    assert_eq!(
        done["previousPods"],
        json!(["checkout-api-6d9f7c8b5d-q7m4z", POD]),
        "by name: {done}"
    );
    assert_eq!(done["terminatedPods"], json!([]), "{done}");
    assert_eq!(
        (
            &done["success"],
            &done["currentReplicas"],
            &done["newReplicaSet"]
        ),
        (&json!(true), &json!(6), &Value::Null),
        "{done}"
    );
    assert_eq!(
        (&done["previousImage"], &done["currentImage"]),
        (&json!(OLD_IMAGE), &json!(MINER))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admitted_cron_job_change_is_completed_once_stored_saying_when_it_takes_effect() {
    const REVIEW: &str = "cronjob-set-image-review.json";
    let (api, s) = cluster_with([stored(REVIEW, "oldObject")]).await;
    s.grant("checkout-reconcile", "image", json!({})).await;
    let operation = admitted(&s, REVIEW).await;

    api.apply(stored(REVIEW, "object"));

    let rollouts = rollouts_until(&s, &api, &operation, "COMPLETED").await;
    assert_eq!(statuses(&rollouts), ["COMPLETED"], "nothing to progress");
    let done = &rollouts[0];
    assert_eq!(
        done["reason"],
        "CronJob production/checkout-reconcile stores the new job template; it takes effect at the next \
         scheduled run (schedule \"*/15 * * * *\")"
    );
    assert_eq!(
        (&done["newPods"], &done["terminatedPods"], &done["success"]),
        (&json!([]), &json!([]), &json!(true)),
        "{done}"
    );
    assert!(
        !api.requests().iter().any(|r| r.contains("/pods")),
        "a CronJob's change touches no running pod: {:#?}",
        api.requests()
    );
}
