//! Redeploy tickets: filing, deciding once, and the grant an approval issues.
//!
//! The state machine is pure (`Ticket::approve`, `reject`, `cancel`, `expire`
//! take `now`); [`TicketDesk`] composes it with the stores, the grant issuer
//! and the audit log, and is what the API handlers call. Storage is the
//! [`TicketStore`] trait, one implementation per backend.

use std::sync::Arc;

use async_trait::async_trait;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::audit::{AuditEvent, AuditLog, AuditRecord};
use crate::auth::roles::RequiredApprovals;
use crate::auth::{Caller, Role, SharedAuthorizer};
use crate::grants::verify::GrantIssuer;
use crate::grants::{GrantStore, StoredGrant};
use crate::metrics::Metrics;
use crate::names::{ticket_number, validate_dns_label};
use crate::notify::{Event, EventKind, Notifier};

/// What a ticket may allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Restart,
    Image,
    /// An ephemeral container in a pod (`kubectl debug`).
    Debug,
    #[default]
    Any,
}

impl Action {
    /// Every action, in the order the API and the CLI list them (a variant
    /// added to the enum goes here too).
    pub const ALL: [Self; 4] = [Self::Restart, Self::Image, Self::Debug, Self::Any];

    /// The action's JSON name, as in the ticket and the grant's `action` claim.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Restart => "restart",
            Self::Image => "image",
            Self::Debug => "debug",
            Self::Any => "any",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TicketStatus {
    Pending,
    Approved,
    Rejected,
    Cancelled,
    Expired,
}

impl TicketStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Approved => "APPROVED",
            Self::Rejected => "REJECTED",
            Self::Cancelled => "CANCELLED",
            Self::Expired => "EXPIRED",
        }
    }
}

/// The grant an approved ticket issued (never its token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TicketGrant {
    pub jti: String,
    pub expires_at: Timestamp,
    /// Set when the grant was revoked (by an approver, or by cancelling the ticket).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_by: Option<String>,
}

/// The original design's ticket entry: the execution of the ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct TicketEntry {
    pub success: bool,
    pub completed: bool,
    pub executed_at: Option<Timestamp>,
    pub completed_at: Option<Timestamp>,
}

/// One approver's approval of a ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TicketApproval {
    pub by: String,
    pub at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

fn one() -> u32 {
    1
}

/// A redeploy ticket (DESIGN.md "Ticket API").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ticket {
    pub id: String,
    pub number: String,
    pub namespace: String,
    pub application: String,
    pub reason: String,
    pub action: Action,
    pub requester: String,
    pub status: TicketStatus,
    pub created_at: Timestamp,
    pub decided_by: Option<String>,
    pub decided_at: Option<Timestamp>,
    pub comment: Option<String>,
    pub grant: Option<TicketGrant>,
    pub entry: TicketEntry,
    /// For an image change: the only image references its grant admits.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<String>,
    /// How many gated changes its grant admits; unlimited when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_uses: Option<u32>,
    /// Approvals so far, in order; each approver at most once, never the requester.
    #[serde(default)]
    pub approvals: Vec<TicketApproval>,
    /// Distinct approvals that approve the ticket, fixed when it is filed
    /// (`roles.requiredApprovals` of its namespace); 1 for tickets stored before.
    #[serde(default = "one")]
    pub required_approvals: u32,
    /// Counts the stored changes of the ticket: the store's compare-and-set
    /// replaces a ticket only at the revision its writer read.
    #[serde(default)]
    pub revision: u64,
}

/// `POST /v1/tickets` body. Unknown fields are refused.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[serde(rename_all = "camelCase")]
pub struct NewTicket {
    pub namespace: String,
    pub application: String,
    pub reason: String,
    #[serde(default)]
    pub action: Action,
    /// Pins an image change to these exact references (action image or any).
    #[serde(default)]
    pub images: Vec<String>,
    /// Pins the number of uses, e.g. 1 for a single restart.
    #[serde(default)]
    pub max_uses: Option<u32>,
}

/// Most image references a ticket may pin.
pub const MAX_PINNED_IMAGES: usize = 20;
/// Most uses a ticket may pin.
pub const MAX_USES: u32 = 100;

/// Filters of `GET /v1/tickets`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TicketFilter {
    pub status: Option<TicketStatus>,
    pub namespace: Option<String>,
    pub application: Option<String>,
    pub requester: Option<String>,
}

impl TicketFilter {
    pub fn matches(&self, t: &Ticket) -> bool {
        self.status.is_none_or(|s| s == t.status)
            && self.namespace.as_ref().is_none_or(|n| *n == t.namespace)
            && self
                .application
                .as_ref()
                .is_none_or(|a| *a == t.application)
            && self.requester.as_ref().is_none_or(|r| *r == t.requester)
    }
}

/// Longest accepted `reason` and `comment`, in characters.
pub const MAX_REASON: usize = 1000;

