use serde_json::{Value, json};

use super::*;
use crate::policy::ChangeKind;

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
        change: Some(ChangeKind::Restart),
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

// === ReplicaSet, CronJob, Pod ===

/// `container`'s image changed from `previous` to `current` (through serde,
/// as the ADMISSION record carries it).
fn image_change(container: &str, previous: Option<&str>, current: &str) -> ImageChange {
    from(json!({"container": container, "previousImage": previous, "currentImage": current}))
}

/// An admitted change of `kind` production/web, of class `change`.
fn change_of(kind: WorkloadKind, change: ChangeKind, images: Vec<ImageChange>) -> Operation {
    Operation {
        restarted_at: None,
        images,
        change: Some(change),
        ..op(kind)
    }
}

/// web:1 → web:2 in container `web`.
fn image_op(kind: WorkloadKind) -> Operation {
    let images = vec![image_change("web", Some("web:1"), "web:2")];
    change_of(kind, ChangeKind::Image, images)
}

/// `kubectl debug` added `debugger` (busybox) to pod web.
fn debug_op() -> Operation {
    let images = vec![image_change("debugger", None, "busybox:1.36")];
    change_of(WorkloadKind::Pod, ChangeKind::Debug, images)
}

fn replica_set_web(image: &str) -> Workload {
    Workload::ReplicaSet(from(json!({
        "metadata": {"name": "web", "namespace": "production", "uid": "rs-1", "generation": 2},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": template(RESTARTED, image)}
    })))
}

/// A pod of ReplicaSet web.
fn rs_pod(name: &str) -> (String, Pod) {
    let p = json!({"metadata": {"name": name, "namespace": "production", "labels": {"app": "web"},
                                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                                     "name": "web", "uid": "rs-1"}]},
                   "status": running()});
    (name.to_owned(), from(p))
}

fn cron_job_web(image: &str, status: Value) -> Workload {
    Workload::CronJob(Box::new(from(json!({
        "metadata": {"name": "web", "namespace": "production"},
        "spec": {"schedule": "*/5 * * * *",
                 "jobTemplate": {"spec": {"template": template(RESTARTED, image)}}},
        "status": status
    }))))
}

/// Pod web whose spec runs `image` in container `web` (and `debugger` as an
/// ephemeral container when `debug`), with `status` merged in.
fn pod_web(image: &str, debug: bool, status: Value) -> Workload {
    let mut p = json!({
        "metadata": {"name": "web", "namespace": "production", "generation": 2},
        "spec": {"containers": [{"name": "web", "image": image}]},
        "status": {"phase": "Running"}
    });
    if debug {
        p["spec"]["ephemeralContainers"] = json!([{"name": "debugger", "image": "busybox:1.36"}]);
    }
    merge(&mut p["status"], status);
    Workload::Pod(from(p))
}

/// A container status of `name` running `image`, in `state`.
fn container(name: &str, image: &str, ready: bool, state: Value) -> Value {
    json!({"name": name, "image": image, "imageID": "", "ready": ready, "restartCount": 1, "state": state})
}

fn up() -> Value {
    json!({"running": {"startedAt": "2027-01-15T08:00:00Z"}})
}

fn waiting(reason: &str, message: &str) -> Value {
    json!({"waiting": {"reason": reason, "message": message}})
}

fn statuses(containers: Vec<Value>) -> Value {
    json!({"containerStatuses": containers})
}

fn ephemeral(state: Value) -> Value {
    json!({"ephemeralContainerStatuses": [container("debugger", "busybox:1.36", false, state)]})
}

/// One row: an operation, what the watches saw and when, and what the
/// assessment must say.
struct Row {
    name: &'static str,
    op: Operation,
    workload: Option<Workload>,
    pods: Vec<(String, Pod)>,
    at: i64,
    status: RolloutStatus,
    new_pods: &'static [&'static str],
    old_pods: &'static [&'static str],
    /// How the error begins (`None`: no error).
    error: Option<&'static str>,
    /// What the note says, in part (`None`: no note).
    note: Option<&'static str>,
}

fn row(name: &'static str, op: Operation, workload: Option<Workload>, at: i64) -> Row {
    Row {
        name,
        op,
        workload,
        pods: Vec::new(),
        at,
        status: RolloutStatus::Progressing,
        new_pods: &[],
        old_pods: &[],
        error: None,
        note: None,
    }
}

impl Row {
    fn expect(mut self, status: RolloutStatus) -> Self {
        self.status = status;
        self
    }
    fn pods(mut self, pods: Vec<(String, Pod)>) -> Self {
        self.pods = pods;
        self
    }
    fn new_pods(mut self, pods: &'static [&'static str]) -> Self {
        self.new_pods = pods;
        self
    }
    fn old_pods(mut self, pods: &'static [&'static str]) -> Self {
        self.old_pods = pods;
        self
    }
    fn error(mut self, error: &'static str) -> Self {
        self.error = Some(error);
        self
    }
    fn note(mut self, note: &'static str) -> Self {
        self.note = Some(note);
        self
    }
}

