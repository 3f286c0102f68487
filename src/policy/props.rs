//! Properties of [`classify`] and [`crate::admission::decide`] over generated
//! requests, built from the captured `kubectl rollout restart` review
//! (`tests/data/restart-review.json`): what `diff` ignores never gates, every
//! image difference in a protected namespace gates as IMAGE, JSON key order
//! never matters, and no AdmissionReview-shaped JSON makes the decision
//! panic. 64 cases per property unless `PROPTEST_CASES` says otherwise.

use std::collections::{BTreeMap, BTreeSet};

use kube::core::admission::AdmissionRequest;
use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::admission::{Decision, DenyReason, Unavailable, decide};
use crate::grants::GrantSettings;
use crate::grants::verify::GrantIssuer;
use crate::grants::{GrantVerifier, KeySet, SigningKey, StoredGrant};

const FIXTURE: &str = include_str!("../../tests/data/restart-review.json");
const NOW: i64 = 1_800_000_000;
/// Namespace the fixture's policy protects by name, and one protected by label.
const BY_NAME: &str = "production";
const BY_LABEL: &str = "payments";

fn config() -> ProptestConfig {
    if std::env::var_os("PROPTEST_CASES").is_some() {
        ProptestConfig::default()
    } else {
        ProptestConfig::with_cases(64)
    }
}

// === builders ===

fn mk_policy() -> Policy {
    Policy {
        protected_namespaces: BTreeSet::from([BY_NAME.to_owned()]),
        ..Policy::default()
    }
}

fn mk_labelled() -> BTreeSet<String> {
    BTreeSet::from([BY_LABEL.to_owned()])
}

/// The fixture's `request` with no restart: both pod templates equal.
fn mk_unchanged() -> Value {
    let mut review: Value = serde_json::from_str(FIXTURE).unwrap();
    let old = review["request"]["oldObject"]["spec"]["template"].clone();
    review["request"]["object"]["spec"]["template"] = old;
    review
}

fn parse(review: &Value) -> AdmissionRequest<Workload> {
    parse_text(&review.to_string()).expect("the edited fixture parses")
}

fn parse_text(text: &str) -> Option<AdmissionRequest<Workload>> {
    crate::admission::parse_review(text.as_bytes()).ok()
}

fn set_namespace(review: &mut Value, ns: &str) {
    review["request"]["namespace"] = json!(ns);
    for side in ["object", "oldObject"] {
        review["request"][side]["metadata"]["namespace"] = json!(ns);
    }
}

fn set_kind(review: &mut Value, kind: WorkloadKind) {
    let gvk = json!({"group": kind.group(), "version": "v1", "kind": kind.as_str()});
    review["request"]["kind"] = gvk.clone();
    review["request"]["requestKind"] = gvk;
    for side in ["object", "oldObject"] {
        review["request"][side]["kind"] = json!(kind.as_str());
    }
}

fn mk_key() -> SigningKey {
    SigningKey::from_pem(crate::grants::keys::generate_pem().unwrap().as_bytes()).unwrap()
}

// === strategies ===

fn label_value() -> impl Strategy<Value = String> {
    "[a-z0-9]([-a-z0-9.]{0,10}[a-z0-9])?"
}

/// The kinds whose pod template is `spec.template`.
fn kind() -> impl Strategy<Value = WorkloadKind> {
    prop::sample::select(vec![
        WorkloadKind::Deployment,
        WorkloadKind::StatefulSet,
        WorkloadKind::DaemonSet,
        WorkloadKind::ReplicaSet,
    ])
}

fn protected_namespace() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![BY_NAME, BY_LABEL])
}

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
        prop::sample::select(vec![
            "",
            "apps",
            "v1",
            "Deployment",
            "UPDATE",
            "production",
            "app",
            "restartedAt",
        ])
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Edits of the new object that `diff` ignores: everything outside the pod
/// template (workload metadata, status, replicas and other spec fields) and
/// the request's own fields.
#[derive(Debug, Clone)]
struct OutsideEdits {
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    generation: i64,
    resource_version: String,
    replicas: i32,
    min_ready_seconds: i32,
    paused: bool,
    status: Value,
    uid: String,
    dry_run: bool,
}

