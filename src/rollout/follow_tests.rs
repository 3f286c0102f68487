//! The follower against a fake Kubernetes API served through kube-rs's
//! `tower-test` mock: lists and watches answered from an in-memory set of
//! objects whose changes the test makes, every request recorded. The store
//! is a real SQLite database.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::*;
use crate::audit::AuditDecision;
use crate::policy::ChangeKind;
use crate::store::sqlite::SqliteStore;

#[path = "fake_api.rs"]
mod fake_api;
use fake_api::FakeApi;

const APPS: &str = "/apis/apps/v1/namespaces/production";
const CORE: &str = "/api/v1/namespaces/production";
const RESTARTED: &str = "2026-11-23T10:00:00Z";

// === objects ===

fn deployment(generation: i64, deadline: i32, status: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "production", "uid": "d-1", "generation": generation,
                     "labels": {"app": "web"}},
        "spec": {"replicas": 2, "progressDeadlineSeconds": deadline,
                 "selector": {"matchLabels": {"app": "web"}},
                 "strategy": {"type": "RollingUpdate"},
                 "template": {"metadata": {"labels": {"app": "web"},
                                           "annotations": {"kubectl.kubernetes.io/restartedAt": RESTARTED}},
                              "spec": {"containers": [{"name": "web", "image": "web:1"}]}}},
        "status": status
    })
}

/// A ReplicaSet of `web`; revision 2 carries the restart in its template.
fn replica_set(name: &str, hash: &str, revision: u32) -> Value {
    let restarted = if revision >= 2 {
        RESTARTED
    } else {
        "2026-01-01T00:00:00Z"
    };
    json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": name, "namespace": "production",
                     "labels": {"app": "web", "pod-template-hash": hash},
                     "annotations": {"deployment.kubernetes.io/revision": revision.to_string()},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "d-1"}]},
        "spec": {"selector": {"matchLabels": {"app": "web", "pod-template-hash": hash}},
                 "template": {"metadata": {"labels": {"app": "web", "pod-template-hash": hash},
                                           "annotations": {"kubectl.kubernetes.io/restartedAt": restarted}},
                              "spec": {"containers": [{"name": "web", "image": "web:1"}]}}}
    })
}

fn pod(name: &str, hash: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "production",
                     "labels": {"app": "web", "pod-template-hash": hash}},
        "spec": {"containers": [{"name": "web", "image": "web:1"}]},
        "status": {"phase": "Running"}
    })
}

/// A cluster where `web` was just restarted: the controller has not acted yet.
fn restarted_cluster(deadline: i32) -> FakeApi {
    let api = FakeApi::default();
    api.apply(deployment(
        2,
        deadline,
        json!({"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}),
    ));
    api.apply(replica_set("web-old", "old", 1));
    api.apply(pod("web-old-a", "old"));
    api.apply(pod("web-old-b", "old"));
    api
}

/// Takes the rollout of `restarted_cluster` to its end.
fn complete_rollout(api: &FakeApi, deadline: i32) {
    api.apply(replica_set("web-new", "new", 2));
    api.apply(deployment(
        2,
        deadline,
        json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 1, "availableReplicas": 2}),
    ));
    api.apply(pod("web-new-a", "new"));
    api.delete("Pod", "production", "web-old-a");
    api.apply(pod("web-new-b", "new"));
    api.delete("Pod", "production", "web-old-b");
    api.apply(deployment(
        2,
        deadline,
        json!({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}),
    ));
}

// === harness ===

struct Setup {
    _dir: tempfile::TempDir,
    store: Arc<SqliteStore>,
    metrics: Arc<Metrics>,
}

fn settings() -> FollowerSettings {
    FollowerSettings {
        lease_ttl: Duration::from_millis(400),
        scan_interval: Duration::from_millis(100),
        tick: Duration::from_millis(50),
        limits: Limits::default(),
        max_followed: 256,
    }
}

impl Setup {
    /// A store holding an ALLOWED restart of production/web as operation `op-1`.
    async fn new() -> Self {
        Self::admitted_at(Timestamp::now()).await
    }

    /// The same, admitted at `started`.
    async fn admitted_at(started: Timestamp) -> Self {
        Self::admitting(started, |_| {}).await
    }

