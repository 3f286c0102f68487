//! Grants on use: expiry, foreign signatures, edited claims, someone else's
//! grant, revocation, and the published JWKS. Forged grants are written
//! straight into the store, as an attacker with write access to it would.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use rollgate::grants::GrantSettings;
use rollgate::grants::verify::GrantIssuer;
use rollgate::grants::{SigningKey, StoredGrant};
use serde_json::{Value, json};

use crate::common::{TestServer, allowed, by, denial, fixture, restart_by, spawn_server};

/// Writes `grant` into the server's grant table directly.
pub(crate) fn store_grant(s: &TestServer, grant: &StoredGrant) {
    s.db()
        .execute(
            "INSERT INTO grants (jti, user, namespace, application, expires_at, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            rusqlite::params![
                grant.jti,
                grant.user,
                grant.namespace,
                grant.application,
                grant.expires_at,
                serde_json::to_string(grant).unwrap()
            ],
        )
        .unwrap();
}

/// A grant for alice on production/checkout-api signed by `key`.
fn mk_grant_signed_by(key: SigningKey) -> StoredGrant {
    let issuer = GrantIssuer::new(key, &GrantSettings::default());
    let now = jiff::Timestamp::now().as_second();
    let claims = issuer.claims(
        "alice",
        "production",
        "checkout-api",
        "7",
        "RG-000007",
        "restart",
        rollgate::names::random_id(),
        now,
    );
    StoredGrant::from_claims(&claims, issuer.sign(&claims).unwrap())
}

fn mk_foreign_key() -> SigningKey {
    let pem = rollgate::grants::keys::generate_pem().unwrap();
    SigningKey::from_pem(pem.as_bytes()).unwrap()
}

async fn grant_of(s: &TestServer, ticket: &Value) -> Value {
    let path = format!("/v1/tickets/{}/grant", ticket["id"].as_str().unwrap());
    let reply = s.get(Some(&s.alice), &path).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    reply.body
}

