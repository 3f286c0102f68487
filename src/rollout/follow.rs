//! The follower's I/O: leases, kube-rs watches, ROLLOUT records, metrics.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::{Stream, StreamExt};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::apps::v1::{
    ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet,
};
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Resource};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::assess::{self, Assessment, Limits, Operation, Snapshot, Workload};
use super::{OperationLeases, is_final};
use crate::audit::{AuditEvent, AuditFilter, AuditLog, AuditRecord, MAX_PAGE, RolloutStatus};
use crate::metrics::Metrics;
use crate::policy::{ChangeKind, WorkloadKind};

/// Windows of `app_redeploy_success_rate`.
const SUCCESS_WINDOWS: [(&str, i64); 2] = [("1h", 3600), ("24h", 86_400)];

/// Timing of the follower.
#[derive(Debug, Clone)]
pub struct FollowerSettings {
    /// How long a lease lasts without renewal; renewed every third of it.
    pub lease_ttl: Duration,
    /// How often open operations are scanned for ones nobody follows.
    pub scan_interval: Duration,
    /// How often a followed rollout is assessed again without news, for
    /// its deadlines.
    pub tick: Duration,
    pub limits: Limits,
    /// Most operations this process follows at once. A burst of admitted
    /// changes beyond it waits in the store for the next scans, so it costs
    /// neither unbounded tasks nor a lease renewal each.
    pub max_followed: usize,
}

impl Default for FollowerSettings {
    fn default() -> Self {
        Self {
            lease_ttl: Duration::from_secs(15),
            scan_interval: Duration::from_secs(10),
            tick: Duration::from_secs(1),
            limits: Limits::default(),
            max_followed: 256,
        }
    }
}

/// Why following one operation stopped early. The lease then lapses and
/// the operation is taken up again by the next scan (here or elsewhere).
#[derive(Debug, thiserror::Error)]
enum FollowError {
    #[error("store")]
    Store(#[from] crate::error::Error),
    #[error("kubernetes API")]
    Kube(#[from] kube::Error),
    #[error("operation {0} has no ADMISSION record")]
    NoAdmission(String),
}

/// Follows the rollouts of admitted changes; one per process.
pub struct Follower {
    /// The cluster; without one, operations are closed as TIMEOUT at their
    /// deadline, saying so.
    client: Option<kube::Client>,
    audit: Arc<dyn AuditLog>,
    leases: Arc<dyn OperationLeases>,
    metrics: Arc<Metrics>,
    /// Names this process in leases.
    holder: String,
    settings: FollowerSettings,
    /// Operations this process follows now.
    following: Mutex<HashSet<String>>,
}

impl Follower {
    pub fn new(
        client: Option<kube::Client>,
        audit: Arc<dyn AuditLog>,
        leases: Arc<dyn OperationLeases>,
        metrics: Arc<Metrics>,
        settings: FollowerSettings,
    ) -> Arc<Self> {
        Arc::new(Self {
            client,
            audit,
            leases,
            metrics,
            holder: crate::names::random_id(),
            settings,
            following: Mutex::default(),
        })
    }

    /// Follows each operation sent on `wake` at once, and every scan
    /// interval the open operations nobody holds; until `shutdown`, when the
    /// leases are given up so another replica takes over at once.
    pub async fn run(
        self: Arc<Self>,
        mut wake: mpsc::Receiver<String>,
        shutdown: CancellationToken,
    ) {
        let mut tasks = JoinSet::new();
        let mut scan = tokio::time::interval(self.settings.scan_interval);
        scan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_rates = None::<tokio::time::Instant>;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(op) = wake.recv() => {
                    // Without a cluster there is nothing to watch: an
                    // operation only ends at its deadline, which the scan
                    // finds, so a fresh one is not even looked at.
                    if self.client.is_some() {
                        self.start(&mut tasks, op, &shutdown);
                    }
                }
                _ = scan.tick() => {
                    // Oldest first: without a cluster only the oldest can be
                    // past their deadline, so a short list is enough.
                    let batch = if self.client.is_some() { 1000 } else { 100 };
                    match self.leases.open_operations(batch).await {
                        Ok(ops) => {
                            for op in ops {
                                self.start(&mut tasks, op, &shutdown);
                            }
                        }
                        Err(e) => tracing::warn!(error = %crate::error::error_chain(&e), "cannot list open operations"),
                    }
                    if last_rates.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                        last_rates = Some(tokio::time::Instant::now());
                        self.refresh_success_rate().await;
                    }
                }
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        // Each follow task sees the cancellation and releases its lease.
        while tasks.join_next().await.is_some() {}
    }

    fn start(self: &Arc<Self>, tasks: &mut JoinSet<()>, op: String, shutdown: &CancellationToken) {
        if tasks.len() >= self.settings.max_followed {
            // Still open in the store: a scan takes it up once a slot frees.
            return;
        }
        let fresh = self
            .following
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(op.clone());
        if !fresh {
            return;
        }
        let me = self.clone();
        let stop = shutdown.child_token();
        tasks.spawn(async move {
            me.follow(&op, &stop).await;
            me.following
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&op);
        });
    }

