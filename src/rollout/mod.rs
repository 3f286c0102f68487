//! The rollout follower: after the webhook admits a gated change, rollgate
//! watches the workload until its rollout ends, and appends the outcome to
//! the audit trail as linked ROLLOUT records of the same `operationId`
//! (PROGRESSING once the change shows, then COMPLETED, FAILED or TIMEOUT).
//!
//! - Which operations are open is kept by the audit store itself: appending
//!   an admitted ADMISSION record with an `operationId` opens one, appending
//!   its final ROLLOUT record closes it, in the same write (so the webhook
//!   pays no extra round trip). See [`OperationLeases`].
//! - Exactly one replica follows each operation: it holds a short lease in
//!   the store and renews it while it watches. The replica that admitted the
//!   change starts at once (the webhook wakes it); every replica scans the
//!   open operations periodically, so when a follower dies its operations
//!   are taken over once the lease lapses, and after a restart unfinished
//!   operations are resumed. A resumed follower starts from the last ROLLOUT
//!   record, so nothing is recorded twice.
//! - [`assess`] is the pure decision (where does the rollout stand?);
//!   [`follow`] is the I/O: kube-rs watches of the workload by name, its
//!   ReplicaSets (Deployment) or ControllerRevisions (DaemonSet) and its pods
//!   (none for a CronJob; a Pod is itself the workload watched by name).
//! - A ReplicaSet, CronJob or Pod has no rollout: the follower records what
//!   it can observe of them. A ReplicaSet or CronJob is COMPLETED once it
//!   stores the change (its `reason` says that running pods, or jobs, keep
//!   the old template); a Pod once the kubelet runs its changed containers
//!   with the new image (IMAGE) or has started the debug container (DEBUG).

pub mod assess;
mod follow;

use std::time::Duration;

use async_trait::async_trait;

use crate::audit::{AuditDecision, AuditEvent, AuditRecord, RolloutStatus};

pub use follow::{Follower, FollowerSettings};

/// The open operations and their leases; one implementation per backend.
#[async_trait]
pub trait OperationLeases: Send + Sync + 'static {
    /// Operation ids admitted and not yet closed, oldest first, at most `limit`.
    async fn open_operations(&self, limit: usize) -> Result<Vec<String>, crate::error::Error>;
    /// Takes the lease on `operation_id` for `holder` for `ttl`, or renews
    /// it when `holder` has it already. False when another holder's lease
    /// is still running.
    async fn lease_operation(
        &self,
        operation_id: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, crate::error::Error>;
    /// Gives the lease up, if `holder` has it, so another replica can take
    /// the operation over at once.
    async fn release_operation(
        &self,
        operation_id: &str,
        holder: &str,
    ) -> Result<(), crate::error::Error>;
}

/// What appending a record does to the set of open operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperationMark {
    /// An admitted change: its rollout is to be followed.
    Open,
    /// The final ROLLOUT record of an operation.
    Close,
    /// Nothing.
    None,
}

impl OperationMark {
    /// The mark of `record`.
    pub fn of(record: &AuditRecord) -> Self {
        if record.operation_id.is_none() || record.dry_run == Some(true) {
            return Self::None;
        }
        match (record.event, record.decision, record.rollout_status) {
            (
                Some(AuditEvent::Admission),
                Some(AuditDecision::Allowed | AuditDecision::Exempt),
                _,
            ) => Self::Open,
            (Some(AuditEvent::Rollout), _, Some(status)) if is_final(status) => Self::Close,
            _ => Self::None,
        }
    }
}

/// True for the statuses that end an operation.
pub fn is_final(status: RolloutStatus) -> bool {
    matches!(
        status,
        RolloutStatus::Completed | RolloutStatus::Failed | RolloutStatus::Timeout
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admitted_changes_open_operations_and_final_rollouts_close_them() {
        let mut admission = AuditRecord::new(AuditEvent::Admission, jiff::Timestamp::now());
        admission.operation_id = Some("op".into());
        for (decision, want) in [
            (AuditDecision::Allowed, OperationMark::Open),
            (AuditDecision::Exempt, OperationMark::Open),
            (AuditDecision::Denied, OperationMark::None),
        ] {
            admission.decision = Some(decision);
            assert_eq!(OperationMark::of(&admission), want, "{decision:?}");
        }
        admission.decision = Some(AuditDecision::Allowed);
        admission.dry_run = Some(true);
        assert_eq!(OperationMark::of(&admission), OperationMark::None);

        let mut rollout = AuditRecord::new(AuditEvent::Rollout, jiff::Timestamp::now());
        rollout.operation_id = Some("op".into());
        for (status, want) in [
            (RolloutStatus::Progressing, OperationMark::None),
            (RolloutStatus::Completed, OperationMark::Close),
            (RolloutStatus::Failed, OperationMark::Close),
            (RolloutStatus::Timeout, OperationMark::Close),
        ] {
            rollout.rollout_status = Some(status);
            assert_eq!(OperationMark::of(&rollout), want, "{status:?}");
        }
        rollout.operation_id = None;
        assert_eq!(OperationMark::of(&rollout), OperationMark::None);
    }
}