fn outside_edits() -> impl Strategy<Value = OutsideEdits> {
    (
        prop::collection::btree_map("[a-z]{1,8}", label_value(), 0..4),
        prop::collection::btree_map("[a-z./]{1,12}", ".{0,16}", 0..4),
        any::<i64>(),
        "[0-9]{1,9}",
        0..1000i32,
        0..600i32,
        any::<bool>(),
        any_json(),
        "[a-f0-9-]{1,36}",
        any::<bool>(),
    )
        .prop_map(
            |(
                labels,
                annotations,
                generation,
                resource_version,
                replicas,
                min_ready_seconds,
                paused,
                status,
                uid,
                dry_run,
            )| OutsideEdits {
                labels,
                annotations,
                generation,
                resource_version,
                replicas,
                min_ready_seconds,
                paused,
                status,
                uid,
                dry_run,
            },
        )
}

fn apply_outside(review: &mut Value, e: &OutsideEdits) {
    let req = &mut review["request"];
    let new = &mut req["object"];
    let labels = new["metadata"]["labels"].as_object_mut().unwrap();
    for (k, v) in &e.labels {
        labels.insert(format!("x-{k}"), json!(v));
    }
    let annotations = &mut new["metadata"]["annotations"];
    if !annotations.is_object() {
        *annotations = json!({});
    }
    for (k, v) in &e.annotations {
        annotations[k.as_str()] = json!(v);
    }
    new["metadata"]["generation"] = json!(e.generation);
    new["metadata"]["resourceVersion"] = json!(e.resource_version);
    new["spec"]["replicas"] = json!(e.replicas);
    new["spec"]["minReadySeconds"] = json!(e.min_ready_seconds);
    new["spec"]["paused"] = json!(e.paused);
    new["status"] = e.status.clone();
    req["uid"] = json!(e.uid);
    req["dryRun"] = json!(e.dry_run);
}

/// Edits inside the pod template that are neither a restart nor an image
/// change: gated only under `gateAnyTemplateChange`.
#[derive(Debug, Clone)]
struct TemplateEdits {
    annotations: BTreeMap<String, String>,
    labels: BTreeMap<String, String>,
    env: Vec<(String, String)>,
    args: Vec<String>,
    grace: i64,
}

fn template_edits() -> impl Strategy<Value = TemplateEdits> {
    (
        prop::collection::btree_map("[a-z./]{1,12}", ".{0,16}", 0..4),
        prop::collection::btree_map("[a-z]{1,8}", label_value(), 0..3),
        prop::collection::vec(("[A-Z_]{1,8}", ".{0,16}"), 0..4),
        prop::collection::vec(".{0,12}", 0..3),
        0..3600i64,
    )
        .prop_map(|(annotations, labels, env, args, grace)| TemplateEdits {
            annotations,
            labels,
            env,
            args,
            grace,
        })
}

fn apply_template(review: &mut Value, e: &TemplateEdits) {
    let tpl = &mut review["request"]["object"]["spec"]["template"];
    for (k, v) in &e.annotations {
        if k != RESTARTED_AT {
            tpl["metadata"]["annotations"][k.as_str()] = json!(v);
        }
    }
    for (k, v) in &e.labels {
        tpl["metadata"]["labels"][format!("x-{k}")] = json!(v);
    }
    let container = &mut tpl["spec"]["containers"][0];
    if !container["env"].is_array() {
        container["env"] = json!([]);
    }
    let env = container["env"].as_array_mut().unwrap();
    for (name, value) in &e.env {
        env.push(json!({"name": name, "value": value}));
    }
    container["args"] = json!(e.args);
    tpl["spec"]["terminationGracePeriodSeconds"] = json!(e.grace);
}

/// One container name on both sides: its image before and after, `None`
/// when the container is absent on that side.
type Sides = (Option<String>, Option<String>);

fn image() -> impl Strategy<Value = String> {
    "[a-z]{1,6}(/[a-z]{1,6})?:v[0-9]{1,2}(\\.[0-9])?"
}

fn container_sides() -> impl Strategy<Value = BTreeMap<String, Sides>> {
    prop::collection::btree_map(
        "[a-z]{1,5}",
        (prop::option::of(image()), prop::option::of(image())),
        0..4,
    )
}

fn containers_json(sides: &BTreeMap<String, Sides>, new: bool, reversed: bool) -> Value {
    let mut list: Vec<Value> = sides
        .iter()
        .filter_map(|(name, (old, new_image))| {
            let image = if new { new_image } else { old };
            image.as_ref().map(|i| json!({"name": name, "image": i}))
        })
        .collect();
    if reversed {
        list.reverse();
    }
    Value::Array(list)
}

