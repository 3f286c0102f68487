//! Where a rollout stands, as a pure function of what the watches have seen:
//! [`assess`] takes the [`Operation`] being followed and a [`Snapshot`] of
//! the workload, its ReplicaSets or ControllerRevisions and its pods, and
//! answers an [`Assessment`]. No I/O and no clock: the follower passes
//! `now`, so every rule here is unit-tested with hand-made objects.
//!
//! For the kinds that roll their pods (Deployment, StatefulSet, DaemonSet)
//! the completion rules are `kubectl rollout status`'s, per kind; a rollout
//! fails on `ProgressDeadlineExceeded` or a new pod that cannot run
//! (crash loop, image that cannot be pulled, failed phase); it times out when
//! the workload's `progressDeadlineSeconds` (default 600 s) pass without it
//! completing, counted from the admission.
//!
//! The other kinds have no rollout, and the outcome is what they can show:
//! a ReplicaSet or CronJob is COMPLETED once it stores the change, with a
//! note that its running pods or jobs keep the old template
//! ([`template_only`]); a Pod is COMPLETED once its changed containers run
//! the new image, or its debug container has started ([`pod`]). For every
//! kind, a change the object never shows is FAILED "change not applied"
//! after `apply_grace`, and a deleted object FAILED.

use std::collections::{BTreeMap, BTreeSet};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::apps::v1::{
    ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet,
};
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod, PodSpec, PodStatus, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::audit::RolloutStatus;
use crate::policy::{ChangeKind, ImageChange, WorkloadKind};

mod pod;
mod template_only;

/// The pod-template annotation `kubectl rollout restart` sets.
const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";
/// The revision number the Deployment controller puts on ReplicaSets.
const DEPLOYMENT_REVISION: &str = "deployment.kubernetes.io/revision";
/// Waiting reasons of a container that will not come up by itself.
const STUCK_REASONS: [&str; 6] = [
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
];

/// An admitted change being followed: what its ADMISSION record says.
#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    pub id: String,
    pub kind: WorkloadKind,
    pub namespace: String,
    pub name: String,
    /// When the change was admitted; deadlines count from here.
    pub started_at: Timestamp,
    /// The `restartedAt` value the change set, for a restart.
    pub restarted_at: Option<String>,
    /// The image changes the change made.
    pub images: Vec<ImageChange>,
    /// The change class the webhook gave it (DEBUG: an ephemeral container).
    pub change: Option<ChangeKind>,
}

/// The workload, whichever kind it is. Deployments, StatefulSets and
/// DaemonSets roll their pods; a ReplicaSet's or CronJob's template change
/// replaces none (see [`template_only`]); a Pod changes in place (see [`pod`]).
#[derive(Debug, Clone)]
pub enum Workload {
    Deployment(Deployment),
    StatefulSet(StatefulSet),
    DaemonSet(DaemonSet),
    ReplicaSet(ReplicaSet),
    /// Boxed: a CronJob nests a job in its template and outweighs the rest.
    CronJob(Box<CronJob>),
    Pod(Pod),
}

impl Workload {
    pub fn meta(&self) -> &ObjectMeta {
        match self {
            Self::Deployment(d) => &d.metadata,
            Self::StatefulSet(s) => &s.metadata,
            Self::DaemonSet(d) => &d.metadata,
            Self::ReplicaSet(r) => &r.metadata,
            Self::CronJob(c) => &c.metadata,
            Self::Pod(p) => &p.metadata,
        }
    }

    /// The pod template; a Pod has none (it is the pod).
    fn template(&self) -> Option<&PodTemplateSpec> {
        match self {
            Self::Deployment(d) => Some(&d.spec.template),
            Self::StatefulSet(s) => Some(&s.spec.template),
            Self::DaemonSet(d) => Some(&d.spec.template),
            Self::ReplicaSet(r) => r.spec.template.as_ref(),
            Self::CronJob(c) => c.spec.job_template.spec.as_ref().map(|j| &j.template),
            Self::Pod(_) => None,
        }
    }

    /// The pod spec the change shows in: the template's, or a Pod's own.
    fn pod_spec(&self) -> Option<&PodSpec> {
        match self {
            Self::Pod(p) => p.spec.as_ref(),
            _ => self.template()?.spec.as_ref(),
        }
    }