    async fn follow(&self, op: &str, stop: &CancellationToken) {
        let ttl = self.settings.lease_ttl;
        match self.leases.lease_operation(op, &self.holder, ttl).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                tracing::warn!(operation = op, error = %crate::error::error_chain(&e), "cannot lease operation");
                return;
            }
        }
        tracing::debug!(operation = op, "following rollout");
        let lost = CancellationToken::new();
        let result = tokio::select! {
            result = self.follow_leased(op) => result,
            () = self.keep_lease(op, &lost) => Ok(()),
            () = stop.cancelled() => Ok(()),
        };
        if let Err(e) = result {
            tracing::warn!(operation = op, error = %crate::error::error_chain(&e), "stopped following rollout; it will be taken up again");
        }
        if !lost.is_cancelled()
            && let Err(e) = self.leases.release_operation(op, &self.holder).await
        {
            tracing::debug!(operation = op, error = %crate::error::error_chain(&e), "cannot release lease");
        }
    }

    /// Renews the lease until it is lost (another holder has it, or no
    /// renewal succeeded within its lifetime); then returns.
    async fn keep_lease(&self, op: &str, lost: &CancellationToken) {
        let ttl = self.settings.lease_ttl;
        let mut renewed = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(ttl / 3).await;
            match self.leases.lease_operation(op, &self.holder, ttl).await {
                Ok(true) => renewed = tokio::time::Instant::now(),
                Ok(false) => break,
                Err(_) if renewed.elapsed() < ttl => continue,
                Err(_) => break,
            }
        }
        tracing::warn!(
            operation = op,
            "lost the lease of the rollout; another replica follows it"
        );
        lost.cancel();
    }

    async fn follow_leased(&self, op_id: &str) -> Result<(), FollowError> {
        let filter = AuditFilter {
            operation_id: Some(op_id.to_owned()),
            limit: Some(MAX_PAGE),
            ..AuditFilter::default()
        };
        let records = self.audit.query(&filter).await?.items;
        let admission = records
            .iter()
            .find(|r| r.event == Some(AuditEvent::Admission))
            .ok_or_else(|| FollowError::NoAdmission(op_id.to_owned()))?;
        let last = records
            .iter()
            .find(|r| r.event == Some(AuditEvent::Rollout));
        if last.and_then(|r| r.rollout_status).is_some_and(is_final) {
            return Ok(());
        }
        let Some(op) = operation_of(admission) else {
            let error = "the ADMISSION record names no workload to follow".to_owned();
            return self
                .close_unfollowable(admission, RolloutStatus::Failed, error)
                .await;
        };
        // When the rollout cannot be watched at all (no cluster, no RBAC),
        // the operation still ends: as TIMEOUT once its deadline is past.
        let deadline = op.started_at + self.settings.limits.default_deadline;
        let past_deadline = || Timestamp::now() >= deadline;
        let Some(client) = &self.client else {
            if !past_deadline() {
                return Ok(()); // looked at again by the next scan
            }
            let error = "no cluster configured: rollgate could not follow this rollout".to_owned();
            return self
                .close_unfollowable(admission, RolloutStatus::Timeout, error)
                .await;
        };
        let mut progress = Progress::resume(last);
        let mut watch = match Watch::start(client, &op).await {
            Ok(watch) => watch,
            Err(e) if past_deadline() => {
                let error = format!(
                    "the rollout could not be followed: {}",
                    crate::error::error_chain(&e)
                );
                return self
                    .close_unfollowable(admission, RolloutStatus::Timeout, error)
                    .await;
            }
            Err(e) => return Err(e.into()),
        };
        let mut tick = tokio::time::interval(self.settings.tick);
        loop {
            tokio::select! {
                update = watch.next() => {
                    if update.is_none() {
                        return Ok(()); // the watches never end by themselves
                    }
                }
                _ = tick.tick() => {}
            }
            if !watch.synced() {
                if past_deadline() {
                    let error = format!(
                        "the rollout could not be followed: {}",
                        watch
                            .last_error
                            .as_deref()
                            .unwrap_or("the watches never listed")
                    );
                    return self
                        .close_unfollowable(admission, RolloutStatus::Timeout, error)
                        .await;
                }
                continue;
            }
            let assessment = assess::assess(
                &op,
                &watch.snapshot,
                Timestamp::now(),
                &self.settings.limits,
            );
            progress.observe(&assessment);
            let status = assessment.status;
            if status == RolloutStatus::Started || Some(status) == progress.recorded {
                continue;
            }
            self.record(admission, &assessment, &progress).await?;
            progress.recorded = Some(status);
            if is_final(status) {
                return Ok(());
            }
        }
    }

    /// Closes an operation whose rollout nobody can see, saying why.
    async fn close_unfollowable(
        &self,
        admission: &AuditRecord,
        status: RolloutStatus,
        error: String,
    ) -> Result<(), FollowError> {
        let assessment = Assessment::bare(status, Some(error));
        self.record(admission, &assessment, &Progress::default())
            .await
    }

    /// Appends the ROLLOUT record of `assessment`; for a final one, counts
    /// the operation in the metrics.
    async fn record(
        &self,
        admission: &AuditRecord,
        assessment: &Assessment,
        progress: &Progress,
    ) -> Result<(), FollowError> {
        let now = Timestamp::now();
        let record = rollout_record(admission, assessment, progress, now);
        let record = self.audit.append(record).await?;
        tracing::info!(
            operation = record.operation_id.as_deref().unwrap_or_default(),
            status = ?assessment.status,
            error = assessment.error.as_deref().unwrap_or_default(),
            "rollout recorded"
        );
        if is_final(assessment.status) {
            let application = admission.application_name.as_deref().unwrap_or_default();
            let namespace = admission.namespace.as_deref().unwrap_or_default();
            let result = result_label(assessment.status);
            self.metrics
                .operations_total
                .with_label_values(&[
                    application,
                    namespace,
                    admission.username.as_deref().unwrap_or_default(),
                    result,
                ])
                .inc();
            if let Some(seconds) = record.duration_seconds {
                self.metrics
                    .duration_seconds
                    .with_label_values(&[application, namespace, result])
                    .observe(seconds as f64);
            }
            if assessment.status == RolloutStatus::Completed {
                let since = progress.rollout_started.unwrap_or(now);
                self.metrics
                    .rollout_duration_seconds
                    .with_label_values(&[
                        application,
                        namespace,
                        assessment.strategy.as_deref().unwrap_or_default(),
                    ])
                    .observe(now.duration_since(since).as_secs_f64().max(0.0));
            }
        }
        Ok(())
    }

    /// Sets `app_redeploy_success_rate` from the final ROLLOUT records of
    /// the widest window, read from the shared trail (so every replica
    /// reports the same figures).
    async fn refresh_success_rate(&self) {
        let widest = SUCCESS_WINDOWS.iter().map(|(_, s)| *s).max().unwrap_or(0);
        let now = Timestamp::now();
        let mut filter = AuditFilter {
            event: Some(AuditEvent::Rollout),
            since: now.checked_sub(SignedDuration::from_secs(widest)).ok(),
            limit: Some(MAX_PAGE),
            ..AuditFilter::default()
        };
        // Counted page by page, so memory holds one page whatever the trail.
        // (successes, finals) per application, per window of SUCCESS_WINDOWS.
        let mut counts: BTreeMap<String, [(u32, u32); SUCCESS_WINDOWS.len()]> = BTreeMap::new();
        for _ in 0..50 {
            let page = match self.audit.query(&filter).await {
                Ok(page) => page,
                Err(e) => {
                    tracing::debug!(error = %crate::error::error_chain(&e), "cannot refresh the success rate");
                    return;
                }
            };
            for r in page.items {
                let Some(status) = r.rollout_status.filter(|s| is_final(*s)) else {
                    continue;
                };
                let (Some(app), Ok(at)) = (r.application_name, r.timestamp.parse::<Timestamp>())
                else {
                    continue;
                };
                let age = now.duration_since(at).as_secs();
                let entry = counts.entry(app).or_default();
                for ((_, seconds), (ok, all)) in SUCCESS_WINDOWS.iter().zip(entry.iter_mut()) {
                    if age <= *seconds {
                        *ok += u32::from(status == RolloutStatus::Completed);
                        *all += 1;
                    }
                }
            }
            match page.next {
                Some(next) => filter.after = Some(next),
                None => break,
            }
        }
        self.metrics.success_rate.reset();
        for (app, per_window) in &counts {
            for ((window, _), (ok, all)) in SUCCESS_WINDOWS.iter().zip(per_window) {
                if *all > 0 {
                    self.metrics
                        .success_rate
                        .with_label_values(&[app.as_str(), window])
                        .set(f64::from(*ok) / f64::from(*all));
                }
            }
        }
    }
}

