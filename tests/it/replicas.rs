//! Two rollgate processes on one Redis behave as one: a ticket filed on one
//! is approved on the other, a grant issued on one admits on the other, a
//! revocation on one denies on the other, and both keep one audit chain.

use reqwest::StatusCode;
use rollgate::store::StoreConfig;

use crate::common::{allowed, denial, restart_by, spawn_replica, spawn_server_with};
use crate::store_contract::RedisServer;

#[tokio::test]
async fn two_replicas_on_one_redis_act_as_one() {
    let redis = RedisServer::start(&[]);
    let store = StoreConfig::parse(&redis.url()).unwrap();
    let one = spawn_server_with(tempfile::tempdir().unwrap(), "{}", Some(store)).await;
    let two = spawn_replica(&one).await;

    let ticket = one
        .file_ticket(&one.alice, "production", "checkout-api")
        .await;
    let id = ticket["id"].as_str().unwrap();
    let approved = two
        .post(Some(&two.bob), &format!("/v1/tickets/{id}/approve"), None)
        .await;
    assert_eq!(approved.status, StatusCode::OK, "{approved:?}");
    let again = one
        .post(Some(&one.bob), &format!("/v1/tickets/{id}/approve"), None)
        .await;
    again.problem(StatusCode::CONFLICT);

    let warnings = allowed(&one.review(&restart_by("alice")).await);
    assert!(
        warnings
            .iter()
            .any(|w| w.contains(ticket["number"].as_str().unwrap())),
        "{warnings:?}"
    );
    allowed(&two.review(&restart_by("alice")).await);

    let jti = approved.body["grant"]["jti"].as_str().unwrap();
    let revoked = one
        .post(Some(&one.bob), &format!("/v1/grants/{jti}/revoke"), None)
        .await;
    assert_eq!(revoked.status, StatusCode::OK, "{revoked:?}");
    let message = denial(&two.review(&restart_by("alice")).await);
    assert!(message.contains("you hold no grant"), "{message}");

    let (a, b) = (one.verify_audit().await, two.verify_audit().await);
    assert_eq!(a["ok"], true, "{a}");
    assert_eq!(a, b, "one chain, seen the same from both replicas");
    assert!(a["records"].as_u64().unwrap() >= 7, "{a}");
}
