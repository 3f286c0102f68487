//! The audit API: listing with filters and paging, one record, the chain
//! check, who may read, and tamper detection.

use reqwest::StatusCode;

use crate::common::{TestServer, allowed, by, denial, fixture, restart_by, spawn_server};

/// Some traffic: two denials, a ticket approved, an allowed restart, a
/// denial in another application. Returns the ticket.
async fn mk_trail(s: &TestServer) -> serde_json::Value {
    denial(&s.review(&restart_by("alice")).await);
    denial(&s.review(&restart_by("bob")).await);
    let ticket = s.approved_ticket().await;
    allowed(&s.review(&restart_by("alice")).await);
    denial(
        &s.review(&by(fixture("statefulset-restart-review.json"), "alice"))
            .await,
    );
    ticket
}

fn ids(items: &[serde_json::Value]) -> Vec<u64> {
    items
        .iter()
        .map(|r| r["id"].as_str().unwrap().parse().unwrap())
        .collect()
}

#[tokio::test]
async fn auditor_lists_records_newest_first_with_filters() {
    let s = spawn_server("{}").await;
    let ticket = mk_trail(&s).await;

    let all = s.audit("").await;
    // 4 admissions, TICKET_CREATED, TICKET_APPROVED, GRANT_ISSUED.
    assert_eq!(all.len(), 7, "{all:?}");
    let all_ids = ids(&all);
    assert!(
        all_ids.windows(2).all(|w| w[0] > w[1]),
        "newest first: {all_ids:?}"
    );
    assert_eq!(all[0]["kind"], "StatefulSet");

    let cases = [
        ("event=ADMISSION", 4),
        ("event=ADMISSION&decision=DENIED", 3),
        ("decision=ALLOWED", 1),
        ("user=bob", 2), // a denial and the approval
        ("event=GRANT_ISSUED&user=alice", 1),
        ("namespace=production&application=checkout-sessions", 1),
        ("event=TICKET_CREATED&user=alice", 1),
        ("namespace=staging", 0),
    ];
    for (query, want) in cases {
        let items = s.audit(query).await;
        assert_eq!(items.len(), want, "{query}: {items:?}");
    }
    let allowed_record = &s.audit("decision=ALLOWED").await[0];
    assert_eq!(allowed_record["ticketNumber"], ticket["number"]);
    assert_eq!(allowed_record["username"], "alice");
}

#[tokio::test]
async fn audit_pages_follow_the_next_cursor() {
    let s = spawn_server("{}").await;
    mk_trail(&s).await;
    let all = ids(&s.audit("").await);

    let mut seen = Vec::new();
    let mut query = "limit=3".to_owned();
    loop {
        let page = s.get(Some(&s.carol), &format!("/v1/audit?{query}")).await;
        assert_eq!(page.status, StatusCode::OK, "{page:?}");
        let items = page.body["items"].as_array().unwrap();
        assert!(items.len() <= 3, "{page:?}");
        seen.extend(ids(items));
        match page.body["next"].as_str() {
            Some(next) => query = format!("limit=3&after={next}"),
            None => break,
        }
    }
    assert_eq!(seen, all, "pages cover every record once, in order");

    for bad in [
        "limit=0",
        "limit=1001",
        "after=abc",
        "colour=red",
        "event=LOGIN",
    ] {
        s.get(Some(&s.carol), &format!("/v1/audit?{bad}"))
            .await
            .problem(StatusCode::BAD_REQUEST);
    }
}

#[tokio::test]
async fn auditor_reads_one_record_and_verifies_the_chain() {
    let s = spawn_server("{}").await;
    mk_trail(&s).await;
    let newest = s.audit("decision=ALLOWED").await[0].clone();
    let id = newest["id"].as_str().unwrap();

    let one = s.get(Some(&s.carol), &format!("/v1/audit/{id}")).await;

    assert_eq!(one.status, StatusCode::OK, "{one:?}");
    assert_eq!(one.body["id"], id);
    assert_eq!(one.body["hash"], newest["hash"]);
    assert_eq!(one.body["operationId"], newest["operationId"]);
    assert!(one.body.get("rollout").is_some(), "{one:?}");
    s.get(Some(&s.carol), "/v1/audit/424242")
        .await
        .problem(StatusCode::NOT_FOUND);

    let report = s.verify_audit().await;
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["records"], 7, "{report}");
    assert!(report["firstBadId"].is_null(), "{report}");
    let head = s.audit("limit=1").await[0]["hash"].clone();
    assert_eq!(report["head"], head, "{report}");
    assert_eq!(head.as_str().unwrap().len(), 64, "sha256 hex");
    // Approvers may read the trail too.
    let by_bob = s.get(Some(&s.bob), "/v1/audit/verify").await;
    assert_eq!(by_bob.status, StatusCode::OK, "{by_bob:?}");
}

#[tokio::test]
async fn requester_may_not_read_the_audit() {
    let s = spawn_server("{}").await;
    mk_trail(&s).await;

    for path in [
        "/v1/audit",
        "/v1/audit?namespace=production",
        "/v1/audit/1",
        "/v1/audit/verify",
    ] {
        let detail = s
            .get(Some(&s.alice), path)
            .await
            .problem(StatusCode::FORBIDDEN);
        assert!(detail.contains("alice"), "{path}: {detail}");
    }
}