/// `result` label of the operation metrics.
fn result_label(status: RolloutStatus) -> &'static str {
    match status {
        RolloutStatus::Completed => "completed",
        RolloutStatus::Failed => "failed",
        RolloutStatus::Timeout => "timeout",
        RolloutStatus::Started | RolloutStatus::Progressing => "in_progress",
    }
}

/// The operation an ADMISSION record describes, if it names a workload.
fn operation_of(admission: &AuditRecord) -> Option<Operation> {
    let started_at = admission
        .operation_start_time
        .as_deref()
        .unwrap_or(&admission.timestamp)
        .parse()
        .ok()?;
    Some(Operation {
        id: admission.operation_id.clone()?,
        kind: admission.kind?,
        namespace: admission.namespace.clone()?,
        name: admission.deployment_name.clone()?,
        started_at,
        restarted_at: admission.restarted_at.clone(),
        images: admission.image_changes.clone(),
        change: admission.change,
    })
}

/// What the follower carries between assessments (and recovers from the
/// last ROLLOUT record when it resumes).
#[derive(Debug, Default)]
struct Progress {
    /// The status last recorded for the operation.
    recorded: Option<RolloutStatus>,
    /// Pods of older revisions seen since the change.
    previous_pods: BTreeSet<String>,
    previous_replicas: Option<i32>,
    /// When the change was first seen applied.
    rollout_started: Option<Timestamp>,
}