/// Why a ticket operation was refused. The API maps each to a status code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("ticket {0} does not exist")]
    NotFound(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("ticket {number} is already {status}: a ticket is decided once")]
    AlreadyDecided {
        number: String,
        status: &'static str,
    },
    #[error(
        "{by} already approved ticket {number} ({have} of {need} approvals): each approver counts once, so another approver must approve"
    )]
    AlreadyApproved {
        number: String,
        by: String,
        have: u32,
        need: u32,
    },
    #[error(
        "ticket {number} has {have} of {need} approvals: it is approved once {need} distinct approvers approved"
    )]
    AwaitingApprovals {
        number: String,
        have: u32,
        need: u32,
    },
    #[error("ticket {0} kept changing under concurrent updates: try again")]
    Contention(String),
    #[error("ticket {number} is {status}, so it has no grant to fetch")]
    NoGrant {
        number: String,
        status: &'static str,
    },
    #[error("the store is unavailable")]
    Store(#[from] crate::error::Error),
    #[error("{detail}")]
    RateLimited { detail: String, retry_after: i64 },
    #[error("no live grant {0}: list them with GET /v1/grants")]
    NoSuchGrant(String),
    #[error("cannot check the caller's role")]
    Auth(#[from] crate::auth::Error),
    #[error("cannot sign the grant")]
    Sign(#[source] jsonwebtoken::errors::Error),
}

impl NewTicket {
    /// Validates the request body; the error names the field.
    pub fn validate(&self) -> Result<(), Error> {
        validate_dns_label(&self.namespace).map_err(|reason| Error::Invalid {
            field: "namespace",
            reason,
        })?;
        validate_dns_label(&self.application).map_err(|reason| Error::Invalid {
            field: "application",
            reason,
        })?;
        validate_text("reason", &self.reason, true)?;
        if !self.images.is_empty() && matches!(self.action, Action::Restart | Action::Debug) {
            return Err(Error::Invalid {
                field: "images",
                reason: "pins image changes, so the action must be image or any".into(),
            });
        }
        if self.images.len() > MAX_PINNED_IMAGES {
            return Err(Error::Invalid {
                field: "images",
                reason: format!("at most {MAX_PINNED_IMAGES} image references"),
            });
        }
        for image in &self.images {
            let ok = !image.is_empty()
                && image.len() <= 512
                && !image.chars().any(|c| c.is_whitespace() || c.is_control());
            if !ok {
                return Err(Error::Invalid {
                    field: "images",
                    reason: format!(
                        "{image:?} is not an image reference like registry.example.com/shop/web:v2.1.0"
                    ),
                });
            }
        }
        if self.max_uses.is_some_and(|n| n == 0 || n > MAX_USES) {
            return Err(Error::Invalid {
                field: "maxUses",
                reason: format!("must be between 1 and {MAX_USES}"),
            });
        }
        Ok(())
    }
}

pub(crate) fn validate_text(field: &'static str, text: &str, required: bool) -> Result<(), Error> {
    let len = text.trim().chars().count();
    if required && len == 0 {
        return Err(Error::Invalid {
            field,
            reason: "must not be empty: say why the redeploy is needed".into(),
        });
    }
    if text.chars().count() > MAX_REASON {
        return Err(Error::Invalid {
            field,
            reason: format!("must be at most {MAX_REASON} characters"),
        });
    }
    if text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(Error::Invalid {
            field,
            reason: "must not contain control characters".into(),
        });
    }
    Ok(())
}

// === impl Ticket (pure transitions) ===

impl Ticket {
    /// A new PENDING ticket.
    pub fn file(id: u64, new: NewTicket, requester: &str, now: Timestamp) -> Self {
        Self {
            id: id.to_string(),
            number: ticket_number(id),
            namespace: new.namespace,
            application: new.application,
            reason: new.reason,
            action: new.action,
            requester: requester.to_owned(),
            status: TicketStatus::Pending,
            created_at: now,
            decided_by: None,
            decided_at: None,
            comment: None,
            grant: None,
            entry: TicketEntry::default(),
            images: new.images,
            max_uses: new.max_uses,
            approvals: Vec::new(),
            required_approvals: 1,
            revision: 0,
        }
    }

    /// The ticket needing `approvals` distinct approvals (at least 1).
    pub fn requiring(mut self, approvals: u32) -> Self {
        self.required_approvals = approvals.max(1);
        self
    }

    /// Approvals still missing before the ticket can be approved.
    pub fn approvals_missing(&self) -> u32 {
        let have = u32::try_from(self.approvals.len()).unwrap_or(u32::MAX);
        self.required_approvals.max(1).saturating_sub(have)
    }

    /// Who approved so far, in order.
    pub fn approvers(&self) -> Vec<String> {
        self.approvals.iter().map(|a| a.by.clone()).collect()
    }

    fn approval_count(&self) -> u32 {
        u32::try_from(self.approvals.len()).unwrap_or(u32::MAX)
    }

    fn requester_cannot_decide(&self, by: &str) -> Error {
        Error::Forbidden(format!(
            "{by} filed ticket {} and cannot approve or reject it: another approver must decide",
            self.number
        ))
    }

    fn ensure_pending(&self) -> Result<(), Error> {
        if self.status == TicketStatus::Pending {
            Ok(())
        } else {
            Err(Error::AlreadyDecided {
                number: self.number.clone(),
                status: self.status.as_str(),
            })
        }
    }

    /// Checks that `caller` may decide this ticket: an approver for its
    /// namespace (`is_approver`, as the authorizer said), and not its requester.
    pub fn check_decider(&self, caller: &Caller, is_approver: bool) -> Result<(), Error> {
        if !is_approver {
            return Err(Error::Forbidden(format!(
                "{} is not an approver for namespace {}: approvers are listed in rollgate's config (roles.approvers) \
                 or hold RBAC verb \"approve\" on resource \"tickets\" of API group rollgate.io in that namespace",
                caller.username, self.namespace
            )));
        }
        if caller.username == self.requester {
            return Err(self.requester_cannot_decide(&caller.username));
        }
        Ok(())
    }

    /// Adds `by`'s approval to a PENDING ticket, which stays PENDING: once no
    /// approval is missing, the caller issues the grant and calls
    /// [`Ticket::approve`]. Errors: `AlreadyDecided` when it is no longer
    /// pending, `Forbidden` for its requester, `AlreadyApproved` when `by`
    /// approved it before (each approver counts once).
    pub fn add_approval(
        mut self,
        by: &str,
        comment: Option<String>,
        now: Timestamp,
    ) -> Result<Self, Error> {
        self.ensure_pending()?;
        if by == self.requester {
            return Err(self.requester_cannot_decide(by));
        }
        if self.approvals.iter().any(|a| a.by == by) {
            return Err(Error::AlreadyApproved {
                number: self.number.clone(),
                by: by.to_owned(),
                have: self.approval_count(),
                need: self.required_approvals,
            });
        }
        self.approvals.push(TicketApproval {
            by: by.to_owned(),
            at: now,
            comment,
        });
        Ok(self)
    }

    /// The approved ticket, carrying its grant: decided by its last approver,
    /// with that approver's comment. Errors: `AlreadyDecided` when it is no
    /// longer pending, `AwaitingApprovals` while approvals are missing.
    pub fn approve(mut self, grant: TicketGrant, now: Timestamp) -> Result<Self, Error> {
        self.ensure_pending()?;
        let last = match self.approvals.last() {
            Some(last) if self.approvals_missing() == 0 => last.clone(),
            _ => {
                return Err(Error::AwaitingApprovals {
                    number: self.number.clone(),
                    have: self.approval_count(),
                    need: self.required_approvals,
                });
            }
        };
        self.status = TicketStatus::Approved;
        self.decided_by = Some(last.by);
        self.decided_at = Some(now);
        self.comment = last.comment;
        self.grant = Some(grant);
        self.entry = TicketEntry {
            success: true,
            completed: true,
            executed_at: Some(now),
            completed_at: Some(now),
        };
        Ok(self)
    }

    pub fn reject(
        mut self,
        by: &str,
        comment: Option<String>,
        now: Timestamp,
    ) -> Result<Self, Error> {
        self.ensure_pending()?;
        self.status = TicketStatus::Rejected;
        self.decided_by = Some(by.to_owned());
        self.decided_at = Some(now);
        self.comment = comment;
        self.entry = TicketEntry {
            success: false,
            completed: true,
            executed_at: None,
            completed_at: Some(now),
        };
        Ok(self)
    }

    /// Cancelled by its requester while still pending.
    /// True when the ticket has waited longer than `ttl` for a decision.
    pub fn is_stale(&self, now: Timestamp, ttl: std::time::Duration) -> bool {
        let waited = now.as_second().saturating_sub(self.created_at.as_second());
        self.status == TicketStatus::Pending
            && waited >= i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX)
    }

    /// Expired unanswered.
    pub fn expire(mut self, now: Timestamp) -> Result<Self, Error> {
        self.ensure_pending()?;
        self.status = TicketStatus::Expired;
        self.decided_at = Some(now);
        self.entry.completed = true;
        self.entry.completed_at = Some(now);
        Ok(self)
    }

    pub fn cancel(mut self, by: &str, now: Timestamp) -> Result<Self, Error> {
        if by != self.requester {
            return Err(Error::Forbidden(format!(
                "only the requester ({}) may cancel ticket {}",
                self.requester, self.number
            )));
        }
        // An approved ticket may be cancelled too: its grant is revoked.
        if self.status != TicketStatus::Approved {
            self.ensure_pending()?;
        }
        if let Some(grant) = &mut self.grant {
            grant.revoked_at.get_or_insert(now);
            grant.revoked_by.get_or_insert_with(|| by.to_owned());
        }
        self.status = TicketStatus::Cancelled;
        self.decided_by = Some(by.to_owned());
        self.decided_at = Some(now);
        self.entry.completed = true;
        self.entry.completed_at = Some(now);
        Ok(self)
    }

    /// Marks the ticket's grant revoked by `by`.
    pub fn mark_revoked(mut self, by: &str, now: Timestamp) -> Self {
        if let Some(grant) = &mut self.grant {
            grant.revoked_at = Some(now);
            grant.revoked_by = Some(by.to_owned());
        }
        self
    }
}

