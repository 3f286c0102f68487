//! The webhook's whole pure path on arbitrary bytes, as `POST /validate`
//! runs it: parse the AdmissionReview, classify, decide against a grant
//! lookup, build and serialise the response. Never a panic.
#![no_main]

use std::collections::BTreeSet;
use std::sync::LazyLock;

use kube::core::admission::AdmissionResponse;
use libfuzzer_sys::fuzz_target;
use rollgate::admission::{Decision, Unavailable, decide};
use rollgate::grants::verify::GrantIssuer;
use rollgate::grants::{GrantVerifier, StoredGrant};
use rollgate::policy::{self, Gate, Policy};
use rollgate_fuzz::{NOW, grant_verifier, signing_key};

struct World {
    policy: Policy,
    labelled: BTreeSet<String>,
    verifier: GrantVerifier,
    grants: Vec<StoredGrant>,
}

static WORLD: LazyLock<World> = LazyLock::new(|| {
    let settings = rollgate::config::GrantSettings::default();
    let issuer = GrantIssuer::new(signing_key(), &settings);
    let claims = issuer.claims(
        "alice@example.com",
        "production",
        "checkout-api",
        "1",
        "RG-000001",
        "any",
        "0123456789abcdef0123456789abcdef".into(),
        NOW - 60,
    );
    let token = issuer.sign(&claims).expect("the fuzz key signs");
    let stored = |token: String| StoredGrant::from_claims(&claims, token);
    World {
        policy: Policy {
            protected_namespaces: BTreeSet::from(["production".to_owned()]),
            exempt_groups: BTreeSet::from(["oidc:gitops".to_owned()]),
            ..Policy::default()
        },
        labelled: BTreeSet::from(["payments".to_owned()]),
        verifier: grant_verifier(),
        grants: vec![stored("not.a.jwt".into()), stored(token)],
    }
});

fuzz_target!(|data: &[u8]| {
    let world = &*WORLD;
    let req = match rollgate::admission::parse_review(data) {
        Ok(req) => req,
        Err(reason) => {
            let _ = serde_json::to_vec(&AdmissionResponse::invalid(reason).into_review());
            return;
        }
    };
    let base = AdmissionResponse::from(&req);
    let (change, decision) = match policy::classify(&req, &world.policy, &world.labelled) {
        Gate::Ungated(_) => {
            let _ = serde_json::to_vec(&base.into_review());
            return;
        }
        Gate::Exempt(change) => (change, Decision::Exempt),
        Gate::Gated(change) => {
            // The store's answer varies with the input, so every branch is reached.
            let lookup = match data.len() % 3 {
                0 => Err(Unavailable {
                    what: "grant store",
                    detail: "no answer within 2s".into(),
                }),
                1 => Ok(Vec::new()),
                _ => Ok(world.grants.clone()),
            };
            let mode = world.policy.failure_mode_for(&change.namespace);
            let decision = decide(&change, lookup, &world.verifier, mode, NOW);
            (change, decision)
        }
    };
    let _ = (decision.audit_reason(), decision.metric_label(), decision.grant_jti());
    let response = if decision.allowed() {
        let mut response = base;
        response.warnings = decision.warning().map(|w| vec![w]);
        response
    } else {
        base.deny(decision.message(&change, "https://rollgate.example.com"))
    };
    let _ = serde_json::to_vec(&response.into_review());
});