    /// A store holding op-1's ADMISSION record: the restart of
    /// production/web at `started`, as `edit` leaves it.
    async fn admitting(started: Timestamp, edit: impl FnOnce(&mut AuditRecord)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("db")).await.unwrap());
        let mut admission = AuditRecord::new(AuditEvent::Admission, started);
        admission.decision = Some(AuditDecision::Allowed);
        admission.operation_id = Some("op-1".into());
        admission.request_uid = Some("uid-1".into());
        admission.username = Some("alice".into());
        admission.namespace = Some("production".into());
        admission.application_name = Some("web".into());
        admission.kind = Some(WorkloadKind::Deployment);
        admission.deployment_name = Some("web".into());
        admission.restarted_at = Some(RESTARTED.into());
        admission.rollout_status = Some(RolloutStatus::Started);
        admission.operation_start_time = Some(admission.timestamp.clone());
        edit(&mut admission);
        store.append(admission).await.unwrap();
        Self {
            _dir: dir,
            store,
            metrics: Arc::new(Metrics::new().unwrap()),
        }
    }

    fn follower(&self, api: &FakeApi, settings: FollowerSettings) -> Arc<Follower> {
        Follower::new(
            Some(api.client()),
            self.store.clone(),
            self.store.clone(),
            self.metrics.clone(),
            settings,
        )
    }

    /// A follower with no cluster to watch.
    fn follower_without_cluster(&self) -> Arc<Follower> {
        Follower::new(
            None,
            self.store.clone(),
            self.store.clone(),
            self.metrics.clone(),
            settings(),
        )
    }

    /// Runs `follower`, waking it for `op-1` (as the webhook does) if `wake`.
    fn run(&self, follower: Arc<Follower>, wake: bool) -> Running {
        let (wake_tx, rx) = mpsc::channel(8);
        if wake {
            wake_tx.try_send("op-1".to_owned()).unwrap();
        }
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(follower.run(rx, shutdown.clone()));
        Running {
            task,
            shutdown,
            _wake: wake_tx,
        }
    }

    /// A store with `op-1`, a cluster where `web` was just restarted, and
    /// a follower woken for it.
    async fn following_restart(deadline: i32) -> (Self, FakeApi, Running) {
        let setup = Self::new().await;
        let api = restarted_cluster(deadline);
        let running = setup.run(setup.follower(&api, settings()), true);
        (setup, api, running)
    }

    /// The ROLLOUT records of `op-1`, oldest first.
    async fn rollouts(&self) -> Vec<AuditRecord> {
        let filter = AuditFilter {
            operation_id: Some("op-1".into()),
            event: Some(AuditEvent::Rollout),
            ..AuditFilter::default()
        };
        let mut items = self.store.query(&filter).await.unwrap().items;
        items.reverse();
        items
    }

    /// Waits until the latest ROLLOUT record of `op-1` has `status`.
    async fn until_recorded(&self, status: RolloutStatus) -> Vec<AuditRecord> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let records = self.rollouts().await;
            if records.last().and_then(|r| r.rollout_status) == Some(status) {
                return records;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no {status:?} record; records: {records:#?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `app_redeploy_operations_total` for `result`, once the follower has
    /// counted it: the count follows the final record's append, so a test
    /// that saw the record may look a moment too early.
    async fn operations(&self, result: &str) -> u64 {
        let counter = self.metrics.operations_total.with_label_values(&[
            "web",
            "production",
            "alice",
            result,
        ]);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while counter.get() == 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        counter.get()
    }
}

/// A follower running in the background.
struct Running {
    task: tokio::task::JoinHandle<()>,
    shutdown: CancellationToken,
    _wake: mpsc::Sender<String>,
}

impl Running {
    /// Shuts it down as on SIGTERM.
    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap();
    }

    /// Kills it: its leases are not given up.
    async fn crash(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

fn statuses(records: &[AuditRecord]) -> Vec<RolloutStatus> {
    records.iter().filter_map(|r| r.rollout_status).collect()
}

// === tests ===

#[tokio::test]
async fn a_successful_rollout_is_followed_to_completed_with_its_replica_set_and_pods() {
    let (setup, api, running) = Setup::following_restart(600).await;

    let records = setup.until_recorded(RolloutStatus::Progressing).await;
    assert_eq!(records.len(), 1);
    complete_rollout(&api, 600);
    let records = setup.until_recorded(RolloutStatus::Completed).await;

    assert_eq!(
        statuses(&records),
        [RolloutStatus::Progressing, RolloutStatus::Completed]
    );
    let done = records.last().unwrap();
    assert_eq!(done.operation_id.as_deref(), Some("op-1"));
    assert_eq!(done.request_uid.as_deref(), Some("uid-1"));
    assert_eq!(done.username.as_deref(), Some("alice"));
    assert_eq!(done.new_replica_set.as_deref(), Some("web-new"));
    assert_eq!(
        done.new_pods.as_deref(),
        Some(&["web-new-a".to_owned(), "web-new-b".to_owned()][..])
    );
    assert_eq!(
        done.terminated_pods.as_deref(),
        Some(&["web-old-a".to_owned(), "web-old-b".to_owned()][..])
    );
    assert_eq!(
        (done.previous_replicas, done.current_replicas),
        (Some(2), Some(2))
    );
    assert_eq!(done.rollout_strategy.as_deref(), Some("RollingUpdate"));
    assert_eq!(
        (
            done.previous_image.as_deref(),
            done.current_image.as_deref()
        ),
        (Some("web:1"), Some("web:1")),
        "a restart keeps the image it runs"
    );
    assert_eq!(
        (done.success, done.error_message.as_deref()),
        (Some(true), None)
    );
    assert!(done.operation_end_time.is_some() && done.duration_seconds.is_some());
    assert!(setup.store.verify().await.unwrap().ok);

    // Closed: nothing left to follow, the lease given up, the outcome counted.
    assert_eq!(
        setup.store.open_operations(10).await.unwrap(),
        Vec::<String>::new()
    );
    assert!(
        setup
            .store
            .lease_operation("op-1", "someone", Duration::from_secs(1))
            .await
            .unwrap()
    );
    assert_eq!(setup.operations("completed").await, 1);
    let rendered = setup.metrics.render();
    assert!(
        rendered.contains("app_redeploy_rollout_duration_seconds_count{application=\"web\",namespace=\"production\",strategy=\"RollingUpdate\"} 1"),
        "{rendered}"
    );

    // The exact requests: the workload read for its selector, then a list
    // and a watch of the Deployment by name, its ReplicaSets and pods by label.
    let requests = api.requests();
    assert_eq!(requests[0], format!("GET {APPS}/deployments/web?"));
    for (collection, selector) in [
        ("deployments", "fieldSelector=metadata.name%3Dweb"),
        ("replicasets", "labelSelector=app%3Dweb"),
        ("pods", "labelSelector=app%3Dweb"),
    ] {
        let base = if collection == "pods" { CORE } else { APPS };
        let path = format!("GET {base}/{collection}?");
        let of_it: Vec<&String> = requests
            .iter()
            .filter(|r| r.starts_with(&path) && r.contains(selector))
            .collect();
        assert!(
            of_it.iter().any(|r| !r.contains("watch=true")),
            "no list of {collection}: {requests:#?}"
        );
        assert!(
            of_it.iter().any(|r| r.contains("watch=true")),
            "no watch of {collection}: {requests:#?}"
        );
    }
    assert!(
        requests.iter().all(|r| r.starts_with("GET ")),
        "the follower only reads: {requests:#?}"
    );
    running.stop().await;
}

#[tokio::test]
async fn progress_deadline_exceeded_is_recorded_as_failed() {
    let (setup, api, running) = Setup::following_restart(600).await;
    setup.until_recorded(RolloutStatus::Progressing).await;

    api.apply(replica_set("web-new", "new", 2));
    api.apply(deployment(
        2,
        600,
        json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 1, "availableReplicas": 2,
               "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                               "message": "ReplicaSet \"web-new\" has timed out progressing."}]}),
    ));
    let records = setup.until_recorded(RolloutStatus::Failed).await;
    let failed = records.last().unwrap();
    assert_eq!(failed.success, Some(false));
    assert_eq!(
        failed.error_message.as_deref(),
        Some("ProgressDeadlineExceeded: ReplicaSet \"web-new\" has timed out progressing.")
    );
    assert_eq!(setup.operations("failed").await, 1);
    assert_eq!(
        setup.store.open_operations(10).await.unwrap(),
        Vec::<String>::new()
    );
    running.stop().await;
}