    /// `spec.replicas` (default 1); a DaemonSet's desired number scheduled;
    /// `None` for the kinds without replicas (CronJob, Pod).
    pub fn replicas(&self) -> Option<i32> {
        match self {
            Self::Deployment(d) => Some(d.spec.replicas.unwrap_or(1)),
            Self::StatefulSet(s) => Some(s.spec.replicas.unwrap_or(1)),
            Self::DaemonSet(d) => Some(d.status.as_ref().map_or(0, |s| s.desired_number_scheduled)),
            Self::ReplicaSet(r) => Some(r.spec.replicas.unwrap_or(1)),
            Self::CronJob(_) | Self::Pod(_) => None,
        }
    }

    /// The update strategy's type (`RollingUpdate`, `Recreate`, `OnDelete`);
    /// `None` for the kinds that roll nothing (ReplicaSet, CronJob, Pod).
    pub fn strategy(&self) -> Option<String> {
        let strategy = match self {
            Self::Deployment(d) => d.spec.strategy.as_ref().and_then(|s| s.type_.clone()),
            Self::StatefulSet(s) => s
                .spec
                .update_strategy
                .as_ref()
                .and_then(|s| s.type_.clone()),
            Self::DaemonSet(d) => d
                .spec
                .update_strategy
                .as_ref()
                .and_then(|s| s.type_.clone()),
            Self::ReplicaSet(_) | Self::CronJob(_) | Self::Pod(_) => return None,
        };
        Some(strategy.unwrap_or_else(|| "RollingUpdate".to_owned()))
    }

    /// How long the rollout may take: a Deployment's
    /// `progressDeadlineSeconds`, else `default`.
    pub fn deadline(&self, default: SignedDuration) -> SignedDuration {
        match self {
            Self::Deployment(d) => d
                .spec
                .progress_deadline_seconds
                .map_or(default, |s| SignedDuration::from_secs(i64::from(s))),
            _ => default,
        }
    }

    fn generation_observed(&self) -> bool {
        let generation = self.meta().generation.unwrap_or(0);
        let observed = match self {
            Self::Deployment(d) => d.status.as_ref().and_then(|s| s.observed_generation),
            Self::StatefulSet(s) => s.status.as_ref().and_then(|s| s.observed_generation),
            Self::DaemonSet(d) => d.status.as_ref().and_then(|s| s.observed_generation),
            // Not consulted: these complete on what is stored (ReplicaSet,
            // CronJob) or on their container statuses (Pod).
            Self::ReplicaSet(_) | Self::CronJob(_) | Self::Pod(_) => return true,
        };
        observed.unwrap_or(0) >= generation
    }
}

/// What the watches have seen of one workload.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// `None` once the workload is gone.
    pub workload: Option<Workload>,
    pub replica_sets: BTreeMap<String, ReplicaSet>,
    pub revisions: BTreeMap<String, ControllerRevision>,
    pub pods: BTreeMap<String, Pod>,
}

/// Where a rollout stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessment {
    pub status: RolloutStatus,
    /// The change is visible in the workload's pod template.
    pub applied: bool,
    /// The new ReplicaSet (Deployment) or ControllerRevision (others).
    pub revision: Option<String>,
    /// Live pods of the new revision.
    pub new_pods: Vec<String>,
    /// Live pods of older revisions.
    pub old_pods: Vec<String>,
    /// Pods being deleted (whatever their revision): terminated, as far as
    /// the rollout is concerned.
    pub terminating_pods: Vec<String>,
    pub replicas: Option<i32>,
    pub strategy: Option<String>,
    /// The image of the workload's first container, as its template says.
    pub image: Option<String>,
    /// Why the rollout failed or timed out.
    pub error: Option<String>,
    /// What an operator should know about an outcome that is not the end of
    /// the story: a ReplicaSet's running pods keep the old template, a
    /// CronJob's takes effect at its next run. Recorded as `reason`.
    pub note: Option<String>,
}

/// Settings the rules need.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Deadline of kinds without `progressDeadlineSeconds`, and the default.
    pub default_deadline: SignedDuration,
    /// How long after admission a change must show in the workload before
    /// it counts as not applied.
    pub apply_grace: SignedDuration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            default_deadline: SignedDuration::from_secs(600),
            apply_grace: SignedDuration::from_secs(60),
        }
    }
}

impl Assessment {
    /// An assessment that knows nothing of the workload: `status`, and why.
    pub fn bare(status: RolloutStatus, error: Option<String>) -> Self {
        Self {
            status,
            applied: false,
            revision: None,
            new_pods: Vec::new(),
            old_pods: Vec::new(),
            terminating_pods: Vec::new(),
            replicas: None,
            strategy: None,
            image: None,
            error,
            note: None,
        }
    }
}

