#![allow(clippy::unwrap_used)]
//! Criterion benches of the webhook's pure steps, on the team's fixture
//! (`tests/data/restart-review.json`, a 7 KB `kubectl rollout restart`):
//!
//! - `first_pass`: the borrowing parse and screen that answer an ungated
//!   review (the same body in namespace `staging`);
//! - `classify`: the full parse plus classification of the gated review;
//! - `decide`: the decision on a classified change with one stored grant
//!   (its signature and claims verified), and with none;
//! - `grant`: EdDSA grant verification alone, valid and forged.
//!
//! `cargo bench --bench decision`; under `cargo test` each runs once.

use criterion::{Criterion, criterion_group, criterion_main};
use kube::core::admission::AdmissionRequest;
use rollgate::admission::head::ReviewHead;
use rollgate::grants::GrantSettings;
use rollgate::grants::verify::GrantIssuer;
use rollgate::grants::{GrantVerifier, KeySet, SigningKey, StoredGrant};
use rollgate::policy::{self, Gate, Policy, Workload};
use std::collections::BTreeSet;
use std::hint::black_box;

const GATED: &str = include_str!("../tests/data/restart-review.json");
const UNGATED: &str = include_str!("../tests/data/staging-restart-review.json");

struct Fixture {
    policy: Policy,
    labelled: BTreeSet<String>,
    verifier: GrantVerifier,
    grant: StoredGrant,
    forged: String,
    now: i64,
}

fn fixture() -> Fixture {
    let mut policy = Policy::default();
    policy.protected_namespaces.insert("production".into());
    let settings = GrantSettings::default();
    let key =
        SigningKey::from_pem(rollgate::grants::keys::generate_pem().unwrap().as_bytes()).unwrap();
    let other =
        SigningKey::from_pem(rollgate::grants::keys::generate_pem().unwrap().as_bytes()).unwrap();
    let now = jiff::Timestamp::now().as_second();
    let claims = GrantIssuer::new(key.clone(), &settings).claims(
        "alice@example.com",
        "production",
        "checkout-api",
        "1",
        "RG-000001",
        "any",
        "j".into(),
        now,
    );
    let token = GrantIssuer::new(key.clone(), &settings)
        .sign(&claims)
        .unwrap();
    let forged = GrantIssuer::new(other, &settings).sign(&claims).unwrap();
    Fixture {
        policy,
        labelled: BTreeSet::new(),
        verifier: GrantVerifier::new(KeySet::new(&key), &settings),
        grant: StoredGrant::from_claims(&claims, token),
        forged,
        now,
    }
}

fn full_parse(body: &str) -> AdmissionRequest<Workload> {
    rollgate::admission::parse_review(body.as_bytes()).unwrap()
}

fn benches(c: &mut Criterion) {
    let f = fixture();

    c.bench_function("first_pass/ungated: borrowing parse + screen", |b| {
        b.iter(|| {
            let head = ReviewHead::parse(black_box(UNGATED.as_bytes())).unwrap();
            assert!(head.ungated(&f.policy, &f.labelled).is_some());
            head.allow()
        })
    });
    c.bench_function("classify/gated: full parse + classify", |b| {
        b.iter(|| {
            let req = full_parse(black_box(GATED));
            match policy::classify(&req, &f.policy, &f.labelled) {
                Gate::Gated(change) => change,
                other => panic!("the fixture is gated: {other:?}"),
            }
        })
    });
    let Gate::Gated(change) = policy::classify(&full_parse(GATED), &f.policy, &f.labelled) else {
        panic!("the fixture is gated")
    };
    c.bench_function("decide/with a valid grant (verified)", |b| {
        b.iter(|| {
            let decision = rollgate::admission::decide(
                &change,
                Ok(vec![f.grant.clone()]),
                &f.verifier,
                f.policy.failure_mode,
                f.now,
            );
            assert!(decision.allowed());
            decision
        })
    });
    c.bench_function("decide/without a grant (denial message)", |b| {
        b.iter(|| {
            let decision = rollgate::admission::decide(
                &change,
                Ok(Vec::new()),
                &f.verifier,
                f.policy.failure_mode,
                f.now,
            );
            decision.message(&change, "https://rollgate.example")
        })
    });
    c.bench_function("grant/verify a valid grant", |b| {
        b.iter(|| {
            f.verifier
                .verify_token(black_box(&f.grant.token), f.now)
                .unwrap()
        })
    });
    c.bench_function("grant/reject a forged grant", |b| {
        b.iter(|| {
            f.verifier
                .verify_token(black_box(&f.forged), f.now)
                .unwrap_err()
        })
    });
}

criterion_group!(decision, benches);
criterion_main!(decision);
