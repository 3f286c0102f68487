use serde_json::{Value, json};

use super::*;

const RESTARTED: &str = "2026-11-23T10:00:00Z";

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).unwrap()
}

fn op(kind: WorkloadKind) -> Operation {
    Operation {
        id: "op-1".into(),
        kind,
        namespace: "production".into(),
        name: "web".into(),
        started_at: at(0),
        restarted_at: Some(RESTARTED.into()),
        images: Vec::new(),
    }
}

fn from<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).unwrap()
}

fn template(restarted_at: &str, image: &str) -> Value {
    json!({
        "metadata": {"labels": {"app": "web"},
                     "annotations": {"kubectl.kubernetes.io/restartedAt": restarted_at}},
        "spec": {"containers": [{"name": "web", "image": image}]}
    })
}

/// A Deployment at generation 2 with `status` merged in.
fn deployment(restarted_at: &str, status: Value) -> Workload {
    let mut d = json!({
        "metadata": {"name": "web", "namespace": "production", "uid": "d-1", "generation": 2},
        "spec": {"replicas": 3, "progressDeadlineSeconds": 120,
                 "selector": {"matchLabels": {"app": "web"}},
                 "strategy": {"type": "RollingUpdate"},
                 "template": template(restarted_at, "web:1")},
        "status": {"observedGeneration": 2}
    });
    merge(&mut d["status"], status);
    Workload::Deployment(from(d))
}

fn merge(target: &mut Value, extra: Value) {
    if let (Value::Object(t), Value::Object(e)) = (target, extra) {
        t.extend(e);
    }
}

/// A ReplicaSet of the Deployment; the newest one (`revision` 2) carries
/// the restart in its template.
fn replica_set(name: &str, hash: &str, revision: u32) -> (String, ReplicaSet) {
    let restarted = if revision >= 2 {
        RESTARTED
    } else {
        "2026-01-01T00:00:00Z"
    };
    let rs = json!({
        "metadata": {
            "name": name, "namespace": "production",
            "labels": {"app": "web", "pod-template-hash": hash},
            "annotations": {"deployment.kubernetes.io/revision": revision.to_string()},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "d-1"}]
        },
        "spec": {"selector": {"matchLabels": {"app": "web", "pod-template-hash": hash}},
                 "template": template(restarted, "web:1")}
    });
    (name.to_owned(), from(rs))
}

fn pod(name: &str, label: &str, hash: &str, status: Value) -> (String, Pod) {
    let p = json!({"metadata": {"name": name, "namespace": "production",
                                "labels": {"app": "web", label: hash}},
                   "status": status});
    (name.to_owned(), from(p))
}

fn running() -> Value {
    json!({"phase": "Running"})
}

fn deployment_snapshot(status: Value, pods: Vec<(String, Pod)>) -> Snapshot {
    Snapshot {
        workload: Some(deployment(RESTARTED, status)),
        replica_sets: [
            replica_set("web-old", "old", 1),
            replica_set("web-new", "new", 2),
        ]
        .into(),
        revisions: BTreeMap::new(),
        pods: pods.into_iter().collect(),
    }
}

#[test]
fn a_deployment_restart_progresses_then_completes_with_its_new_replica_set_and_pods() {
    let op = op(WorkloadKind::Deployment);
    let halfway = deployment_snapshot(
        json!({"replicas": 4, "updatedReplicas": 1, "availableReplicas": 3}),
        vec![
            pod("web-old-a", "pod-template-hash", "old", running()),
            pod("web-old-b", "pod-template-hash", "old", running()),
            pod("web-old-c", "pod-template-hash", "old", running()),
            pod("web-new-a", "pod-template-hash", "new", running()),
        ],
    );
    let a = assess(&op, &halfway, at(20), &Limits::default());
    assert_eq!(a.status, RolloutStatus::Progressing);
    assert!(a.applied);
    assert_eq!(a.revision.as_deref(), Some("web-new"));
    assert_eq!(a.new_pods, ["web-new-a"]);
    assert_eq!(a.old_pods, ["web-old-a", "web-old-b", "web-old-c"]);

    let done = deployment_snapshot(
        json!({"replicas": 3, "updatedReplicas": 3, "availableReplicas": 3}),
        vec![
            pod("web-new-a", "pod-template-hash", "new", running()),
            pod("web-new-b", "pod-template-hash", "new", running()),
            pod("web-new-c", "pod-template-hash", "new", running()),
        ],
    );
    let a = assess(&op, &done, at(60), &Limits::default());
    assert_eq!(a.status, RolloutStatus::Completed, "{a:?}");
    assert_eq!(a.new_pods, ["web-new-a", "web-new-b", "web-new-c"]);
    assert_eq!(
        (a.replicas, a.strategy.as_deref()),
        (Some(3), Some("RollingUpdate"))
    );
    assert_eq!(a.error, None);
    assert_eq!(a.image.as_deref(), Some("web:1"));
}