/// Where tickets live. One implementation per backend.
#[async_trait]
pub trait TicketStore: Send + Sync + 'static {
    /// Assigns the next id and stores the ticket `make(id)` returns.
    async fn create_ticket(
        &self,
        make: Box<dyn FnOnce(u64) -> Ticket + Send>,
    ) -> Result<Ticket, crate::error::Error>;
    async fn get_ticket(&self, id: &str) -> Result<Option<Ticket>, crate::error::Error>;
    /// Tickets matching `filter`, newest first.
    async fn list_tickets(&self, filter: &TicketFilter)
    -> Result<Vec<Ticket>, crate::error::Error>;
    /// Replaces the ticket only if its stored revision is still
    /// `expected_revision`, storing `ticket` with its own `revision` (the
    /// caller sets `expected_revision + 1`). So of racing writers (replicas
    /// too) who read the same revision exactly one wins; the others read the
    /// ticket again. False when the revision moved on or the ticket does not exist.
    async fn update_ticket(
        &self,
        ticket: &Ticket,
        expected_revision: u64,
    ) -> Result<bool, crate::error::Error>;
}

/// The ticket operations of the API, composed from the pure transitions
/// above, the stores, the grant issuer, the audit log and the metrics.
#[derive(Clone)]
pub struct TicketDesk {
    pub tickets: Arc<dyn TicketStore>,
    pub grants: Arc<dyn GrantStore>,
    pub audit: Arc<dyn AuditLog>,
    pub issuer: GrantIssuer,
    pub authorizer: SharedAuthorizer,
    pub metrics: Arc<Metrics>,
    /// How long a PENDING ticket waits for a decision before it expires.
    pub pending_ttl: std::time::Duration,
    /// Told of every change once it is stored; never waits.
    pub notifier: Notifier,
    /// Distinct approvals a ticket needs, per namespace; fixed on the ticket when filed.
    pub required_approvals: RequiredApprovals,
    /// Most tickets one user may file per window; `None`: unlimited.
    pub ticket_rate_limit: Option<crate::policy::RateLimit>,
}