#[tokio::test]
async fn a_rollout_past_its_progress_deadline_is_recorded_as_timeout() {
    let (setup, _api, running) = Setup::following_restart(1).await;
    // Nothing moves in the cluster; the follower's own clock ends it.
    let records = setup.until_recorded(RolloutStatus::Timeout).await;
    let timeout = records.last().unwrap();
    assert_eq!(timeout.success, Some(false));
    assert!(
        timeout
            .error_message
            .as_deref()
            .unwrap_or_default()
            .contains("did not complete within 1s"),
        "{timeout:?}"
    );
    assert_eq!(setup.operations("timeout").await, 1);
    running.stop().await;
}

#[tokio::test]
async fn a_watch_that_disconnects_resumes_where_it_stopped() {
    let (setup, api, running) = Setup::following_restart(600).await;
    setup.until_recorded(RolloutStatus::Progressing).await;
    let watches_before = api
        .requests()
        .iter()
        .filter(|r| r.contains("/pods?") && r.contains("watch=true"))
        .count();

    api.disconnect();
    complete_rollout(&api, 600);
    let records = setup.until_recorded(RolloutStatus::Completed).await;
    assert_eq!(
        statuses(&records),
        [RolloutStatus::Progressing, RolloutStatus::Completed]
    );
    assert_eq!(
        records.last().unwrap().terminated_pods.as_deref(),
        Some(&["web-old-a".to_owned(), "web-old-b".to_owned()][..]),
        "pods deleted while the watch was down are seen on resume"
    );
    let pod_watches: Vec<String> = api
        .requests()
        .into_iter()
        .filter(|r| r.contains("/pods?") && r.contains("watch=true"))
        .collect();
    assert!(pod_watches.len() > watches_before, "{pod_watches:#?}");
    let resumed = pod_watches.last().unwrap();
    assert!(
        !resumed.contains("resourceVersion=0") && resumed.contains("resourceVersion="),
        "the watch resumes from the last version it saw: {resumed}"
    );
    running.stop().await;
}