/// The names whose image differs, as `diff` must report them.
fn differing(sides: &BTreeMap<String, Sides>) -> BTreeSet<String> {
    sides
        .iter()
        .filter(|(_, (old, new))| old != new)
        .map(|(name, _)| name.clone())
        .collect()
}

/// Writes `value` as JSON text with every object's keys in an order chosen
/// by `seed` and the object's path, so the two objects of a review (and
/// every nested map) get different orders.
fn write_shuffled(value: &Value, seed: u64, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by_key(|k| {
                k.bytes().fold(seed, |h, b| {
                    (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
                })
            });
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::from(k.as_str()).to_string());
                out.push(':');
                let child_seed = seed.rotate_left(7) ^ (i as u64 + 1).wrapping_mul(0x9e37_79b9);
                write_shuffled(&map[k], child_seed, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_shuffled(item, seed.wrapping_add(i as u64 + 1), out);
            }
            out.push(']');
        }
        leaf => out.push_str(&leaf.to_string()),
    }
}

/// Everything a user sees of a decision, for comparing two of them.
fn decide_all(
    req: &AdmissionRequest<Workload>,
    verifier: &GrantVerifier,
    grants: &[StoredGrant],
) -> (Gate, Option<Decision>, Option<String>) {
    let gate = classify(req, &mk_policy(), &mk_labelled());
    let (decision, message) = match &gate {
        Gate::Gated(change) => {
            let d = decide(
                change,
                Ok(grants.to_vec()),
                verifier,
                FailureMode::Closed,
                NOW,
            );
            let m = d.message(change, "https://rollgate.example.com");
            (Some(d), Some(m))
        }
        _ => (None, None),
    };
    (gate, decision, message)
}

/// A valid grant for the fixture's requester and application.
fn mk_grant(key: &SigningKey, user: &str, ns: &str) -> StoredGrant {
    let issuer = GrantIssuer::new(key.clone(), &GrantSettings::default());
    let claims = issuer.claims(
        user,
        ns,
        "checkout-api",
        "1",
        "RG-000001",
        "any",
        "0123456789abcdef".into(),
        NOW - 60,
    );
    StoredGrant::from_claims(&claims, issuer.sign(&claims).unwrap())
}

// === properties ===