impl Progress {
    fn resume(last: Option<&AuditRecord>) -> Self {
        let Some(last) = last else {
            return Self::default();
        };
        Self {
            recorded: last.rollout_status,
            previous_pods: last.previous_pods.iter().flatten().cloned().collect(),
            previous_replicas: last.previous_replicas,
            rollout_started: last.timestamp.parse().ok(),
        }
    }

    fn observe(&mut self, a: &Assessment) {
        self.previous_pods.extend(a.old_pods.iter().cloned());
        self.previous_pods
            .extend(a.terminating_pods.iter().cloned());
        if self.previous_replicas.is_none() {
            self.previous_replicas = a.replicas;
        }
        if a.applied && self.rollout_started.is_none() {
            self.rollout_started = Some(Timestamp::now());
        }
    }
}

/// The ROLLOUT record of `assessment`, linked to its ADMISSION record.
fn rollout_record(
    admission: &AuditRecord,
    a: &Assessment,
    progress: &Progress,
    now: Timestamp,
) -> AuditRecord {
    let mut r = AuditRecord::new(AuditEvent::Rollout, now);
    r.operation_id = admission.operation_id.clone();
    r.request_uid = admission.request_uid.clone();
    r.username = admission.username.clone();
    r.actor = admission.actor.clone();
    r.namespace = admission.namespace.clone();
    r.application_name = admission.application_name.clone();
    r.kind = admission.kind;
    r.deployment_name = admission.deployment_name.clone();
    r.change = admission.change;
    // An image change names its images; a restart keeps the image it runs.
    // A debug container had no previous image: the pod's own is not it.
    let runs = a
        .image
        .clone()
        .filter(|_| admission.change != Some(ChangeKind::Debug));
    r.previous_image = admission.previous_image.clone().or(runs.clone());
    r.current_image = admission.current_image.clone().or(runs);
    r.ticket_id = admission.ticket_id.clone();
    r.ticket_number = admission.ticket_number.clone();
    r.ticket_entry_id = admission.ticket_entry_id.clone();
    r.grant_jti = admission.grant_jti.clone();
    r.rollout_status = Some(a.status);
    r.rollout_strategy = a.strategy.clone();
    r.previous_replicas = progress.previous_replicas;
    r.current_replicas = a.replicas;
    match admission.kind {
        Some(WorkloadKind::Deployment) => r.new_replica_set = a.revision.clone(),
        Some(WorkloadKind::StatefulSet | WorkloadKind::DaemonSet) => {
            r.controller_revision = a.revision.clone();
        }
        // A ReplicaSet, CronJob or Pod change makes no revision.
        Some(WorkloadKind::ReplicaSet | WorkloadKind::CronJob | WorkloadKind::Pod) | None => {}
    }
    r.reason = a.note.clone();
    let start = admission
        .operation_start_time
        .clone()
        .unwrap_or_else(|| admission.timestamp.clone());
    r.new_pods = Some(a.new_pods.clone());
    r.previous_pods = Some(progress.previous_pods.iter().cloned().collect());
    if is_final(a.status) {
        let live: BTreeSet<&String> = a.new_pods.iter().chain(&a.old_pods).collect();
        let gone = progress.previous_pods.iter().filter(|p| !live.contains(p));
        r.terminated_pods = Some(gone.cloned().collect());
        r.operation_end_time = Some(r.timestamp.clone());
        r.duration_seconds = start
            .parse::<Timestamp>()
            .ok()
            .map(|s| now.duration_since(s).as_secs().max(0));
        r.success = Some(a.status == RolloutStatus::Completed);
        r.error_message = a.error.clone();
    }
    r.operation_start_time = Some(start);
    r
}

