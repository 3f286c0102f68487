//! The ticket API over HTTPS: filing, deciding once, fetching the grant,
//! validation and authentication, all errors as problem+json.

use reqwest::StatusCode;
use serde_json::json;

use crate::common::{allowed, denial, restart_by, spawn_server};
use crate::grants::jwt_part;

#[tokio::test]
async fn whole_ticket_flow_turns_a_denied_restart_into_an_allowed_one() {
    let s = spawn_server("{}").await;
    denial(&s.review(&restart_by("alice")).await);

    // alice files.
    let filed = s
        .post(
            Some(&s.alice),
            "/v1/tickets",
            Some(json!({
                "namespace": "production",
                "application": "checkout-api",
                "action": "restart",
                "reason": "roll out the rotated database credentials",
            })),
        )
        .await;
    assert_eq!(filed.status, StatusCode::CREATED, "{filed:?}");
    let ticket = filed.body;
    let id = ticket["id"].as_str().unwrap().to_owned();
    let number = ticket["number"].as_str().unwrap().to_owned();
    assert_eq!(ticket["status"], "PENDING");
    assert_eq!(ticket["requester"], "alice");
    assert_eq!(ticket["action"], "restart");
    assert!(number.starts_with("RG-") && number.len() == 9, "{number}");
    assert!(ticket["grant"].is_null(), "{ticket}");
    let approve = format!("/v1/tickets/{id}/approve");

    // alice cannot approve her own ticket, carol is no approver.
    let detail = s
        .post(Some(&s.alice), &approve, None)
        .await
        .problem(StatusCode::FORBIDDEN);
    assert!(detail.contains("alice"), "{detail}");
    let detail = s
        .post(Some(&s.carol), &approve, None)
        .await
        .problem(StatusCode::FORBIDDEN);
    assert!(detail.contains("not an approver"), "{detail}");
    let shown = s.get(Some(&s.bob), &format!("/v1/tickets/{id}")).await;
    assert_eq!(
        shown.body["status"], "PENDING",
        "still undecided: {shown:?}"
    );
    denial(&s.review(&restart_by("alice")).await);

    // bob approves: the grant is issued and the entry completed.
    let approved = s
        .post(Some(&s.bob), &approve, Some(json!({"comment": "go ahead"})))
        .await;
    assert_eq!(approved.status, StatusCode::OK, "{approved:?}");
    let t = &approved.body;
    assert_eq!(t["status"], "APPROVED");
    assert_eq!(t["decidedBy"], "bob");
    assert_eq!(t["comment"], "go ahead");
    assert!(
        t["grant"]["jti"].as_str().is_some_and(|j| !j.is_empty()),
        "{t}"
    );
    assert!(t["grant"]["expiresAt"].is_string(), "{t}");
    assert_eq!(t["entry"]["success"], true, "{t}");
    assert_eq!(t["entry"]["completed"], true, "{t}");
    assert!(t["entry"]["executedAt"].is_string(), "{t}");
    assert!(t["entry"]["completedAt"].is_string(), "{t}");

    // A ticket is decided once.
    let detail = s
        .post(Some(&s.bob), &approve, None)
        .await
        .problem(StatusCode::CONFLICT);
    assert!(detail.contains("already APPROVED"), "{detail}");

    // The same restart is now allowed, with a warning naming the ticket.
    let review = restart_by("alice");
    let response = s.review(&review).await;
    let warnings = allowed(&response);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains(&format!("allowed by ticket {number}")),
        "{warnings:?}"
    );
    assert!(
        ["expires in 2h00m", "expires in 1h59m"]
            .iter()
            .any(|left| warnings[0].contains(left)),
        "the grant lives 2h: {warnings:?}"
    );

    let records = s.audit("event=ADMISSION&decision=ALLOWED").await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["ticketNumber"], number.as_str());
    assert_eq!(records[0]["ticketId"], id.as_str());
    assert_eq!(records[0]["grantJti"], t["grant"]["jti"]);
    assert_eq!(records[0]["requestUid"], review["request"]["uid"]);
    assert!(records[0]["operationId"].is_string(), "{}", records[0]);
    let events: Vec<_> = s
        .audit("namespace=production")
        .await
        .iter()
        .map(|r| r["event"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        events,
        [
            "ADMISSION",
            "GRANT_ISSUED",
            "TICKET_APPROVED",
            "ADMISSION",
            "TICKET_CREATED",
            "ADMISSION"
        ],
        "newest first"
    );
}

