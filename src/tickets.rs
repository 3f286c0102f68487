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
use crate::auth::{Caller, Role, SharedAuthorizer};
use crate::grants::verify::GrantIssuer;
use crate::grants::{GrantStore, StoredGrant};
use crate::metrics::Metrics;

/// What a ticket may allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Restart,
    Image,
    #[default]
    Any,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Restart => "restart",
            Self::Image => "image",
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
}

/// `POST /v1/tickets` body. Unknown fields are refused.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTicket {
    pub namespace: String,
    pub application: String,
    pub reason: String,
    #[serde(default)]
    pub action: Action,
}

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
    #[error("ticket {number} is {status}, so it has no grant to fetch")]
    NoGrant {
        number: String,
        status: &'static str,
    },
    #[error("the store is unavailable")]
    Store(#[from] crate::store::Error),
    #[error("cannot check the caller's role")]
    Auth(#[from] crate::auth::Error),
    #[error("cannot sign the grant")]
    Sign(#[source] jsonwebtoken::errors::Error),
}

/// Checks a Kubernetes namespace or label-value-like name: an RFC 1123 label.
pub fn validate_dns_label(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 63 {
        return Err("must be 1 to 63 characters".into());
    }
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let ok_ends = !name.starts_with('-') && !name.ends_with('-');
    if ok_chars && ok_ends {
        Ok(())
    } else {
        Err("must be a DNS-1123 label: lower-case letters, digits and '-', starting and ending with a letter or digit".into())
    }
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
        validate_text("reason", &self.reason, true)
    }
}

fn validate_text(field: &'static str, text: &str, required: bool) -> Result<(), Error> {
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

/// The display number of ticket `id`: `RG-000042`.
pub fn ticket_number(id: u64) -> String {
    format!("RG-{id:06}")
}

/// The id behind a ticket number: `RG-000042` → `42`.
pub fn ticket_id_of(number: &str) -> Option<String> {
    let digits = number.strip_prefix("RG-")?;
    digits.parse::<u64>().ok().map(|id| id.to_string())
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
        }
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
            return Err(Error::Forbidden(format!(
                "{} filed ticket {} and cannot approve or reject it: another approver must decide",
                caller.username, self.number
            )));
        }
        Ok(())
    }

    /// The approved ticket, carrying its grant.
    pub fn approve(
        mut self,
        by: &str,
        comment: Option<String>,
        grant: TicketGrant,
        now: Timestamp,
    ) -> Result<Self, Error> {
        self.ensure_pending()?;
        self.status = TicketStatus::Approved;
        self.decided_by = Some(by.to_owned());
        self.decided_at = Some(now);
        self.comment = comment;
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
        self.ensure_pending()?;
        self.status = TicketStatus::Cancelled;
        self.decided_by = Some(by.to_owned());
        self.decided_at = Some(now);
        self.entry.completed = true;
        self.entry.completed_at = Some(now);
        Ok(self)
    }
}

/// Where tickets live. One implementation per backend.
#[async_trait]
pub trait TicketStore: Send + Sync + 'static {
    /// Assigns the next id and stores the ticket `make(id)` returns.
    async fn create_ticket(
        &self,
        make: Box<dyn FnOnce(u64) -> Ticket + Send>,
    ) -> Result<Ticket, crate::store::Error>;
    async fn get_ticket(&self, id: &str) -> Result<Option<Ticket>, crate::store::Error>;
    /// Tickets matching `filter`, newest first.
    async fn list_tickets(&self, filter: &TicketFilter)
    -> Result<Vec<Ticket>, crate::store::Error>;
    /// Replaces the ticket only if its stored status is still `expected`
    /// (so a ticket is decided once, even by racing replicas). False when it was not.
    async fn update_ticket(
        &self,
        ticket: &Ticket,
        expected: TicketStatus,
    ) -> Result<bool, crate::store::Error>;
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
}

impl TicketDesk {
    pub async fn create(&self, caller: &Caller, new: NewTicket) -> Result<Ticket, Error> {
        new.validate()?;
        let now = Timestamp::now();
        let requester = caller.username.clone();
        let ticket = self
            .tickets
            .create_ticket(Box::new(move |id| Ticket::file(id, new, &requester, now)))
            .await?;
        // The original design's `env` is the environment, which here is the namespace.
        self.metrics
            .ticket_created(&ticket.application, &ticket.requester, &ticket.namespace);
        self.record(AuditEvent::TicketCreated, &ticket, caller, |r| {
            r.reason = Some(ticket.reason.clone())
        })
        .await?;
        Ok(ticket)
    }

    pub async fn get(&self, id: &str) -> Result<Ticket, Error> {
        self.tickets
            .get_ticket(id)
            .await?
            .ok_or_else(|| Error::NotFound(id.to_owned()))
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

    async fn expire_one(&self, ticket: Ticket, now: Timestamp) -> Result<(), Error> {
        let expired = ticket.expire(now)?;
        if self
            .tickets
            .update_ticket(&expired, TicketStatus::Pending)
            .await?
        {
            let system = Caller {
                username: "rollgate".into(),
                groups: Vec::new(),
            };
            self.record(AuditEvent::TicketExpired, &expired, &system, |r| {
                r.reason = Some("no decision within pendingTicketTtl".into())
            })
            .await?;
        }
        Ok(())
    }

    /// Records grants that expired unrevoked (`GRANT_EXPIRED`, and
    /// `app_redeploy_token_expired_total`), each once across replicas; returns how many.
    pub async fn expire_grants(&self) -> Result<usize, Error> {
        let expired = self.grants.take_expired_grants(Timestamp::now().as_second()).await?;
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
            if ticket.is_stale(now, self.pending_ttl) {
                self.expire_one(ticket, now).await?;
                expired += 1;
            }
        }
        Ok(expired)
    }

