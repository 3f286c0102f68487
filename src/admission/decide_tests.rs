//! [`decide`] and what the user reads: the denial message with the ticket
//! command, the allow warning, and every way a grant fails to count.
//! Gated changes come from [`classify`] on the captured restart review
//! (`tests/data/restart-review.json`); grants are signed with a fresh key.

use std::collections::BTreeSet;

use kube::core::admission::AdmissionRequest;
use serde_json::{Value, json};

use super::*;
use crate::grants::GrantSettings;
use crate::grants::keys::generate_pem;
use crate::grants::verify::GrantIssuer;
use crate::grants::{KeySet, SigningKey};
use crate::policy::{Gate, Policy, Workload, classify};

const FIXTURE: &str = include_str!("../../tests/data/restart-review.json");
const API_URL: &str = "https://rollgate.example.com:8444";
const USER: &str = "alice@example.com";
/// Issue time of the grants; decisions happen a minute later unless a row says otherwise.
const ISSUED: i64 = 1_800_000_000;
const NOW: i64 = ISSUED + 60;
/// The default grant TTL (2 h).
const TTL: i64 = 2 * 3600;

// === builders ===

/// The fixture's `request`, edited by `edit`, parsed as the webhook parses it.
fn mk_request(edit: impl FnOnce(&mut Value)) -> AdmissionRequest<Workload> {
    let mut review: Value = serde_json::from_str(FIXTURE).unwrap();
    edit(&mut review["request"]);
    crate::admission::parse_review(review.to_string().as_bytes()).unwrap()
}

/// The gated change `classify` makes of the edited fixture (production protected).
fn mk_change_with(policy: Policy, edit: impl FnOnce(&mut Value)) -> GatedChange {
    let policy = Policy {
        protected_namespaces: BTreeSet::from(["production".to_owned()]),
        ..policy
    };
    match classify(&mk_request(edit), &policy, &BTreeSet::<String>::new()) {
        Gate::Gated(change) => change,
        other => panic!("the edited fixture must be gated, got {other:?}"),
    }
}

fn mk_change(edit: impl FnOnce(&mut Value)) -> GatedChange {
    mk_change_with(Policy::default(), edit)
}

/// The captured `kubectl rollout restart`.
fn mk_restart() -> GatedChange {
    mk_change(|_| {})
}

fn no_restart(req: &mut Value) {
    req["object"]["spec"]["template"]["metadata"]["annotations"]
        .as_object_mut()
        .unwrap()
        .remove("kubectl.kubernetes.io/restartedAt");
}

fn new_app_image(req: &mut Value) {
    req["object"]["spec"]["template"]["spec"]["containers"][0]["image"] =
        json!("registry.example.com/shop/checkout-api:v3.42.0");
}

fn mk_image_change() -> GatedChange {
    mk_change(|r| {
        no_restart(r);
        new_app_image(r);
    })
}

fn mk_both_change() -> GatedChange {
    mk_change(new_app_image)
}