// === watches ===

/// One watch's news, whichever resource it is about.
enum Update {
    Workload(watcher::Result<Event<Workload>>),
    ReplicaSet(watcher::Result<Event<ReplicaSet>>),
    Revision(watcher::Result<Event<ControllerRevision>>),
    Pod(watcher::Result<Event<Pod>>),
}

/// A resource kept by a watch: the live objects by name, the objects of a
/// (re)list in progress, and whether a list has completed.
struct Collection<K> {
    live: BTreeMap<String, K>,
    listing: Option<BTreeMap<String, K>>,
    synced: bool,
    last_error: Option<String>,
}

impl<K> Default for Collection<K> {
    fn default() -> Self {
        Self {
            live: BTreeMap::new(),
            listing: None,
            synced: false,
            last_error: None,
        }
    }
}

impl<K> Collection<K> {
    fn apply(&mut self, event: watcher::Result<Event<K>>, name: impl Fn(&K) -> String) {
        match event {
            Ok(Event::Apply(k)) => {
                self.live.insert(name(&k), k);
            }
            Ok(Event::Delete(k)) => {
                self.live.remove(&name(&k));
            }
            Ok(Event::Init) => self.listing = Some(BTreeMap::new()),
            Ok(Event::InitApply(k)) => {
                self.listing.get_or_insert_default().insert(name(&k), k);
            }
            Ok(Event::InitDone) => {
                self.live = self.listing.take().unwrap_or_default();
                self.synced = true;
            }
            Err(error) => {
                tracing::debug!(%error, "rollout watch failed; retrying");
                self.last_error = Some(error.to_string());
            }
        }
    }
}