#[test]
fn a_complete_status_waits_for_the_pod_watch_to_catch_up() {
    let op = op(WorkloadKind::Deployment);
    let status = json!({"replicas": 3, "updatedReplicas": 3, "availableReplicas": 3});
    let mut terminating = pod("web-old-a", "pod-template-hash", "old", running());
    terminating.1.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at(1)));
    let behind = deployment_snapshot(
        status.clone(),
        vec![
            pod("web-new-a", "pod-template-hash", "new", running()),
            pod("web-old-b", "pod-template-hash", "old", running()),
        ],
    );
    assert_eq!(
        assess(&op, &behind, at(30), &Limits::default()).status,
        RolloutStatus::Progressing
    );
    let caught_up = deployment_snapshot(
        status,
        vec![
            pod("web-new-a", "pod-template-hash", "new", running()),
            pod("web-new-b", "pod-template-hash", "new", running()),
            pod("web-new-c", "pod-template-hash", "new", running()),
            terminating,
        ],
    );
    let a = assess(&op, &caught_up, at(30), &Limits::default());
    assert_eq!(a.status, RolloutStatus::Completed);
    assert_eq!(a.terminating_pods, ["web-old-a"]);
    assert_eq!(a.old_pods, Vec::<String>::new());
}

#[test]
fn old_pods_still_terminating_keep_a_deployment_progressing() {
    let snapshot = deployment_snapshot(
        json!({"replicas": 4, "updatedReplicas": 3, "availableReplicas": 3}),
        vec![pod("web-new-a", "pod-template-hash", "new", running())],
    );
    let a = assess(
        &op(WorkloadKind::Deployment),
        &snapshot,
        at(30),
        &Limits::default(),
    );
    assert_eq!(a.status, RolloutStatus::Progressing);
}

#[test]
fn a_replica_set_made_before_the_change_is_never_taken_for_the_new_one() {
    // The ReplicaSet watch is behind: only the old ReplicaSet is seen, while
    // the status and the (old) pods already look complete.
    let mut snapshot = deployment_snapshot(
        json!({"replicas": 3, "updatedReplicas": 3, "availableReplicas": 3}),
        vec![
            pod("web-old-a", "pod-template-hash", "old", running()),
            pod("web-old-b", "pod-template-hash", "old", running()),
            pod("web-old-c", "pod-template-hash", "old", running()),
        ],
    );
    snapshot.replica_sets.remove("web-new");
    let a = assess(
        &op(WorkloadKind::Deployment),
        &snapshot,
        at(30),
        &Limits::default(),
    );
    assert_eq!(a.status, RolloutStatus::Progressing);
    assert_eq!(a.revision, None);
}

#[test]
fn an_unobserved_generation_is_not_complete_yet() {
    let snapshot = deployment_snapshot(
        json!({"observedGeneration": 1, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3}),
        vec![],
    );
    let a = assess(
        &op(WorkloadKind::Deployment),
        &snapshot,
        at(5),
        &Limits::default(),
    );
    assert_eq!(a.status, RolloutStatus::Progressing);
    assert_eq!(
        a.revision, None,
        "the new ReplicaSet is not known before the controller acts"
    );
}

#[test]
fn progress_deadline_exceeded_fails_the_rollout_with_the_controllers_message() {
    let snapshot = deployment_snapshot(
        json!({"replicas": 4, "updatedReplicas": 1, "availableReplicas": 3,
               "conditions": [{"type": "Progressing", "status": "False",
                               "reason": "ProgressDeadlineExceeded",
                               "message": "ReplicaSet \"web-new\" has timed out progressing."}]}),
        vec![],
    );
    let a = assess(
        &op(WorkloadKind::Deployment),
        &snapshot,
        at(50),
        &Limits::default(),
    );
    assert_eq!(a.status, RolloutStatus::Failed);
    assert_eq!(
        a.error.as_deref(),
        Some("ProgressDeadlineExceeded: ReplicaSet \"web-new\" has timed out progressing.")
    );
}