/// Read-modify-write attempts of one ticket operation before it answers
/// [`Error::Contention`]; each attempt re-reads the ticket and re-checks its rules.
const CAS_ATTEMPTS: u32 = 5;

impl TicketDesk {
    pub async fn create(&self, caller: &Caller, new: NewTicket) -> Result<Ticket, Error> {
        new.validate()?;
        let now = Timestamp::now();
        self.check_ticket_rate(caller, now).await?;
        let requester = caller.username.clone();
        let required = self.required_approvals.for_namespace(&new.namespace);
        let ticket = self
            .tickets
            .create_ticket(Box::new(move |id| {
                Ticket::file(id, new, &requester, now).requiring(required)
            }))
            .await?;
        // The original design's `env` is the environment, which here is the namespace.
        self.metrics
            .ticket_created(&ticket.application, &ticket.requester, &ticket.namespace);
        self.record(AuditEvent::TicketCreated, &ticket, caller, |r| {
            r.reason = Some(ticket.reason.clone())
        })
        .await?;
        self.announce(
            EventKind::TicketCreated,
            &ticket,
            caller,
            Some(ticket.reason.clone()),
        );
        Ok(ticket)
    }

    pub async fn get(&self, id: &str) -> Result<Ticket, Error> {
        self.tickets
            .get_ticket(id)
            .await?
            .ok_or_else(|| Error::NotFound(id.to_owned()))
    }

    /// Refuses a new ticket when `caller` filed the most the rate limit allows
    /// within its window.
    async fn check_ticket_rate(&self, caller: &Caller, now: Timestamp) -> Result<(), Error> {
        let Some(rate) = self.ticket_rate_limit else {
            return Ok(());
        };
        let window = i64::try_from(rate.window.as_secs()).unwrap_or(i64::MAX);
        let filter = TicketFilter {
            requester: Some(caller.username.clone()),
            ..TicketFilter::default()
        };
        let mine = self.tickets.list_tickets(&filter).await?;
        // Newest first: the limit-th most recent ticket decides when the next is allowed.
        let recent: Vec<&Ticket> = mine
            .iter()
            .filter(|t| now.as_second() - t.created_at.as_second() < window)
            .collect();
        match recent.get(
            usize::try_from(rate.limit)
                .unwrap_or(usize::MAX)
                .saturating_sub(1),
        ) {
            Some(nth) if recent.len() >= rate.limit as usize => {
                let retry_after = (nth.created_at.as_second() + window - now.as_second()).max(1);
                Err(Error::RateLimited {
                    detail: format!(
                        "{} filed {} tickets in the last {}, the most policy.ticketRateLimit allows: \
                         file the next one in {}",
                        caller.username,
                        rate.limit,
                        crate::names::human_duration(window),
                        crate::names::human_duration(retry_after),
                    ),
                    retry_after,
                })
            }
            _ => Ok(()),
        }
    }

    /// Ticket `id` if `caller` may decide it now: a valid comment, an
    /// approver for its namespace, not its requester, still pending.
    async fn ticket_to_decide(
        &self,
        caller: &Caller,
        id: &str,
        comment: Option<&str>,
    ) -> Result<Ticket, Error> {
        if let Some(c) = comment {
            validate_text("comment", c, false)?;
        }
        let ticket = self.current(id).await?;
        let is_approver = self
            .authorizer
            .allows(caller, Role::Approver, Some(&ticket.namespace))
            .await?;
        ticket.check_decider(caller, is_approver)?;
        ticket.ensure_pending()?;
        Ok(ticket)
    }

    /// Ticket `id`, expired first if it waited too long, so nobody decides a stale ticket.
    async fn current(&self, id: &str) -> Result<Ticket, Error> {
        let ticket = self.get(id).await?;
        let now = Timestamp::now();
        if !ticket.is_stale(now, self.pending_ttl) {
            return Ok(ticket);
        }
        self.expire_one(ticket, now).await?;
        self.get(id).await
    }

    /// Expires `ticket` if it is still stale, reading it again when another
    /// change won the race; true when this call expired it.
    async fn expire_one(&self, mut ticket: Ticket, now: Timestamp) -> Result<bool, Error> {
        for _ in 0..CAS_ATTEMPTS {
            if !ticket.is_stale(now, self.pending_ttl) {
                return Ok(false);
            }
            let read = ticket.revision;
            if let Some(expired) = self.save(read, ticket.clone().expire(now)?).await? {
                let system = Caller {
                    username: "rollgate".into(),
                    groups: Vec::new(),
                };
                self.record(AuditEvent::TicketExpired, &expired, &system, |r| {
                    r.reason = Some("no decision within pendingTicketTtl".into())
                })
                .await?;
                self.announce(EventKind::TicketExpired, &expired, &system, None);
                return Ok(true);
            }
            match self.tickets.get_ticket(&ticket.id).await? {
                Some(fresh) => ticket = fresh,
                None => return Ok(false),
            }
        }
        Err(Error::Contention(ticket.id))
    }

    /// Records grants that expired unrevoked (`GRANT_EXPIRED`, and
    /// `app_redeploy_token_expired_total`), each once across replicas; returns how many.
    pub async fn expire_grants(&self) -> Result<usize, Error> {
        let expired = self
            .grants
            .take_expired_grants(Timestamp::now().as_second())
            .await?;
        for grant in &expired {
            self.metrics
                .token_expired_total
                .with_label_values(&[grant.application.as_str(), grant.user.as_str()])
                .inc();
            let mut record = AuditRecord::new(AuditEvent::GrantExpired, Timestamp::now());
            record.username = Some(grant.user.clone());
            record.namespace = Some(grant.namespace.clone());
            record.application_name = Some(grant.application.clone());
            record.ticket_id = Some(grant.ticket_id.clone());
            record.ticket_number = Some(grant.ticket_number.clone());
            record.grant_jti = Some(grant.jti.clone());
            self.audit.append(record).await?;
        }
        Ok(expired.len())
    }

