//! The admission decision, pure: a gated change, the grant lookup's result,
//! the verifier and `now` in; a [`Decision`] out. [`Decision::message`] and
//! [`Decision::warning`] are what the user reads in kubectl.

use std::fmt::Write as _;

use crate::audit::{AuditDecision, LimitHit};
use crate::grants::{Expected, GrantRejection, GrantVerifier, StoredGrant};
use crate::names::human_duration;
use crate::policy::FailureMode;
use crate::policy::GatedChange;

/// A dependency of the webhook did not answer in time or failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable {
    /// "grant store" or "audit log".
    pub what: &'static str,
    pub detail: String,
}

/// Why a gated change was denied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DenyReason {
    NoGrant,
    Rejected(GrantRejection),
    Unavailable(Unavailable),
    /// A valid grant, but a limit said no when the admission was recorded.
    Limited(LimitHit),
}

/// The verdict on a gated (or exempt) change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The requester is exempt by policy.
    Exempt,
    /// A valid grant covers the change.
    Allowed {
        ticket_number: String,
        jti: String,
        /// The grant's user: the requester, or the user rollgate's redeploy acted for.
        user: String,
        expires_at: i64,
        remaining: i64,
        /// The uses the grant's ticket pinned, if any.
        max_uses: Option<u32>,
    },
    /// A dependency was down and the failure mode is open.
    AllowedFailOpen(Unavailable),
    Denied(DenyReason),
}

impl Decision {
    pub fn allowed(&self) -> bool {
        !matches!(self, Self::Denied(_))
    }

    pub fn audit_decision(&self) -> AuditDecision {
        match self {
            Self::Exempt => AuditDecision::Exempt,
            Self::Allowed { .. } | Self::AllowedFailOpen(_) => AuditDecision::Allowed,
            Self::Denied(_) => AuditDecision::Denied,
        }
    }

    /// `decision` label of `rollgate_admission_requests_total`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Exempt => "exempt",
            Self::Allowed { .. } => "allowed",
            Self::AllowedFailOpen(_) => "allowed_fail_open",
            Self::Denied(DenyReason::Unavailable(_)) => "denied_unavailable",
            Self::Denied(_) => "denied",
        }
    }

    /// The grant's jti, when a grant allowed the change.
    pub fn grant_jti(&self) -> Option<&str> {
        match self {
            Self::Allowed { jti, .. } => Some(jti),
            _ => None,
        }
    }

    /// A short reason for the audit record.
    pub fn audit_reason(&self) -> String {
        match self {
            Self::Exempt => "requester is exempt by policy".into(),
            Self::Allowed { ticket_number, .. } => format!("grant of ticket {ticket_number}"),
            Self::AllowedFailOpen(u) => {
                format!("{} unavailable ({}); failure mode open", u.what, u.detail)
            }
            Self::Denied(DenyReason::NoGrant) => "no grant".into(),
            Self::Denied(DenyReason::Rejected(r)) => r.to_string(),
            Self::Denied(DenyReason::Limited(LimitHit::UsedUp { max })) => {
                format!("grant used up ({max} uses)")
            }
            Self::Denied(DenyReason::Limited(LimitHit::RateLimited {
                limit, window_secs, ..
            })) => {
                format!(
                    "rate limit: {limit} changes per {}",
                    human_duration(*window_secs)
                )
            }
            Self::Denied(DenyReason::Unavailable(u)) => {
                format!("{} unavailable: {}", u.what, u.detail)
            }
        }
    }

    /// The denial message: what happened and exactly how to get a grant.
    pub fn message(&self, change: &GatedChange, api_url: &str) -> String {
        let kind = change.class;
        let mut msg = format!(
            "rollgate: {user} may not {verb} {k} {ns}/{name} (application {app}): namespace {ns} is protected",
            user = change.requester.username,
            verb = kind.verb(),
            k = change.kind,
            ns = change.namespace,
            name = change.name,
            app = change.application,
        );
        match self {
            Self::Denied(DenyReason::Unavailable(u)) => {
                let _ = write!(
                    msg,
                    " and rollgate cannot reach its {} ({}), so it fails closed. Nothing is wrong with your request: \
                     retry in a minute; if this persists, tell the platform team (metric rollgate_store_up).",
                    u.what, u.detail
                );
                return msg;
            }
            Self::Denied(DenyReason::Rejected(r)) => {
                let _ = write!(msg, " and your grant does not count: {r}.");
            }
            Self::Denied(DenyReason::Limited(LimitHit::RateLimited {
                limit,
                window_secs,
                next_at,
            })) => {
                let next = jiff::Timestamp::from_second(*next_at)
                    .map(|t| t.to_string())
                    .unwrap_or_default();
                let _ = write!(
                    msg,
                    ": application {app} had {limit} changes admitted in the last {window}, the most policy.rateLimit allows. \
                     Your grant is still valid: run your command again at {next} or later.",
                    app = change.application,
                    window = human_duration(*window_secs),
                );
                return msg;
            }
            Self::Denied(DenyReason::Limited(LimitHit::UsedUp { max })) => {
                let _ = write!(
                    msg,
                    " and your grant is used up: its ticket allowed {max} change(s)."
                );
            }
            _ => msg.push_str(" and you hold no grant for this application."),
        }
        if crate::names::validate_dns_label(&change.application).is_err() {
            // Tickets name applications as DNS-1123 labels; say how to get one
            // rather than print a command the API would refuse.
            let _ = write!(
                msg,
                " No ticket can name application {app:?}: it is not a DNS-1123 label. Give the {k} an \
                 `app.kubernetes.io/name` label of lower-case letters, digits and '-' (at most 63), then request a ticket for it.",
                app = change.application,
                k = change.kind,
            );
            return msg;
        }
        let _ = write!(msg, " What changed: {}.", what_changed(change));
        let action = kind.action();
        let _ = write!(
            msg,
            " To get one, file a ticket and have an approver (not you) approve it: \
             `rollgate ticket request -n {ns} {app} --action {action} --reason \"<why>\"` \
             or `curl -X POST {api_url}/v1/tickets -H \"Authorization: Bearer $TOKEN\" -H \"Content-Type: application/json\" \
             -d '{{\"namespace\":\"{ns}\",\"application\":\"{app}\",\"action\":\"{action}\",\"reason\":\"<why>\"}}'`. \
             Once it is approved, run your command again.",
            ns = change.namespace,
            app = change.application,
        );
        msg
    }

    /// The warning kubectl prints on an allowed change.
    pub fn warning(&self) -> Option<String> {
        match self {
            Self::Allowed { ticket_number, jti, remaining, .. } => Some(format!(
                "rollgate: allowed by ticket {ticket_number} (grant {short}); the grant expires in {left}",
                short = jti.get(..8).unwrap_or(jti),
                left = human_duration(*remaining),
            )),
            Self::AllowedFailOpen(u) => Some(format!(
                "rollgate: {} unavailable ({}); allowed without a grant check because the failure mode is open",
                u.what, u.detail
            )),
            Self::Exempt => Some("rollgate: allowed without a ticket: you are exempt by policy (recorded in the audit)".into()),
            Self::Denied(_) => None,
        }
    }
}