/// An env var change, gated only with `gateAnyTemplateChange`.
fn mk_template_change() -> GatedChange {
    let policy = Policy {
        gate_any_template_change: true,
        ..Policy::default()
    };
    mk_change_with(policy, |r| {
        no_restart(r);
        r["object"]["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "LOG_LEVEL", "value": "debug"}));
    })
}

fn mk_key() -> SigningKey {
    SigningKey::from_pem(generate_pem().unwrap().as_bytes()).unwrap()
}

/// rollgate's signing key: its issuer and the verifier the webhook uses.
struct Keys {
    key: SigningKey,
    verifier: GrantVerifier,
}

fn mk_keys() -> Keys {
    let key = mk_key();
    Keys {
        verifier: GrantVerifier::new(KeySet::new(&key), &GrantSettings::default()),
        key,
    }
}

/// What a grant is issued for; [`mk_spec`] is alice's grant for checkout-api.
#[derive(Clone, Copy)]
struct GrantSpec {
    user: &'static str,
    namespace: &'static str,
    application: &'static str,
    action: &'static str,
    issued: i64,
}

fn mk_spec() -> GrantSpec {
    GrantSpec {
        user: USER,
        namespace: "production",
        application: "checkout-api",
        action: "any",
        issued: ISSUED,
    }
}

/// A stored grant of ticket RG-000042 signed with `key`.
fn mk_grant(key: &SigningKey, spec: GrantSpec) -> StoredGrant {
    mk_grant_with(key, spec, |_| {})
}

/// Like [`mk_grant`], with its claims edited before signing.
fn mk_grant_with(
    key: &SigningKey,
    spec: GrantSpec,
    edit: impl FnOnce(&mut crate::grants::GrantClaims),
) -> StoredGrant {
    let issuer = GrantIssuer::new(key.clone(), &GrantSettings::default());
    let mut claims = issuer.claims(
        spec.user,
        spec.namespace,
        spec.application,
        "42",
        "RG-000042",
        spec.action,
        "9b1de3c4-7a52-4f0e-8c61-2d9e4b7f0a13".into(),
        spec.issued,
    );
    edit(&mut claims);
    StoredGrant::from_claims(&claims, issuer.sign(&claims).unwrap())
}

fn mk_unavailable() -> Unavailable {
    Unavailable {
        what: "grant store",
        detail: "no answer within 500ms".into(),
    }
}

// === no grant ===

#[test]
fn a_gated_change_without_grant_is_denied_with_the_ticket_command() {
    let keys = mk_keys();
    let change = mk_restart();
    let decision = decide(
        &change,
        Ok(vec![]),
        &keys.verifier,
        FailureMode::Closed,
        NOW,
    );
    assert_eq!(decision, Decision::Denied(DenyReason::NoGrant));
    assert!(!decision.allowed());
    assert_eq!(decision.warning(), None);

    let message = decision.message(&change, API_URL);
    for expected in [
        "alice@example.com may not restart Deployment production/checkout-api (application checkout-api)",
        "namespace production is protected",
        "you hold no grant for this application",
        "approver (not you)",
        "`rollgate ticket request -n production checkout-api --action restart --reason \"<why>\"`",
        "curl -X POST https://rollgate.example.com:8444/v1/tickets -H \"Authorization: Bearer $TOKEN\"",
        r#"-d '{"namespace":"production","application":"checkout-api","action":"restart","reason":"<why>"}'"#,
        "run your command again",
    ] {
        assert!(
            message.contains(expected),
            "denial message lacks {expected:?}:\n{message}"
        );
    }
}

#[test]
fn the_ticket_command_asks_for_the_action_the_change_needs() {
    let rows = [
        (
            "restart",
            mk_restart(),
            "restart",
            "may not restart Deployment",
        ),
        (
            "image change",
            mk_image_change(),
            "image",
            "may not change the image of Deployment",
        ),
        (
            "restart and image change",
            mk_both_change(),
            "any",
            "may not restart and change the image of Deployment",
        ),
        (
            "other template change under gateAnyTemplateChange",
            mk_template_change(),
            "any",
            "may not change the pod template of Deployment",
        ),
    ];
    let keys = mk_keys();
    for (row, change, action, verb) in rows {
        let decision = decide(
            &change,
            Ok(vec![]),
            &keys.verifier,
            FailureMode::Closed,
            NOW,
        );
        assert_eq!(
            decision,
            Decision::Denied(DenyReason::NoGrant),
            "row {row:?}"
        );
        let message = decision.message(&change, API_URL);
        let command = format!(
            "`rollgate ticket request -n production checkout-api --action {action} --reason"
        );
        let body = format!(r#""action":"{action}""#);
        for expected in [verb, command.as_str(), body.as_str()] {
            assert!(
                message.contains(expected),
                "row {row:?}: denial message lacks {expected:?}:\n{message}"
            );
        }
    }
}

#[test]
fn the_denial_names_the_workload_kind_and_application() {
    let change = mk_change(|r| {
        for (field, value) in [
            (
                "kind",
                json!({"group": "apps", "version": "v1", "kind": "StatefulSet"}),
            ),
            (
                "resource",
                json!({"group": "apps", "version": "v1", "resource": "statefulsets"}),
            ),
        ] {
            r[field] = value;
        }
        r["name"] = json!("ledger");
        for side in ["object", "oldObject"] {
            r[side]["kind"] = json!("StatefulSet");
            r[side]["metadata"]["name"] = json!("ledger");
            r[side]["metadata"]["labels"] = json!({"app": "ledger-db"});
        }
    });
    let keys = mk_keys();
    let decision = decide(
        &change,
        Ok(vec![]),
        &keys.verifier,
        FailureMode::Closed,
        NOW,
    );
    let message = decision.message(&change, API_URL);
    for expected in [
        "may not restart StatefulSet production/ledger (application ledger-db)",
        "`rollgate ticket request -n production ledger-db --action restart --reason",
        r#""application":"ledger-db""#,
    ] {
        assert!(
            message.contains(expected),
            "denial message lacks {expected:?}:\n{message}"
        );
    }
}

// === a valid grant ===

#[test]
fn a_valid_grant_allows_with_a_warning_naming_ticket_and_time_left() {
    let keys = mk_keys();
    let change = mk_restart();
    let grant = mk_grant(&keys.key, mk_spec());
    let decision = decide(
        &change,
        Ok(vec![grant.clone()]),
        &keys.verifier,
        FailureMode::Closed,
        NOW,
    );
    assert_eq!(
        decision,
        Decision::Allowed {
            ticket_number: "RG-000042".into(),
            jti: grant.jti.clone(),
            user: grant.user.clone(),
            max_uses: None,
            expires_at: ISSUED + TTL,
            remaining: TTL - 60,
        }
    );
    assert!(decision.allowed());
    assert_eq!(decision.grant_jti(), Some(grant.jti.as_str()));
    assert_eq!(decision.audit_reason(), "grant of ticket RG-000042");
    assert_eq!(
        decision.warning().as_deref(),
        Some("rollgate: allowed by ticket RG-000042 (grant 9b1de3c4); the grant expires in 1h59m")
    );
}

#[test]
fn a_grant_allows_the_changes_its_action_covers() {
    let rows = [
        ("restart grant, restart", "restart", mk_restart()),
        ("image grant, image change", "image", mk_image_change()),
        ("any grant, restart", "any", mk_restart()),
        ("any grant, image change", "any", mk_image_change()),
        (
            "any grant, restart and image change",
            "any",
            mk_both_change(),
        ),
        (
            "any grant, other template change",
            "any",
            mk_template_change(),
        ),
    ];
    let keys = mk_keys();
    for (row, action, change) in rows {
        let grant = mk_grant(
            &keys.key,
            GrantSpec {
                action,
                ..mk_spec()
            },
        );
        let decision = decide(
            &change,
            Ok(vec![grant]),
            &keys.verifier,
            FailureMode::Closed,
            NOW,
        );
        assert!(
            matches!(decision, Decision::Allowed { .. }),
            "row {row:?}: {decision:?}"
        );
    }
}

#[test]
fn the_warning_counts_down_the_grants_remaining_time() {
    let rows = [
        ("just issued", ISSUED, "expires in 2h00m"),
        ("an hour and a half in", ISSUED + 5400, "expires in 30m00s"),
        ("seconds before expiry", ISSUED + TTL - 45, "expires in 45s"),
        (
            "expired, within the 30 s leeway",
            ISSUED + TTL + 10,
            "expires in 0s",
        ),
    ];
    let keys = mk_keys();
    let grant = mk_grant(&keys.key, mk_spec());
    for (row, now, expected) in rows {
        let decision = decide(
            &mk_restart(),
            Ok(vec![grant.clone()]),
            &keys.verifier,
            FailureMode::Closed,
            now,
        );
        let warning = decision.warning().unwrap_or_default();
        assert!(
            warning.contains(expected),
            "row {row:?}: warning lacks {expected:?}: {warning:?} ({decision:?})"
        );
    }
}

// === grants that do not count ===

#[test]
fn a_grant_that_does_not_match_is_rejected_and_the_message_says_why() {
    let keys = mk_keys();
    let other_key = mk_key();
    // Same kid as rollgate's key, different private key: a forgery that
    // names a known key but cannot produce its signature.
    let mut impostor = mk_key();
    impostor.kid = keys.key.kid.clone();
    let valid = mk_grant(&keys.key, mk_spec());

    let rows: Vec<(&str, GatedChange, StoredGrant, i64, GrantRejection, &str)> = vec![
        (
            "grant for another user",
            mk_restart(),
            mk_grant(
                &keys.key,
                GrantSpec {
                    user: "bob@example.com",
                    ..mk_spec()
                },
            ),
            NOW,
            GrantRejection::WrongUser("bob@example.com".into()),
            r#"your grant does not count: the grant belongs to "bob@example.com"."#,
        ),
        (
            "grant for another namespace",
            mk_restart(),
            mk_grant(
                &keys.key,
                GrantSpec {
                    namespace: "staging",
                    ..mk_spec()
                },
            ),
            NOW,
            GrantRejection::WrongNamespace("staging".into()),
            r#"your grant does not count: the grant is for namespace "staging"."#,
        ),
        (
            "grant for another application",
            mk_restart(),
            mk_grant(
                &keys.key,
                GrantSpec {
                    application: "cart-api",
                    ..mk_spec()
                },
            ),
            NOW,
            GrantRejection::WrongApplication("cart-api".into()),
            r#"your grant does not count: the grant is for application "cart-api"."#,
        ),
        (
            "expired grant",
            mk_restart(),
            valid.clone(),
            ISSUED + TTL + 100,
            GrantRejection::Expired(100),
            "your grant does not count: the grant expired 100 s ago.",
        ),
        (
            "grant not valid yet",
            mk_restart(),
            mk_grant(
                &keys.key,
                GrantSpec {
                    issued: NOW + 600,
                    ..mk_spec()
                },
            ),
            NOW,
            GrantRejection::NotYetValid,
            "your grant does not count: the grant is not valid yet.",
        ),
        (
            "forged with an unknown key",
            mk_restart(),
            mk_grant(&other_key, mk_spec()),
            NOW,
            GrantRejection::UnknownKeyId,
            "your grant does not count: the grant is signed with an unknown key.",
        ),
        (
            "forged under rollgate's kid",
            mk_restart(),
            mk_grant(&impostor, mk_spec()),
            NOW,
            GrantRejection::BadSignature,
            "your grant does not count: the grant's signature does not verify.",
        ),
        (
            "store row planted without a signed token",
            mk_restart(),
            StoredGrant {
                token: String::new(),
                ..valid.clone()
            },
            NOW,
            GrantRejection::Malformed,
            "your grant does not count: the grant is not a well-formed JWT.",
        ),
        (
            "restart-only grant, image change",
            mk_image_change(),
            mk_grant(
                &keys.key,
                GrantSpec {
                    action: "restart",
                    ..mk_spec()
                },
            ),
            NOW,
            GrantRejection::ActionNotAllowed("restart".into()),
            "your grant does not count: the grant's ticket allows only a restart.",
        ),
        (
            "restart-only grant, restart and image change",
            mk_both_change(),
            mk_grant(
                &keys.key,
                GrantSpec {
                    action: "restart",
                    ..mk_spec()
                },
            ),
            NOW,
            GrantRejection::ActionNotAllowed("restart".into()),
            "your grant does not count: the grant's ticket allows only a restart.",
        ),
        (
            "image-only grant, restart",
            mk_restart(),
            mk_grant(
                &keys.key,
                GrantSpec {
                    action: "image",
                    ..mk_spec()
                },
            ),
            NOW,
            GrantRejection::ActionNotAllowed("image".into()),
            "your grant does not count: the grant's ticket allows only an image change.",
        ),
        (
            "restart-only grant, other template change",
            mk_template_change(),
            mk_grant(
                &keys.key,
                GrantSpec {
                    action: "restart",
                    ..mk_spec()
                },
            ),
            NOW,
            GrantRejection::ActionNotAllowed("restart".into()),
            "your grant does not count: the grant's ticket allows only a restart.",
        ),
    ];
    for (row, change, grant, now, rejection, why) in rows {
        let decision = decide(
            &change,
            Ok(vec![grant]),
            &keys.verifier,
            FailureMode::Closed,
            now,
        );
        assert_eq!(
            decision,
            Decision::Denied(DenyReason::Rejected(rejection)),
            "row {row:?}"
        );
        assert_eq!(decision.warning(), None, "row {row:?}");
        let message = decision.message(&change, API_URL);
        let action = change.class.action();
        let command = format!(
            "`rollgate ticket request -n production checkout-api --action {action} --reason"
        );
        for expected in [
            "alice@example.com may not",
            "Deployment production/checkout-api",
            why,
            command.as_str(),
        ] {
            assert!(
                message.contains(expected),
                "row {row:?}: denial message lacks {expected:?}:\n{message}"
            );
        }
    }
}

// === the grant store is down ===

#[test]
fn an_unavailable_store_denies_when_failing_closed_without_suggesting_a_ticket() {
    let keys = mk_keys();
    let change = mk_restart();
    let decision = decide(
        &change,
        Err(mk_unavailable()),
        &keys.verifier,
        FailureMode::Closed,
        NOW,
    );
    assert_eq!(
        decision,
        Decision::Denied(DenyReason::Unavailable(mk_unavailable()))
    );
    assert_eq!(decision.metric_label(), "denied_unavailable");
    assert_eq!(
        decision.audit_reason(),
        "grant store unavailable: no answer within 500ms"
    );
    let message = decision.message(&change, API_URL);
    for expected in [
        "alice@example.com may not restart Deployment production/checkout-api",
        "cannot reach its grant store (no answer within 500ms), so it fails closed",
        "Nothing is wrong with your request",
        "retry in a minute",
    ] {
        assert!(
            message.contains(expected),
            "unavailable message lacks {expected:?}:\n{message}"
        );
    }
    for unexpected in ["rollgate ticket request", "/v1/tickets", "no grant"] {
        assert!(
            !message.contains(unexpected),
            "unavailable message must not suggest a ticket ({unexpected:?}):\n{message}"
        );
    }
}

#[test]
fn an_unavailable_store_allows_with_a_warning_when_failing_open() {
    let keys = mk_keys();
    let decision = decide(
        &mk_restart(),
        Err(mk_unavailable()),
        &keys.verifier,
        FailureMode::Open,
        NOW,
    );
    assert_eq!(decision, Decision::AllowedFailOpen(mk_unavailable()));
    assert!(decision.allowed());
    assert_eq!(decision.metric_label(), "allowed_fail_open");
    assert_eq!(decision.audit_decision(), AuditDecision::Allowed);
    assert_eq!(
        decision.warning().as_deref(),
        Some(
            "rollgate: grant store unavailable (no answer within 500ms); allowed without a grant check because the failure mode is open"
        )
    );
}

#[test]
fn the_failure_mode_does_not_matter_when_the_store_answers() {
    let keys = mk_keys();
    for mode in [FailureMode::Closed, FailureMode::Open] {
        let decision = decide(&mk_restart(), Ok(vec![]), &keys.verifier, mode, NOW);
        assert_eq!(
            decision,
            Decision::Denied(DenyReason::NoGrant),
            "failure mode {mode:?}"
        );
    }
}

// === labels for metrics and audit ===

#[test]
fn each_decision_has_its_audit_decision_and_metric_label() {
    let allowed = Decision::Allowed {
        ticket_number: "RG-000042".into(),
        jti: "9b1de3c4".into(),
        user: "alice@example.com".into(),
        max_uses: None,
        expires_at: ISSUED + TTL,
        remaining: TTL,
    };
    let rows = [
        (
            "exempt",
            Decision::Exempt,
            AuditDecision::Exempt,
            "exempt",
            true,
        ),
        ("allowed", allowed, AuditDecision::Allowed, "allowed", true),
        (
            "allowed fail-open",
            Decision::AllowedFailOpen(mk_unavailable()),
            AuditDecision::Allowed,
            "allowed_fail_open",
            true,
        ),
        (
            "denied, no grant",
            Decision::Denied(DenyReason::NoGrant),
            AuditDecision::Denied,
            "denied",
            false,
        ),
        (
            "denied, rejected grant",
            Decision::Denied(DenyReason::Rejected(GrantRejection::Revoked)),
            AuditDecision::Denied,
            "denied",
            false,
        ),
        (
            "denied, store unavailable",
            Decision::Denied(DenyReason::Unavailable(mk_unavailable())),
            AuditDecision::Denied,
            "denied_unavailable",
            false,
        ),
    ];
    for (row, decision, audit, label, allowed) in rows {
        assert_eq!(decision.audit_decision(), audit, "row {row:?}");
        assert_eq!(decision.metric_label(), label, "row {row:?}");
        assert_eq!(decision.allowed(), allowed, "row {row:?}");
        assert_eq!(decision.warning().is_some(), allowed, "row {row:?}");
    }
}

#[test]
fn an_exempt_change_is_allowed_with_a_warning_saying_so() {
    assert_eq!(
        Decision::Exempt.warning().as_deref(),
        Some(
            "rollgate: allowed without a ticket: you are exempt by policy (recorded in the audit)"
        )
    );
    assert_eq!(
        Decision::Exempt.audit_reason(),
        "requester is exempt by policy"
    );
}

#[test]
fn an_application_no_ticket_can_name_gets_advice_instead_of_a_command() {
    let mut change = mk_restart();
    change.application = "Checkout_API".into();
    let keys = mk_keys();
    let decision = decide(
        &change,
        Ok(vec![]),
        &keys.verifier,
        FailureMode::Closed,
        NOW,
    );
    let message = decision.message(&change, API_URL);
    assert!(message.contains("not a DNS-1123 label"), "{message}");
    assert!(message.contains("app.kubernetes.io/name"), "{message}");
    assert!(!message.contains("rollgate ticket request"), "{message}");
}

// === rollgate's own redeploy (DESIGN.md flow step 7) ===

fn mk_redeploy(jti: &str) -> GatedChange {
    let mut change = mk_restart();
    change.requester = crate::policy::Requester {
        username: crate::policy::DEFAULT_ROLLGATE_USERNAME.into(),
        groups: vec![],
    };
    change.redeploy = Some(crate::policy::Redeploy {
        grant_jti: jti.into(),
        operation_id: Some("op-1".into()),
    });
    change
}

#[test]
fn rollgates_redeploy_is_allowed_through_the_named_grant_and_attributed_to_its_user() {
    let keys = mk_keys();
    let grant = mk_grant(&keys.key, mk_spec());
    let change = mk_redeploy(&grant.jti);
    let decision = decide(
        &change,
        Ok(vec![grant.clone()]),
        &keys.verifier,
        FailureMode::Closed,
        NOW,
    );
    assert!(
        matches!(&decision, Decision::Allowed { user, jti, .. } if user == USER && *jti == grant.jti),
        "{decision:?}"
    );
}

#[test]
fn rollgates_redeploy_is_denied_without_its_grant_or_with_another() {
    let keys = mk_keys();
    let grant = mk_grant(&keys.key, mk_spec());
    let rows: [(&str, Vec<StoredGrant>, Decision); 3] = [
        (
            "grant revoked (not in the store)",
            vec![],
            Decision::Denied(DenyReason::NoGrant),
        ),
        (
            "store returned another grant",
            vec![StoredGrant {
                jti: "other".into(),
                ..grant.clone()
            }],
            Decision::Denied(DenyReason::Rejected(GrantRejection::NotTheNamedGrant)),
        ),
        (
            "grant for another application",
            vec![mk_grant(
                &keys.key,
                GrantSpec {
                    application: "ledger",
                    ..mk_spec()
                },
            )],
            Decision::Denied(DenyReason::Rejected(GrantRejection::WrongApplication(
                "ledger".into(),
            ))),
        ),
    ];
    for (row, grants, expected) in rows {
        // Every grant of mk_grant has the same jti, so the patch names all of them.
        let change = mk_redeploy(&grant.jti);
        let decision = decide(
            &change,
            Ok(grants),
            &keys.verifier,
            FailureMode::Closed,
            NOW,
        );
        assert_eq!(decision, expected, "row {row:?}");
    }
}

#[test]
fn the_first_grant_that_covers_the_change_allows_it() {
    let keys = mk_keys();
    let restart_only = mk_grant(
        &keys.key,
        GrantSpec {
            action: "restart",
            ..mk_spec()
        },
    );
    let image_only = mk_grant(
        &keys.key,
        GrantSpec {
            action: "image",
            ..mk_spec()
        },
    );
    let decision = decide(
        &mk_restart(),
        Ok(vec![image_only, restart_only]),
        &keys.verifier,
        FailureMode::Closed,
        NOW,
    );
    assert!(
        decision.allowed(),
        "a newer image-only grant must not hide a restart grant: {decision:?}"
    );
}

// === the wider gate (DESIGN.md change classes) ===

/// A Pod of checkout-api whose request `edit` shapes (both sides equal first).
fn mk_pod_change(edit: impl FnOnce(&mut Value)) -> GatedChange {
    mk_change(|r| {
        r["kind"] = json!({"group": "", "version": "v1", "kind": "Pod"});
        r["name"] = json!("checkout-api-7d4f8b9c-abc12");
        let pod = r["oldObject"]["spec"]["template"].clone();
        r["oldObject"] = pod.clone();
        r["object"] = pod;
        edit(r)
    })
}

fn mk_debug_change() -> GatedChange {
    mk_pod_change(|r| {
        r["subResource"] = json!("ephemeralcontainers");
        r["object"]["spec"]["ephemeralContainers"] =
            json!([{"name": "debugger", "image": "busybox:1.36"}]);
    })
}

/// checkout-api relabelled `web` in the same request as an image change.
fn mk_relabel_to_web() -> GatedChange {
    mk_change(|r| {
        no_restart(r);
        new_app_image(r);
        r["object"]["metadata"]["labels"]["app.kubernetes.io/name"] = json!("web");
    })
}

fn decide_with(keys: &Keys, change: &GatedChange, grants: Vec<StoredGrant>) -> Decision {
    decide(change, Ok(grants), &keys.verifier, FailureMode::Closed, NOW)
}

#[test]
fn each_change_class_asks_for_its_action_and_names_what_changed() {
    let rows = [
        (
            "restart with a new command",
            mk_change(|r| {
                r["object"]["spec"]["template"]["spec"]["containers"][0]["command"] = json!(["sh"]);
            }),
            "any",
            "may not change the pod template of Deployment production/checkout-api",
            "What changed: annotation kubectl.kubernetes.io/restartedAt, command of container app.",
        ),
        (
            "relabel",
            mk_relabel_to_web(),
            "any",
            "may not change the application labels of Deployment production/checkout-api (application checkout-api)",
            "What changed: label app.kubernetes.io/name (checkout-api → web), image of container app",
        ),
        (
            "pod image",
            mk_pod_change(new_app_image_of_pod),
            "image",
            "may not change the image of Pod production/checkout-api-7d4f8b9c-abc12 (application checkout-api)",
            "What changed: image of container app (",
        ),
        (
            "kubectl debug",
            mk_debug_change(),
            "debug",
            "may not add a debug container to Pod production/checkout-api-7d4f8b9c-abc12",
            "What changed: debug container debugger added (busybox:1.36).",
        ),
    ];
    let keys = mk_keys();
    for (row, change, action, verb, what) in rows {
        let decision = decide_with(&keys, &change, vec![]);
        assert_eq!(
            decision,
            Decision::Denied(DenyReason::NoGrant),
            "row {row:?}"
        );
        let message = decision.message(&change, API_URL);
        let command =
            format!("rollgate ticket request -n production checkout-api --action {action} ");
        for expected in [verb, what, command.as_str()] {
            assert!(
                message.contains(expected),
                "row {row:?}: lacks {expected:?}:\n{message}"
            );
        }
    }
}

fn new_app_image_of_pod(r: &mut Value) {
    r["object"]["spec"]["containers"][0]["image"] = json!("evil:1");
}

#[test]
fn only_the_grant_that_covers_the_class_admits_it() {
    let keys = mk_keys();
    let grant = |action: &'static str, application: &'static str| {
        mk_grant(
            &keys.key,
            GrantSpec {
                action,
                application,
                ..mk_spec()
            },
        )
    };
    let restart_with_command = mk_change(|r| {
        r["object"]["spec"]["template"]["spec"]["containers"][0]["command"] = json!(["sh"]);
    });
    let rows: [(&str, GatedChange, StoredGrant, bool); 9] = [
        (
            "restart grant, restart with a new command",
            restart_with_command.clone(),
            grant("restart", "checkout-api"),
            false,
        ),
        (
            "any grant, restart with a new command",
            restart_with_command,
            grant("any", "checkout-api"),
            true,
        ),
        (
            "image grant for web, payments relabelled web",
            mk_relabel_to_web(),
            grant("image", "web"),
            false,
        ),
        (
            "any grant for web, checkout-api relabelled web",
            mk_relabel_to_web(),
            grant("any", "web"),
            false,
        ),
        (
            "any grant for the old application",
            mk_relabel_to_web(),
            grant("any", "checkout-api"),
            true,
        ),
        (
            "restart grant, debug container",
            mk_debug_change(),
            grant("restart", "checkout-api"),
            false,
        ),
        (
            "debug grant, debug container",
            mk_debug_change(),
            grant("debug", "checkout-api"),
            true,
        ),
        (
            "debug grant, pod image change",
            mk_pod_change(new_app_image_of_pod),
            grant("debug", "checkout-api"),
            false,
        ),
        (
            "image grant, pod image change",
            mk_pod_change(new_app_image_of_pod),
            grant("image", "checkout-api"),
            true,
        ),
    ];
    for (row, change, grant, allowed) in rows {
        let decision = decide_with(&keys, &change, vec![grant]);
        assert_eq!(decision.allowed(), allowed, "row {row:?}: {decision:?}");
    }
}

#[test]
fn a_grant_pinned_to_images_never_admits_removing_a_container() {
    let keys = mk_keys();
    let grant = mk_grant_with(
        &keys.key,
        GrantSpec {
            action: "image",
            ..mk_spec()
        },
        |claims| {
            claims.images = vec!["registry.example.com/shop/checkout-api:v3.42.0".into()];
        },
    );
    let with_sidecar = |r: &mut Value| {
        for side in ["oldObject", "object"] {
            r[side]["spec"]["template"]["spec"]["containers"]
                .as_array_mut()
                .unwrap()
                .push(json!({"name": "auth-proxy", "image": "oauth2-proxy:v7"}));
        }
    };
    let pinned_image_only = mk_change(|r| {
        no_restart(r);
        with_sidecar(r);
        new_app_image(r);
    });
    assert!(decide_with(&keys, &pinned_image_only, vec![grant.clone()]).allowed());

    let drops_sidecar = mk_change(|r| {
        no_restart(r);
        with_sidecar(r);
        new_app_image(r);
        r["object"]["spec"]["template"]["spec"]["containers"]
            .as_array_mut()
            .unwrap()
            .retain(|c| c["name"] != "auth-proxy");
    });
    let decision = decide_with(&keys, &drops_sidecar, vec![grant]);
    assert_eq!(
        decision,
        Decision::Denied(DenyReason::Rejected(GrantRejection::RemovesContainer(
            "auth-proxy".into()
        )))
    );
    assert!(
        decision
            .message(&drops_sidecar, API_URL)
            .contains("may not remove container \"auth-proxy\""),
        "{}",
        decision.message(&drops_sidecar, API_URL)
    );
}
