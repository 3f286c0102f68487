//! The ticket API (HTTPS): tickets, grants, audit queries, JWKS and the
//! OpenAPI document. Handlers parse, call one domain function
//! ([`TicketDesk`](crate::tickets::TicketDesk), a store), and answer; errors
//! are problem+json ([`problem`]). Callers are [`Caller`]s (Bearer tokens).

pub mod problem;

use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::json;

pub use problem::{ApiError, ApiJson, ApiQuery, OptionalJson};

use crate::audit::{AuditEvent, AuditFilter, AuditRecord, MAX_PAGE};
use crate::auth::Caller;
use crate::grants::{GrantFilter, StoredGrant};
use crate::state::AppState;
use crate::tickets::{NewTicket, TicketFilter};

/// Largest API request body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The API listener's router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/tickets", post(create_ticket).get(list_tickets))
        .route("/v1/tickets/{id}", get(show_ticket))
        .route("/v1/tickets/{id}/approve", post(approve_ticket))
        .route("/v1/tickets/{id}/reject", post(reject_ticket))
        .route("/v1/tickets/{id}/cancel", post(cancel_ticket))
        .route("/v1/tickets/{id}/grant", get(ticket_grant))
        .route("/v1/grants", get(list_grants))
        .route("/v1/grants/{jti}/revoke", post(revoke_grant))
        .route(
            "/v1/applications/{namespace}/{application}/redeploy",
            post(redeploy),
        )
        .route("/v1/audit", get(list_audit))
        .route("/v1/audit/verify", get(verify_audit))
        .route("/v1/audit/{id}", get(show_audit))
        .route("/openapi.json", get(openapi))
        .route("/.well-known/jwks.json", get(jwks))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            Duration::from_secs(30),
        ))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such path: see GET /openapi.json for the API")
}

/// Body of approve and reject.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DecisionBody {
    comment: Option<String>,
}

/// Body of revoke and redeploy.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReasonBody {
    reason: Option<String>,
}

#[derive(Serialize)]
struct Items<T> {
    items: Vec<T>,
}

async fn create_ticket(
    State(s): State<AppState>,
    caller: Caller,
    ApiJson(new): ApiJson<NewTicket>,
) -> Result<Response, ApiError> {
    let ticket = s.desk.create(&caller, new).await?;
    let location = format!("/v1/tickets/{}", ticket.id);
    Ok((
        StatusCode::CREATED,
        [(http::header::LOCATION, location)],
        Json(ticket),
    )
        .into_response())
}

async fn list_tickets(
    State(s): State<AppState>,
    _caller: Caller,
    ApiQuery(filter): ApiQuery<TicketFilter>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(Items {
        items: s.desk.list(&filter).await?,
    }))
}

async fn show_ticket(
    State(s): State<AppState>,
    _caller: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(s.desk.get(&id).await?))
}

async fn approve_ticket(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    OptionalJson(body): OptionalJson<DecisionBody>,
) -> Result<impl IntoResponse, ApiError> {
    let ticket = s.desk.approve(&caller, &id, body.comment).await?;
    tracing::info!(ticket = %ticket.number, approver = %caller.username, requester = %ticket.requester, "ticket approved, grant issued");
    Ok(Json(ticket))
}

async fn reject_ticket(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    OptionalJson(body): OptionalJson<DecisionBody>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(s.desk.reject(&caller, &id, body.comment).await?))
}

async fn cancel_ticket(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(s.desk.cancel(&caller, &id).await?))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GrantToken {
    token: String,
    jti: String,
    expires_at: jiff::Timestamp,
    ticket_number: String,
}

async fn ticket_grant(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let grant = s.desk.grant(&caller, &id).await?;
    Ok(Json(GrantToken {
        expires_at: jiff::Timestamp::from_second(grant.expires_at)
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH),
        token: grant.token,
        jti: grant.jti,
        ticket_number: grant.ticket_number,
    }))
}

/// Requires the caller to read `namespace` (or everything when `None`).
fn require_auditor(s: &AppState, caller: &Caller, namespace: Option<&str>) -> Result<(), ApiError> {
    let allowed = match namespace {
        Some(ns) => s.roles.is_auditor(ns, &caller.username, &caller.groups),
        None => s.roles.is_global_auditor(&caller.username, &caller.groups),
    };
    if allowed {
        return Ok(());
    }
    Err(ApiError::forbidden(match namespace {
        Some(ns) => format!(
            "{} is neither an auditor nor an approver for namespace {ns}",
            caller.username
        ),
        None => format!(
            "{} may not read every namespace: name one with ?namespace=, or ask for the auditor role (roles.auditors)",
            caller.username
        ),
    }))
}

