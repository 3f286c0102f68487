//! Checkpoints, export and log shipping of the audit trail, on the real
//! server: a checkpoint on demand and periodically, never two in a row; the
//! export streamed as JSON lines and verified offline (by the same walk and
//! by the README's Python); every appended record shipped as one line by
//! the replica that appended it.

use std::time::Duration;

use base64::Engine;
use reqwest::StatusCode;
use serde_json::Value;

use crate::common::{
    TestServer, denial, restart_by, spawn_replica_with, spawn_server, spawn_server_in,
    spawn_server_with,
};
use crate::store_contract::RedisServer;

/// Every record, newest first, read by carol.
async fn all_records(s: &TestServer) -> Vec<Value> {
    s.audit("limit=1000").await
}

/// The CHECKPOINT records, newest first.
async fn checkpoints(s: &TestServer) -> Vec<Value> {
    s.audit("event=CHECKPOINT&limit=1000").await
}

/// `GET /v1/audit/export` as `token`: status, content type, body text.
async fn export(s: &TestServer, token: &str, query: &str) -> (StatusCode, String, String) {
    let resp = s
        .http
        .get(format!("{}/v1/audit/export{query}", s.api))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let content_type = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, content_type, resp.text().await.unwrap())
}

fn jws_header(jws: &str) -> Value {
    let header = jws.split('.').next().unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn a_checkpoint_on_demand_is_signed_appended_and_never_stacked() {
    let s = spawn_server("{}").await;
    denial(&s.review(&restart_by("alice")).await);
    denial(&s.review(&restart_by("bob")).await);

    let made = s.post(Some(&s.carol), "/v1/audit/checkpoints", None).await;

    assert_eq!(made.status, StatusCode::CREATED, "{made:?}");
    let record = &made.body;
    assert_eq!(record["event"], "CHECKPOINT", "{record}");
    assert_eq!(record["id"], "3", "{record}");
    assert_eq!(record["username"], "carol", "{record}");
    assert_eq!(record["checkpointRecords"], 2, "{record}");
    let previous = &all_records(&s).await[1];
    assert_eq!(record["checkpointHead"], previous["hash"], "{record}");
    assert_eq!(record["prevHash"], previous["hash"], "{record}");
    let jws = record["checkpoint"].as_str().unwrap();
    let header = jws_header(jws);
    let jwks = s.get(None, "/.well-known/jwks.json").await.body;
    assert_eq!(header["typ"], "rollgate-checkpoint+jwt", "{header}");
    assert_eq!(header["alg"], "EdDSA", "{header}");
    assert_eq!(header["kid"], jwks["keys"][0]["kid"], "{header}");

    // Nothing new since: the same checkpoint is answered, not a second one.
    let again = s.post(Some(&s.bob), "/v1/audit/checkpoints", None).await;
    assert_eq!(again.status, StatusCode::OK, "{again:?}");
    assert_eq!(again.body["id"], "3", "{again:?}");
    assert_eq!(checkpoints(&s).await.len(), 1);

    let detail = s
        .post(Some(&s.alice), "/v1/audit/checkpoints", None)
        .await
        .problem(StatusCode::FORBIDDEN);
    assert!(detail.contains("alice"), "{detail}");

    let report = s.verify_audit().await;
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["checkpoint"]["id"], "3", "{report}");
    assert!(report["problem"].is_null(), "{report}");
}

#[tokio::test]
async fn a_grant_or_a_forged_checkpoint_is_refused_as_a_checkpoint() {
    let s = spawn_server("{}").await;
    let ticket = s.approved_ticket().await;
    let id = ticket["id"].as_str().unwrap();
    let grant = s
        .get(Some(&s.alice), &format!("/v1/tickets/{id}/grant"))
        .await;
    let token = grant.body["token"].as_str().unwrap().to_owned();
    let made = s.post(Some(&s.carol), "/v1/audit/checkpoints", None).await;
    let jws = made.body["checkpoint"].as_str().unwrap().to_owned();
    let mut parts: Vec<&str> = jws.split('.').collect();
    let other_payload = token.split('.').nth(1).unwrap();
    parts[1] = other_payload;
    let forged = parts.join(".");

    for (name, candidate, says) in [
        ("a grant", token.as_str(), "typ header"),
        (
            "a checkpoint with a grant's claims",
            forged.as_str(),
            "signature",
        ),
        ("garbage", "not-a-jws", "well-formed"),
    ] {
        let detail = s
            .get(
                Some(&s.carol),
                &format!("/v1/audit/verify?checkpoint={candidate}"),
            )
            .await
            .problem(StatusCode::BAD_REQUEST);
        assert!(detail.contains(says), "{name}: {detail}");
    }
    // And the checkpoint does not pass as a grant at the redeploy API.
    let resp = s
        .http
        .post(format!(
            "{}/v1/applications/production/checkout-api/redeploy",
            s.api
        ))
        .bearer_auth(&jws)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(resp.text().await.unwrap().contains("typ header"));
}

#[tokio::test]
async fn periodic_checkpoints_follow_new_records_only() {
    let s = spawn_server("audit: {checkpointInterval: 150ms}\n").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(checkpoints(&s).await.is_empty(), "an empty trail gets none");

    denial(&s.review(&restart_by("alice")).await);
    let first = wait_for(&s, |found| !found.is_empty()).await;
    assert_eq!(first[0]["id"], "2", "{first:?}");
    assert!(first[0]["username"].is_null(), "{first:?}");

    // Nothing new: ticks pass without another checkpoint.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(checkpoints(&s).await.len(), 1);

    denial(&s.review(&restart_by("bob")).await);
    denial(&s.review(&restart_by("bob")).await);
    // On a busy machine a tick may fall between the two reviews, and each
    // then gets its own checkpoint: either way the newest one covers both,
    // and every checkpoint follows at least one new record.
    let all = wait_for(&s, |found| {
        found
            .first()
            .is_some_and(|c| c["checkpointRecords"].as_u64() >= Some(4))
    })
    .await;
    let ids: Vec<u64> = all
        .iter()
        .map(|c| c["id"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0] > w[1] + 1),
        "a checkpoint without a new record before it: {all:?}"
    );
    let report = s.verify_audit().await;
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["checkpoint"]["source"], "memory", "{report}");
}