#[test]
fn a_crash_looping_new_pod_fails_the_rollout_but_an_old_one_does_not() {
    let crash = json!({"phase": "Running", "containerStatuses": [{
        "name": "web", "image": "web:1", "imageID": "", "ready": false, "restartCount": 4,
        "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s restarting failed container"}}}]});
    let op = op(WorkloadKind::Deployment);
    let old_crashing = deployment_snapshot(
        json!({"replicas": 4, "updatedReplicas": 1}),
        vec![pod("web-old-a", "pod-template-hash", "old", crash.clone())],
    );
    let a = assess(&op, &old_crashing, at(10), &Limits::default());
    assert_eq!(a.status, RolloutStatus::Progressing);

    let new_crashing = deployment_snapshot(
        json!({"replicas": 4, "updatedReplicas": 1}),
        vec![pod("web-new-a", "pod-template-hash", "new", crash)],
    );
    let a = assess(&op, &new_crashing, at(10), &Limits::default());
    assert_eq!(a.status, RolloutStatus::Failed);
    assert_eq!(
        a.error.as_deref(),
        Some(
            "pod web-new-a: container web: CrashLoopBackOff: back-off 40s restarting failed container"
        )
    );
}

#[test]
fn the_workloads_progress_deadline_times_the_rollout_out() {
    let snapshot = deployment_snapshot(json!({"replicas": 4, "updatedReplicas": 1}), vec![]);
    let op = op(WorkloadKind::Deployment);
    let before = assess(&op, &snapshot, at(119), &Limits::default());
    assert_eq!(before.status, RolloutStatus::Progressing);
    let after = assess(&op, &snapshot, at(120), &Limits::default());
    assert_eq!(after.status, RolloutStatus::Timeout);
    assert!(
        after
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("within 120s"),
        "{after:?}"
    );
}

#[test]
fn a_change_the_workload_never_shows_fails_as_not_applied_after_the_grace() {
    let snapshot = Snapshot {
        workload: Some(deployment("2026-01-01T00:00:00Z", json!({}))),
        ..deployment_snapshot(json!({}), vec![])
    };
    let op = op(WorkloadKind::Deployment);
    let early = assess(&op, &snapshot, at(10), &Limits::default());
    assert_eq!(
        (early.status, early.applied),
        (RolloutStatus::Started, false)
    );
    let late = assess(&op, &snapshot, at(60), &Limits::default());
    assert_eq!(late.status, RolloutStatus::Failed);
    assert!(
        late.error
            .as_deref()
            .unwrap_or_default()
            .starts_with("change not applied"),
        "{late:?}"
    );
}

#[test]
fn an_image_change_is_applied_when_the_container_has_the_new_image() {
    let mut op = op(WorkloadKind::Deployment);
    op.restarted_at = None;
    op.images = vec![ImageChange {
        container: "web".into(),
        init: false,
        ephemeral: false,
        previous_image: Some("web:0".into()),
        current_image: Some("web:1".into()),
    }];
    let snapshot = deployment_snapshot(json!({"replicas": 4, "updatedReplicas": 1}), vec![]);
    assert!(assess(&op, &snapshot, at(1), &Limits::default()).applied);
    op.images[0].current_image = Some("web:2".into());
    assert!(!assess(&op, &snapshot, at(1), &Limits::default()).applied);
}

#[test]
fn a_deleted_workload_fails_the_rollout() {
    let a = assess(
        &op(WorkloadKind::Deployment),
        &Snapshot::default(),
        at(1),
        &Limits::default(),
    );
    assert_eq!(a.status, RolloutStatus::Failed);
    assert_eq!(
        a.error.as_deref(),
        Some("Deployment production/web no longer exists")
    );
}

fn statefulset(status: Value) -> Workload {
    Workload::StatefulSet(from(json!({
        "metadata": {"name": "web", "namespace": "production", "uid": "s-1", "generation": 2},
        "spec": {"replicas": 2, "serviceName": "web", "selector": {"matchLabels": {"app": "web"}},
                 "template": template(RESTARTED, "web:1")},
        "status": status
    })))
}