/// Where `op` stands given `snapshot` at `now`.
pub fn assess(op: &Operation, snapshot: &Snapshot, now: Timestamp, limits: &Limits) -> Assessment {
    let mut a = Assessment::bare(RolloutStatus::Started, None);
    let Some(workload) = &snapshot.workload else {
        a.status = RolloutStatus::Failed;
        a.error = Some(format!(
            "{}{} {}/{} no longer exists",
            if op.kind == WorkloadKind::Pod {
                "pod deleted: "
            } else {
                ""
            },
            op.kind.as_str(),
            op.namespace,
            op.name
        ));
        return a;
    };
    a.replicas = workload.replicas();
    a.image = workload
        .pod_spec()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.clone());
    a.strategy = workload.strategy();
    let elapsed = now.duration_since(op.started_at);
    a.applied = shows_change(op, workload);
    if !a.applied {
        if elapsed >= limits.apply_grace {
            a.status = RolloutStatus::Failed;
            a.error = Some(format!(
                "change not applied: {} {}/{} does not show the admitted change {}s after admission \
                 (another admission webhook may have refused it, or a newer change replaced it)",
                op.kind.as_str(),
                op.namespace,
                op.name,
                elapsed.as_secs()
            ));
        }
        return a;
    }
    let deadline = workload.deadline(limits.default_deadline);
    match workload {
        Workload::Deployment(_) | Workload::StatefulSet(_) | Workload::DaemonSet(_) => {
            assess_rollout(op, workload, snapshot, elapsed >= deadline, deadline, a)
        }
        Workload::ReplicaSet(rs) => template_only::replica_set(op, rs, snapshot, a),
        Workload::CronJob(cj) => template_only::cron_job(op, cj, a),
        Workload::Pod(p) => pod::assess(op, p, elapsed >= deadline, deadline, a),
    }
}

/// The rest of [`assess`] for the kinds that roll their pods, once the
/// change shows in the workload.
fn assess_rollout(
    op: &Operation,
    workload: &Workload,
    snapshot: &Snapshot,
    past_deadline: bool,
    deadline: SignedDuration,
    mut a: Assessment,
) -> Assessment {
    let hash = new_revision(op, workload, snapshot);
    a.revision = hash.as_ref().map(|(name, _)| name.clone());
    for (name, pod) in &snapshot.pods {
        if pod.metadata.deletion_timestamp.is_some() {
            a.terminating_pods.push(name.clone());
            continue;
        }
        let pod_hash = label(&pod.metadata, revision_label(op.kind));
        match (&hash, pod_hash) {
            (Some((_, h)), Some(p)) if h == p => a.new_pods.push(name.clone()),
            _ => a.old_pods.push(name.clone()),
        }
    }

    if let Some(error) = failure(workload, snapshot, &a.new_pods) {
        a.status = RolloutStatus::Failed;
        a.error = Some(error);
    } else if hash.is_some() && complete(workload) && pods_caught_up(workload, &a) {
        a.status = RolloutStatus::Completed;
    } else if past_deadline {
        a.status = RolloutStatus::Timeout;
        a.error = Some(format!(
            "rollout did not complete within {}s (progressDeadlineSeconds, counted from admission): \
             {} of {} pods updated",
            deadline.as_secs(),
            a.new_pods.len(),
            workload.replicas().unwrap_or(0)
        ));
    } else {
        a.status = RolloutStatus::Progressing;
    }
    a
}

/// True when the workload carries what the change set: in its pod
/// template, or for a Pod in its own spec.
fn shows_change(op: &Operation, workload: &Workload) -> bool {
    match workload {
        Workload::Pod(p) => {
            // A DEBUG admission that names no container shows as soon as
            // the pod has an ephemeral container.
            let unnamed_debug = op.change == Some(ChangeKind::Debug) && op.images.is_empty();
            let debugged = p
                .spec
                .as_ref()
                .and_then(|s| s.ephemeral_containers.as_ref())
                .is_some_and(|e| !e.is_empty());
            spec_shows(op, Some(&p.metadata), p.spec.as_ref()) && (!unnamed_debug || debugged)
        }
        _ => workload.template().is_some_and(|t| template_shows(op, t)),
    }
}

/// True when `template` carries what the change set: a revision made
/// before the change does not (the watches of the workload and of its
/// revisions are separate, so the newest revision seen may be an old one).
fn template_shows(op: &Operation, template: &PodTemplateSpec) -> bool {
    spec_shows(op, template.metadata.as_ref(), template.spec.as_ref())
}