/// The checkpoints, newest first, once `done` holds for them (at most 30 s).
async fn wait_for(s: &TestServer, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let found = checkpoints(s).await;
        if done(&found) {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "checkpoints after 30 s: {found:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_export_streams_every_record_oldest_first_as_json_lines() {
    let s = spawn_server("{}").await;
    s.approved_ticket().await;
    denial(&s.review(&restart_by("bob")).await);
    s.post(Some(&s.carol), "/v1/audit/checkpoints", None).await;
    denial(&s.review(&restart_by("bob")).await);

    let (status, content_type, text) = export(&s, &s.carol, "").await;

    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(content_type, "application/jsonl");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut newest_first = all_records(&s).await;
    newest_first.reverse();
    assert_eq!(lines, newest_first, "every record, oldest first, as stored");
    assert!(text.ends_with('\n'));
    let records: Vec<rollgate::audit::AuditRecord> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(rollgate::audit::chain::verify(&records).ok);

    let (status, _, body) = export(&s, &s.alice, "").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _, body) = export(&s, &s.carol, "?namespace=production").await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "the export is the whole chain: {body}"
    );
}

#[tokio::test]
async fn the_audit_log_file_gets_every_appended_record_as_a_json_line() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let yaml = format!("audit: {{logFile: {}}}\n", log.display());
    let s = spawn_server_in(dir, &yaml).await;
    s.approved_ticket().await;
    denial(&s.review(&restart_by("bob")).await);
    s.post(Some(&s.carol), "/v1/audit/checkpoints", None).await;

    let (_, _, exported) = export(&s, &s.carol, "").await;
    let want = exported.lines().count();
    assert_eq!(want, 5, "{exported}");
    let shipped = wait_for_lines(&log, want).await;
    assert_eq!(shipped, exported, "the same lines as the export, in order");
    let metrics = s.metrics().await;
    assert!(
        metrics.contains("rollgate_audit_log_dropped_total 0"),
        "{metrics}"
    );
}

async fn wait_for_lines(path: &std::path::Path, n: usize) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.lines().count() >= n {
            return text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} holds fewer than {n} lines after 30 s",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn each_replica_ships_the_records_it_appended() {
    let redis = RedisServer::start(&[]);
    let store = rollgate::store::StoreConfig::parse(&redis.url()).unwrap();
    let logs = tempfile::tempdir().unwrap();
    let yaml = |name: &str| {
        let path = logs.path().join(name);
        (
            path.clone(),
            format!("audit: {{logFile: {}}}\n", path.display()),
        )
    };
    let (one_log, one_yaml) = yaml("one.jsonl");
    let (two_log, two_yaml) = yaml("two.jsonl");
    let one = spawn_server_with(tempfile::tempdir().unwrap(), &one_yaml, Some(store)).await;
    let two = spawn_replica_with(&one, &two_yaml).await;

    one.approved_ticket().await; // TICKET_CREATED, TICKET_APPROVED, GRANT_ISSUED
    denial(&two.review(&restart_by("bob")).await);

    let from_one = wait_for_lines(&one_log, 3).await;
    let from_two = wait_for_lines(&two_log, 1).await;
    assert_eq!(from_one.lines().count(), 3, "{from_one}");
    assert_eq!(from_two.lines().count(), 1, "{from_two}");
    let (_, _, exported) = export(&two, &two.carol, "").await;
    assert_eq!(
        format!("{from_one}{from_two}"),
        exported,
        "together, the whole chain"
    );
}

#[tokio::test]
async fn checkpoints_signed_before_a_key_rotation_verify_with_the_old_public_key() {
    let s = spawn_server("{}").await;
    denial(&s.review(&restart_by("alice")).await);
    let made = s.post(Some(&s.carol), "/v1/audit/checkpoints", None).await;
    assert_eq!(made.status, StatusCode::CREATED, "{made:?}");
    let (dir, _) = s.stop().await;

    // Rotate: a new signing key, the old one's public half kept for verification.
    let key_path = dir.path().join("signing-key.pem");
    let old = rollgate::grants::SigningKey::load(&key_path).unwrap();
    std::fs::write(dir.path().join("old.pub.pem"), old.public_pem()).unwrap();
    std::fs::write(&key_path, rollgate::grants::keys::generate_pem().unwrap()).unwrap();
    let old_pub = dir.path().join("old.pub.pem");
    let yaml = format!("verificationKeyFiles: [{}]\n", old_pub.display());

    let s = spawn_server_in(dir, &yaml).await;
    let report = s.verify_audit().await;
    assert_eq!(report["ok"], true, "the old key still verifies: {report}");
    assert_eq!(report["checkpoint"]["id"], "2", "{report}");

    // Without the old key the checkpoint no longer verifies.
    let (dir, _) = s.stop().await;
    let s = spawn_server_in(dir, "{}").await;
    let report = s.verify_audit().await;
    assert_eq!(report["ok"], false, "{report}");
    assert_eq!(report["firstBadId"], "2", "{report}");
    assert!(
        report["problem"].as_str().unwrap().contains("key"),
        "{report}"
    );
}