proptest! {
    #![proptest_config(config())]

    /// A workload or request change outside the pod template never gates,
    /// even under `gateAnyTemplateChange`; a template change that is
    /// neither a restart nor an image change gates only under it.
    #[test]
    fn changes_diff_ignores_are_never_gated(
        outside in outside_edits(),
        inside in prop::option::of(template_edits()),
        ns in protected_namespace(),
        kind in kind(),
    ) {
        let mut review = mk_unchanged();
        set_namespace(&mut review, ns);
        set_kind(&mut review, kind);
        apply_outside(&mut review, &outside);
        if let Some(inside) = &inside {
            apply_template(&mut review, inside);
        }
        let req = parse(&review);
        let narrow = Policy { gate_any_template_change: false, ..mk_policy() };
        let gate = classify(&req, &narrow, &mk_labelled());
        prop_assert_eq!(gate, Gate::Ungated(UngatedReason::NoGatedChange));

        let any_change = mk_policy();
        let gate = classify(&req, &any_change, &mk_labelled());
        let template_moved = inside.is_some();
        match gate {
            Gate::Gated(change) => {
                prop_assert!(template_moved, "gated with only outside edits: {:?}", change.diff);
                prop_assert_eq!(change.class, ChangeKind::Template);
            }
            other => {
                prop_assert!(
                    !template_moved || request_template_equal(&review),
                    "template edits not gated under gateAnyTemplateChange: {:?}", other
                );
                prop_assert_eq!(other, Gate::Ungated(UngatedReason::NoGatedChange));
            }
        }
    }

    /// Any image difference, in `containers` or `initContainers` (a
    /// container added or removed included), in a namespace protected by
    /// name or by label, gates as IMAGE and names exactly those containers.
    #[test]
    fn any_image_difference_in_a_protected_namespace_is_gated_as_image(
        containers in container_sides(),
        init in container_sides(),
        ns in protected_namespace(),
        kind in kind(),
        reversed in any::<bool>(),
        user in "[a-z]{1,8}(@example\\.com)?",
    ) {
        let (want, want_init) = (differing(&containers), differing(&init));
        prop_assume!(!want.is_empty() || !want_init.is_empty());
        let mut review = mk_unchanged();
        set_namespace(&mut review, ns);
        set_kind(&mut review, kind);
        review["request"]["userInfo"]["username"] = json!(user);
        for (side, new) in [("oldObject", false), ("object", true)] {
            let spec = &mut review["request"][side]["spec"]["template"]["spec"];
            spec["containers"] = containers_json(&containers, new, reversed && new);
            spec["initContainers"] = containers_json(&init, new, reversed && !new);
        }
        let req = parse(&review);
        // Reordered containers are a TEMPLATE change of their own (see the
        // unit tests); here only the images are weighed.
        let images_only = Policy { gate_any_template_change: false, ..mk_policy() };
        let Gate::Gated(change) = classify(&req, &images_only, &mk_labelled()) else {
            return Err(TestCaseError::fail(format!(
                "not gated: {:?}", classify(&req, &images_only, &mk_labelled())
            )));
        };
        prop_assert_eq!(change.class, ChangeKind::Image);
        prop_assert_eq!(change.kind, kind);
        prop_assert_eq!(change.namespace.as_str(), ns);
        let named = |init: bool| -> BTreeSet<String> {
            change.diff.images.iter()
                .filter(|i| i.init == init)
                .map(|i| i.container.clone())
                .collect()
        };
        prop_assert_eq!(named(false), want);
        prop_assert_eq!(named(true), want_init);
        for i in &change.diff.images {
            let sides = if i.init { &init } else { &containers };
            let (old, new) = &sides[&i.container];
            prop_assert_eq!(&i.previous_image, old);
            prop_assert_eq!(&i.current_image, new);
        }
    }

    /// Writing the review's objects with their keys in any order (each
    /// object, and the old and new object, in different orders) changes
    /// neither the classification nor the decision nor its message.
    #[test]
    fn the_decision_never_depends_on_json_key_order(
        restart in any::<bool>(),
        new_image in prop::option::of(image()),
        outside in outside_edits(),
        inside in prop::option::of(template_edits()),
        ns in prop::sample::select(vec![BY_NAME, BY_LABEL, "staging"]),
        seed in any::<u64>(),
    ) {
        let mut review = mk_unchanged();
        if restart {
            review["request"]["object"]["spec"]["template"]["metadata"]["annotations"]
                [RESTARTED_AT] = json!("2026-03-02T10:15:04Z");
        }
        if let Some(image) = &new_image {
            review["request"]["object"]["spec"]["template"]["spec"]["containers"][0]["image"] =
                json!(image);
        }
        apply_outside(&mut review, &outside);
        if let Some(inside) = &inside {
            apply_template(&mut review, inside);
        }
        set_namespace(&mut review, ns);

        let key = mk_key();
        let verifier = GrantVerifier::new(KeySet::new(&key), &GrantSettings::default());
        let grants = [mk_grant(&key, "alice@example.com", ns)];

        let mut shuffled = String::new();
        write_shuffled(&review, seed, &mut shuffled);
        prop_assert_ne!(&shuffled, &review.to_string(), "the keys were not reordered");
        let sorted = parse(&review);
        let reordered = parse_text(&shuffled).expect("the reordered review parses");
        prop_assert_eq!(
            decide_all(&reordered, &verifier, &grants),
            decide_all(&sorted, &verifier, &grants)
        );
    }

    /// AdmissionReview-shaped JSON with arbitrary values anywhere never
    /// makes classification or the decision panic, and every gated change
    /// gets a verdict that follows the grant lookup.
    #[test]
    fn decide_never_panics_on_arbitrary_review_json(
        edits in prop::collection::vec((prop::sample::select(EDIT_PATHS.to_vec()), any_json()), 1..6),
    ) {
        let mut review: Value = serde_json::from_str(FIXTURE).unwrap();
        for (path, value) in &edits {
            set_path(&mut review, path, value.clone());
        }
        let Some(req) = parse_text(&review.to_string()) else { return Ok(()) };
        let change = match classify(&req, &mk_policy(), &mk_labelled()) {
            Gate::Gated(change) | Gate::Exempt(change) => change,
            Gate::Ungated(_) => return Ok(()),
        };
        let key = mk_key();
        let verifier = GrantVerifier::new(KeySet::new(&key), &GrantSettings::default());
        let garbage = StoredGrant { token: "not.a.jwt".into(), ..mk_grant(&key, "alice@example.com", BY_NAME) };
        let api = "https://rollgate.example.com";

        let none = decide(&change, Ok(Vec::new()), &verifier, FailureMode::Closed, NOW);
        prop_assert_eq!(&none, &Decision::Denied(DenyReason::NoGrant));
        let message = none.message(&change, api);
        prop_assert!(message.contains(&format!("namespace {} is protected", change.namespace)), "{}", message);
        prop_assert!(
            message.contains(&format!("rollgate ticket request -n {} {}", change.namespace, change.application))
                || message.contains("is not a DNS-1123 label"),
            "{}", message
        );

        let down = Unavailable { what: "grant store", detail: "no answer within 2s".into() };
        let closed = decide(&change, Err(down.clone()), &verifier, FailureMode::Closed, NOW);
        prop_assert_eq!(&closed, &Decision::Denied(DenyReason::Unavailable(down.clone())));
        let _ = closed.message(&change, api);
        let open = decide(&change, Err(down.clone()), &verifier, FailureMode::Open, NOW);
        prop_assert!(open.warning().is_some_and(|w| w.contains("unavailable")));

        let bad = decide(&change, Ok(vec![garbage]), &verifier, FailureMode::Closed, NOW);
        prop_assert!(matches!(bad, Decision::Denied(DenyReason::Rejected(_))), "{:?}", bad);
        let _ = (bad.message(&change, api), bad.audit_reason());

        let grant = mk_grant(&key, &change.requester.username, &change.namespace);
        let with_grant = decide(&change, Ok(vec![grant]), &verifier, FailureMode::Closed, NOW);
        let fits = change.redeploy.is_none() && change.application == "checkout-api";
        prop_assert_eq!(with_grant.allowed(), fits, "{:?} for {:?}", with_grant, change);
        let _ = (with_grant.warning(), with_grant.audit_reason(), with_grant.message(&change, api));
    }
}