pub(crate) fn jwt_part(token: &str, index: usize) -> Value {
    let part = token.split('.').nth(index).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

#[tokio::test]
async fn expired_grant_is_denied() {
    // The review before expiry must not race the TTL: 6 s leaves it 5 s
    // (`exp` counts whole seconds) on a busy machine.
    let s = spawn_server("grants:\n  ttl: 6s\n  leeway: 0s\n").await;
    let ticket = s.approved_ticket().await;
    allowed(&s.review(&restart_by("alice")).await);

    let expires_at: jiff::Timestamp = ticket["grant"]["expiresAt"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let left = expires_at.duration_since(jiff::Timestamp::now());
    let wait = Duration::try_from(left).unwrap_or_default() + Duration::from_millis(300);
    assert!(wait < Duration::from_secs(7), "ttl is 6s: {wait:?}");
    tokio::time::sleep(wait).await;

    let message = denial(&s.review(&restart_by("alice")).await);
    assert!(message.contains("alice may not restart"), "{message}");
    assert!(
        message.contains("rollgate ticket request -n production checkout-api"),
        "{message}"
    );
    let detail = s
        .get(
            Some(&s.alice),
            &format!("/v1/tickets/{}/grant", ticket["id"].as_str().unwrap()),
        )
        .await
        .problem(StatusCode::CONFLICT);
    assert!(detail.contains("expired"), "{detail}");

    // Even if the stored row outlived it, the token's own `exp` is checked.
    s.db()
        .execute("UPDATE grants SET expires_at = expires_at + 3600", [])
        .unwrap();
    let message = denial(&s.review(&restart_by("alice")).await);
    assert!(
        message.contains("your grant does not count: the grant expired"),
        "{message}"
    );
}

#[tokio::test]
async fn grant_signed_by_another_key_is_denied() {
    let s = spawn_server("{}").await;

    store_grant(&s, &mk_grant_signed_by(mk_foreign_key()));
    let message = denial(&s.review(&restart_by("alice")).await);
    assert!(
        message.contains("your grant does not count: the grant is signed with an unknown key"),
        "{message}"
    );
    s.db().execute("DELETE FROM grants", []).unwrap();

    // A foreign key claiming rollgate's own kid fails on the signature.
    let real = SigningKey::load(&s.dir.path().join("signing-key.pem")).unwrap();
    let mut impostor = mk_foreign_key();
    impostor.kid = real.kid.clone();
    let forged = mk_grant_signed_by(impostor);
    assert_eq!(jwt_part(&forged.token, 0)["kid"], real.kid.as_str());
    store_grant(&s, &forged);
    let message = denial(&s.review(&restart_by("alice")).await);
    assert!(
        message.contains("the grant's signature does not verify"),
        "{message}"
    );

    let records = s.audit("event=ADMISSION").await;
    assert!(
        records.iter().all(|r| r["decision"] == "DENIED"),
        "{records:?}"
    );
}

#[tokio::test]
async fn grant_with_edited_claims_is_denied() {
    let s = spawn_server("{}").await;
    let ticket = s.approved_ticket().await;
    let grant = grant_of(&s, &ticket).await;
    let token = grant["token"].as_str().unwrap();

    // alice's real token with `sub` changed to bob, not re-signed.
    let mut claims = jwt_part(token, 1);
    assert_eq!(claims["sub"], "alice");
    claims["sub"] = json!("bob");
    let parts: Vec<&str> = token.split('.').collect();
    let edited = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        parts[2]
    );
    store_grant(
        &s,
        &StoredGrant {
            jti: format!("{}-edited", grant["jti"].as_str().unwrap()),
            user: "bob".into(),
            namespace: "production".into(),
            application: "checkout-api".into(),
            ticket_id: ticket["id"].as_str().unwrap().into(),
            ticket_number: ticket["number"].as_str().unwrap().into(),
            expires_at: claims["exp"].as_i64().unwrap(),
            token: edited,
        },
    );

    let message = denial(&s.review(&restart_by("bob")).await);

    assert!(
        message.contains("bob may not restart")
            && message.contains("the grant's signature does not verify"),
        "{message}"
    );
    allowed(&s.review(&restart_by("alice")).await);
}

#[tokio::test]
async fn another_users_grant_is_refused() {
    let s = spawn_server("{}").await;
    let ticket = s.approved_ticket().await;
    let grant = grant_of(&s, &ticket).await;

    // alice's genuine token, filed under bob's name.
    store_grant(
        &s,
        &StoredGrant {
            jti: rollgate::names::random_id(),
            user: "bob".into(),
            namespace: "production".into(),
            application: "checkout-api".into(),
            ticket_id: ticket["id"].as_str().unwrap().into(),
            ticket_number: ticket["number"].as_str().unwrap().into(),
            expires_at: jiff::Timestamp::now().as_second() + 3600,
            token: grant["token"].as_str().unwrap().into(),
        },
    );

    let message = denial(&s.review(&restart_by("bob")).await);

    assert!(
        message.contains(r#"the grant belongs to "alice""#),
        "{message}"
    );
}

#[tokio::test]
async fn restart_grant_does_not_allow_an_image_change() {
    let s = spawn_server("{}").await;
    s.approved_ticket().await;

    let message = denial(
        &s.review(&by(fixture("set-image-review.json"), "alice"))
            .await,
    );

    assert!(
        message.contains("the grant's ticket allows only a restart"),
        "{message}"
    );
    assert!(message.contains("--action image"), "{message}");
}

#[tokio::test]
async fn revoked_grant_stops_working_at_once() {
    let s = spawn_server("{}").await;
    let ticket = s.approved_ticket().await;
    allowed(&s.review(&restart_by("alice")).await);
    let jti = ticket["grant"]["jti"].as_str().unwrap();
    let revoke = format!("/v1/grants/{jti}/revoke");

    s.post(Some(&s.alice), &revoke, None)
        .await
        .problem(StatusCode::FORBIDDEN);
    let reply = s
        .post(Some(&s.bob), &revoke, Some(json!({"reason": "wrong week"})))
        .await;

    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.body["revoked"], true);
    denial(&s.review(&restart_by("alice")).await);
    s.post(Some(&s.bob), &revoke, None)
        .await
        .problem(StatusCode::NOT_FOUND);
    let records = s.audit("event=GRANT_REVOKED").await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["grantJti"], jti);
    assert_eq!(records[0]["username"], "bob");
}