#[tokio::test]
async fn a_follower_that_crashes_is_taken_over_and_nothing_is_recorded_twice() {
    let (setup, api, first) = Setup::following_restart(600).await;
    setup.until_recorded(RolloutStatus::Progressing).await;
    // The first replica dies without giving its lease up.
    first.crash().await;

    // A second replica, not woken: it finds the open operation by scanning,
    // once the lease has lapsed, and resumes from the recorded status.
    let second = setup.run(setup.follower(&api, settings()), false);
    complete_rollout(&api, 600);
    let records = setup.until_recorded(RolloutStatus::Completed).await;
    assert_eq!(
        statuses(&records),
        [RolloutStatus::Progressing, RolloutStatus::Completed],
        "one PROGRESSING (first replica) and one COMPLETED (second)"
    );
    assert_eq!(
        records.last().unwrap().terminated_pods.as_deref(),
        Some(&["web-old-a".to_owned(), "web-old-b".to_owned()][..]),
        "the old pods seen by the first replica come from its record"
    );
    second.stop().await;
}

#[tokio::test]
async fn a_live_lease_keeps_other_replicas_off_the_operation() {
    let setup = Setup::new().await;
    let api = restarted_cluster(600);
    let holder = "another-replica";
    assert!(
        setup
            .store
            .lease_operation("op-1", holder, Duration::from_secs(30))
            .await
            .unwrap()
    );
    let running = setup.run(setup.follower(&api, settings()), true);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        setup.rollouts().await,
        Vec::new(),
        "only the holder follows"
    );
    assert!(api.requests().is_empty(), "{:#?}", api.requests());

    setup.store.release_operation("op-1", holder).await.unwrap();
    setup.until_recorded(RolloutStatus::Progressing).await;
    running.stop().await;
}

#[tokio::test]
async fn without_a_cluster_an_operation_ends_as_timeout_at_its_deadline_saying_why() {
    let long_ago = Timestamp::now() - SignedDuration::from_mins(11);
    let setup = Setup::admitted_at(long_ago).await;
    let follower = setup.follower_without_cluster();
    let running = setup.run(follower, false);
    let records = setup.until_recorded(RolloutStatus::Timeout).await;
    assert_eq!(
        records.last().unwrap().error_message.as_deref(),
        Some("no cluster configured: rollgate could not follow this rollout")
    );
    assert_eq!(
        setup.store.open_operations(10).await.unwrap(),
        Vec::<String>::new()
    );
    running.stop().await;
}

