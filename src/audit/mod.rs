//! The audit trail: every gated decision and every ticket and grant event,
//! hash-chained so that an edit, a deletion or a reordering is detected.
//!
//! [`AuditRecord`] is the record (DESIGN.md "Audit record"); [`chain`] holds
//! the pure hashing and verification; [`AuditLog`] is the storage edge with
//! one implementation per backend. Appends are durable before they return.

pub mod chain;
pub mod checkpoint;
pub mod ship;
pub mod trail;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::policy::{ChangeKind, ImageChange, WorkloadKind};

pub use chain::{ChainWalker, GENESIS_HASH, VerifyReport};
pub use checkpoint::{Checkpoint, CheckpointVerifier};
pub use trail::AuditTrail;

/// What an audit record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AuditEvent {
    Admission,
    TicketCreated,
    TicketApproved,
    /// One approval of a ticket that needs more (`roles.requiredApprovals`):
    /// the ticket stays PENDING. The approval that completes it is TICKET_APPROVED.
    TicketApprovalAdded,
    TicketRejected,
    TicketCancelled,
    TicketExpired,
    GrantIssued,
    GrantRevoked,
    GrantExpired,
    Rollout,
    /// A signed checkpoint of the records before it ([`checkpoint`]).
    Checkpoint,
}

impl AuditEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admission => "ADMISSION",
            Self::TicketCreated => "TICKET_CREATED",
            Self::TicketApproved => "TICKET_APPROVED",
            Self::TicketApprovalAdded => "TICKET_APPROVAL_ADDED",
            Self::TicketRejected => "TICKET_REJECTED",
            Self::TicketCancelled => "TICKET_CANCELLED",
            Self::TicketExpired => "TICKET_EXPIRED",
            Self::GrantIssued => "GRANT_ISSUED",
            Self::GrantRevoked => "GRANT_REVOKED",
            Self::GrantExpired => "GRANT_EXPIRED",
            Self::Rollout => "ROLLOUT",
            Self::Checkpoint => "CHECKPOINT",
        }
    }
}

/// The webhook's verdict on a gated change (ADMISSION records only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AuditDecision {
    Allowed,
    Denied,
    Exempt,
}

impl AuditDecision {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allowed => "ALLOWED",
            Self::Denied => "DENIED",
            Self::Exempt => "EXEMPT",
        }
    }
}

/// Progress of an admitted change's rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RolloutStatus {
    Started,
    Progressing,
    Completed,
    Failed,
    Timeout,
}

/// One record of the trail. Optional fields are left out of the JSON when
/// empty; `id`, `prevHash` and `hash` are filled in by [`AuditLog::append`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    #[serde(default)]
    pub id: String,
    /// RFC 3339 time the record was made.
    pub timestamp: String,
    pub event: Option<AuditEvent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<AuditDecision>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_uid: Option<String>,
    /// Who acted: the requesting user, the approver, the canceller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Who performed the change when not the user it is attributed to
    /// (rollgate's service account, for the redeploy API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<WorkloadKind>,
    /// The workload's name (whatever its kind; the name is the original design's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<ChangeKind>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_changes: Vec<ImageChange>,
    /// Everything else the change did to the pod template, and the
    /// application labels it changed, named for people ("env of container
    /// app", "label app (payments → web)"): TEMPLATE and RELABEL changes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub template_changes: Vec<String>,
    /// The `kubectl.kubernetes.io/restartedAt` value a restart set
    /// (ADMISSION records of restarts), so the follower knows the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restarted_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_entry_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_jti: Option<String>,
    /// The ticket's approvers so far, in order (TICKET_APPROVAL_ADDED and
    /// TICKET_APPROVED records).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<bool>,
    // Rollout fields (ROLLOUT records; the follower fills them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_status: Option<RolloutStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_strategy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_start_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_end_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_pods: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminated_pods: Option<Vec<String>>,
    /// Pods of older revisions seen since the change (terminatedPods are
    /// those of them gone when the rollout ends).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_pods: Option<Vec<String>>,
    /// A Deployment's new ReplicaSet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_replica_set: Option<String>,
    /// A StatefulSet's or DaemonSet's new ControllerRevision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller_revision: Option<String>,
    // Checkpoint fields (CHECKPOINT records): the signed JWS and what it
    // attests, the number of records before this one and the last one's hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_records: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_head: Option<String>,
    #[serde(default)]
    pub prev_hash: String,
    #[serde(default)]
    pub hash: String,
}

impl AuditRecord {
    /// A record of `event` at `now`, to be filled in and appended.
    pub fn new(event: AuditEvent, now: jiff::Timestamp) -> Self {
        Self {
            event: Some(event),
            timestamp: timestamp_text(now),
            ..Self::default()
        }
    }
}

/// RFC 3339 in UTC with exactly six fractional digits, so that records'
/// timestamps sort as text (the stores compare `since`/`until` that way).
pub fn timestamp_text(t: jiff::Timestamp) -> String {
    format!("{t:.6}")
}

/// Filters of `GET /v1/audit` (all optional, combined with AND).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditFilter {
    pub namespace: Option<String>,
    pub application: Option<String>,
    pub user: Option<String>,
    pub event: Option<AuditEvent>,
    pub decision: Option<AuditDecision>,
    /// RFC 3339; records at or after.
    pub since: Option<jiff::Timestamp>,
    /// RFC 3339; records before.
    pub until: Option<jiff::Timestamp>,
    /// At most 1000; default 100.
    pub limit: Option<usize>,
    /// Cursor: only records older than this id (the previous page's `next`).
    pub after: Option<String>,
    /// Only records of this operation.
    #[serde(rename = "operationId")]
    pub operation_id: Option<String>,
}