#[tokio::test]
async fn jwks_lists_the_signing_key() {
    let s = spawn_server("{}").await;
    let key = SigningKey::load(&s.dir.path().join("signing-key.pem")).unwrap();

    let jwks = s.get(None, "/.well-known/jwks.json").await;

    assert_eq!(jwks.status, StatusCode::OK, "{jwks:?}");
    let keys = jwks.body["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1, "{jwks:?}");
    assert_eq!(keys[0]["kid"], key.kid.as_str());
    assert_eq!(keys[0]["kty"], "OKP");
    assert_eq!(keys[0]["crv"], "Ed25519");
    assert_eq!(keys[0]["alg"], "EdDSA");
    assert_eq!(keys[0]["x"], URL_SAFE_NO_PAD.encode(key.public).as_str());

    // Issued grants name that key and carry every claim of DESIGN.md.
    let ticket = s.approved_ticket().await;
    let token = grant_of(&s, &ticket).await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let header = jwt_part(&token, 0);
    assert_eq!(header["kid"], key.kid.as_str());
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(header["typ"], "rollgate-grant+jwt");
    let claims = jwt_part(&token, 1);
    for claim in [
        "iss", "aud", "sub", "ns", "app", "tid", "tno", "jti", "iat", "nbf", "exp",
    ] {
        assert!(!claims[claim].is_null(), "{claim} missing: {claims}");
    }
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["ns"], "production");
    assert_eq!(claims["app"], "checkout-api");
    assert_eq!(claims["tno"], ticket["number"]);
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        7200
    );
}

#[tokio::test]
async fn grant_with_another_algorithm_is_denied() {
    let s = spawn_server("{}").await;
    let real = SigningKey::load(&s.dir.path().join("signing-key.pem")).unwrap();
    let genuine = mk_grant_signed_by(real.clone());
    let claims = jwt_part(&genuine.token, 1);

    // HS256 keyed with the public key (algorithm confusion), and `alg: none`.
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.typ = Some("rollgate-grant+jwt".into());
    header.kid = Some(real.kid.clone());
    let hs256 = jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(&real.public),
    )
    .unwrap();
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(
            json!({"alg": "none", "typ": "rollgate-grant+jwt", "kid": real.kid}).to_string()
        ),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    for (token, why) in [
        (hs256, "the grant is not signed with EdDSA"),
        (none, "the grant is not a well-formed JWT"),
    ] {
        s.db().execute("DELETE FROM grants", []).unwrap();
        store_grant(
            &s,
            &StoredGrant {
                token,
                ..genuine.clone()
            },
        );
        let message = denial(&s.review(&restart_by("alice")).await);
        assert!(message.contains(why), "{why}: {message}");
    }
    // The genuine token in the same row is accepted: the forgery is what failed.
    s.db().execute("DELETE FROM grants", []).unwrap();
    store_grant(&s, &genuine);
    allowed(&s.review(&restart_by("alice")).await);
}

#[tokio::test]
async fn an_expired_grant_is_recorded_once_and_counted() {
    let s = spawn_server("grants:\n  ttl: 1s\n  leeway: 0s\nsweepInterval: 500ms\n").await;
    let ticket = s.approved_ticket().await;
    let jti = ticket["grant"]["jti"].as_str().unwrap().to_owned();

    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let records = loop {
        let records = s.audit("event=GRANT_EXPIRED").await;
        if !records.is_empty() || std::time::Instant::now() > deadline {
            break records;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["grantJti"], jti.as_str());
    assert_eq!(records[0]["username"], "alice");
    assert_eq!(records[0]["ticketNumber"], ticket["number"]);

    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        s.audit("event=GRANT_EXPIRED").await.len(),
        1,
        "recorded once"
    );
    let metrics = s.metrics().await;
    assert!(
        metrics.contains(
            r#"app_redeploy_token_expired_total{application="checkout-api",username="alice"} 1"#
        ),
        "{metrics}"
    );
}
