//! `POST /validate` with the fixtures of `tests/data/`: what is gated, what
//! the user reads, and what the audit trail keeps.

use crate::common::{allowed, by, denial, fixture, restart_by, spawn_server};

const ARGOCD: &str = "system:serviceaccount:argocd:argocd-application-controller";

#[tokio::test]
async fn restart_without_grant_is_denied_with_ticket_command() {
    let s = spawn_server("{}").await;
    let review = fixture("restart-review.json");

    let response = s.review(&review).await;

    let message = denial(&response);
    for part in [
        "alice@example.com",
        "restart",
        "Deployment",
        "production/checkout-api",
        "rollgate ticket request -n production checkout-api --action restart",
        &format!("curl -X POST {}/v1/tickets", s.api),
        r#"\"namespace\":\"production\",\"application\":\"checkout-api\""#,
    ] {
        let part = part.replace(r#"\""#, "\"");
        assert!(message.contains(&part), "{part:?} missing from {message}");
    }
    assert_eq!(response["status"]["reason"], "Forbidden");

    let records = s.audit("event=ADMISSION").await;
    assert_eq!(records.len(), 1, "{records:?}");
    let r = &records[0];
    assert_eq!(r["decision"], "DENIED");
    assert_eq!(r["username"], "alice@example.com");
    assert_eq!(r["namespace"], "production");
    assert_eq!(r["applicationName"], "checkout-api");
    assert_eq!(r["deploymentName"], "checkout-api");
    assert_eq!(r["kind"], "Deployment");
    assert_eq!(r["change"], "RESTART");
    assert_eq!(r["requestUid"], review["request"]["uid"]);
}

#[tokio::test]
async fn set_image_is_denied_for_containers_and_init_containers() {
    let s = spawn_server("{}").await;
    for (fixture_name, container, init) in [
        ("set-image-review.json", "app", false),
        ("set-init-image-review.json", "migrate", true),
    ] {
        let response = s.review(&by(fixture(fixture_name), "alice")).await;
        let message = denial(&response);
        assert!(
            message
                .contains("alice may not change the image of Deployment production/checkout-api"),
            "{fixture_name}: {message}"
        );
        assert!(
            message.contains("rollgate ticket request -n production checkout-api --action image"),
            "{fixture_name}: {message}"
        );

        let records = s.audit("event=ADMISSION&limit=1").await;
        let r = &records[0];
        assert_eq!(r["change"], "IMAGE", "{fixture_name}: {r}");
        let changes = r["imageChanges"].as_array().unwrap();
        assert_eq!(changes.len(), 1, "{fixture_name}: {r}");
        assert_eq!(changes[0]["container"], container, "{fixture_name}");
        assert_eq!(
            changes[0]["init"].as_bool().unwrap_or(false),
            init,
            "{fixture_name}"
        );
        assert_ne!(
            changes[0]["previousImage"], changes[0]["currentImage"],
            "{fixture_name}"
        );
    }
}

#[tokio::test]
async fn ungated_requests_are_allowed_and_not_recorded() {
    let s = spawn_server("{}").await;
    for name in [
        "scale-review.json",
        "status-review.json",
        "create-review.json",
        "delete-review.json",
        "staging-restart-review.json",
        "replicaset-controller-review.json",
    ] {
        let review = fixture(name);
        let response = s.review(&review).await;
        let warnings = allowed(&response);
        assert!(warnings.is_empty(), "{name}: {warnings:?}");
    }
    let records = s.audit("event=ADMISSION").await;
    assert!(records.is_empty(), "{records:?}");
    assert!(s.metrics().await.contains(r#"decision="ungated""#));
}

#[tokio::test]
async fn dry_run_restart_is_denied_but_not_recorded() {
    let s = spawn_server("{}").await;

    let response = s
        .review(&by(fixture("dry-run-restart-review.json"), "alice"))
        .await;

    let message = denial(&response);
    assert!(
        message.contains("rollgate ticket request -n production checkout-api"),
        "{message}"
    );
    let records = s.audit("event=ADMISSION").await;
    assert!(
        records.is_empty(),
        "dryRun must not be recorded: {records:?}"
    );
    let report = s.verify_audit().await;
    assert_eq!(report["records"], 0, "{report}");
}

#[tokio::test]
async fn statefulset_and_daemonset_restarts_are_denied() {
    let s = spawn_server("{}").await;
    for (name, kind, object, application) in [
        (
            "statefulset-restart-review.json",
            "StatefulSet",
            "production/checkout-sessions",
            "checkout-sessions",
        ),
        // Labelled only `app`: the application comes from that label.
        (
            "daemonset-restart-review.json",
            "DaemonSet",
            "production/node-log-shipper",
            "log-shipper",
        ),
    ] {
        let response = s.review(&by(fixture(name), "alice")).await;
        let message = denial(&response);
        assert!(
            message.contains(&format!("alice may not restart {kind} {object}")),
            "{name}: {message}"
        );
        assert!(
            message.contains(&format!(
                "rollgate ticket request -n production {application} --action restart"
            )),
            "{name}: {message}"
        );
        let records = s.audit("event=ADMISSION&limit=1").await;
        assert_eq!(records[0]["kind"], kind, "{name}");
        assert_eq!(records[0]["applicationName"], application, "{name}");
        assert_eq!(records[0]["decision"], "DENIED", "{name}");
    }
}

#[tokio::test]
async fn exempt_service_account_is_allowed_and_recorded_as_exempt() {
    for policy in [
        format!("policy:\n  exemptUsers: [\"{ARGOCD}\"]\n"),
        "policy:\n  exemptGroups: [\"system:serviceaccounts:argocd\"]\n".to_owned(),
    ] {
        let s = spawn_server(&policy).await;

        let response = s.review(&fixture("exempt-image-review.json")).await;

        let warnings = allowed(&response);
        assert!(
            warnings.iter().any(|w| w.contains("exempt")),
            "{policy}: {warnings:?}"
        );
        let records = s.audit("event=ADMISSION").await;
        assert_eq!(records.len(), 1, "{policy}: {records:?}");
        assert_eq!(records[0]["decision"], "EXEMPT", "{policy}");
        assert_eq!(records[0]["username"], ARGOCD, "{policy}");
        assert_eq!(records[0]["change"], "IMAGE", "{policy}");

        // The same change by a person is still gated.
        let mut review = by(fixture("exempt-image-review.json"), "alice");
        review["request"]["userInfo"]["groups"] = serde_json::json!(["developers"]);
        denial(&s.review(&review).await);
    }
}

#[tokio::test]
async fn restart_by_a_user_without_a_grant_is_denied_even_when_another_user_holds_one() {
    let s = spawn_server("{}").await;
    let ticket = s.approved_ticket().await;

    let message = denial(&s.review(&restart_by("bob")).await);

    assert!(message.contains("bob may not restart"), "{message}");
    assert!(
        message.contains("you hold no grant"),
        "bob has no grant of his own: {message}"
    );
    let warnings = allowed(&s.review(&restart_by("alice")).await);
    assert!(
        warnings[0].contains(ticket["number"].as_str().unwrap()),
        "{warnings:?}"
    );
}
