//! No way round the gate (issue #12): every path an ordinary user (the
//! built-in `edit` role) has to change what runs in a protected namespace,
//! sent as the API server sends it (`tests/data/make-fixtures.py`) over
//! real TLS. Each is denied without a grant, says what changed and which
//! ticket covers it, and is admitted only by the grant that covers it.

use serde_json::{Value, json};

use crate::common::{TestServer, allowed, by, denial, fixture, spawn_server};

const NEW_IMAGE: &str = "registry.example.com/shop/checkout-api:v3.42.0@sha256:0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9";

/// Asserts a denial naming `parts` and returns the message.
async fn denied_with(s: &TestServer, review: &Value, parts: &[&str]) -> String {
    let message = denial(&s.review(review).await);
    for part in parts {
        assert!(message.contains(part), "{part:?} missing from: {message}");
    }
    message
}

async fn last_admission(s: &TestServer) -> Value {
    s.audit("event=ADMISSION&limit=1").await.remove(0)
}

#[tokio::test]
async fn a_pods_image_change_needs_an_image_grant_for_its_application() {
    let s = spawn_server("{}").await;
    let review = by(fixture("pod-set-image-review.json"), "alice");
    denied_with(
        &s,
        &review,
        &[
            "alice may not change the image of Pod production/checkout-api-6d9f7c8b5d-x2k9p (application checkout-api)",
            "What changed: image of container app (",
            "rollgate ticket request -n production checkout-api --action image",
        ],
    )
    .await;
    let record = last_admission(&s).await;
    assert_eq!(
        (&record["kind"], &record["change"], &record["decision"]),
        (&json!("Pod"), &json!("IMAGE"), &json!("DENIED"))
    );

    s.grant("checkout-api", "restart", json!({})).await;
    denied_with(&s, &by(review.clone(), "alice"), &["allows only a restart"]).await;
    s.grant("checkout-api", "image", json!({})).await;
    allowed(&s.review(&by(review, "alice")).await);
}

#[tokio::test]
async fn kubectl_debug_needs_a_debug_grant() {
    let s = spawn_server("{}").await;
    let review = by(fixture("pod-debug-review.json"), "alice");
    denied_with(
        &s,
        &review,
        &[
            "alice may not add a debug container to Pod production/checkout-api-6d9f7c8b5d-x2k9p",
            "debug container debugger-x7k2p added (busybox:1.36)",
            "--action debug",
        ],
    )
    .await;

    s.grant("checkout-api", "image", json!({})).await;
    denied_with(
        &s,
        &by(review.clone(), "alice"),
        &["allows only an image change"],
    )
    .await;
    s.grant("checkout-api", "debug", json!({})).await;
    allowed(&s.review(&by(review, "alice")).await);
    let record = last_admission(&s).await;
    assert_eq!(record["change"], "DEBUG");
    assert_eq!(record["imageChanges"][0]["ephemeral"], true, "{record}");
    assert_eq!(record["imageChanges"][0]["currentImage"], "busybox:1.36");
}

#[tokio::test]
async fn a_replicasets_image_is_gated_and_its_controller_passes() {
    let s = spawn_server("{}").await;
    denied_with(
        &s,
        &by(fixture("replicaset-set-image-review.json"), "alice"),
        &["may not change the image of ReplicaSet production/checkout-api-6d9f7c8b5d"],
    )
    .await;

    // The deployment controller's own update: replicas and annotations only.
    let controller = fixture("replicaset-controller-review.json");
    assert!(allowed(&s.review(&controller).await).is_empty());
    assert_eq!(
        s.audit("event=ADMISSION").await.len(),
        1,
        "the controller's update is not gated, so not recorded"
    );
}

#[tokio::test]
async fn a_cronjobs_image_is_gated() {
    let s = spawn_server("{}").await;
    denied_with(
        &s,
        &by(fixture("cronjob-set-image-review.json"), "alice"),
        &[
            "may not change the image of CronJob production/checkout-reconcile (application checkout-reconcile)",
            "--action image",
        ],
    )
    .await;
}