#[tokio::test]
async fn a_rollout_that_cannot_be_watched_ends_as_timeout_with_the_api_servers_reason() {
    let long_ago = Timestamp::now() - SignedDuration::from_mins(11);
    let setup = Setup::admitted_at(long_ago).await;
    let api = restarted_cluster(600);
    api.forbid();
    let running = setup.run(setup.follower(&api, settings()), true);
    let records = setup.until_recorded(RolloutStatus::Timeout).await;
    let error = records
        .last()
        .unwrap()
        .error_message
        .clone()
        .unwrap_or_default();
    assert!(
        error.starts_with("the rollout could not be followed") && error.contains("forbidden"),
        "{error}"
    );
    running.stop().await;
}

#[tokio::test]
async fn a_burst_of_operations_is_followed_at_most_max_followed_at_a_time() {
    let setup = Setup::new().await;
    // op-2: op-1's admission again, as another request.
    let filter = AuditFilter {
        operation_id: Some("op-1".into()),
        ..AuditFilter::default()
    };
    let mut admission = setup.store.query(&filter).await.unwrap().items.remove(0);
    admission.operation_id = Some("op-2".into());
    admission.request_uid = Some("uid-2".into());
    admission.timestamp = Timestamp::now().to_string();
    setup.store.append(admission).await.unwrap();
    assert_eq!(setup.store.open_operations(10).await.unwrap().len(), 2);

    let one_at_a_time = FollowerSettings {
        max_followed: 1,
        ..settings()
    };
    let api = restarted_cluster(600);
    let running = setup.run(setup.follower(&api, one_at_a_time), false);
    tokio::time::sleep(Duration::from_millis(400)).await;
    // Another replica can take exactly the operation this one left waiting.
    let ttl = Duration::from_secs(5);
    let free = [
        setup
            .store
            .lease_operation("op-1", "other", ttl)
            .await
            .unwrap(),
        setup
            .store
            .lease_operation("op-2", "other", ttl)
            .await
            .unwrap(),
    ];
    assert_eq!(free.iter().filter(|f| **f).count(), 1, "{free:?}");
    running.stop().await;
}

#[tokio::test]
async fn a_recent_operation_without_a_cluster_stays_open() {
    let setup = Setup::new().await;
    let follower = setup.follower_without_cluster();
    let running = setup.run(follower, true);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(setup.rollouts().await, Vec::new());
    assert_eq!(setup.store.open_operations(10).await.unwrap(), ["op-1"]);
    running.stop().await;
}

#[tokio::test]
async fn the_success_rate_counts_final_rollouts_per_application_and_window() {
    let setup = Setup::new().await;
    let now = Timestamp::now();
    let final_rollout = |app: &str, status: RolloutStatus, age_mins: i64| {
        let mut r = AuditRecord::new(
            AuditEvent::Rollout,
            now - SignedDuration::from_mins(age_mins),
        );
        r.namespace = Some("production".into());
        r.application_name = Some(app.into());
        r.rollout_status = Some(status);
        r
    };
    for record in [
        final_rollout("web", RolloutStatus::Completed, 5),
        final_rollout("web", RolloutStatus::Completed, 10),
        final_rollout("web", RolloutStatus::Failed, 20),
        // Not final: not counted.
        final_rollout("web", RolloutStatus::Progressing, 1),
        // In the 24 h window only.
        final_rollout("web", RolloutStatus::Timeout, 120),
        // Older than either window.
        final_rollout("api", RolloutStatus::Completed, 30 * 60),
    ] {
        setup.store.append(record).await.unwrap();
    }
    let follower = setup.follower_without_cluster();
    follower.refresh_success_rate().await;

    let rate = |app: &str, window: &str| {
        setup
            .metrics
            .success_rate
            .get_metric_with_label_values(&[app, window])
            .unwrap()
            .get()
    };
    assert!(
        (rate("web", "1h") - 2.0 / 3.0).abs() < 1e-9,
        "{}",
        rate("web", "1h")
    );
    assert!(
        (rate("web", "24h") - 0.5).abs() < 1e-9,
        "{}",
        rate("web", "24h")
    );
    let text = setup.metrics.render();
    assert!(
        text.contains(r#"app_redeploy_success_rate{application="web",time_window="24h"} 0.5"#),
        "{text}"
    );
    assert!(
        !text.contains(r#"app_redeploy_success_rate{application="api""#),
        "an application without a final rollout in a window has no rate: {text}"
    );
}

// === ReplicaSet, CronJob, Pod ===

const BATCH: &str = "/apis/batch/v1/namespaces/production";

/// op-1 as the webhook records an IMAGE change (web:1 → web:2 in container
/// `web`) of `kind` production/web, or with `images` as the change's.
async fn admitted_change(
    kind: WorkloadKind,
    change: ChangeKind,
    images: Value,
    started: Timestamp,
) -> Setup {
    Setup::admitting(started, |admission| {
        admission.kind = Some(kind);
        admission.change = Some(change);
        admission.restarted_at = None;
        admission.image_changes = serde_json::from_value(images.clone()).unwrap();
        let first = &images[0];
        admission.previous_image = first["previousImage"].as_str().map(str::to_owned);
        admission.current_image = first["currentImage"].as_str().map(str::to_owned);
    })
    .await
}

fn web_1_to_2() -> Value {
    json!([{"container": "web", "previousImage": "web:1", "currentImage": "web:2"}])
}

/// Follows op-1, woken as by the webhook.
fn follow(setup: &Setup, api: &FakeApi) -> Running {
    setup.run(setup.follower(api, settings()), true)
}

/// A standalone ReplicaSet web whose template runs `image`.
fn replica_set_web(image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "web", "namespace": "production", "uid": "rs-1", "generation": 2,
                     "labels": {"app": "web"}},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": image}]}}},
        "status": {"replicas": 2, "observedGeneration": 1}
    })
}