    /// Expires every PENDING ticket older than the pending TTL; returns how many.
    pub async fn expire_stale(&self) -> Result<usize, Error> {
        let now = Timestamp::now();
        let filter = TicketFilter {
            status: Some(TicketStatus::Pending),
            ..TicketFilter::default()
        };
        let mut expired = 0;
        for ticket in self.tickets.list_tickets(&filter).await? {
            if ticket.is_stale(now, self.pending_ttl) && self.expire_one(ticket, now).await? {
                expired += 1;
            }
        }
        Ok(expired)
    }

    pub async fn list(&self, filter: &TicketFilter) -> Result<Vec<Ticket>, Error> {
        Ok(self.tickets.list_tickets(filter).await?)
    }

    /// Adds `caller`'s approval to ticket `id`. While fewer distinct
    /// approvers than the ticket requires have approved, it stays PENDING and
    /// the approval is recorded as TICKET_APPROVAL_ADDED; the approval that
    /// completes it approves it and issues its grant (TICKET_APPROVED,
    /// GRANT_ISSUED). Racing approvals each count once and the grant is issued
    /// once: every write is a compare-and-set on the ticket's revision, and
    /// the loser decides again on the fresh ticket.
    pub async fn approve(
        &self,
        caller: &Caller,
        id: &str,
        comment: Option<String>,
    ) -> Result<Ticket, Error> {
        for _ in 0..CAS_ATTEMPTS {
            let ticket = self
                .ticket_to_decide(caller, id, comment.as_deref())
                .await?;
            let read = ticket.revision;
            let now = Timestamp::now();
            let ticket = ticket.add_approval(&caller.username, comment.clone(), now)?;
            if ticket.approvals_missing() > 0 {
                let Some(stored) = self.save(read, ticket).await? else {
                    continue;
                };
                let step = format!(
                    "approval {} of {}",
                    stored.approvals.len(),
                    stored.required_approvals
                );
                self.record(AuditEvent::TicketApprovalAdded, &stored, caller, |r| {
                    r.reason = Some(match &comment {
                        Some(c) => format!("{step}: {c}"),
                        None => step,
                    });
                    r.approvers = stored.approvers();
                })
                .await?;
                return Ok(stored);
            }
            let (grant, ticket_grant) = self.issue_grant(&ticket, now).await?;
            let Some(approved) = self.save(read, ticket.approve(ticket_grant, now)?).await? else {
                // Another change won: withdraw this grant, decide again on the fresh ticket.
                self.grants.revoke_grant(&grant.jti).await?;
                continue;
            };
            self.metrics
                .token_created(&approved.application, &approved.requester, "success");
            // Seen at once here; the store sweep keeps the gauge right across replicas.
            self.metrics.active_tokens_changed(1);
            self.record(AuditEvent::TicketApproved, &approved, caller, |r| {
                r.reason = approved.comment.clone();
                r.approvers = approved.approvers();
            })
            .await?;
            self.record(AuditEvent::GrantIssued, &approved, caller, |r| {
                r.grant_jti = Some(grant.jti.clone());
                r.username = Some(grant.user.clone());
            })
            .await?;
            self.announce(
                EventKind::TicketApproved,
                &approved,
                caller,
                approved.comment.clone(),
            );
            return Ok(approved);
        }
        Err(Error::Contention(id.to_owned()))
    }

    /// Signs and stores the grant of `ticket`, approved at `now`. It is stored
    /// before the ticket is decided: if the decision then loses a race, the
    /// grant is withdrawn; the reverse order could leave an APPROVED ticket
    /// without a grant.
    async fn issue_grant(
        &self,
        ticket: &Ticket,
        now: Timestamp,
    ) -> Result<(StoredGrant, TicketGrant), Error> {
        let mut claims = self.issuer.claims(
            &ticket.requester,
            &ticket.namespace,
            &ticket.application,
            &ticket.id,
            &ticket.number,
            ticket.action.as_str(),
            crate::names::random_id(),
            now.as_second(),
        );
        // What the ticket pins travels in the signed grant, so the webhook enforces it.
        claims.images = ticket.images.clone();
        claims.max_uses = ticket.max_uses;
        let token = match self.issuer.sign(&claims) {
            Ok(token) => token,
            Err(e) => {
                self.metrics
                    .token_created(&ticket.application, &ticket.requester, "failed");
                return Err(Error::Sign(e));
            }
        };
        let grant = StoredGrant::from_claims(&claims, token);
        if let Err(e) = self.grants.put_grant(&grant).await {
            self.metrics
                .token_created(&ticket.application, &ticket.requester, "failed");
            return Err(e.into());
        }
        let expires_at = Timestamp::from_second(claims.exp).unwrap_or(now);
        let shown = TicketGrant {
            jti: grant.jti.clone(),
            expires_at,
            revoked_at: None,
            revoked_by: None,
        };
        Ok((grant, shown))
    }

    /// Stores `next`, a change of the ticket read at revision `read`, unless
    /// another change was stored since: `None` then, and the caller reads the
    /// ticket again and re-checks its rules.
    async fn save(&self, read: u64, mut next: Ticket) -> Result<Option<Ticket>, Error> {
        next.revision = read + 1;
        Ok(self
            .tickets
            .update_ticket(&next, read)
            .await?
            .then_some(next))
    }

    pub async fn reject(
        &self,
        caller: &Caller,
        id: &str,
        comment: Option<String>,
    ) -> Result<Ticket, Error> {
        for _ in 0..CAS_ATTEMPTS {
            let ticket = self
                .ticket_to_decide(caller, id, comment.as_deref())
                .await?;
            let read = ticket.revision;
            let rejected = ticket.reject(&caller.username, comment.clone(), Timestamp::now())?;
            if let Some(rejected) = self.save(read, rejected).await? {
                return self
                    .decided(rejected, AuditEvent::TicketRejected, caller)
                    .await;
            }
        }
        Err(Error::Contention(id.to_owned()))
    }