#[tokio::test]
async fn debug_ticket_is_filed_and_its_grant_claims_action_debug() {
    let s = spawn_server("{}").await;
    let filed = s
        .post(
            Some(&s.alice),
            "/v1/tickets",
            Some(json!({
                "namespace": "production",
                "application": "checkout-api",
                "action": "debug",
                "reason": "attach a shell to the stuck checkout pod",
            })),
        )
        .await;
    assert_eq!(filed.status, StatusCode::CREATED, "{filed:?}");
    assert_eq!(filed.body["action"], "debug", "{filed:?}");
    let id = filed.body["id"].as_str().unwrap();
    let shown = s.get(Some(&s.bob), &format!("/v1/tickets/{id}")).await;
    assert_eq!(shown.body["action"], "debug", "stored as filed: {shown:?}");

    let approved = s
        .post(Some(&s.bob), &format!("/v1/tickets/{id}/approve"), None)
        .await;
    assert_eq!(approved.status, StatusCode::OK, "{approved:?}");
    assert_eq!(approved.body["status"], "APPROVED", "{approved:?}");
    assert_eq!(approved.body["action"], "debug", "{approved:?}");

    let grant = s
        .get(Some(&s.alice), &format!("/v1/tickets/{id}/grant"))
        .await;
    assert_eq!(grant.status, StatusCode::OK, "{grant:?}");
    let claims = jwt_part(grant.body["token"].as_str().unwrap(), 1);
    assert_eq!(claims["action"], "debug", "{claims}");
    assert_eq!(claims["sub"], "alice", "{claims}");
    assert_eq!(claims["ns"], "production", "{claims}");
    assert_eq!(claims["app"], "checkout-api", "{claims}");
    assert_eq!(claims["tid"], id, "{claims}");
}

#[tokio::test]
async fn debug_ticket_cannot_pin_images() {
    let s = spawn_server("{}").await;
    let body = json!({
        "namespace": "production",
        "application": "checkout-api",
        "action": "debug",
        "images": ["registry.example.com/shop/checkout-api:v3.42.0"],
        "reason": "debug with the new build",
    });

    let detail = s
        .post(Some(&s.alice), "/v1/tickets", Some(body))
        .await
        .problem(StatusCode::BAD_REQUEST);

    assert!(
        detail.contains("images") && detail.contains("image or any"),
        "{detail}"
    );
    let listed = s.get(Some(&s.alice), "/v1/tickets").await;
    assert_eq!(listed.body["items"], json!([]), "nothing was filed");
}

#[tokio::test]
async fn unknown_action_is_refused_naming_the_four_and_files_nothing() {
    let s = spawn_server("{}").await;
    let body = json!({
        "namespace": "production",
        "application": "checkout-api",
        "action": "exec",
        "reason": "open a shell",
    });

    let detail = s
        .post(Some(&s.alice), "/v1/tickets", Some(body))
        .await
        .problem(StatusCode::BAD_REQUEST);

    assert!(
        detail.contains("action") && detail.contains("exec"),
        "{detail}"
    );
    for action in ["restart", "image", "debug", "any"] {
        assert!(detail.contains(action), "{action} missing from {detail}");
    }
    let listed = s.get(Some(&s.alice), "/v1/tickets").await;
    assert_eq!(listed.body["items"], json!([]), "nothing was filed");
    let filed = s.audit("event=TICKET_CREATED").await;
    assert!(filed.is_empty(), "nothing was recorded: {filed:?}");
}