async fn list_grants(
    State(s): State<AppState>,
    caller: Caller,
    ApiQuery(filter): ApiQuery<GrantFilter>,
) -> Result<impl IntoResponse, ApiError> {
    require_auditor(&s, &caller, filter.namespace.as_deref())?;
    let mut grants = s
        .stores
        .grants
        .list_grants(&filter, jiff::Timestamp::now().as_second())
        .await?;
    for g in &mut grants {
        // Never hand out tokens here: they are bearer credentials.
        g.token.clear();
    }
    Ok(Json(Items::<StoredGrant> { items: grants }))
}

async fn revoke_grant(
    State(s): State<AppState>,
    caller: Caller,
    Path(jti): Path<String>,
    OptionalJson(body): OptionalJson<ReasonBody>,
) -> Result<impl IntoResponse, ApiError> {
    let now = jiff::Timestamp::now();
    let grant = s
        .stores
        .grants
        .grant_by_jti(&jti, now.as_second())
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "no live grant {jti}: list them with GET /v1/grants"
            ))
        })?;
    if !s
        .roles
        .is_approver(&grant.namespace, &caller.username, &caller.groups)
    {
        return Err(ApiError::forbidden(format!(
            "{} is not an approver for namespace {}, so may not revoke its grants",
            caller.username, grant.namespace
        )));
    }
    s.stores.grants.revoke_grant(&jti).await?;
    let mut record = AuditRecord::new(AuditEvent::GrantRevoked, now);
    record.username = Some(caller.username.clone());
    record.groups = caller.groups.clone();
    record.namespace = Some(grant.namespace.clone());
    record.application_name = Some(grant.application.clone());
    record.ticket_id = Some(grant.ticket_id.clone());
    record.ticket_number = Some(grant.ticket_number.clone());
    record.grant_jti = Some(jti.clone());
    record.reason = body.reason;
    s.stores.audit.append(record).await?;
    s.metrics.active_tokens_changed(-1);
    Ok(Json(json!({"jti": jti, "revoked": true})))
}

async fn redeploy(
    _caller: Caller,
    Path((namespace, application)): Path<(String, String)>,
) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "Service Unavailable",
        format!(
            "no cluster configured: rollgate cannot redeploy {namespace}/{application} itself; \
             run `kubectl rollout restart` with your grant instead, or start rollgate with --kubeconfig"
        ),
    )
}

async fn list_audit(
    State(s): State<AppState>,
    caller: Caller,
    ApiQuery(filter): ApiQuery<AuditFilter>,
) -> Result<impl IntoResponse, ApiError> {
    require_auditor(&s, &caller, filter.namespace.as_deref())?;
    if filter.limit.is_some_and(|l| l == 0 || l > MAX_PAGE) {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {MAX_PAGE}"
        )));
    }
    if filter
        .after
        .as_deref()
        .is_some_and(|a| a.parse::<u64>().is_err())
    {
        return Err(ApiError::bad_request(
            "after must be the `next` cursor of a previous page",
        ));
    }
    Ok(Json(s.stores.audit.query(&filter).await?))
}

async fn show_audit(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let record = s.stores.audit.get(&id).await?.ok_or_else(|| {
        ApiError::not_found(format!(
            "audit record {id} does not exist: list records with GET /v1/audit"
        ))
    })?;
    require_auditor(&s, &caller, record.namespace.as_deref())?;
    let rollout = match &record.operation_id {
        Some(op) if record.event == Some(AuditEvent::Admission) => {
            let filter = AuditFilter {
                operation_id: Some(op.clone()),
                event: Some(AuditEvent::Rollout),
                limit: Some(1),
                ..AuditFilter::default()
            };
            s.stores
                .audit
                .query(&filter)
                .await?
                .items
                .into_iter()
                .next()
        }
        _ => None,
    };
    let mut body =
        serde_json::to_value(&record).map_err(|e| ApiError::unavailable("audit encoder", &e))?;
    body["rollout"] = serde_json::to_value(rollout).unwrap_or_default();
    Ok(Json(body))
}

async fn verify_audit(
    State(s): State<AppState>,
    caller: Caller,
) -> Result<impl IntoResponse, ApiError> {
    require_auditor(&s, &caller, None)?;
    Ok(Json(s.stores.audit.verify().await?))
}

async fn jwks(State(s): State<AppState>) -> impl IntoResponse {
    Json(s.keys.jwks())
}

async fn openapi() -> impl IntoResponse {
    (
        [(http::header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
}