/// The watches of one operation and what they have seen.
struct Watch {
    stream: futures::stream::SelectAll<BoxedUpdates>,
    workload: Collection<Workload>,
    replica_sets: Collection<ReplicaSet>,
    revisions: Collection<ControllerRevision>,
    pods: Collection<Pod>,
    needs_pods: bool,
    needs_replica_sets: bool,
    needs_revisions: bool,
    snapshot: Snapshot,
    /// The latest watch error, for the record if following fails for good.
    last_error: Option<String>,
}

fn name_of<K: Resource>(k: &K) -> String {
    k.meta().name.clone().unwrap_or_default()
}

type BoxedUpdates = std::pin::Pin<Box<dyn Stream<Item = Update> + Send>>;

fn boxed<K, F>(
    stream: impl Stream<Item = watcher::Result<Event<K>>> + Send + 'static,
    wrap: F,
) -> BoxedUpdates
where
    F: Fn(watcher::Result<Event<K>>) -> Update + Send + 'static,
{
    Box::pin(stream.map(wrap))
}

/// `k=v,k2=v2` of a selector's `matchLabels` (expressions are left out:
/// the watch then sees more pods, which only widens old pods).
fn label_selector(selector: Option<&LabelSelector>) -> String {
    selector
        .and_then(|s| s.match_labels.as_ref())
        .map(|labels| {
            labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

fn map_event<K, T>(
    event: watcher::Result<Event<K>>,
    f: impl Fn(K) -> T,
) -> watcher::Result<Event<T>> {
    event.map(|e| match e {
        Event::Apply(k) => Event::Apply(f(k)),
        Event::Delete(k) => Event::Delete(f(k)),
        Event::Init => Event::Init,
        Event::InitApply(k) => Event::InitApply(f(k)),
        Event::InitDone => Event::InitDone,
    })
}

/// Reads the workload of `op` for the selector of the pods to watch
/// (`None`: gone, or no pods to watch) and watches it by name.
async fn watch_workload<K>(
    client: &kube::Client,
    op: &Operation,
    wrap: fn(K) -> Workload,
    selector: fn(&K) -> Option<LabelSelector>,
) -> Result<(Option<LabelSelector>, BoxedUpdates), kube::Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + 'static,
{
    let api: Api<K> = Api::namespaced(client.clone(), &op.namespace);
    let current = api.get_opt(&op.name).await?.and_then(|k| selector(&k));
    let by_name = watcher::Config::default().fields(&format!("metadata.name={}", op.name));
    let stream = watcher::watcher(api, by_name).default_backoff();
    Ok((
        current,
        boxed(stream, move |e| Update::Workload(map_event(e, wrap))),
    ))
}

impl Watch {
    /// Reads the workload for its selector, then watches it, its pods and
    /// (by kind) its ReplicaSets or ControllerRevisions. A ReplicaSet's pods
    /// are watched for the record; a CronJob's are not (its change touches
    /// no running pod), and a Pod is watched by name as the workload itself.
    async fn start(client: &kube::Client, op: &Operation) -> Result<Self, kube::Error> {
        let ns = op.namespace.as_str();
        let (selector, workload_stream) = match op.kind {
            WorkloadKind::Deployment => {
                watch_workload(client, op, Workload::Deployment, |d: &Deployment| {
                    Some(d.spec.selector.clone())
                })
                .await?
            }
            WorkloadKind::StatefulSet => {
                watch_workload(client, op, Workload::StatefulSet, |s: &StatefulSet| {
                    Some(s.spec.selector.clone())
                })
                .await?
            }
            WorkloadKind::DaemonSet => {
                watch_workload(client, op, Workload::DaemonSet, |d: &DaemonSet| {
                    Some(d.spec.selector.clone())
                })
                .await?
            }
            WorkloadKind::ReplicaSet => {
                watch_workload(client, op, Workload::ReplicaSet, |r: &ReplicaSet| {
                    Some(r.spec.selector.clone())
                })
                .await?
            }
            WorkloadKind::CronJob => {
                watch_workload(
                    client,
                    op,
                    |c| Workload::CronJob(Box::new(c)),
                    |_: &CronJob| None,
                )
                .await?
            }
            WorkloadKind::Pod => watch_workload(client, op, Workload::Pod, |_: &Pod| None).await?,
        };
        let mut watch = Self {
            stream: futures::stream::SelectAll::new(),
            workload: Collection::default(),
            replica_sets: Collection::default(),
            revisions: Collection::default(),
            pods: Collection::default(),
            needs_pods: false,
            needs_replica_sets: false,
            needs_revisions: false,
            snapshot: Snapshot::default(),
            last_error: None,
        };
        watch.stream.push(workload_stream);
        let Some(selector) = selector else {
            // Gone already (the workload watch's empty list says so), or a
            // kind without pods to watch.
            return Ok(watch);
        };
        let labels = watcher::Config::default().labels(&label_selector(Some(&selector)));
        let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
        watch.needs_pods = true;
        watch.stream.push(boxed(
            watcher::watcher(pods, labels.clone()).default_backoff(),
            Update::Pod,
        ));
        match op.kind {
            WorkloadKind::Deployment => {
                watch.needs_replica_sets = true;
                let api: Api<ReplicaSet> = Api::namespaced(client.clone(), ns);
                watch.stream.push(boxed(
                    watcher::watcher(api, labels).default_backoff(),
                    Update::ReplicaSet,
                ));
            }
            WorkloadKind::DaemonSet => {
                watch.needs_revisions = true;
                let api: Api<ControllerRevision> = Api::namespaced(client.clone(), ns);
                watch.stream.push(boxed(
                    watcher::watcher(api, labels).default_backoff(),
                    Update::Revision,
                ));
            }
            _ => {}
        }
        Ok(watch)
    }

    /// The next update, applied to the snapshot.
    async fn next(&mut self) -> Option<()> {
        let update = self.stream.next().await?;
        let errors = [
            &mut self.workload.last_error,
            &mut self.replica_sets.last_error,
            &mut self.revisions.last_error,
            &mut self.pods.last_error,
        ];
        if let Some(e) = errors.into_iter().find_map(Option::take) {
            self.last_error = Some(e);
        }
        match update {
            Update::Workload(e) => {
                self.workload
                    .apply(e, |w| w.meta().name.clone().unwrap_or_default());
                self.snapshot.workload = self.workload.live.values().next().cloned();
            }
            Update::ReplicaSet(e) => {
                self.replica_sets.apply(e, name_of);
                self.snapshot.replica_sets = self.replica_sets.live.clone();
            }
            Update::Revision(e) => {
                self.revisions.apply(e, name_of);
                self.snapshot.revisions = self.revisions.live.clone();
            }
            Update::Pod(e) => {
                self.pods.apply(e, name_of);
                self.snapshot.pods = self.pods.live.clone();
            }
        }
        Some(())
    }

    /// True once every watch has listed, so an assessment sees everything.
    fn synced(&self) -> bool {
        let gone = self.workload.synced && self.workload.live.is_empty();
        gone || (self.workload.synced
            && (!self.needs_pods || self.pods.synced)
            && (!self.needs_replica_sets || self.replica_sets.synced)
            && (!self.needs_revisions || self.revisions.synced))
    }
}

#[cfg(test)]
#[path = "follow_tests.rs"]
mod tests;
