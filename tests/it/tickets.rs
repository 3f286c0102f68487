//! The ticket API over HTTPS: filing, deciding once, fetching the grant,
//! validation and authentication, all errors as problem+json.

use reqwest::StatusCode;
use serde_json::json;

use crate::common::{allowed, denial, restart_by, spawn_server};

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