#[tokio::test]
async fn every_other_pod_template_change_is_a_template_change_needing_any() {
    let s = spawn_server("{}").await;
    let rows = [
        ("set-env-review.json", "env of container app"),
        (
            "annotation-change-review.json",
            "annotation checksum/config",
        ),
        (
            "restartedat-other-case-review.json",
            "annotation kubectl.kubernetes.io/RestartedAt",
        ),
        (
            "restart-with-command-review.json",
            "annotation kubectl.kubernetes.io/restartedAt, command of container app",
        ),
    ];
    for (name, what) in rows {
        let message = denied_with(
            &s,
            &by(fixture(name), "alice"),
            &[
                "may not change the pod template of Deployment production/checkout-api",
                what,
                "--action any",
            ],
        )
        .await;
        assert!(!message.contains("--action restart"), "{name}: {message}");
        let record = last_admission(&s).await;
        assert_eq!(record["change"], "TEMPLATE", "{name}: {record}");
        let named = record["templateChanges"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(
            what.split(", ")
                .filter(|w| !w.contains("restartedAt"))
                .all(|w| named.contains(&json!(w))),
            "{name}: the audit record names what changed: {record}"
        );
    }

    // A restart grant never carries a new command.
    s.grant("checkout-api", "restart", json!({})).await;
    denied_with(
        &s,
        &by(fixture("restart-with-command-review.json"), "alice"),
        &["allows only a restart"],
    )
    .await;
    allowed(&s.review(&by(fixture("restart-review.json"), "alice")).await);
    s.grant("checkout-api", "any", json!({})).await;
    allowed(
        &s.review(&by(fixture("restart-with-command-review.json"), "alice"))
            .await,
    );
}

#[tokio::test]
async fn without_gate_any_template_change_other_template_changes_pass_but_a_restart_does_not() {
    let s = spawn_server("policy:\n  gateAnyTemplateChange: false\n").await;
    allowed(&s.review(&by(fixture("set-env-review.json"), "alice")).await);
    denied_with(
        &s,
        &by(fixture("restart-with-command-review.json"), "alice"),
        &["may not restart Deployment", "--action restart"],
    )
    .await;
}

#[tokio::test]
async fn a_grant_for_one_application_never_admits_an_object_that_was_another() {
    let s = spawn_server("{}").await;
    s.grant("checkout-api", "any", json!({})).await;
    for name in ["relabel-with-image-review.json", "relabel-only-review.json"] {
        let message = denied_with(
            &s,
            &by(fixture(name), "alice"),
            &[
                "may not change the application labels of Deployment production/payments-api (application payments-api)",
                "label app.kubernetes.io/name (payments-api → checkout-api)",
                "rollgate ticket request -n production payments-api --action any",
            ],
        )
        .await;
        assert!(message.contains("no grant"), "{name}: {message}");
    }
    let record = last_admission(&s).await;
    assert_eq!(
        (&record["change"], &record["applicationName"]),
        (&json!("RELABEL"), &json!("payments-api"))
    );
    assert_eq!(
        record["templateChanges"][0],
        "label app.kubernetes.io/name (payments-api → checkout-api)"
    );

    // Only a grant for the application the object was admits the relabel.
    s.grant("payments-api", "any", json!({})).await;
    allowed(
        &s.review(&by(fixture("relabel-only-review.json"), "alice"))
            .await,
    );
}

#[tokio::test]
async fn a_grant_pinned_to_images_does_not_admit_removing_a_sidecar() {
    let s = spawn_server("{}").await;
    s.grant("checkout-api", "image", json!({"images": [NEW_IMAGE]}))
        .await;
    denied_with(
        &s,
        &by(fixture("sidecar-removed-review.json"), "alice"),
        &["may not remove container \"auth-proxy\""],
    )
    .await;
    allowed(
        &s.review(&by(fixture("set-image-review.json"), "alice"))
            .await,
    );
}

#[tokio::test]
async fn exempt_groups_never_exempt_rollgates_own_service_account() {
    let s = spawn_server(
        "policy:\n  exemptGroups: [system:serviceaccounts:rollgate, system:serviceaccounts]\n",
    )
    .await;
    let message = denied_with(&s, &fixture("rollgate-with-groups-review.json"), &[]).await;
    assert!(
        message.contains("system:serviceaccount:rollgate:rollgate may not restart"),
        "{message}"
    );
    assert_eq!(last_admission(&s).await["decision"], "DENIED");
}