fn rs_pod(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "production", "labels": {"app": "web"},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "uid": "rs-1"}]},
        "spec": {"containers": [{"name": "web", "image": "web:1"}]},
        "status": {"phase": "Running"}
    })
}

fn cron_job_web(image: &str) -> Value {
    json!({
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": "web", "namespace": "production", "labels": {"app": "web"}},
        "spec": {"schedule": "0 3 * * *",
                 "jobTemplate": {"spec": {"template": {"metadata": {"labels": {"app": "web"}},
                     "spec": {"restartPolicy": "OnFailure", "containers": [{"name": "web", "image": image}]}}}}},
        "status": {}
    })
}

/// Pod web: its spec runs `image`; `status` is the kubelet's report.
fn pod_web(image: &str, status: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "namespace": "production", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "web", "image": image}]},
        "status": status
    })
}

fn container_status(name: &str, image: &str, ready: bool, state: Value) -> Value {
    json!({"name": name, "image": image, "imageID": "", "ready": ready, "restartCount": 0, "state": state})
}

fn running_since() -> Value {
    json!({"running": {"startedAt": "2027-01-15T08:00:00Z"}})
}

fn strings(list: &[&str]) -> Option<Vec<String>> {
    Some(list.iter().map(|s| (*s).to_owned()).collect())
}

#[tokio::test]
async fn a_replica_set_image_change_is_completed_once_stored_and_its_pods_keep_the_old_template() {
    let setup = admitted_change(
        WorkloadKind::ReplicaSet,
        ChangeKind::Image,
        web_1_to_2(),
        Timestamp::now(),
    )
    .await;
    let api = FakeApi::default();
    api.apply(replica_set_web("web:2"));
    api.apply(rs_pod("web-a"));
    api.apply(rs_pod("web-b"));
    let running = follow(&setup, &api);

    let records = setup.until_recorded(RolloutStatus::Completed).await;
    assert_eq!(statuses(&records), [RolloutStatus::Completed]);
    let done = records.last().unwrap();
    assert_eq!(done.kind, Some(WorkloadKind::ReplicaSet));
    assert_eq!(done.new_pods, strings(&[]), "no pod is replaced");
    assert_eq!(done.previous_pods, strings(&["web-a", "web-b"]));
    assert_eq!(done.terminated_pods, strings(&[]));
    assert_eq!(
        (done.success, done.error_message.as_deref()),
        (Some(true), None)
    );
    assert_eq!(
        done.reason.as_deref(),
        Some(
            "ReplicaSet production/web stores the new pod template; its 2 running pods keep the old \
             template until they are replaced: only pods it creates from now on use the new one"
        )
    );
    assert_eq!(
        (
            done.previous_image.as_deref(),
            done.current_image.as_deref()
        ),
        (Some("web:1"), Some("web:2"))
    );
    assert_eq!(
        (done.current_replicas, done.rollout_strategy.as_deref()),
        (Some(2), None)
    );
    assert_eq!(
        (&done.new_replica_set, &done.controller_revision),
        (&None, &None)
    );
    assert_eq!(setup.operations("completed").await, 1);

    let requests = api.requests();
    assert_eq!(requests[0], format!("GET {APPS}/replicasets/web?"));
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with(&format!("GET {APPS}/replicasets?"))
                && r.contains("fieldSelector=metadata.name%3Dweb")),
        "{requests:#?}"
    );
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with(&format!("GET {CORE}/pods?"))
                && r.contains("labelSelector=app%3Dweb")),
        "{requests:#?}"
    );
    running.stop().await;
}

