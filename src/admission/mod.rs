//! The webhook edge: `POST /validate` takes an AdmissionReview v1, asks the
//! pure [`policy::classify`] and [`decide::decide`], does the one grant
//! lookup and the one audit append under their time budgets, and answers.
//!
//! A review that parses always gets HTTP 200 with its `uid` echoed; one that
//! does not gets 400 (413 above the body limit, from the router's layer).
//! Ungated requests touch no store. With a cluster, a request ungated only
//! because the namespace index does not know its namespace as protected is
//! first confirmed with the API server ([`NamespaceLookup`]); one it cannot
//! confirm is denied.
//!
//! [`NamespaceLookup`]: crate::policy::index::NamespaceLookup

pub mod decide;
pub mod head;

use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube::core::{DynamicObject, TypeMeta};
use serde::Deserialize;

pub use decide::{Decision, DenyReason, Unavailable, decide};
use head::ReviewHead;

use crate::audit::{AdmissionLimits, AuditEvent, AuditRecord, GrantUses, LimitHit, RateCheck};
use crate::error::error_chain;
use crate::policy::FailureMode;
use crate::policy::{self, Gate, GatedChange, Workload};
use crate::state::AppState;

/// Largest AdmissionReview accepted: two objects of up to 1.5 MiB each, plus room.
pub const MAX_REVIEW_BYTES: usize = 4 * 1024 * 1024;

/// The webhook listener's router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/validate", post(validate))
        .layer(DefaultBodyLimit::max(MAX_REVIEW_BYTES))
        .with_state(state)
}

