use super::*;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;

const NOW: i64 = 1_800_000_000;

fn mk_key() -> SigningKey {
    SigningKey::from_pem(crate::grants::keys::generate_pem().unwrap().as_bytes()).unwrap()
}

fn mk_pair() -> (GrantIssuer, GrantVerifier) {
    let key = mk_key();
    let settings = GrantSettings::default();
    (
        GrantIssuer::new(key.clone(), &settings),
        GrantVerifier::new(KeySet::new(&key), &settings),
    )
}

fn mk_claims(issuer: &GrantIssuer) -> GrantClaims {
    issuer.claims(
        "alice",
        "production",
        "web",
        "7",
        "RG-000007",
        "any",
        "jti-1".into(),
        NOW,
    )
}

const EXPECTED: Expected<'static> = Expected {
    user: "alice",
    namespace: "production",
    application: "web",
    action: "restart",
    new_images: &[],
    removed_containers: &[],
};

/// Re-encodes a token's payload without re-signing it.
fn tamper(token: &str, edit: impl FnOnce(&mut serde_json::Value)) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let mut payload: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    edit(&mut payload);
    let encoded = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&payload).unwrap());
    format!("{}.{}.{}", parts[0], encoded, parts[2])
}

#[test]
fn a_fresh_grant_verifies_for_its_user_namespace_and_application() {
    let (issuer, verifier) = mk_pair();
    let token = issuer.sign(&mk_claims(&issuer)).unwrap();
    let claims = verifier.verify(&token, EXPECTED, NOW + 60).unwrap();
    assert_eq!(claims.tno, "RG-000007");
}

#[test]
fn every_mismatch_is_rejected_with_its_reason() {
    let (issuer, verifier) = mk_pair();
    let token = issuer.sign(&mk_claims(&issuer)).unwrap();
    let cases: [(&str, Expected<'_>, GrantRejection); 3] = [
        (
            "other user",
            Expected {
                user: "mallory",
                ..EXPECTED
            },
            GrantRejection::WrongUser("alice".into()),
        ),
        (
            "other namespace",
            Expected {
                namespace: "staging",
                ..EXPECTED
            },
            GrantRejection::WrongNamespace("production".into()),
        ),
        (
            "other application",
            Expected {
                application: "db",
                ..EXPECTED
            },
            GrantRejection::WrongApplication("web".into()),
        ),
    ];
    for (name, expected, want) in cases {
        assert_eq!(
            verifier.verify(&token, expected, NOW).unwrap_err(),
            want,
            "{name}"
        );
    }
}

#[test]
fn time_window_honours_the_leeway_and_no_more() {
    let (issuer, verifier) = mk_pair();
    let claims = mk_claims(&issuer);
    let token = issuer.sign(&claims).unwrap();
    assert!(
        verifier.verify(&token, EXPECTED, claims.exp + 29).is_ok(),
        "within 30 s leeway"
    );
    assert!(matches!(
        verifier.verify(&token, EXPECTED, claims.exp + 31),
        Err(GrantRejection::Expired(_))
    ));
    assert_eq!(
        verifier.verify(&token, EXPECTED, NOW - 31).unwrap_err(),
        GrantRejection::NotYetValid
    );
}

#[test]
fn forged_and_edited_grants_are_rejected() {
    let (issuer, verifier) = mk_pair();
    let token = issuer.sign(&mk_claims(&issuer)).unwrap();

    let edited = tamper(&token, |p| p["sub"] = "mallory".into());
    let exp = Expected {
        user: "mallory",
        ..EXPECTED
    };
    assert_eq!(
        verifier.verify(&edited, exp, NOW).unwrap_err(),
        GrantRejection::BadSignature
    );

    // Signed by another key that claims our kid.
    let (other_issuer, _) = mk_pair();
    let forged = other_issuer.sign(&mk_claims(&other_issuer)).unwrap();
    assert_eq!(
        verifier.verify(&forged, EXPECTED, NOW).unwrap_err(),
        GrantRejection::UnknownKeyId
    );
    let mut header = jsonwebtoken::Header::new(Algorithm::EdDSA);
    header.typ = Some(GRANT_TYP.into());
    header.kid = Some(issuer.key.kid.clone());
    let forged_kid =
        jsonwebtoken::encode(&header, &mk_claims(&issuer), mk_key().encoding_key()).unwrap();
    assert_eq!(
        verifier.verify(&forged_kid, EXPECTED, NOW).unwrap_err(),
        GrantRejection::BadSignature
    );
}

#[test]
fn wrong_header_or_missing_claims_are_rejected() {
    let (issuer, verifier) = mk_pair();
    let claims = mk_claims(&issuer);

    let mut header = jsonwebtoken::Header::new(Algorithm::EdDSA);
    header.kid = Some(issuer.key.kid.clone());
    header.typ = Some("JWT".into());
    let wrong_typ = jsonwebtoken::encode(&header, &claims, issuer.key.encoding_key()).unwrap();
    assert_eq!(
        verifier.verify(&wrong_typ, EXPECTED, NOW).unwrap_err(),
        GrantRejection::WrongType
    );

    let hs = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(b"k"),
    )
    .unwrap();
    assert_eq!(
        verifier.verify(&hs, EXPECTED, NOW).unwrap_err(),
        GrantRejection::WrongAlgorithm
    );

    let mut partial = serde_json::to_value(&claims).unwrap();
    partial.as_object_mut().unwrap().remove("tno");
    header.typ = Some(GRANT_TYP.into());
    let missing = jsonwebtoken::encode(&header, &partial, issuer.key.encoding_key()).unwrap();
    assert_eq!(
        verifier.verify(&missing, EXPECTED, NOW).unwrap_err(),
        GrantRejection::BadClaims
    );

    let mut long = claims.clone();
    long.exp = long.iat + 3 * 3600;
    let too_long = issuer.sign(&long).unwrap();
    assert_eq!(
        verifier.verify(&too_long, EXPECTED, NOW).unwrap_err(),
        GrantRejection::LifetimeTooLong
    );

    let mut other_iss = claims.clone();
    other_iss.iss = "someone-else".into();
    let wrong_iss = issuer.sign(&other_iss).unwrap();
    assert_eq!(
        verifier.verify(&wrong_iss, EXPECTED, NOW).unwrap_err(),
        GrantRejection::WrongIssuer("someone-else".into()),
        "the rejection names the issuer found"
    );

    let mut other_aud = claims.clone();
    other_aud.aud = "another-webhook".into();
    let wrong_aud = issuer.sign(&other_aud).unwrap();
    assert_eq!(
        verifier.verify(&wrong_aud, EXPECTED, NOW).unwrap_err(),
        GrantRejection::WrongAudience("another-webhook".into()),
        "the rejection names the audience found"
    );

    assert_eq!(
        verifier.verify("garbage", EXPECTED, NOW).unwrap_err(),
        GrantRejection::Malformed
    );
}

