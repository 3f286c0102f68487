//! A restart of the server on the same dev directory keeps tickets, grants
//! and the audit chain.

use reqwest::StatusCode;

use crate::common::{allowed, denial, restart_by, spawn_server};

#[tokio::test]
async fn restart_of_the_server_keeps_tickets_grants_and_audit() {
    let s = spawn_server("{}").await;
    denial(&s.review(&restart_by("alice")).await);
    let approved = s.approved_ticket().await;
    let pending = s.file_ticket(&s.alice, "production", "payments").await;
    allowed(&s.review(&restart_by("alice")).await);
    let before = s.verify_audit().await;
    assert_eq!(before["ok"], true, "{before}");
    let records_before = s.audit("").await;
    let tokens = (s.alice.clone(), s.bob.clone());

    let s = s.restart().await;

    assert_eq!((s.alice.clone(), s.bob.clone()), tokens, "same demo users");
    let after = s.verify_audit().await;
    assert_eq!(after["ok"], true, "{after}");
    assert_eq!(after["records"], before["records"], "{after}");
    assert_eq!(after["head"], before["head"], "{after}");
    assert_eq!(s.audit("").await, records_before);

    let id = approved["id"].as_str().unwrap();
    let shown = s.get(Some(&s.alice), &format!("/v1/tickets/{id}")).await;
    assert_eq!(shown.status, StatusCode::OK, "{shown:?}");
    assert_eq!(shown.body, approved, "the approved ticket is unchanged");
    let grant = s
        .get(Some(&s.alice), &format!("/v1/tickets/{id}/grant"))
        .await;
    assert_eq!(grant.status, StatusCode::OK, "{grant:?}");
    assert_eq!(grant.body["jti"], approved["grant"]["jti"]);

    // The grant still works, and the chain goes on from the same head.
    let warnings = allowed(&s.review(&restart_by("alice")).await);
    assert!(
        warnings[0].contains(approved["number"].as_str().unwrap()),
        "{warnings:?}"
    );
    let report = s.verify_audit().await;
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(
        report["records"].as_u64().unwrap(),
        before["records"].as_u64().unwrap() + 1
    );

    // The pending ticket can still be decided, and numbering continues.
    let pid = pending["id"].as_str().unwrap();
    let approved_later = s
        .post(Some(&s.bob), &format!("/v1/tickets/{pid}/approve"), None)
        .await;
    assert_eq!(approved_later.status, StatusCode::OK, "{approved_later:?}");
    let next = s.file_ticket(&s.alice, "production", "checkout-api").await;
    assert_eq!(next["number"], "RG-000003", "{next}");
}