#[tokio::test]
async fn editing_a_stored_record_breaks_verification() {
    let s = spawn_server("{}").await;
    mk_trail(&s).await;
    let target = s.audit("decision=ALLOWED").await[0].clone();
    let id: i64 = target["id"].as_str().unwrap().parse().unwrap();

    // Rewrite who did it, keeping the stored hash.
    let body: String = s
        .db()
        .query_row("SELECT body FROM audit WHERE seq = ?1", [id], |r| r.get(0))
        .unwrap();
    let edited = body.replace("\"username\":\"alice\"", "\"username\":\"mallory\"");
    assert_ne!(body, edited);
    let changed = s
        .db()
        .execute(
            "UPDATE audit SET body = ?1 WHERE seq = ?2",
            rusqlite::params![edited, id],
        )
        .unwrap();
    assert_eq!(changed, 1);

    let report = s.verify_audit().await;

    assert_eq!(report["ok"], false, "{report}");
    assert_eq!(report["firstBadId"], target["id"], "{report}");
}

#[tokio::test]
async fn deleting_a_stored_record_breaks_verification() {
    let s = spawn_server("{}").await;
    mk_trail(&s).await;

    s.db()
        .execute("DELETE FROM audit WHERE seq = 2", [])
        .unwrap();

    let report = s.verify_audit().await;
    assert_eq!(report["ok"], false, "{report}");
    assert_eq!(report["firstBadId"], "3", "{report}");
}

#[tokio::test]
async fn reordering_stored_records_breaks_verification() {
    let s = spawn_server("{}").await;
    mk_trail(&s).await;

    // Records 2 and 3 swap places, each with its own body and hash.
    for sql in [
        "UPDATE audit SET seq = -3 WHERE seq = 3",
        "UPDATE audit SET seq = 3 WHERE seq = 2",
        "UPDATE audit SET seq = 2 WHERE seq = -3",
    ] {
        assert_eq!(s.db().execute(sql, []).unwrap(), 1, "{sql}");
    }

    let report = s.verify_audit().await;
    assert_eq!(report["ok"], false, "{report}");
    assert_eq!(report["firstBadId"], "3", "{report}");
    assert!(
        report["problem"]
            .as_str()
            .unwrap()
            .contains("deleted, inserted or reordered"),
        "{report}"
    );
}

#[tokio::test]
async fn a_cut_off_tail_is_detected_against_the_checkpoint_held_or_supplied() {
    let s = spawn_server("{}").await;
    mk_trail(&s).await; // records 1-7
    let first = s.post(Some(&s.carol), "/v1/audit/checkpoints", None).await;
    assert_eq!(first.status, StatusCode::CREATED, "{first:?}");
    assert_eq!(first.body["id"], "8", "{first:?}");
    denial(&s.review(&restart_by("bob")).await);
    denial(&s.review(&restart_by("bob")).await);
    let kept = s.post(Some(&s.carol), "/v1/audit/checkpoints", None).await;
    assert_eq!(kept.status, StatusCode::CREATED, "{kept:?}");
    assert_eq!(
        (&kept.body["id"], &kept.body["checkpointRecords"]),
        (&"11".into(), &10.into())
    );
    denial(&s.review(&restart_by("bob")).await);
    assert_eq!(s.verify_audit().await["ok"], true);

    // Records 9 on are cut off: two denials, the kept checkpoint, one more denial.
    let cut = s
        .db()
        .execute("DELETE FROM audit WHERE seq >= 9", [])
        .unwrap();
    assert_eq!(cut, 4);

    let report = s.verify_audit().await;
    assert_eq!(
        report["ok"], false,
        "rollgate remembers checkpoint 11: {report}"
    );
    assert_eq!(report["firstBadId"], "9", "{report}");
    assert_eq!(report["checkpoint"]["id"], "11", "{report}");
    assert_eq!(report["checkpoint"]["source"], "memory", "{report}");
    assert!(
        report["problem"]
            .as_str()
            .unwrap()
            .contains("cut off the tail"),
        "{report}"
    );
    let refused = s.post(Some(&s.carol), "/v1/audit/checkpoints", None).await;
    let detail = refused.problem(StatusCode::CONFLICT);
    assert!(detail.contains("cut off the tail"), "{detail}");

    // After a restart nothing is remembered: the short chain alone is valid...
    let s = s.restart().await;
    let report = s.verify_audit().await;
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["checkpoint"]["source"], "trail", "{report}");
    // ...but the auditor's copy of checkpoint 11 shows what is missing.
    let jws = kept.body["checkpoint"].as_str().unwrap();
    let report = s
        .get(
            Some(&s.carol),
            &format!("/v1/audit/verify?checkpoint={jws}"),
        )
        .await;
    assert_eq!(report.status, StatusCode::OK, "{report:?}");
    assert_eq!(report.body["ok"], false, "{report:?}");
    assert_eq!(report.body["firstBadId"], "9", "{report:?}");
    assert_eq!(
        report.body["checkpoint"]["source"], "supplied",
        "{report:?}"
    );
    assert_eq!(report.body["checkpoint"]["records"], 10, "{report:?}");
}