#[tokio::test]
async fn a_cron_job_change_is_completed_once_stored_saying_it_takes_effect_at_the_next_run() {
    let setup = admitted_change(
        WorkloadKind::CronJob,
        ChangeKind::Image,
        web_1_to_2(),
        Timestamp::now(),
    )
    .await;
    let api = FakeApi::default();
    api.apply(cron_job_web("web:2"));
    let running = follow(&setup, &api);

    let records = setup.until_recorded(RolloutStatus::Completed).await;
    assert_eq!(statuses(&records), [RolloutStatus::Completed]);
    let done = records.last().unwrap();
    assert_eq!(
        done.reason.as_deref(),
        Some(
            "CronJob production/web stores the new job template; it takes effect at the next \
             scheduled run (schedule \"0 3 * * *\")"
        )
    );
    assert_eq!(
        (done.new_pods.clone(), done.terminated_pods.clone()),
        (strings(&[]), strings(&[]))
    );
    assert_eq!(
        (done.success, done.error_message.as_deref()),
        (Some(true), None)
    );
    assert_eq!(done.current_image.as_deref(), Some("web:2"));
    let requests = api.requests();
    assert_eq!(requests[0], format!("GET {BATCH}/cronjobs/web?"));
    assert!(
        !requests.iter().any(|r| r.contains("/pods")),
        "a CronJob's change touches no running pod: {requests:#?}"
    );
    running.stop().await;
}

#[tokio::test]
async fn a_pod_whose_changed_container_comes_up_with_the_new_image_is_completed() {
    let setup = admitted_change(
        WorkloadKind::Pod,
        ChangeKind::Image,
        web_1_to_2(),
        Timestamp::now(),
    )
    .await;
    let api = FakeApi::default();
    // The kubelet has not acted yet: the old container still runs.
    let old = container_status("web", "web:1", true, running_since());
    api.apply(pod_web(
        "web:2",
        json!({"phase": "Running", "containerStatuses": [old]}),
    ));
    let running = follow(&setup, &api);
    setup.until_recorded(RolloutStatus::Progressing).await;

    let restarting = container_status(
        "web",
        "docker.io/library/web:2",
        false,
        json!({"waiting": {"reason": "ContainerCreating"}}),
    );
    api.apply(pod_web(
        "web:2",
        json!({"phase": "Running", "containerStatuses": [restarting]}),
    ));
    let up = container_status("web", "docker.io/library/web:2", true, running_since());
    api.apply(pod_web(
        "web:2",
        json!({"phase": "Running", "containerStatuses": [up]}),
    ));
    let records = setup.until_recorded(RolloutStatus::Completed).await;

    assert_eq!(
        statuses(&records),
        [RolloutStatus::Progressing, RolloutStatus::Completed]
    );
    let done = records.last().unwrap();
    assert_eq!(done.new_pods, strings(&["web"]), "the same pod, restarted");
    assert_eq!(done.terminated_pods, strings(&[]));
    assert_eq!(
        (
            done.success,
            done.error_message.as_deref(),
            done.reason.as_deref()
        ),
        (Some(true), None, None)
    );
    assert_eq!(
        (
            done.previous_image.as_deref(),
            done.current_image.as_deref()
        ),
        (Some("web:1"), Some("web:2"))
    );
    let requests = api.requests();
    assert_eq!(requests[0], format!("GET {CORE}/pods/web?"));
    assert!(
        requests
            .iter()
            .skip(1)
            .all(|r| r.contains("fieldSelector=metadata.name%3Dweb")),
        "the pod is watched by name, nothing else: {requests:#?}"
    );
    running.stop().await;
}

