//! The open operations and their leases (the rollout follower's
//! bookkeeping), on every store backend: see `store_contract` for the
//! backends and the `contract!` macro.

use std::time::Duration;

use rollgate::audit::{AuditDecision, AuditEvent, AuditRecord, RolloutStatus};
use rollgate::policy::WorkloadKind;

use crate::store_contract::{Backend, contract};

fn admission(operation: &str, decision: AuditDecision) -> AuditRecord {
    let mut r = AuditRecord::new(AuditEvent::Admission, jiff::Timestamp::now());
    r.decision = Some(decision);
    r.operation_id = Some(operation.into());
    r.namespace = Some("production".into());
    r.application_name = Some("web".into());
    r.kind = Some(WorkloadKind::Deployment);
    r.deployment_name = Some("web".into());
    r
}

fn rollout(operation: &str, status: RolloutStatus) -> AuditRecord {
    let mut r = AuditRecord::new(AuditEvent::Rollout, jiff::Timestamp::now());
    r.operation_id = Some(operation.into());
    r.rollout_status = Some(status);
    r
}

async fn admitted_operations_stay_open_until_their_final_rollout(b: &Backend) {
    let s = b.open().await;
    s.audit
        .append(admission("op-a", AuditDecision::Allowed))
        .await
        .unwrap();
    s.audit
        .append(admission("op-b", AuditDecision::Denied))
        .await
        .unwrap();
    s.audit
        .append(admission("op-c", AuditDecision::Exempt))
        .await
        .unwrap();
    let mut dry_run = admission("op-d", AuditDecision::Allowed);
    dry_run.dry_run = Some(true);
    s.audit.append(dry_run).await.unwrap();
    s.audit
        .append(rollout("op-a", RolloutStatus::Progressing))
        .await
        .unwrap();
    assert_eq!(
        s.operations.open_operations(10).await.unwrap(),
        ["op-a", "op-c"]
    );
    assert_eq!(
        s.operations.open_operations(1).await.unwrap(),
        ["op-a"],
        "oldest first"
    );

    s.audit
        .append(rollout("op-a", RolloutStatus::Completed))
        .await
        .unwrap();
    let other = b.open().await;
    assert_eq!(
        other.operations.open_operations(10).await.unwrap(),
        ["op-c"]
    );
    other
        .audit
        .append(rollout("op-c", RolloutStatus::Timeout))
        .await
        .unwrap();
    assert_eq!(
        s.operations.open_operations(10).await.unwrap(),
        Vec::<String>::new()
    );
    assert!(s.audit.verify().await.unwrap().ok);
}

async fn an_operation_lease_has_one_holder_until_it_lapses(b: &Backend) {
    let (one, two) = (b.open().await, b.open().await);
    // Far longer than the steps that must not see the lease lapse; the
    // holder shortens it only to watch it lapse.
    let ttl = Duration::from_secs(60);
    assert!(
        one.operations
            .lease_operation("op", "A", ttl)
            .await
            .unwrap()
    );
    assert!(
        !two.operations
            .lease_operation("op", "B", ttl)
            .await
            .unwrap()
    );
    assert!(
        one.operations
            .lease_operation("op", "A", ttl)
            .await
            .unwrap(),
        "the holder renews"
    );
    assert!(
        two.operations
            .lease_operation("other-op", "B", ttl)
            .await
            .unwrap(),
        "leases are per operation"
    );
    two.operations.release_operation("op", "B").await.unwrap();
    assert!(
        !two.operations
            .lease_operation("op", "B", ttl)
            .await
            .unwrap(),
        "only the holder can release"
    );

    assert!(
        one.operations
            .lease_operation("op", "A", Duration::from_millis(200))
            .await
            .unwrap(),
        "the holder renews for a short time"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !two
        .operations
        .lease_operation("op", "B", ttl)
        .await
        .unwrap()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a lapsed lease is taken over"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !one.operations
            .lease_operation("op", "A", ttl)
            .await
            .unwrap()
    );
    two.operations.release_operation("op", "B").await.unwrap();
    assert!(
        one.operations
            .lease_operation("op", "A", ttl)
            .await
            .unwrap()
    );
}

contract!(
    admitted_operations_stay_open_until_their_final_rollout,
    an_operation_lease_has_one_holder_until_it_lapses,
);