#[test]
fn a_restart_only_grant_does_not_cover_an_image_change() {
    let (issuer, verifier) = mk_pair();
    let claims = issuer.claims(
        "alice",
        "production",
        "web",
        "7",
        "RG-000007",
        "restart",
        "j".into(),
        NOW,
    );
    let token = issuer.sign(&claims).unwrap();
    assert!(verifier.verify(&token, EXPECTED, NOW).is_ok());
    let image = Expected {
        action: "image",
        ..EXPECTED
    };
    assert!(matches!(
        verifier.verify(&token, image, NOW),
        Err(GrantRejection::ActionNotAllowed(_))
    ));
}

#[test]
fn a_grant_pinned_to_images_admits_only_those() {
    let (issuer, verifier) = mk_pair();
    let mut claims = mk_claims(&issuer);
    claims.images = vec!["registry.example.com/web:v2".into()];
    let token = issuer.sign(&claims).unwrap();
    let image = |new_images| Expected {
        action: "image",
        new_images,
        ..EXPECTED
    };
    assert!(
        verifier
            .verify(&token, image(&["registry.example.com/web:v2"]), NOW)
            .is_ok()
    );
    assert_eq!(
        verifier
            .verify(
                &token,
                image(&["registry.example.com/web:v2", "evil.example/miner:1"]),
                NOW
            )
            .unwrap_err(),
        GrantRejection::ImageNotPinned("evil.example/miner:1".into())
    );
    assert!(
        verifier.verify(&token, EXPECTED, NOW).is_ok(),
        "a restart sets no image"
    );
}

/// Found while writing the `grant` fuzz target: extreme `iat`/`exp`
/// overflowed the lifetime and expiry arithmetic (a panic with overflow
/// checks; without them `exp - iat` wrapped negative and passed the
/// lifetime check, for a token signed with rollgate's key).
#[test]
fn extreme_time_claims_are_rejected_not_overflowed() {
    let (issuer, verifier) = mk_pair();
    type Edit = fn(&mut GrantClaims);
    let cases: [(&str, Edit, GrantRejection); 3] = [
        (
            "iat at the minimum, exp in the window",
            |c| c.iat = i64::MIN,
            GrantRejection::LifetimeTooLong,
        ),
        (
            "iat at the minimum, exp at the maximum",
            |c| {
                c.iat = i64::MIN;
                c.exp = i64::MAX;
            },
            GrantRejection::LifetimeTooLong,
        ),
        (
            "exp at the minimum (jsonwebtoken reads exp as unsigned)",
            |c| {
                c.iat = i64::MIN;
                c.nbf = i64::MIN;
                c.exp = i64::MIN;
            },
            GrantRejection::BadClaims,
        ),
    ];
    for (row, edit, want) in cases {
        let mut claims = mk_claims(&issuer);
        edit(&mut claims);
        let token = issuer.sign(&claims).unwrap();
        assert_eq!(
            verifier.verify_token(&token, NOW + 60),
            Err(want),
            "row {row:?}"
        );
    }
}