#[test]
fn a_statefulset_completes_when_every_pod_runs_the_update_revision() {
    let op = op(WorkloadKind::StatefulSet);
    let pods = [
        pod("web-0", "controller-revision-hash", "web-new", running()),
        pod("web-1", "controller-revision-hash", "web-old", running()),
    ];
    let mut snapshot = Snapshot {
        workload: Some(statefulset(json!({
            "observedGeneration": 2, "replicas": 2, "readyReplicas": 2, "updatedReplicas": 1,
            "currentRevision": "web-old", "updateRevision": "web-new"}))),
        pods: pods.into_iter().collect(),
        ..Snapshot::default()
    };
    let a = assess(&op, &snapshot, at(10), &Limits::default());
    assert_eq!(a.status, RolloutStatus::Progressing);
    assert_eq!(a.revision.as_deref(), Some("web-new"));
    assert_eq!(
        (a.new_pods, a.old_pods),
        (vec!["web-0".to_owned()], vec!["web-1".to_owned()])
    );

    snapshot.workload = Some(statefulset(json!({
        "observedGeneration": 2, "replicas": 2, "readyReplicas": 2, "updatedReplicas": 2,
        "currentRevision": "web-new", "updateRevision": "web-new"})));
    let a = assess(&op, &snapshot, at(20), &Limits::default());
    assert_eq!(
        a.status,
        RolloutStatus::Progressing,
        "complete status, but web-1's replacement is not seen yet"
    );
    snapshot.pods.extend([pod(
        "web-1",
        "controller-revision-hash",
        "web-new",
        running(),
    )]);
    let a = assess(&op, &snapshot, at(20), &Limits::default());
    assert_eq!(a.status, RolloutStatus::Completed);
    // No progressDeadlineSeconds on a StatefulSet: the default deadline applies.
    snapshot.workload = Some(statefulset(json!({
        "observedGeneration": 2, "replicas": 2, "readyReplicas": 1, "updatedReplicas": 1,
        "currentRevision": "web-old", "updateRevision": "web-new"})));
    let a = assess(&op, &snapshot, at(600), &Limits::default());
    assert_eq!(a.status, RolloutStatus::Timeout);
}

#[test]
fn a_daemonset_follows_its_newest_controller_revision() {
    let op = op(WorkloadKind::DaemonSet);
    let revision = |name: &str, hash: &str, number: i64| {
        let restarted = if number >= 2 {
            RESTARTED
        } else {
            "2026-01-01T00:00:00Z"
        };
        let r: ControllerRevision = from(json!({
            "metadata": {"name": name, "labels": {"controller-revision-hash": hash},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "web", "uid": "ds-1"}]},
            "data": {"spec": {"template": template(restarted, "web:1")}},
            "revision": number
        }));
        (name.to_owned(), r)
    };
    let daemonset = |updated: i32| {
        Workload::DaemonSet(from(json!({
            "metadata": {"name": "web", "namespace": "production", "uid": "ds-1", "generation": 5},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": template(RESTARTED, "web:1")},
            "status": {"observedGeneration": 5, "desiredNumberScheduled": 2, "currentNumberScheduled": 2,
                       "numberMisscheduled": 0, "numberReady": 2, "numberAvailable": 2,
                       "updatedNumberScheduled": updated}
        })))
    };
    let mut snapshot = Snapshot {
        workload: Some(daemonset(1)),
        revisions: [revision("web-aaa", "aaa", 1), revision("web-bbb", "bbb", 2)].into(),
        pods: [
            pod("web-x", "controller-revision-hash", "bbb", running()),
            pod("web-y", "controller-revision-hash", "aaa", running()),
        ]
        .into(),
        ..Snapshot::default()
    };
    let a = assess(&op, &snapshot, at(10), &Limits::default());
    assert_eq!(a.status, RolloutStatus::Progressing);
    assert_eq!(a.revision.as_deref(), Some("web-bbb"));
    assert_eq!(a.new_pods, ["web-x"]);
    snapshot.workload = Some(daemonset(2));
    snapshot
        .pods
        .extend([pod("web-y", "controller-revision-hash", "bbb", running())]);
    assert_eq!(
        assess(&op, &snapshot, at(20), &Limits::default()).status,
        RolloutStatus::Completed
    );
}