#[tokio::test]
async fn approver_cannot_approve_own_ticket() {
    // alice is an approver for production too, so only the four-eyes rule stops her.
    let s = spawn_server("roles:\n  approvers:\n    production:\n      users: [alice]\n").await;
    for (requester, other, other_name) in [(&s.alice, &s.bob, "bob"), (&s.bob, &s.alice, "alice")] {
        let ticket = s.file_ticket(requester, "production", "checkout-api").await;
        let id = ticket["id"].as_str().unwrap();
        let approve = format!("/v1/tickets/{id}/approve");
        let reject = format!("/v1/tickets/{id}/reject");

        for path in [&approve, &reject] {
            let detail = s
                .post(Some(requester), path, None)
                .await
                .problem(StatusCode::FORBIDDEN);
            assert!(
                detail.contains(&format!(
                    "filed ticket {} and cannot approve",
                    ticket["number"].as_str().unwrap()
                )),
                "{detail}"
            );
        }
        let approved = s.post(Some(other), &approve, None).await;
        assert_eq!(approved.status, StatusCode::OK, "{approved:?}");
        assert_eq!(approved.body["decidedBy"], other_name);
    }
    let approvals = s.audit("event=TICKET_APPROVED").await;
    assert_eq!(
        approvals.len(),
        2,
        "the refusals are not approvals: {approvals:?}"
    );
}

#[tokio::test]
async fn grant_token_is_fetched_by_the_requester_only() {
    let s = spawn_server("{}").await;
    let ticket = s.approved_ticket().await;
    let path = format!("/v1/tickets/{}/grant", ticket["id"].as_str().unwrap());

    let mine = s.get(Some(&s.alice), &path).await;

    assert_eq!(mine.status, StatusCode::OK, "{mine:?}");
    assert_eq!(mine.body["jti"], ticket["grant"]["jti"]);
    assert_eq!(mine.body["expiresAt"], ticket["grant"]["expiresAt"]);
    let token = mine.body["token"].as_str().unwrap();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    let detail = s
        .get(Some(&s.bob), &path)
        .await
        .problem(StatusCode::FORBIDDEN);
    assert!(detail.contains("only the requester (alice)"), "{detail}");
    // Never listed with the grants either.
    let listed = s.get(Some(&s.bob), "/v1/grants?namespace=production").await;
    assert_eq!(listed.status, StatusCode::OK, "{listed:?}");
    assert_eq!(listed.body["items"][0]["jti"], ticket["grant"]["jti"]);
    assert!(!listed.body.to_string().contains(token), "{listed:?}");
}

#[tokio::test]
async fn rejected_ticket_grants_nothing() {
    let s = spawn_server("{}").await;
    let ticket = s.file_ticket(&s.alice, "production", "checkout-api").await;
    let id = ticket["id"].as_str().unwrap();

    let rejected = s
        .post(
            Some(&s.bob),
            &format!("/v1/tickets/{id}/reject"),
            Some(json!({"comment": "not during the sale"})),
        )
        .await;

    assert_eq!(rejected.status, StatusCode::OK, "{rejected:?}");
    assert_eq!(rejected.body["status"], "REJECTED");
    assert_eq!(rejected.body["decidedBy"], "bob");
    assert_eq!(rejected.body["entry"]["success"], false);
    assert!(rejected.body["grant"].is_null());
    s.post(Some(&s.bob), &format!("/v1/tickets/{id}/approve"), None)
        .await
        .problem(StatusCode::CONFLICT);
    s.get(Some(&s.alice), &format!("/v1/tickets/{id}/grant"))
        .await
        .problem(StatusCode::CONFLICT);
    denial(&s.review(&restart_by("alice")).await);
    let events = s.audit("event=TICKET_REJECTED").await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["reason"], "not during the sale");
}

#[tokio::test]
async fn only_the_requester_cancels_a_pending_ticket() {
    let s = spawn_server("{}").await;
    let ticket = s.file_ticket(&s.alice, "production", "checkout-api").await;
    let id = ticket["id"].as_str().unwrap();
    let cancel = format!("/v1/tickets/{id}/cancel");

    let detail = s
        .post(Some(&s.bob), &cancel, None)
        .await
        .problem(StatusCode::FORBIDDEN);
    assert!(detail.contains("only the requester"), "{detail}");
    let cancelled = s.post(Some(&s.alice), &cancel, None).await;

    assert_eq!(cancelled.status, StatusCode::OK, "{cancelled:?}");
    assert_eq!(cancelled.body["status"], "CANCELLED");
    s.post(Some(&s.bob), &format!("/v1/tickets/{id}/approve"), None)
        .await
        .problem(StatusCode::CONFLICT);
    s.post(Some(&s.alice), &cancel, None)
        .await
        .problem(StatusCode::CONFLICT);
    denial(&s.review(&restart_by("alice")).await);
}