/// Whether the edits left the two templates equal (e.g. they set what was
/// already there), in which case nothing can be gated.
fn request_template_equal(review: &Value) -> bool {
    let req = &review["request"];
    req["object"]["spec"]["template"] == req["oldObject"]["spec"]["template"]
}

/// Where [`decide_never_panics_on_arbitrary_review_json`] puts arbitrary values.
const EDIT_PATHS: [&str; 22] = [
    "request.kind.group",
    "request.kind.kind",
    "request.name",
    "request.namespace",
    "request.operation",
    "request.subResource",
    "request.dryRun",
    "request.userInfo.username",
    "request.userInfo.groups",
    "request.object.metadata.name",
    "request.object.metadata.labels",
    "request.object.metadata.labels.app",
    "request.object.spec",
    "request.object.spec.template",
    "request.object.spec.template.metadata.annotations",
    "request.object.spec.template.metadata.annotations.kubectl.kubernetes.io/restartedAt",
    "request.object.spec.template.spec.containers",
    "request.object.spec.template.spec.containers.0.image",
    "request.object.spec.template.spec.containers.0.name",
    "request.object.spec.template.spec.initContainers",
    "request.oldObject.spec.template.spec.containers.0",
    "request.oldObject.spec.template",
];

/// Sets `value` at a dotted path (a numeric segment indexes an array; the
/// restartedAt annotation key keeps its dots), creating objects on the way.
fn set_path(root: &mut Value, path: &str, value: Value) {
    let (path, last) = match path.split_once(".kubectl.kubernetes.io/") {
        Some((head, tail)) => (head, Some(format!("kubectl.kubernetes.io/{tail}"))),
        None => (path, None),
    };
    let mut segments: Vec<String> = path.split('.').map(str::to_owned).collect();
    segments.extend(last);
    let mut at = root;
    for segment in &segments {
        let index = segment
            .parse::<usize>()
            .ok()
            .filter(|&i| at.as_array().is_some_and(|items| i < items.len()));
        at = match index {
            Some(i) => &mut at[i],
            None => {
                if !at.is_object() {
                    *at = json!({});
                }
                &mut at[segment.as_str()]
            }
        };
    }
    *at = value;
}