fn json_response(status: StatusCode, review: &AdmissionReview<DynamicObject>) -> Response {
    match serde_json::to_vec(review) {
        Ok(body) => (
            status,
            [(http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

fn invalid(reason: String) -> Response {
    tracing::warn!(%reason, "unreadable AdmissionReview");
    json_response(
        StatusCode::BAD_REQUEST,
        &AdmissionResponse::invalid(reason).into_review(),
    )
}

async fn validate(State(state): State<AppState>, body: Bytes) -> Response {
    let started = Instant::now();
    let mut unconfirmed = None;
    if let Some(head) = ReviewHead::parse(&body)
        && let Some(reason) = head.ungated(&state.policy, &*state.namespaces)
    {
        let open = match (&state.namespace_lookup, reason) {
            // The API server calls only for namespaces its selector matched:
            // the index may be behind a label set a moment ago.
            (Some(lookup), policy::UngatedReason::NamespaceNotProtected) => {
                match lookup.is_protected(head.namespace()).await {
                    Ok(protected) => !protected,
                    Err(error) => {
                        unconfirmed = Some(error);
                        false
                    }
                }
            }
            _ => true,
        };
        if open {
            // Not gated, by the target alone: answered without building the objects.
            state.metrics.admission(
                head.kind(),
                operation_name(head.operation()),
                "ungated",
                started.elapsed().as_secs_f64(),
            );
            return json_response(StatusCode::OK, &head.allow().into_review());
        }
    }
    let req = match parse_review(&body) {
        Ok(req) => req,
        Err(reason) => return invalid(reason),
    };
    let response = match &unconfirmed {
        Some(error) => (deny_unconfirmed(&req, error), "denied_unavailable"),
        None => review_request(&state, &req).await,
    };
    let kind = req.kind.kind.as_str();
    let operation = operation_name(&req.operation);
    let decision = response.1;
    state
        .metrics
        .admission(kind, operation, decision, started.elapsed().as_secs_f64());
    json_response(StatusCode::OK, &response.0.into_review())
}

/// The denial of a request about a namespace rollgate could not look up:
/// the API server's selector matched it, so it may be protected, and
/// rollgate fails closed.
fn deny_unconfirmed(
    req: &AdmissionRequest<Workload>,
    error: &policy::index::lookup::Error,
) -> AdmissionResponse {
    let namespace = req.namespace.as_deref().unwrap_or_default();
    let cause = error_chain(error);
    tracing::warn!(%namespace, %cause, "cannot confirm whether a namespace is protected; denied");
    let mut response = AdmissionResponse::from(req).deny(format!(
        "rollgate cannot confirm whether namespace {namespace} is protected ({cause}), so it fails closed. \
         Nothing is wrong with your request: retry in a minute; if this persists, tell the platform team."
    ));
    response.result.code = 403;
    response.result.reason = "Forbidden".into();
    response
}

/// The review's envelope, with the request's objects as [`Workload`]s.
///
/// kube's `AdmissionReview` flattens its `TypeMeta`, which makes serde
/// buffer the whole review (both objects) before reading it; this envelope
/// names the two fields instead, so the request is read in one pass.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReviewEnvelope {
    api_version: String,
    kind: String,
    #[serde(default)]
    request: Option<AdmissionRequest<Workload>>,
}

/// Reads an AdmissionReview v1 body into kube's request type, or says what
/// is wrong with it.
pub fn parse_review(body: &[u8]) -> Result<AdmissionRequest<Workload>, String> {
    let envelope: ReviewEnvelope = serde_json::from_slice(body)
        .map_err(|e| format!("body is not an AdmissionReview v1: {e}"))?;
    let mut req = envelope
        .request
        .ok_or_else(|| "AdmissionReview has no request".to_owned())?;
    // What kube's conversion from a review does: the answer echoes them.
    req.types = TypeMeta {
        api_version: envelope.api_version,
        kind: envelope.kind,
    };
    Ok(req)
}

/// Answers one parsed request; returns the response and the metric label.
async fn review_request(
    state: &AppState,
    req: &AdmissionRequest<Workload>,
) -> (AdmissionResponse, &'static str) {
    let base = AdmissionResponse::from(req);
    let (change, decision) = match policy::classify(req, &state.policy, &*state.namespaces) {
        Gate::Ungated(_) => return (base, "ungated"),
        Gate::Exempt(change) => (change, Decision::Exempt),
        Gate::Gated(change) => {
            let lookup = lookup_grant(state, &change).await;
            let now = jiff::Timestamp::now().as_second();
            let decision = decide(
                &change,
                lookup,
                &state.verifier,
                state.policy.failure_mode_for(&change.namespace),
                now,
            );
            (change, decision)
        }
    };

    let decision = if req.dry_run {
        // Nothing is recorded or consumed, but the answer is the real one:
        // the limits the append would check, read only.
        match check_limits(state, &change, &decision).await {
            Ok(None) => decision,
            Ok(Some(hit)) => Decision::Denied(DenyReason::Limited(hit)),
            Err(unavailable) => unrecorded(state, &change, decision, unavailable),
        }
    } else {
        match record(state, req, &change, &decision).await {
            Ok(None) => decision,
            Ok(Some(hit)) => {
                // A limit said no as the admission was recorded: record the
                // denial instead (a third round trip, only in this case).
                let denied = Decision::Denied(DenyReason::Limited(hit));
                if let Err(unavailable) = record(state, req, &change, &denied).await {
                    tracing::warn!(detail = %unavailable.detail, "cannot record a denial by limit");
                }
                denied
            }
            Err(unavailable) => unrecorded(state, &change, decision, unavailable),
        }
    };

    // The audit trail records every gated decision; the log adds a line
    // per denial only, so allowed traffic writes no log by default.
    macro_rules! log_gated {
        ($level:expr) => {
            tracing::event!(
                $level,
                namespace = %change.namespace,
                name = %change.name,
                kind = %change.kind,
                application = %change.application,
                user = %change.requester.username,
                change = ?change.class,
                decision = decision.metric_label(),
                dry_run = req.dry_run,
                "gated change"
            )
        };
    }
    if decision.allowed() {
        log_gated!(tracing::Level::DEBUG);
    } else {
        log_gated!(tracing::Level::INFO);
    }

    let label = decision.metric_label();
    let mut response = base;
    if decision.allowed() {
        response.warnings = decision.warning().map(|w| vec![w]);
    } else {
        response = response.deny(decision.message(&change, &state.public_api_url));
        response.result.code = 403;
        response.result.reason = "Forbidden".into();
    }
    (response, label)
}

/// `decision` when the store round trip after it failed: a decision that
/// cannot be recorded (or, for a dry run, checked against its limits) is not
/// made (DESIGN.md: recorded before the webhook answers), unless configured open.
fn unrecorded(
    state: &AppState,
    change: &GatedChange,
    decision: Decision,
    unavailable: Unavailable,
) -> Decision {
    match state.policy.failure_mode_for(&change.namespace) {
        FailureMode::Closed if decision.allowed() => {
            Decision::Denied(DenyReason::Unavailable(unavailable))
        }
        _ => decision,
    }
}

/// The limits an admission allowed by a grant is appended within (the
/// grant's uses, the application's rate); `None` for any other decision.
fn admission_limits(state: &AppState, decision: &Decision) -> Option<AdmissionLimits> {
    let Decision::Allowed {
        jti,
        expires_at,
        max_uses,
        ..
    } = decision
    else {
        return None;
    };
    Some(AdmissionLimits {
        grant_uses: max_uses.map(|max| GrantUses {
            jti: jti.clone(),
            max,
            expires_at: *expires_at,
        }),
        rate: state.policy.rate_limit.map(|rate| RateCheck {
            limit: rate.limit,
            window_secs: i64::try_from(rate.window.as_secs()).unwrap_or(i64::MAX),
            now: jiff::Timestamp::now().as_second(),
        }),
    })
}

/// A dry run's second and last round trip: what the append of `decision`
/// would say of its limits, read only (`Ok(None)`, and no round trip, when
/// it has none).
async fn check_limits(
    state: &AppState,
    change: &GatedChange,
    decision: &Decision,
) -> Result<Option<LimitHit>, Unavailable> {
    let Some(limits) = admission_limits(state, decision)
        .filter(|l| l.grant_uses.is_some() || l.rate.is_some_and(|r| r.limit > 0))
    else {
        return Ok(None);
    };
    let check =
        state
            .stores
            .audit
            .check_admission_limits(&change.namespace, &change.application, &limits);
    within_budget(state, "audit log", check).await
}

/// One store round trip under the webhook's time budget; `what` names the
/// store in the denial when it fails or does not answer in time.
async fn within_budget<T>(
    state: &AppState,
    what: &'static str,
    call: impl std::future::Future<Output = Result<T, crate::error::Error>>,
) -> Result<T, Unavailable> {
    match tokio::time::timeout(state.store_timeout, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(Unavailable {
            what,
            detail: error_chain(&e),
        }),
        Err(_) => Err(Unavailable {
            what,
            detail: format!("no answer within {:?}", state.store_timeout),
        }),
    }
}

/// The one store round trip of a gated request: the grants of the requester
/// for this application, or for rollgate's own redeploy the grant it names.
async fn lookup_grant(
    state: &AppState,
    change: &GatedChange,
) -> Result<Vec<crate::grants::StoredGrant>, Unavailable> {
    let now = jiff::Timestamp::now().as_second();
    let grants = &state.stores.grants;
    let lookup = async {
        match &change.redeploy {
            Some(redeploy) => grants
                .grant_by_jti(&redeploy.grant_jti, now)
                .await
                .map(|g| g.into_iter().collect()),
            None => {
                grants
                    .find_grants(
                        &change.requester.username,
                        &change.namespace,
                        &change.application,
                        now,
                    )
                    .await
            }
        }
    };
    within_budget(state, "grant store", lookup).await
}

/// Appends the ADMISSION record of `decision` (the second round trip). An
/// admission allowed by a grant is appended only within its limits (the
/// grant's uses, the application's rate): `Ok(Some(hit))` when one said no.
async fn record(
    state: &AppState,
    req: &AdmissionRequest<Workload>,
    change: &GatedChange,
    decision: &Decision,
) -> Result<Option<LimitHit>, Unavailable> {
    let mut r = AuditRecord::new(AuditEvent::Admission, jiff::Timestamp::now());
    r.decision = Some(decision.audit_decision());
    r.reason = Some(decision.audit_reason());
    r.request_uid = Some(req.uid.clone());
    r.username = Some(change.requester.username.clone());
    r.groups = change.requester.groups.clone();
    r.namespace = Some(change.namespace.clone());
    r.application_name = Some(change.application.clone());
    r.kind = Some(change.kind);
    r.deployment_name = Some(change.name.clone());
    r.change = Some(change.class);
    r.image_changes = change.diff.images.clone();
    r.template_changes = change
        .diff
        .relabelled
        .iter()
        .chain(&change.diff.other)
        .cloned()
        .collect();
    if change.diff.restarted {
        r.restarted_at = change.diff.restarted_at.clone();
    }
    if let Some(first) = change.diff.images.first() {
        r.previous_image = first.previous_image.clone();
        r.current_image = first.current_image.clone();
    }
    r.grant_jti = decision.grant_jti().map(str::to_owned);
    if decision.allowed() {
        // A redeploy's operation id was chosen by the API (and returned to the user).
        let from_api = change
            .redeploy
            .as_ref()
            .and_then(|d| d.operation_id.clone());
        r.operation_id = Some(from_api.unwrap_or_else(crate::names::random_id));
        r.rollout_status = Some(crate::audit::RolloutStatus::Started);
        r.operation_start_time = Some(r.timestamp.clone());
    }
    if let Decision::Allowed {
        ticket_number,
        user,
        ..
    } = decision
    {
        r.ticket_number = Some(ticket_number.clone());
        r.ticket_id = crate::names::ticket_id_of(ticket_number);
        if change.redeploy.is_some() {
            // rollgate's own patch: attributed to the grant's user, rollgate as the actor.
            r.actor = Some(change.requester.username.clone());
            r.username = Some(user.clone());
        }
    }
    let to_follow = (crate::rollout::OperationMark::of(&r) == crate::rollout::OperationMark::Open)
        .then(|| r.operation_id.clone())
        .flatten();
    let append = async {
        match admission_limits(state, decision) {
            Some(limits) => state
                .stores
                .audit
                .append_admission(r, &limits)
                .await
                .map(|outcome| outcome.err()),
            None => state.stores.audit.append(r).await.map(|_| None),
        }
    };
    let hit = within_budget(state, "audit log", append).await?;
    if let (None, Some(op), Some(follower)) = (hit, to_follow, &state.rollouts) {
        // Never waits: if the follower is swamped, its scan finds the operation.
        let _ = follower.try_send(op);
    }
    Ok(hit)
}

fn operation_name(op: &Operation) -> &'static str {
    match op {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
        Operation::Delete => "DELETE",
        Operation::Connect => "CONNECT",
    }
}