    pub async fn list(&self, filter: &TicketFilter) -> Result<Vec<Ticket>, Error> {
        Ok(self.tickets.list_tickets(filter).await?)
    }

    /// Approves ticket `id` and issues its grant.
    pub async fn approve(
        &self,
        caller: &Caller,
        id: &str,
        comment: Option<String>,
    ) -> Result<Ticket, Error> {
        let ticket = self
            .ticket_to_decide(caller, id, comment.as_deref())
            .await?;

        let now = Timestamp::now();
        let claims = self.issuer.claims(
            &ticket.requester,
            &ticket.namespace,
            &ticket.application,
            &ticket.id,
            &ticket.number,
            ticket.action.as_str(),
            crate::random_id(),
            now.as_second(),
        );
        let token = match self.issuer.sign(&claims) {
            Ok(token) => token,
            Err(e) => {
                self.metrics
                    .token_created(&ticket.application, &ticket.requester, "failed");
                return Err(Error::Sign(e));
            }
        };
        let grant = StoredGrant {
            jti: claims.jti.clone(),
            user: claims.sub.clone(),
            namespace: claims.ns.clone(),
            application: claims.app.clone(),
            ticket_id: ticket.id.clone(),
            ticket_number: ticket.number.clone(),
            expires_at: claims.exp,
            token,
        };
        // Store the grant before deciding the ticket: if the decision loses a
        // race, the grant is withdrawn; the reverse order could leave an
        // APPROVED ticket without a grant.
        if let Err(e) = self.grants.put_grant(&grant).await {
            self.metrics
                .token_created(&ticket.application, &ticket.requester, "failed");
            return Err(e.into());
        }
        let expires_at = Timestamp::from_second(claims.exp).unwrap_or(now);
        let approved = ticket.clone().approve(
            &caller.username,
            comment,
            TicketGrant {
                jti: grant.jti.clone(),
                expires_at,
            },
            now,
        )?;
        if !self
            .tickets
            .update_ticket(&approved, TicketStatus::Pending)
            .await?
        {
            self.grants.revoke_grant(&grant.jti).await?;
            let current = self.get(id).await?;
            return Err(Error::AlreadyDecided {
                number: current.number,
                status: current.status.as_str(),
            });
        }
        self.metrics
            .token_created(&approved.application, &approved.requester, "success");
        self.metrics.active_tokens_changed(1);
        self.record(AuditEvent::TicketApproved, &approved, caller, |r| {
            r.reason = approved.comment.clone()
        })
        .await?;
        self.record(AuditEvent::GrantIssued, &approved, caller, |r| {
            r.grant_jti = Some(grant.jti.clone());
            r.username = Some(grant.user.clone());
        })
        .await?;
        Ok(approved)
    }

    pub async fn reject(
        &self,
        caller: &Caller,
        id: &str,
        comment: Option<String>,
    ) -> Result<Ticket, Error> {
        let ticket = self
            .ticket_to_decide(caller, id, comment.as_deref())
            .await?;
        let rejected = ticket.reject(&caller.username, comment, Timestamp::now())?;
        self.decide(rejected, AuditEvent::TicketRejected, caller)
            .await
    }

    pub async fn cancel(&self, caller: &Caller, id: &str) -> Result<Ticket, Error> {
        let ticket = self.current(id).await?;
        let cancelled = ticket.cancel(&caller.username, Timestamp::now())?;
        self.decide(cancelled, AuditEvent::TicketCancelled, caller)
            .await
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

    async fn decide(
        &self,
        ticket: Ticket,
        event: AuditEvent,
        caller: &Caller,
    ) -> Result<Ticket, Error> {
        if !self
            .tickets
            .update_ticket(&ticket, TicketStatus::Pending)
            .await?
        {
            let current = self.get(&ticket.id).await?;
            return Err(Error::AlreadyDecided {
                number: current.number,
                status: current.status.as_str(),
            });
        }
        self.record(event, &ticket, caller, |r| {
            r.reason = ticket.comment.clone()
        })
        .await?;
        Ok(ticket)
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
        }
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
        };
        let approved = ticket
            .approve("bob", None, grant.clone(), Timestamp::UNIX_EPOCH)
            .unwrap();
        assert!(approved.entry.success && approved.entry.completed);
        assert!(approved.entry.executed_at.is_some() && approved.entry.completed_at.is_some());
        assert!(matches!(
            approved
                .clone()
                .approve("bob", None, grant, Timestamp::UNIX_EPOCH),
            Err(Error::AlreadyDecided { .. })
        ));
        assert!(matches!(
            approved.clone().reject("bob", None, Timestamp::UNIX_EPOCH),
            Err(Error::AlreadyDecided { .. })
        ));
        assert!(matches!(
            approved.cancel("alice", Timestamp::UNIX_EPOCH),
            Err(Error::AlreadyDecided { .. })
        ));
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