/// Default and maximum page sizes of `GET /v1/audit`.
pub const DEFAULT_PAGE: usize = 100;
pub const MAX_PAGE: usize = 1000;

/// One page of records, newest first, and the cursor of the next page.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditPage {
    pub items: Vec<AuditRecord>,
    pub next: Option<String>,
}

/// Limits checked atomically with the append of an allowed admission, in
/// the same round trip, so racing replicas cannot overshoot them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdmissionLimits {
    /// The grant's pinned number of uses.
    pub grant_uses: Option<GrantUses>,
    /// At most `limit` allowed admissions of the record's (namespace, application) per window.
    pub rate: Option<RateCheck>,
}

/// A grant that admits at most `max` changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantUses {
    pub jti: String,
    pub max: u32,
    /// Unix seconds; the use counter can be forgotten after it.
    pub expires_at: i64,
}

/// The redeploy rate limit of an application.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateCheck {
    pub limit: u32,
    pub window_secs: i64,
    /// Unix seconds.
    pub now: i64,
}

/// Why an allowed admission was refused at append time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitHit {
    /// The grant admitted its `max` changes already.
    UsedUp { max: u32 },
    /// The application had `limit` admitted changes within the window; the
    /// next one is allowed at `next_at` (Unix seconds).
    RateLimited {
        limit: u32,
        window_secs: i64,
        next_at: i64,
    },
}

/// Where the trail lives. One implementation per backend.
#[async_trait]
pub trait AuditLog: Send + Sync + 'static {
    /// Chains and stores `record` (its `id`, `prevHash` and `hash` are
    /// assigned here) durably, and returns it as stored. By default
    /// [`AuditLog::append_admission`] with no limits, which none can hit.
    async fn append(&self, record: AuditRecord) -> Result<AuditRecord, crate::error::Error> {
        match self
            .append_admission(record, &AdmissionLimits::default())
            .await?
        {
            Ok(record) => Ok(record),
            // No limits were asked for, so none can be hit.
            Err(_) => Err(crate::error::Error::ChainContention(0)),
        }
    }
    /// Like [`AuditLog::append`] for an allowed ADMISSION record, but only if
    /// `limits` still hold; then counts it against them. When a limit is hit
    /// nothing is appended and the hit is returned, so the caller can deny
    /// (and record the denial). One round trip.
    async fn append_admission(
        &self,
        record: AuditRecord,
        limits: &AdmissionLimits,
    ) -> Result<Result<AuditRecord, LimitHit>, crate::error::Error>;
    /// What [`AuditLog::append_admission`] would answer now for an allowed
    /// ADMISSION record of `namespace`/`application` under `limits`:
    /// `Some(hit)` when a limit would refuse it. Read only: it appends no
    /// record and counts no use, so a dry run gets the real answer and
    /// consumes nothing (DESIGN.md "What is gated"). One round trip.
    async fn check_admission_limits(
        &self,
        namespace: &str,
        application: &str,
        limits: &AdmissionLimits,
    ) -> Result<Option<LimitHit>, crate::error::Error>;
    /// A page of records matching `filter`, newest first.
    async fn query(&self, filter: &AuditFilter) -> Result<AuditPage, crate::error::Error>;
    /// One record by id.
    async fn get(&self, id: &str) -> Result<Option<AuditRecord>, crate::error::Error>;
    /// Up to `limit` records stored after position `after` (0: from the
    /// first), oldest first, each with its position (the store's sequence
    /// number, which pages on whatever the record's own `id` claims): the
    /// chain in append order, for verification and export. An entry that
    /// cannot be read back comes as a record holding only its position as
    /// id and the hash [`chain::UNREADABLE`], so a walk fails there.
    async fn read_from(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, AuditRecord)>, crate::error::Error>;
    /// The newest record (the chain's head); `None` when the trail is empty.
    async fn head(&self) -> Result<Option<AuditRecord>, crate::error::Error>;
    /// Chains `record` after `head` (a record [`AuditLog::head`] returned;
    /// `None`: the empty trail) and stores it durably, only if `head` is
    /// still the newest record; answers `None`, appending nothing, when
    /// another record came first. Checkpoints use it: what a checkpoint
    /// attests must be exactly the records before it.
    async fn append_after(
        &self,
        record: AuditRecord,
        head: Option<&AuditRecord>,
    ) -> Result<Option<AuditRecord>, crate::error::Error>;
    /// Walks the whole chain from the first record: links, hashes, and that
    /// each CHECKPOINT record attests the records before it (signatures are
    /// checked by [`AuditTrail::verify`], which holds the keys).
    async fn verify(&self) -> Result<VerifyReport, crate::error::Error> {
        Ok(walk(self, ChainWalker::default()).await?.finish())
    }
}

/// Records read per round trip when walking the chain.
pub const WALK_BATCH: usize = 500;

/// Feeds the whole chain of `log`, oldest first, to `walker` and hands it
/// back to be finished.
pub async fn walk<L: AuditLog + ?Sized>(
    log: &L,
    mut walker: ChainWalker,
) -> Result<ChainWalker, crate::error::Error> {
    let mut after = 0;
    loop {
        let batch = log.read_from(after, WALK_BATCH).await?;
        for (_, record) in &batch {
            walker.push(record);
        }
        match batch.last() {
            Some((seq, _)) if batch.len() == WALK_BATCH => after = *seq,
            _ => break,
        }
    }
    Ok(walker)
}