/// True when `meta` has the restart and `spec` the images the change set.
fn spec_shows(op: &Operation, meta: Option<&ObjectMeta>, spec: Option<&PodSpec>) -> bool {
    if let Some(value) = &op.restarted_at {
        let current = meta
            .and_then(|m| m.annotations.as_ref())
            .and_then(|a| a.get(RESTARTED_AT));
        if current != Some(value) {
            return false;
        }
    }
    op.images.iter().all(|change| {
        let image = spec.and_then(|s| image_of(s, &change.container, change.init));
        image == change.current_image.as_deref()
    })
}

/// The image of container `name` in `spec`: among the init containers if
/// `init`, else among the containers, then the ephemeral containers. A
/// name is unique across the three lists of a pod, so a DEBUG change's
/// container is found by its name alone (a template has no ephemeral ones).
fn image_of<'a>(spec: &'a PodSpec, name: &str, init: bool) -> Option<&'a str> {
    if init {
        let mut init = spec.init_containers.iter().flatten();
        return init.find(|c| c.name == name)?.image.as_deref();
    }
    match spec.containers.iter().find(|c| c.name == name) {
        Some(c) => c.image.as_deref(),
        None => spec
            .ephemeral_containers
            .iter()
            .flatten()
            .find(|c| c.name == name)?
            .image
            .as_deref(),
    }
}

/// The pod label naming a pod's revision.
fn revision_label(kind: WorkloadKind) -> &'static str {
    match kind {
        WorkloadKind::Deployment => "pod-template-hash",
        _ => "controller-revision-hash",
    }
}

fn label<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.labels.as_ref()?.get(key).map(String::as_str)
}

fn owned_by(meta: &ObjectMeta, owner: &ObjectMeta) -> bool {
    meta.owner_references.as_ref().is_some_and(|refs| {
        refs.iter().any(|r| {
            Some(&r.name) == owner.name.as_ref()
                && (owner.uid.is_none() || Some(&r.uid) == owner.uid.as_ref())
        })
    })
}

/// The current revision's name and the hash its pods carry, once the
/// controller has acted on the latest spec.
fn new_revision(
    op: &Operation,
    workload: &Workload,
    snapshot: &Snapshot,
) -> Option<(String, String)> {
    if !workload.generation_observed() {
        return None;
    }
    let owner = workload.meta();
    match workload {
        Workload::Deployment(_) => snapshot
            .replica_sets
            .values()
            .filter(|rs| owned_by(&rs.metadata, owner))
            .filter(|rs| {
                rs.spec
                    .template
                    .as_ref()
                    .is_some_and(|t| template_shows(op, t))
            })
            .max_by_key(|rs| {
                rs.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(DEPLOYMENT_REVISION))
                    .and_then(|r| r.parse::<i64>().ok())
                    .unwrap_or(0)
            })
            .and_then(|rs| {
                let hash = label(&rs.metadata, "pod-template-hash")?;
                Some((rs.metadata.name.clone()?, hash.to_owned()))
            }),
        // A StatefulSet's pods carry the revision's full name.
        Workload::StatefulSet(s) => {
            let revision = s.status.as_ref()?.update_revision.clone()?;
            Some((revision.clone(), revision))
        }
        // A DaemonSet's pods carry the hash label of its newest revision.
        Workload::DaemonSet(_) => snapshot
            .revisions
            .values()
            .filter(|r| owned_by(&r.metadata, owner))
            .filter(|r| {
                // A DaemonSet's revision holds its template as a patch.
                r.data
                    .0
                    .get("spec")
                    .and_then(|spec| spec.get("template").cloned())
                    .and_then(|t| serde_json::from_value::<PodTemplateSpec>(t).ok())
                    .is_some_and(|t| template_shows(op, &t))
            })
            .max_by_key(|r| r.revision.unwrap_or(0))
            .and_then(|r| {
                let hash = label(&r.metadata, "controller-revision-hash")?;
                Some((r.metadata.name.clone()?, hash.to_owned()))
            }),
        // They make no revision ([`template_only`], [`pod`]).
        Workload::ReplicaSet(_) | Workload::CronJob(_) | Workload::Pod(_) => None,
    }
}