    /// Cancels ticket `id` (its requester only); an approved ticket's grant is revoked.
    pub async fn cancel(&self, caller: &Caller, id: &str) -> Result<Ticket, Error> {
        for _ in 0..CAS_ATTEMPTS {
            let ticket = self.current(id).await?;
            let (read, was) = (ticket.revision, ticket.status);
            let cancelled = ticket.cancel(&caller.username, Timestamp::now())?;
            // Revoke first: a cancelled ticket must never leave a working grant.
            if was == TicketStatus::Approved
                && let Some(grant) = &cancelled.grant
                && self.grants.revoke_grant(&grant.jti).await?
            {
                self.record(AuditEvent::GrantRevoked, &cancelled, caller, |r| {
                    r.reason = Some("ticket cancelled by its requester".into())
                })
                .await?;
            }
            if let Some(cancelled) = self.save(read, cancelled).await? {
                return self
                    .decided(cancelled, AuditEvent::TicketCancelled, caller)
                    .await;
            }
        }
        Err(Error::Contention(id.to_owned()))
    }

    /// Revokes grant `jti` (approvers of its namespace): it stops working at
    /// once, the revocation is recorded, and its ticket shows it.
    pub async fn revoke(
        &self,
        caller: &Caller,
        jti: &str,
        reason: Option<String>,
    ) -> Result<StoredGrant, Error> {
        if let Some(r) = &reason {
            validate_text("reason", r, false)?;
        }
        let now = Timestamp::now();
        let grant = self
            .grants
            .grant_by_jti(jti, now.as_second())
            .await?
            .ok_or_else(|| Error::NoSuchGrant(jti.to_owned()))?;
        if !self
            .authorizer
            .allows(caller, Role::Approver, Some(&grant.namespace))
            .await?
        {
            return Err(Error::Forbidden(format!(
                "{} is not an approver for namespace {}, so may not revoke its grants",
                caller.username, grant.namespace
            )));
        }
        if !self.grants.revoke_grant(jti).await? {
            return Err(Error::NoSuchGrant(jti.to_owned()));
        }
        self.metrics.active_tokens_changed(-1);
        let ticket = self.tickets.get_ticket(&grant.ticket_id).await?;
        if let Some(ticket) = ticket {
            let marked = self.show_revoked(ticket, &caller.username, now).await?;
            self.record(AuditEvent::GrantRevoked, &marked, caller, |r| {
                r.reason = reason.clone();
                r.grant_jti = Some(jti.to_owned());
            })
            .await?;
            let revoked = Event::grant_revoked(&marked, jti, &caller.username, reason, now);
            self.notifier.notify(revoked);
        }
        Ok(grant)
    }

    /// The grant token of ticket `id`, for its requester only.
    pub async fn grant(&self, caller: &Caller, id: &str) -> Result<StoredGrant, Error> {
        let ticket = self.get(id).await?;
        if caller.username != ticket.requester {
            return Err(Error::Forbidden(format!(
                "only the requester ({}) may fetch the grant of ticket {}",
                ticket.requester, ticket.number
            )));
        }
        let no_grant = || Error::NoGrant {
            number: ticket.number.clone(),
            status: ticket.status.as_str(),
        };
        let jti = ticket
            .grant
            .as_ref()
            .map(|g| g.jti.clone())
            .ok_or_else(no_grant)?;
        self.grants
            .grant_by_jti(&jti, Timestamp::now().as_second())
            .await?
            .ok_or_else(|| Error::NoGrant {
                number: ticket.number.clone(),
                status: "expired or revoked",
            })
    }

    /// Marks on `ticket` that its grant was revoked by `by`, reading it again
    /// when another change won the race. Best effort: the grant is already
    /// gone, the ticket only reports it.
    async fn show_revoked(
        &self,
        mut ticket: Ticket,
        by: &str,
        now: Timestamp,
    ) -> Result<Ticket, Error> {
        for _ in 0..CAS_ATTEMPTS {
            let read = ticket.revision;
            if let Some(marked) = self
                .save(read, ticket.clone().mark_revoked(by, now))
                .await?
            {
                return Ok(marked);
            }
            match self.tickets.get_ticket(&ticket.id).await? {
                Some(fresh) => ticket = fresh,
                None => break,
            }
        }
        tracing::warn!(ticket = %ticket.number, "the revoked grant could not be shown on its ticket");
        Ok(ticket.mark_revoked(by, now))
    }

    /// Records `event` for the stored `ticket` and tells the receivers.
    async fn decided(
        &self,
        ticket: Ticket,
        event: AuditEvent,
        caller: &Caller,
    ) -> Result<Ticket, Error> {
        self.record(event, &ticket, caller, |r| {
            r.reason = ticket.comment.clone()
        })
        .await?;
        if let Some(kind) = EventKind::of(event) {
            self.announce(kind, &ticket, caller, ticket.comment.clone());
        }
        Ok(ticket)
    }

    /// Tells the notification receivers about a stored change.
    fn announce(&self, kind: EventKind, ticket: &Ticket, actor: &Caller, reason: Option<String>) {
        let event = Event::new(kind, ticket, &actor.username, reason, Timestamp::now());
        self.notifier.notify(event);
    }