#[tokio::test]
async fn tickets_are_listed_with_filters() {
    let s = spawn_server("{}").await;
    let first = s.file_ticket(&s.alice, "production", "checkout-api").await;
    let second = s.file_ticket(&s.bob, "production", "payments").await;
    s.post(
        Some(&s.carol),
        &format!("/v1/tickets/{}/cancel", second["id"].as_str().unwrap()),
        None,
    )
    .await
    .problem(StatusCode::FORBIDDEN);

    let all = s.get(Some(&s.carol), "/v1/tickets").await;
    let ids: Vec<_> = all.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].clone())
        .collect();
    assert_eq!(
        ids,
        [second["id"].clone(), first["id"].clone()],
        "newest first"
    );
    for (query, want) in [
        ("requester=alice", &first),
        ("application=payments", &second),
        ("status=PENDING&namespace=production&requester=bob", &second),
    ] {
        let list = s.get(Some(&s.carol), &format!("/v1/tickets?{query}")).await;
        let items = list.body["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "{query}: {list:?}");
        assert_eq!(items[0]["id"], want["id"], "{query}");
    }
    let none = s.get(Some(&s.carol), "/v1/tickets?status=APPROVED").await;
    assert_eq!(none.body["items"], json!([]));
    s.get(Some(&s.carol), "/v1/tickets?status=DONE")
        .await
        .problem(StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn unknown_ticket_is_not_found() {
    let s = spawn_server("{}").await;
    for path in [
        "/v1/tickets/999999",
        "/v1/tickets/not-a-number",
        "/v1/tickets/999999/grant",
    ] {
        let detail = s
            .get(Some(&s.alice), path)
            .await
            .problem(StatusCode::NOT_FOUND);
        assert!(detail.contains("does not exist"), "{path}: {detail}");
    }
    s.post(Some(&s.bob), "/v1/tickets/999999/approve", None)
        .await
        .problem(StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn invalid_tickets_are_refused_naming_the_field() {
    let s = spawn_server("{}").await;
    let ok =
        || json!({"namespace": "production", "application": "checkout-api", "reason": "why not"});
    let with = |key: &str, value: serde_json::Value| {
        let mut body = ok();
        body[key] = value;
        body
    };
    let cases = [
        ("namespace", with("namespace", json!("Prod_1"))),
        ("application", with("application", json!("Prod_1"))),
        ("application", with("application", json!("-checkout"))),
        ("reason", with("reason", json!(""))),
        ("reason", with("reason", json!("x".repeat(1001)))),
        ("approved", with("approved", json!(true))),
        ("action", with("action", json!("delete"))),
        (
            "reason",
            json!({"namespace": "production", "application": "web"}),
        ),
    ];
    for (field, body) in cases {
        let reply = s.post(Some(&s.alice), "/v1/tickets", Some(body)).await;
        let detail = reply.problem(StatusCode::BAD_REQUEST);
        assert!(detail.contains(field), "{field}: {detail}");
    }
    let garbled = s
        .http
        .post(format!("{}/v1/tickets", s.api))
        .bearer_auth(&s.alice)
        .header("content-type", "application/json")
        .body("{\"namespace\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(garbled.status(), StatusCode::BAD_REQUEST);
    let listed = s.get(Some(&s.alice), "/v1/tickets").await;
    assert_eq!(listed.body["items"], json!([]), "nothing was filed");
    // 1000 characters (not bytes) are fine.
    let reply = s
        .post(
            Some(&s.alice),
            "/v1/tickets",
            Some(with("reason", json!("é".repeat(1000)))),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
}

#[tokio::test]
async fn missing_or_invalid_token_is_unauthorized() {
    let s = spawn_server("{}").await;
    let body =
        || Some(json!({"namespace": "production", "application": "checkout-api", "reason": "x"}));
    for token in [None, Some("rg-dev-alice-guess"), Some("")] {
        let detail = s
            .post(token, "/v1/tickets", body())
            .await
            .problem(StatusCode::UNAUTHORIZED);
        assert!(detail.contains("token"), "{token:?}: {detail}");
        s.get(token, "/v1/tickets")
            .await
            .problem(StatusCode::UNAUTHORIZED);
        s.get(token, "/v1/audit")
            .await
            .problem(StatusCode::UNAUTHORIZED);
    }
    let resp = s
        .http
        .get(format!("{}/v1/tickets", s.api))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers()["www-authenticate"],
        "Bearer realm=\"rollgate\""
    );
    let resp = s
        .http
        .get(format!("{}/v1/tickets", s.api))
        .header("authorization", format!("Basic {}", s.alice))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn unknown_paths_answer_problem_json() {
    let s = spawn_server("{}").await;
    let detail = s
        .get(Some(&s.alice), "/v1/nothing-here")
        .await
        .problem(StatusCode::NOT_FOUND);
    assert!(detail.contains("openapi.json"), "{detail}");
    let openapi = s.get(None, "/openapi.json").await;
    assert_eq!(openapi.status, StatusCode::OK);
    assert!(openapi.body["openapi"].is_string(), "{openapi:?}");
}

#[tokio::test]
async fn concurrent_approvals_decide_a_ticket_once() {
    let s = spawn_server("roles:\n  approvers:\n    production:\n      users: [carol]\n").await;
    let ticket = s.file_ticket(&s.alice, "production", "checkout-api").await;
    let approve = format!("/v1/tickets/{}/approve", ticket["id"].as_str().unwrap());

    let (by_bob, by_carol) = tokio::join!(
        s.post(Some(&s.bob), &approve, None),
        s.post(Some(&s.carol), &approve, None),
    );

    let mut statuses = [by_bob.status, by_carol.status];
    statuses.sort();
    assert_eq!(
        statuses,
        [StatusCode::OK, StatusCode::CONFLICT],
        "{by_bob:?} {by_carol:?}"
    );
    let grants = s.get(Some(&s.bob), "/v1/grants").await;
    assert_eq!(
        grants.body["items"].as_array().unwrap().len(),
        1,
        "one grant: {grants:?}"
    );
    assert_eq!(s.audit("event=GRANT_ISSUED").await.len(), 1);
}

#[tokio::test]
async fn a_revoked_grant_shows_on_its_ticket_and_stops_working() {
    let s = spawn_server("{}").await;
    let ticket = s.approved_ticket().await;
    let id = ticket["id"].as_str().unwrap();
    let jti = ticket["grant"]["jti"].as_str().unwrap();
    allowed(&s.review(&restart_by("alice")).await);

    let by_requester = s
        .post(Some(&s.alice), &format!("/v1/grants/{jti}/revoke"), None)
        .await;
    by_requester.problem(StatusCode::FORBIDDEN);
    let revoked = s
        .post(
            Some(&s.bob),
            &format!("/v1/grants/{jti}/revoke"),
            Some(json!({"reason": "wrong window"})),
        )
        .await;
    assert_eq!(revoked.status, StatusCode::OK, "{revoked:?}");

    let shown = s
        .get(Some(&s.alice), &format!("/v1/tickets/{id}"))
        .await
        .body;
    assert_eq!(shown["grant"]["revokedBy"], "bob", "{shown}");
    assert!(shown["grant"]["revokedAt"].is_string(), "{shown}");
    let message = denial(&s.review(&restart_by("alice")).await);
    assert!(message.contains("you hold no grant"), "{message}");
    let records = s.audit("event=GRANT_REVOKED").await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["reason"], "wrong window");
    s.post(Some(&s.bob), &format!("/v1/grants/{jti}/revoke"), None)
        .await
        .problem(StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn cancelling_an_approved_ticket_revokes_its_grant() {
    let s = spawn_server("{}").await;
    let ticket = s.approved_ticket().await;
    let id = ticket["id"].as_str().unwrap();
    allowed(&s.review(&restart_by("alice")).await);

    let cancelled = s
        .post(Some(&s.alice), &format!("/v1/tickets/{id}/cancel"), None)
        .await;
    assert_eq!(cancelled.status, StatusCode::OK, "{cancelled:?}");
    assert_eq!(cancelled.body["status"], "CANCELLED");
    assert_eq!(cancelled.body["grant"]["revokedBy"], "alice");

    let message = denial(&s.review(&restart_by("alice")).await);
    assert!(message.contains("you hold no grant"), "{message}");
    assert_eq!(s.audit("event=GRANT_REVOKED").await.len(), 1);
    s.get(Some(&s.alice), &format!("/v1/tickets/{id}/grant"))
        .await
        .problem(StatusCode::CONFLICT);
}

/// production needs two approvals; carol is an approver besides bob (dev
/// mode's group), and so is alice, so only the four-eyes rule stops her on
/// her own tickets.
const TWO_APPROVERS: &str = "roles:\n  requiredApprovals: {production: 2}\n  approvers:\n    production:\n      users: [alice, carol]\n";

fn approvers_of(ticket: &serde_json::Value) -> Vec<String> {
    ticket["approvals"]
        .as_array()
        .unwrap_or_else(|| panic!("no approvals: {ticket}"))
        .iter()
        .map(|a| a["by"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_namespace_requiring_two_approvals_needs_two_distinct_approvers() {
    let s = spawn_server(TWO_APPROVERS).await;
    let ticket = s.file_ticket(&s.alice, "production", "checkout-api").await;
    assert_eq!(ticket["requiredApprovals"], 2, "{ticket}");
    assert_eq!(ticket["approvals"], json!([]), "{ticket}");
    let id = ticket["id"].as_str().unwrap();
    let number = ticket["number"].as_str().unwrap();
    let approve = format!("/v1/tickets/{id}/approve");

    // bob's approval is the first of two: still pending, no grant.
    let first = s
        .post(
            Some(&s.bob),
            &approve,
            Some(json!({"comment": "looks right"})),
        )
        .await;
    assert_eq!(first.status, StatusCode::OK, "{first:?}");
    let t = &first.body;
    assert_eq!(t["status"], "PENDING", "{t}");
    assert_eq!(approvers_of(t), ["bob"]);
    assert_eq!(t["approvals"][0]["comment"], "looks right");
    assert!(t["approvals"][0]["at"].is_string(), "{t}");
    assert!(t["grant"].is_null() && t["decidedBy"].is_null(), "{t}");
    denial(&s.review(&restart_by("alice")).await);

    // bob again: each approver counts once.
    let detail = s
        .post(Some(&s.bob), &approve, None)
        .await
        .problem(StatusCode::CONFLICT);
    assert!(
        detail.contains(&format!(
            "bob already approved ticket {number} (1 of 2 approvals)"
        )),
        "{detail}"
    );
    // The requester never counts.
    let detail = s
        .post(Some(&s.alice), &approve, None)
        .await
        .problem(StatusCode::FORBIDDEN);
    assert!(
        detail.contains(&format!("filed ticket {number} and cannot approve")),
        "{detail}"
    );
    let shown = s
        .get(Some(&s.alice), &format!("/v1/tickets/{id}"))
        .await
        .body;
    assert_eq!(
        (shown["status"].clone(), approvers_of(&shown)),
        (json!("PENDING"), vec!["bob".to_owned()]),
        "the refusals changed nothing"
    );

    // carol's approval is the second: approved, grant issued.
    let second = s.post(Some(&s.carol), &approve, None).await;
    assert_eq!(second.status, StatusCode::OK, "{second:?}");
    let t = &second.body;
    assert_eq!(t["status"], "APPROVED", "{t}");
    assert_eq!(t["decidedBy"], "carol");
    assert_eq!(approvers_of(t), ["bob", "carol"]);
    assert!(t["grant"]["jti"].is_string(), "{t}");
    let warnings = allowed(&s.review(&restart_by("alice")).await);
    assert!(
        warnings[0].contains(&format!("allowed by ticket {number}")),
        "{warnings:?}"
    );

    let partial = s.audit("event=TICKET_APPROVAL_ADDED").await;
    assert_eq!(partial.len(), 1, "{partial:?}");
    assert_eq!(partial[0]["reason"], "approval 1 of 2: looks right");
    assert_eq!(partial[0]["username"], "bob");
    assert_eq!(partial[0]["approvers"], json!(["bob"]));
    let approved = s.audit("event=TICKET_APPROVED").await;
    assert_eq!(approved.len(), 1, "{approved:?}");
    assert_eq!(approved[0]["username"], "carol");
    assert_eq!(approved[0]["approvers"], json!(["bob", "carol"]));
    assert_eq!(s.audit("event=GRANT_ISSUED").await.len(), 1);

    // Other namespaces keep the default of one approval.
    let staging = s.file_ticket(&s.alice, "staging", "checkout-api").await;
    assert_eq!(staging["requiredApprovals"], 1, "{staging}");
    let path = format!("/v1/tickets/{}/approve", staging["id"].as_str().unwrap());
    let reply = s.post(Some(&s.bob), &path, None).await;
    assert_eq!(reply.body["status"], "APPROVED", "{reply:?}");
}

#[tokio::test]
async fn any_approver_rejects_a_partly_approved_ticket() {
    let s = spawn_server(TWO_APPROVERS).await;
    let ticket = s.file_ticket(&s.alice, "production", "checkout-api").await;
    let id = ticket["id"].as_str().unwrap();
    let first = s
        .post(Some(&s.bob), &format!("/v1/tickets/{id}/approve"), None)
        .await;
    assert_eq!(first.body["status"], "PENDING", "{first:?}");

    let rejected = s
        .post(
            Some(&s.carol),
            &format!("/v1/tickets/{id}/reject"),
            Some(json!({"comment": "not during the sale"})),
        )
        .await;

    assert_eq!(rejected.status, StatusCode::OK, "{rejected:?}");
    assert_eq!(rejected.body["status"], "REJECTED");
    assert_eq!(approvers_of(&rejected.body), ["bob"]);
    s.post(Some(&s.carol), &format!("/v1/tickets/{id}/approve"), None)
        .await
        .problem(StatusCode::CONFLICT);
    denial(&s.review(&restart_by("alice")).await);
    assert!(s.audit("event=GRANT_ISSUED").await.is_empty());
}

#[tokio::test]
async fn racing_approvals_both_count_and_the_grant_is_issued_once() {
    let s = spawn_server(TWO_APPROVERS).await;
    let rounds = 5;
    for round in 0..rounds {
        let ticket = s.file_ticket(&s.alice, "production", "checkout-api").await;
        let id = ticket["id"].as_str().unwrap();
        let approve = format!("/v1/tickets/{id}/approve");

        let (by_bob, by_carol) = tokio::join!(
            s.post(Some(&s.bob), &approve, None),
            s.post(Some(&s.carol), &approve, None),
        );

        assert_eq!(
            (by_bob.status, by_carol.status),
            (StatusCode::OK, StatusCode::OK),
            "round {round}: both approvals count: {by_bob:?} {by_carol:?}"
        );
        let mut statuses = [
            by_bob.body["status"].as_str().unwrap(),
            by_carol.body["status"].as_str().unwrap(),
        ];
        statuses.sort();
        assert_eq!(statuses, ["APPROVED", "PENDING"], "round {round}");
        let shown = s
            .get(Some(&s.alice), &format!("/v1/tickets/{id}"))
            .await
            .body;
        assert_eq!(shown["status"], "APPROVED", "round {round}: {shown}");
        let mut by = approvers_of(&shown);
        by.sort();
        assert_eq!(by, ["bob", "carol"], "round {round}: each once");
        let issued: Vec<_> = s
            .audit("event=GRANT_ISSUED")
            .await
            .into_iter()
            .filter(|r| r["ticketId"] == id)
            .collect();
        assert_eq!(issued.len(), 1, "round {round}: one grant: {issued:?}");
        assert_eq!(issued[0]["grantJti"], shown["grant"]["jti"]);
    }
    let grants = s.get(Some(&s.bob), "/v1/grants?namespace=production").await;
    assert_eq!(
        grants.body["items"].as_array().unwrap().len(),
        rounds,
        "one live grant per ticket: {grants:?}"
    );
    assert_eq!(s.audit("event=TICKET_APPROVED").await.len(), rounds);
    assert_eq!(s.audit("event=TICKET_APPROVAL_ADDED").await.len(), rounds);
}