#[test]
fn replica_sets_cron_jobs_and_pods_are_assessed_by_what_they_can_show() {
    use RolloutStatus::{Completed, Failed, Started, Timeout};
    use WorkloadKind::{CronJob, Pod, ReplicaSet};
    let pull_backoff = || waiting("ImagePullBackOff", "Back-off pulling image \"web:2\"");
    let rows = [
        // ReplicaSet: complete as stored; its pods keep the old template.
        row("rs applied", image_op(ReplicaSet), Some(replica_set_web("web:2")), 1)
            .pods(vec![rs_pod("web-a"), rs_pod("web-b"), pod("other", "app", "web", running())])
            .expect(Completed)
            .old_pods(&["web-a", "web-b"])
            .note("ReplicaSet production/web stores the new pod template; its 2 running pods keep the old template until they are replaced"),
        row("rs not yet applied", image_op(ReplicaSet), Some(replica_set_web("web:1")), 10)
            .expect(Started),
        row("rs never applied", image_op(ReplicaSet), Some(replica_set_web("web:1")), 60)
            .expect(Failed)
            .error("change not applied: ReplicaSet production/web does not show the admitted change 60s"),
        row("rs deleted", image_op(ReplicaSet), None, 5)
            .expect(Failed)
            .error("ReplicaSet production/web no longer exists"),
        // CronJob: complete as stored; takes effect at the next run.
        row("cronjob applied", image_op(CronJob), Some(cron_job_web("web:2", json!({"active": [{"name": "web-290"}]}))), 1)
            .expect(Completed)
            .note("takes effect at the next scheduled run (schedule \"*/5 * * * *\"); the job already running keeps the old template"),
        row("cronjob never applied", image_op(CronJob), Some(cron_job_web("web:1", json!({}))), 60)
            .expect(Failed)
            .error("change not applied: CronJob production/web"),
        // Pod, IMAGE: the kubelet restarts the container in place.
        row("pod before the kubelet acts", image_op(Pod),
            Some(pod_web("web:2", false, statuses(vec![container("web", "web:1", true, up())]))), 5),
        row("pod container restarting", image_op(Pod),
            Some(pod_web("web:2", false, statuses(vec![container("web", "web:2", false, waiting("ContainerCreating", ""))]))), 5),
        row("pod container up, not ready", image_op(Pod),
            Some(pod_web("web:2", false, statuses(vec![container("web", "web:2", false, up())]))), 5),
        row("pod container up and ready", image_op(Pod),
            Some(pod_web("web:2", false, statuses(vec![container("web", "docker.io/library/web:2", true, up())]))), 5)
            .expect(Completed)
            .new_pods(&["web"]),
        row("pod stuck pulling the new image", image_op(Pod),
            Some(pod_web("web:2", false, statuses(vec![container("web", "web:1", false, pull_backoff())]))), 5)
            .expect(Failed)
            .error("pod web: container web: ImagePullBackOff: Back-off pulling image \"web:2\""),
        row("pod stuck on the old image, before the kubelet acts", image_op(Pod),
            Some(pod_web("web:2", false, statuses(vec![container("web", "web:1", false,
                waiting("ErrImagePull", "Failed to pull image \"web:1\": not found"))]))), 5),
        row("pod stuck once the kubelet has acted", image_op(Pod),
            Some(pod_web("web:2", false, json!({"observedGeneration": 2, "containerStatuses": [
                container("web", "web:1", false, waiting("ErrImagePull", "rpc error: not found"))]}))), 5)
            .expect(Failed)
            .error("pod web: container web: ErrImagePull: rpc error: not found"),
        row("pod crash looping on the new image", image_op(Pod),
            Some(pod_web("web:2", false, statuses(vec![container("web", "web:2", false,
                waiting("CrashLoopBackOff", "back-off 10s restarting failed container"))]))), 5)
            .expect(Failed)
            .error("pod web: container web: CrashLoopBackOff"),
        row("pod with an invalid image name", change_of(Pod, ChangeKind::Image, vec![image_change("web", Some("web:1"), "web::2")]),
            Some(pod_web("web::2", false, statuses(vec![container("web", "web:1", false,
                waiting("InvalidImageName", "Failed to apply default image tag \"web::2\": couldn't parse image name"))]))), 5)
            .expect(Failed)
            .error("pod web: container web: InvalidImageName"),
        row("pod failed", image_op(Pod),
            Some(pod_web("web:2", false, json!({"phase": "Failed", "reason": "Evicted", "message": "The node was low on memory."}))), 5)
            .expect(Failed)
            .error("pod web failed: The node was low on memory."),
        row("pod past its deadline", image_op(Pod),
            Some(pod_web("web:2", false, statuses(vec![container("web", "web:1", true, up())]))), 600)
            .expect(Timeout)
            .error("container web of pod web did not come up with image web:2 within 600s (counted from admission): it still runs web:1"),
        row("pod deleted", image_op(Pod), None, 5)
            .expect(Failed)
            .error("pod deleted: Pod production/web no longer exists"),
        row("pod never changed", image_op(Pod),
            Some(pod_web("web:1", false, statuses(vec![container("web", "web:1", true, up())]))), 60)
            .expect(Failed)
            .error("change not applied: Pod production/web"),
        // Pod, DEBUG: the ephemeral container starts once.
        row("debug container creating", debug_op(),
            Some(pod_web("web:1", true, ephemeral(waiting("ContainerCreating", "")))), 5),
        row("debug container running", debug_op(), Some(pod_web("web:1", true, ephemeral(up()))), 5)
            .expect(Completed)
            .new_pods(&["web"]),
        row("debug container already exited", debug_op(),
            Some(pod_web("web:1", true, ephemeral(json!({"terminated": {"exitCode": 0, "reason": "Completed"}})))), 5)
            .expect(Completed)
            .new_pods(&["web"]),
        row("debug image cannot be pulled", debug_op(),
            Some(pod_web("web:1", true, ephemeral(waiting("ErrImagePull", "Failed to pull image \"busybox:1.36\"")))), 5)
            .expect(Failed)
            .error("pod web: container debugger: ErrImagePull"),
        row("debug container past its deadline", debug_op(),
            Some(pod_web("web:1", true, ephemeral(waiting("ContainerCreating", "")))), 600)
            .expect(Timeout)
            .error("ephemeral container debugger of pod web did not start within 600s (counted from admission): waiting: ContainerCreating"),
        row("debug admission naming no container", change_of(Pod, ChangeKind::Debug, vec![]),
            Some(pod_web("web:1", true, ephemeral(up()))), 5)
            .expect(Completed)
            .new_pods(&["web"]),
        row("debug admission naming no container, none added", change_of(Pod, ChangeKind::Debug, vec![]),
            Some(pod_web("web:1", false, json!({}))), 60)
            .expect(Failed)
            .error("change not applied"),
    ];
    for r in rows {
        let snapshot = Snapshot {
            workload: r.workload,
            pods: r.pods.into_iter().collect(),
            ..Snapshot::default()
        };
        let a = assess(&r.op, &snapshot, at(r.at), &Limits::default());
        let name = r.name;
        assert_eq!(a.status, r.status, "{name}: {a:?}");
        assert_eq!(a.new_pods, r.new_pods, "{name}: new pods");
        assert_eq!(a.old_pods, r.old_pods, "{name}: old pods");
        assert_eq!(a.terminating_pods, Vec::<String>::new(), "{name}");
        match r.error {
            None => assert_eq!(a.error, None, "{name}"),
            Some(start) => assert!(
                a.error.as_deref().unwrap_or_default().starts_with(start),
                "{name}: {:?}",
                a.error
            ),
        }
        match r.note {
            None => assert_eq!(a.note, None, "{name}"),
            Some(part) => assert!(
                a.note.as_deref().unwrap_or_default().contains(part),
                "{name}: {:?}",
                a.note
            ),
        }
        assert_eq!(a.revision, None, "{name}: these kinds make no revision");
    }
}