    async fn record(
        &self,
        event: AuditEvent,
        ticket: &Ticket,
        caller: &Caller,
        fill: impl FnOnce(&mut AuditRecord),
    ) -> Result<(), Error> {
        let mut record = AuditRecord::new(event, Timestamp::now());
        record.username = Some(caller.username.clone());
        record.groups = caller.groups.clone();
        record.namespace = Some(ticket.namespace.clone());
        record.application_name = Some(ticket.application.clone());
        record.ticket_id = Some(ticket.id.clone());
        record.ticket_number = Some(ticket.number.clone());
        record.ticket_entry_id = Some(ticket.id.clone());
        record.grant_jti = ticket.grant.as_ref().map(|g| g.jti.clone());
        fill(&mut record);
        self.audit.append(record).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mk_new() -> NewTicket {
        NewTicket {
            namespace: "production".into(),
            application: "web".into(),
            reason: "memory leak".into(),
            action: Action::Restart,
            images: vec![],
            max_uses: None,
        }
    }

    #[test]
    fn pinned_images_and_uses_are_validated() {
        let image = |images: &[&str], action| NewTicket {
            images: images.iter().map(|i| i.to_string()).collect(),
            action,
            ..mk_new()
        };
        assert!(
            image(&["registry.example.com/web:v2"], Action::Image)
                .validate()
                .is_ok()
        );
        let cases = [
            ("images", image(&["web:v2"], Action::Restart)),
            ("images", image(&["web:v2"], Action::Debug)),
            ("images", image(&["web v2"], Action::Image)),
            ("images", image(&[""], Action::Any)),
            (
                "maxUses",
                NewTicket {
                    max_uses: Some(0),
                    ..mk_new()
                },
            ),
            (
                "maxUses",
                NewTicket {
                    max_uses: Some(101),
                    ..mk_new()
                },
            ),
        ];
        for (field, t) in cases {
            let err = t.validate().unwrap_err();
            assert!(
                matches!(err, Error::Invalid { field: f, .. } if f == field),
                "{field}: {err}"
            );
        }
        assert!(
            NewTicket {
                max_uses: Some(1),
                ..mk_new()
            }
            .validate()
            .is_ok()
        );
    }

    fn mk_caller(name: &str, groups: &[&str]) -> Caller {
        Caller {
            username: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    #[test]
    fn names_and_reasons_are_validated_with_the_field_named() {
        let cases = [
            (
                "namespace",
                NewTicket {
                    namespace: "Prod".into(),
                    ..mk_new()
                },
            ),
            (
                "namespace",
                NewTicket {
                    namespace: "".into(),
                    ..mk_new()
                },
            ),
            (
                "application",
                NewTicket {
                    application: "web_1".into(),
                    ..mk_new()
                },
            ),
            (
                "application",
                NewTicket {
                    application: "-web".into(),
                    ..mk_new()
                },
            ),
            (
                "reason",
                NewTicket {
                    reason: "  ".into(),
                    ..mk_new()
                },
            ),
            (
                "reason",
                NewTicket {
                    reason: "x".repeat(1001),
                    ..mk_new()
                },
            ),
        ];
        for (field, t) in cases {
            let err = t.validate().unwrap_err();
            assert!(
                matches!(err, Error::Invalid { field: f, .. } if f == field),
                "{field}: {err}"
            );
        }
        assert!(mk_new().validate().is_ok());
        assert!(
            NewTicket {
                reason: "é".repeat(1000),
                ..mk_new()
            }
            .validate()
            .is_ok()
        );
    }

    #[test]
    fn requester_cannot_decide_own_ticket_even_as_approver() {
        let ticket = Ticket::file(1, mk_new(), "alice", Timestamp::UNIX_EPOCH);
        let err = ticket
            .check_decider(&mk_caller("alice", &[]), true)
            .unwrap_err();
        assert!(err.to_string().contains("cannot approve"), "{err}");
        assert!(ticket.check_decider(&mk_caller("bob", &[]), true).is_ok());
        let err = ticket
            .check_decider(&mk_caller("carol", &[]), false)
            .unwrap_err();
        assert!(err.to_string().contains("not an approver"), "{err}");
    }

    #[test]
    fn a_ticket_is_decided_once() {
        let ticket = Ticket::file(42, mk_new(), "alice", Timestamp::UNIX_EPOCH);
        assert_eq!(ticket.number, "RG-000042");
        let grant = TicketGrant {
            jti: "j".into(),
            expires_at: Timestamp::UNIX_EPOCH,
            revoked_at: None,
            revoked_by: None,
        };
        let approved = ticket
            .add_approval("bob", None, Timestamp::UNIX_EPOCH)
            .and_then(|t| t.approve(grant.clone(), Timestamp::UNIX_EPOCH))
            .unwrap();
        assert!(approved.entry.success && approved.entry.completed);
        assert!(approved.entry.executed_at.is_some() && approved.entry.completed_at.is_some());
        assert!(matches!(
            approved.clone().approve(grant, Timestamp::UNIX_EPOCH),
            Err(Error::AlreadyDecided { .. })
        ));
        assert!(matches!(
            approved
                .clone()
                .add_approval("carol", None, Timestamp::UNIX_EPOCH),
            Err(Error::AlreadyDecided { .. })
        ));
        assert!(matches!(
            approved.clone().reject("bob", None, Timestamp::UNIX_EPOCH),
            Err(Error::AlreadyDecided { .. })
        ));
        let cancelled = approved.cancel("alice", Timestamp::UNIX_EPOCH).unwrap();
        assert_eq!(
            cancelled.status,
            TicketStatus::Cancelled,
            "an approved ticket can still be cancelled"
        );
        assert_eq!(
            cancelled
                .grant
                .as_ref()
                .and_then(|g| g.revoked_by.as_deref()),
            Some("alice")
        );
        assert!(matches!(
            cancelled.cancel("alice", Timestamp::UNIX_EPOCH),
            Err(Error::AlreadyDecided { .. })
        ));
    }

    fn mk_grant() -> TicketGrant {
        TicketGrant {
            jti: "j".into(),
            expires_at: Timestamp::UNIX_EPOCH,
            revoked_at: None,
            revoked_by: None,
        }
    }

    #[test]
    fn a_ticket_is_approved_by_its_required_number_of_distinct_approvers() {
        let at = |s| Timestamp::from_second(s).unwrap();
        let ticket = Ticket::file(7, mk_new(), "alice", at(0)).requiring(2);
        assert_eq!(
            (ticket.required_approvals, ticket.approvals_missing()),
            (2, 2)
        );

        let once = ticket
            .add_approval("bob", Some("ok".into()), at(10))
            .unwrap();
        assert_eq!(
            once.status,
            TicketStatus::Pending,
            "1 of 2 leaves it pending"
        );
        assert_eq!(once.approvals_missing(), 1);
        assert_eq!(
            once.approvals,
            [TicketApproval {
                by: "bob".into(),
                at: at(10),
                comment: Some("ok".into())
            }]
        );
        let err = once.clone().approve(mk_grant(), at(11)).unwrap_err();
        assert!(
            matches!(
                err,
                Error::AwaitingApprovals {
                    have: 1,
                    need: 2,
                    ..
                }
            ),
            "no grant before the last approval: {err}"
        );
        let err = once.clone().add_approval("bob", None, at(12)).unwrap_err();
        assert!(
            matches!(
                err,
                Error::AlreadyApproved {
                    have: 1,
                    need: 2,
                    ..
                }
            ),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("bob already approved ticket RG-000007"),
            "{err}"
        );
        let err = once
            .clone()
            .add_approval("alice", None, at(12))
            .unwrap_err();
        assert!(
            matches!(&err, Error::Forbidden(m) if m.contains("filed ticket RG-000007")),
            "the requester never counts: {err}"
        );

        let twice = once.add_approval("carol", None, at(20)).unwrap();
        assert_eq!(twice.approvals_missing(), 0);
        assert_eq!(twice.approvers(), ["bob", "carol"]);
        let approved = twice.approve(mk_grant(), at(21)).unwrap();
        assert_eq!(approved.status, TicketStatus::Approved);
        assert_eq!(
            (approved.decided_by.as_deref(), approved.comment.as_deref()),
            (Some("carol"), None),
            "decided by the approval that completed it"
        );
        assert!(approved.grant.is_some() && approved.entry.success);
    }

    #[test]
    fn any_approver_rejects_a_partly_approved_ticket() {
        let ticket = Ticket::file(1, mk_new(), "alice", Timestamp::UNIX_EPOCH).requiring(3);
        let partly = ticket
            .add_approval("bob", None, Timestamp::UNIX_EPOCH)
            .unwrap();
        let rejected = partly
            .reject("carol", Some("not now".into()), Timestamp::UNIX_EPOCH)
            .unwrap();
        assert_eq!(rejected.status, TicketStatus::Rejected);
        assert_eq!(
            rejected.approvers(),
            ["bob"],
            "the approval stays on record"
        );
        assert!(rejected.grant.is_none());
    }

    #[test]
    fn required_approvals_are_at_least_one() {
        let ticket = Ticket::file(1, mk_new(), "alice", Timestamp::UNIX_EPOCH);
        assert_eq!(ticket.required_approvals, 1, "filed default");
        assert_eq!(ticket.clone().requiring(0).required_approvals, 1);
        let err = ticket
            .approve(mk_grant(), Timestamp::UNIX_EPOCH)
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::AwaitingApprovals {
                    have: 0,
                    need: 1,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn a_ticket_stored_before_approval_rules_loads_with_their_defaults() {
        let ticket = Ticket::file(3, mk_new(), "alice", Timestamp::UNIX_EPOCH);
        let mut json = serde_json::to_value(&ticket).unwrap();
        let obj = json.as_object_mut().unwrap();
        for key in ["approvals", "requiredApprovals", "revision"] {
            assert!(obj.remove(key).is_some(), "{key} is serialized");
        }
        let old: Ticket = serde_json::from_value(json).unwrap();
        assert_eq!(
            (old.approvals.len(), old.required_approvals, old.revision),
            (0, 1, 0)
        );
    }

    #[test]
    fn a_pending_ticket_goes_stale_after_its_ttl_and_expires_once() {
        let created = Timestamp::from_second(1_000_000).unwrap();
        let ticket = Ticket::file(1, mk_new(), "alice", created);
        let ttl = std::time::Duration::from_secs(24 * 3600);
        assert!(!ticket.is_stale(
            Timestamp::from_second(1_000_000 + 24 * 3600 - 1).unwrap(),
            ttl
        ));
        let later = Timestamp::from_second(1_000_000 + 24 * 3600).unwrap();
        assert!(ticket.is_stale(later, ttl));
        let expired = ticket.expire(later).unwrap();
        assert_eq!(expired.status, TicketStatus::Expired);
        assert!(
            !expired.is_stale(later, ttl),
            "an expired ticket is no longer pending"
        );
        assert!(matches!(
            expired.expire(later),
            Err(Error::AlreadyDecided { .. })
        ));
    }

    #[test]
    fn only_the_requester_cancels() {
        let ticket = Ticket::file(1, mk_new(), "alice", Timestamp::UNIX_EPOCH);
        assert!(matches!(
            ticket.clone().cancel("bob", Timestamp::UNIX_EPOCH),
            Err(Error::Forbidden(_))
        ));
        let cancelled = ticket.cancel("alice", Timestamp::UNIX_EPOCH).unwrap();
        assert_eq!(cancelled.status, TicketStatus::Cancelled);
    }

    #[test]
    fn unknown_fields_in_a_new_ticket_are_refused() {
        let err = serde_json::from_str::<NewTicket>(
            r#"{"namespace":"production","application":"web","reason":"x","approved":true}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("approved"), "{err}");
    }
}