/// Decides a gated change given the result of the grant lookup.
///
/// `lookup` holds the live grants stored for the request's user, namespace
/// and application (for a redeploy by rollgate itself: the one grant its
/// patch names), or `Err` when the store could not answer in time. Each is
/// verified completely (signature, claims, time window, user, namespace,
/// application, action), so a row planted in the store without the signing
/// key counts for nothing; the first that passes allows the change. A
/// redeploy is attributed to the grant's user.
pub fn decide(
    change: &GatedChange,
    lookup: Result<Vec<StoredGrant>, Unavailable>,
    verifier: &GrantVerifier,
    failure_mode: FailureMode,
    now: i64,
) -> Decision {
    let grants = match lookup {
        Err(unavailable) => {
            return match failure_mode {
                FailureMode::Closed => Decision::Denied(DenyReason::Unavailable(unavailable)),
                FailureMode::Open => Decision::AllowedFailOpen(unavailable),
            };
        }
        Ok(grants) => grants,
    };
    let mut first_rejection = None;
    for grant in &grants {
        match verify_one(change, grant, verifier, now) {
            Ok(decision) => return decision,
            Err(rejection) => {
                first_rejection.get_or_insert(rejection);
            }
        }
    }
    match first_rejection {
        Some(rejection) => Decision::Denied(DenyReason::Rejected(rejection)),
        None => Decision::Denied(DenyReason::NoGrant),
    }
}

fn verify_one(
    change: &GatedChange,
    grant: &StoredGrant,
    verifier: &GrantVerifier,
    now: i64,
) -> Result<Decision, GrantRejection> {
    let user = match &change.redeploy {
        // rollgate acts for the grant's user; the grant must be the one named.
        Some(redeploy) if redeploy.grant_jti != grant.jti => {
            return Err(GrantRejection::NotTheNamedGrant);
        }
        Some(_) => grant.user.as_str(),
        None => change.requester.username.as_str(),
    };
    let new_images: Vec<&str> = change
        .diff
        .images
        .iter()
        .filter_map(|i| i.current_image.as_deref())
        .collect();
    let removed: Vec<&str> = change.diff.removed_containers().collect();
    let expected = Expected {
        user,
        namespace: &change.namespace,
        application: &change.application,
        action: change.class.action(),
        new_images: &new_images,
        removed_containers: &removed,
    };
    let claims = verifier.verify(&grant.token, expected, now)?;
    if change
        .redeploy
        .as_ref()
        .is_some_and(|r| r.grant_jti != claims.jti)
    {
        return Err(GrantRejection::NotTheNamedGrant);
    }
    Ok(Decision::Allowed {
        ticket_number: claims.tno,
        remaining: claims.exp - now,
        expires_at: claims.exp,
        user: claims.sub,
        jti: claims.jti,
        max_uses: claims.max_uses,
    })
}

/// The changes a request makes, for people: the first few, then a count.
pub fn what_changed(change: &GatedChange) -> String {
    const SHOWN: usize = 6;
    let parts = change.diff.described();
    let mut text = parts
        .iter()
        .take(SHOWN)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if parts.len() > SHOWN {
        let _ = write!(text, " and {} more", parts.len() - SHOWN);
    }
    text
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
