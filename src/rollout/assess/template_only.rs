//! The kinds whose template change replaces no pod: a ReplicaSet (only pods
//! it creates from now on use the new template) and a CronJob (its new job
//! template is used from its next scheduled run). There is no rollout to
//! wait for: once the object as stored shows the change, the operation is
//! COMPLETED, with a note (recorded as `reason`) saying what has not changed
//! yet. A change that never shows is the common "change not applied".

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::CronJob;

use super::{Assessment, Operation, Snapshot, owned_by};
use crate::audit::RolloutStatus;

/// A ReplicaSet that shows the change: COMPLETED, its running pods as
/// `old_pods` (they keep the old template) and no new pod.
pub(super) fn replica_set(
    op: &Operation,
    rs: &ReplicaSet,
    snapshot: &Snapshot,
    mut a: Assessment,
) -> Assessment {
    // Pods being deleted are left out: the change did not end them.
    a.old_pods = snapshot
        .pods
        .iter()
        .filter(|(_, p)| owned_by(&p.metadata, &rs.metadata))
        .filter(|(_, p)| p.metadata.deletion_timestamp.is_none())
        .map(|(name, _)| name.clone())
        .collect();
    let running = match a.old_pods.len() {
        0 => "it runs no pod now".to_owned(),
        1 => "its 1 running pod keeps the old template until it is replaced".to_owned(),
        n => format!("its {n} running pods keep the old template until they are replaced"),
    };
    a.note = Some(format!(
        "ReplicaSet {}/{} stores the new pod template; {running}: only pods it creates from now on use the new one",
        op.namespace, op.name
    ));
    a.status = RolloutStatus::Completed;
    a
}

/// A CronJob that shows the change: COMPLETED, saying when it takes effect.
pub(super) fn cron_job(op: &Operation, cj: &CronJob, mut a: Assessment) -> Assessment {
    let spec = &cj.spec;
    let schedule = spec.schedule.as_str();
    let zone = spec
        .time_zone
        .as_deref()
        .map(|z| format!(", time zone {z}"))
        .unwrap_or_default();
    let mut note = format!(
        "CronJob {}/{} stores the new job template; it takes effect at the next scheduled run (schedule \"{schedule}\"{zone})",
        op.namespace, op.name
    );
    let active = cj
        .status
        .as_ref()
        .and_then(|s| s.active.as_ref())
        .map_or(0, Vec::len);
    match active {
        0 => {}
        1 => note.push_str("; the job already running keeps the old template"),
        n => note.push_str(&format!(
            "; the {n} jobs already running keep the old template"
        )),
    }
    if spec.suspend == Some(true) {
        note.push_str("; the CronJob is suspended: nothing runs until it is resumed");
    }
    a.note = Some(note);
    a.status = RolloutStatus::Completed;
    a
}