#[test]
fn a_pods_init_container_is_done_once_it_has_run_with_the_new_image_or_had_run_before() {
    let op = change_of(
        WorkloadKind::Pod,
        ChangeKind::Image,
        vec![from(json!({"container": "migrate", "init": true,
                          "previousImage": "migrate:1", "currentImage": "migrate:2"}))],
    );
    let pod = |image: &str, exit_code: i32, initialized: &str| {
        Workload::Pod(from(json!({
            "metadata": {"name": "web", "namespace": "production"},
            "spec": {"initContainers": [{"name": "migrate", "image": "migrate:2"}],
                     "containers": [{"name": "web", "image": "web:1"}]},
            "status": {"phase": "Running",
                       "conditions": [{"type": "Initialized", "status": initialized}],
                       "initContainerStatuses": [container("migrate", image, false,
                           json!({"terminated": {"exitCode": exit_code, "reason": "Completed"}}))]}
        })))
    };
    let assess_pod = |w: Workload| {
        let snapshot = Snapshot {
            workload: Some(w),
            ..Snapshot::default()
        };
        assess(&op, &snapshot, at(5), &Limits::default())
    };
    let a = assess_pod(pod("migrate:2", 0, "True"));
    assert_eq!((a.status, a.note), (RolloutStatus::Completed, None));
    let a = assess_pod(pod("migrate:1", 0, "True"));
    assert_eq!(a.status, RolloutStatus::Completed);
    assert!(
        a.note
            .as_deref()
            .unwrap_or_default()
            .starts_with("init container migrate had already run with the old image"),
        "{a:?}"
    );
    let a = assess_pod(pod("migrate:2", 1, "False"));
    assert_eq!(
        a.status,
        RolloutStatus::Progressing,
        "a failed run is retried"
    );
}