#[tokio::test]
async fn a_pod_stuck_pulling_its_new_image_is_failed_with_the_reason() {
    let setup = admitted_change(
        WorkloadKind::Pod,
        ChangeKind::Image,
        web_1_to_2(),
        Timestamp::now(),
    )
    .await;
    let api = FakeApi::default();
    // The kubelet keeps the last run's image in the status of a container
    // that cannot start; its message names the image it cannot pull.
    let stuck = container_status(
        "web",
        "web:1",
        false,
        json!({"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image \"web:2\""}}),
    );
    api.apply(pod_web(
        "web:2",
        json!({"phase": "Running", "containerStatuses": [stuck]}),
    ));
    let running = follow(&setup, &api);

    let records = setup.until_recorded(RolloutStatus::Failed).await;
    let failed = records.last().unwrap();
    assert_eq!(failed.success, Some(false));
    assert_eq!(
        failed.error_message.as_deref(),
        Some("pod web: container web: ImagePullBackOff: Back-off pulling image \"web:2\"")
    );
    assert_eq!(failed.new_pods, strings(&[]));
    assert_eq!(setup.operations("failed").await, 1);
    running.stop().await;
}

#[tokio::test]
async fn a_debug_container_that_runs_is_completed() {
    let debugger = json!([{"container": "debugger", "currentImage": "busybox:1.36"}]);
    let setup = admitted_change(
        WorkloadKind::Pod,
        ChangeKind::Debug,
        debugger,
        Timestamp::now(),
    )
    .await;
    let api = FakeApi::default();
    let app = container_status("web", "web:1", true, running_since());
    let mut pod = pod_web(
        "web:1",
        json!({"phase": "Running", "containerStatuses": [app]}),
    );
    pod["spec"]["ephemeralContainers"] =
        json!([{"name": "debugger", "image": "busybox:1.36", "targetContainerName": "web"}]);
    pod["status"]["ephemeralContainerStatuses"] = json!([container_status(
        "debugger",
        "busybox:1.36",
        false,
        json!({"waiting": {"reason": "ContainerCreating"}})
    )]);
    api.apply(pod.clone());
    let running = follow(&setup, &api);
    setup.until_recorded(RolloutStatus::Progressing).await;

    pod["status"]["ephemeralContainerStatuses"] = json!([container_status(
        "debugger",
        "docker.io/library/busybox:1.36",
        false,
        running_since()
    )]);
    api.apply(pod);
    let records = setup.until_recorded(RolloutStatus::Completed).await;
    let done = records.last().unwrap();
    assert_eq!(done.new_pods, strings(&["web"]));
    assert_eq!(done.terminated_pods, strings(&[]));
    assert_eq!(
        (done.success, done.error_message.as_deref()),
        (Some(true), None)
    );
    assert_eq!(
        (
            done.previous_image.as_deref(),
            done.current_image.as_deref()
        ),
        (None, Some("busybox:1.36")),
        "a debug container had no previous image"
    );
    running.stop().await;
}

#[tokio::test]
async fn a_pod_change_never_applied_is_failed_as_not_applied() {
    // Admitted two minutes ago, past the 60 s grace; another webhook refused
    // it, so the pod still runs web:1.
    let setup = admitted_change(
        WorkloadKind::Pod,
        ChangeKind::Image,
        web_1_to_2(),
        Timestamp::now() - SignedDuration::from_mins(2),
    )
    .await;
    let api = FakeApi::default();
    let old = container_status("web", "web:1", true, running_since());
    api.apply(pod_web(
        "web:1",
        json!({"phase": "Running", "containerStatuses": [old]}),
    ));
    let running = follow(&setup, &api);

    let records = setup.until_recorded(RolloutStatus::Failed).await;
    assert_eq!(statuses(&records), [RolloutStatus::Failed]);
    let error = records
        .last()
        .unwrap()
        .error_message
        .clone()
        .unwrap_or_default();
    assert!(
        error.starts_with(
            "change not applied: Pod production/web does not show the admitted change"
        ),
        "{error}"
    );
    running.stop().await;
}

#[tokio::test]
async fn a_pod_deleted_while_followed_is_failed_as_deleted() {
    let setup = admitted_change(
        WorkloadKind::Pod,
        ChangeKind::Image,
        web_1_to_2(),
        Timestamp::now(),
    )
    .await;
    let api = FakeApi::default();
    let old = container_status("web", "web:1", true, running_since());
    api.apply(pod_web(
        "web:2",
        json!({"phase": "Running", "containerStatuses": [old]}),
    ));
    let running = follow(&setup, &api);
    setup.until_recorded(RolloutStatus::Progressing).await;

    api.delete("Pod", "production", "web");
    let records = setup.until_recorded(RolloutStatus::Failed).await;
    assert_eq!(
        records.last().unwrap().error_message.as_deref(),
        Some("pod deleted: Pod production/web no longer exists")
    );
    running.stop().await;
}