/// `kubectl rollout status`'s notion of done.
fn complete(workload: &Workload) -> bool {
    if !workload.generation_observed() {
        return false;
    }
    match workload {
        Workload::Deployment(d) => {
            let want = workload.replicas().unwrap_or(0);
            let Some(s) = &d.status else { return false };
            let updated = s.updated_replicas.unwrap_or(0);
            updated >= want
                && s.replicas.unwrap_or(0) <= updated
                && s.available_replicas.unwrap_or(0) >= updated
        }
        Workload::StatefulSet(sts) => {
            let want = workload.replicas().unwrap_or(0);
            let Some(s) = &sts.status else { return false };
            let partition = sts
                .spec
                .update_strategy
                .as_ref()
                .and_then(|u| u.rolling_update.as_ref())
                .and_then(|r| r.partition)
                .unwrap_or(0);
            if partition > 0 {
                return s.updated_replicas.unwrap_or(0) >= want - partition;
            }
            s.ready_replicas.unwrap_or(0) >= want
                && s.updated_replicas.unwrap_or(0) >= want
                && s.update_revision.is_some()
                && s.update_revision == s.current_revision
        }
        Workload::DaemonSet(ds) => {
            let Some(s) = &ds.status else { return false };
            s.updated_number_scheduled.unwrap_or(0) >= s.desired_number_scheduled
                && s.number_available.unwrap_or(0) >= s.desired_number_scheduled
        }
        Workload::ReplicaSet(_) | Workload::CronJob(_) | Workload::Pod(_) => false,
    }
}

/// True when the pods the watch has seen agree with a complete status: the
/// status and the pod events come from separate watches, so one may be
/// ahead of the other, and an outcome must not name pods half-seen.
fn pods_caught_up(workload: &Workload, a: &Assessment) -> bool {
    let partition = match workload {
        Workload::StatefulSet(sts) => sts
            .spec
            .update_strategy
            .as_ref()
            .and_then(|u| u.rolling_update.as_ref())
            .and_then(|r| r.partition)
            .unwrap_or(0)
            .max(0),
        _ => 0,
    };
    let want_new = usize::try_from(workload.replicas().unwrap_or(0) - partition).unwrap_or(0);
    let old_at_most = usize::try_from(partition).unwrap_or(0);
    a.new_pods.len() >= want_new && a.old_pods.len() <= old_at_most
}

/// Why the rollout cannot succeed, if it cannot.
fn failure(workload: &Workload, snapshot: &Snapshot, new_pods: &[String]) -> Option<String> {
    if let Workload::Deployment(d) = workload {
        let stalled = d
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_.as_deref() == Some("Progressing")))
            .filter(|c| c.reason.as_deref() == Some("ProgressDeadlineExceeded"));
        if let Some(c) = stalled {
            return Some(format!(
                "ProgressDeadlineExceeded: {}",
                c.message
                    .as_deref()
                    .unwrap_or("the Deployment stopped making progress")
            ));
        }
    }
    let new: BTreeSet<&String> = new_pods.iter().collect();
    for (name, pod) in snapshot.pods.iter().filter(|(n, _)| new.contains(n)) {
        let Some(status) = &pod.status else { continue };
        if let Some(error) = pod_failed(name, status) {
            return Some(error);
        }
        let mut containers = status
            .init_container_statuses
            .iter()
            .flatten()
            .chain(status.container_statuses.iter().flatten());
        if let Some(error) = containers.find_map(|c| stuck(name, c)) {
            return Some(error);
        }
    }
    None
}

/// Why pod `name` failed, if its phase is Failed.
fn pod_failed(name: &str, status: &PodStatus) -> Option<String> {
    (status.phase.as_deref() == Some("Failed")).then(|| {
        format!(
            "pod {name} failed: {}",
            status
                .message
                .as_deref()
                .or(status.reason.as_deref())
                .unwrap_or("phase Failed")
        )
    })
}

/// Why container `c` of pod `pod` will not come up by itself, if it will not:
/// it waits for one of [`STUCK_REASONS`].
fn stuck(pod: &str, c: &ContainerStatus) -> Option<String> {
    let waiting = c.state.as_ref()?.waiting.as_ref()?;
    let reason = waiting
        .reason
        .as_deref()
        .filter(|r| STUCK_REASONS.contains(r))?;
    let message = waiting.message.as_deref().unwrap_or("");
    Some(format!(
        "pod {pod}: container {}: {reason}{}{message}",
        c.name,
        if message.is_empty() { "" } else { ": " }
    ))
}

#[cfg(test)]
#[path = "assess_tests.rs"]
mod tests;
