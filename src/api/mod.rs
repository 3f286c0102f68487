//! The ticket API (HTTPS): tickets, grants, audit queries, JWKS and the
//! OpenAPI document. Handlers parse, call one domain function
//! ([`TicketDesk`](crate::tickets::TicketDesk), a store), and answer; errors
//! are problem+json ([`problem`]). Callers are [`Caller`]s (Bearer tokens).

#[doc(hidden)]
pub mod fuzzing;
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

use crate::audit::{AuditEvent, AuditFilter, MAX_PAGE};
use crate::auth::{Caller, Role};
use crate::grants::{GrantFilter, StoredGrant};
use crate::policy::WorkloadKind;
use crate::state::AppState;
use crate::tickets::{NewTicket, TicketFilter, TicketStatus};

/// Largest API request body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Every path [`router`] serves, in the order it registers them. The router
/// takes its paths from here, and a unit test checks that `openapi.json`
/// documents each one: add a route here, then to the router, then to the document.
pub const ROUTES: [&str; 16] = [
    "/v1/tickets",
    "/v1/tickets/{id}",
    "/v1/tickets/{id}/approve",
    "/v1/tickets/{id}/reject",
    "/v1/tickets/{id}/cancel",
    "/v1/tickets/{id}/grant",
    "/v1/grants",
    "/v1/grants/{jti}/revoke",
    "/v1/applications/{namespace}/{application}/redeploy",
    "/v1/audit",
    "/v1/audit/verify",
    "/v1/audit/export",
    "/v1/audit/checkpoints",
    "/v1/audit/{id}",
    "/openapi.json",
    "/.well-known/jwks.json",
];

/// The API listener's router.
pub fn router(state: AppState) -> Router {
    let [
        tickets,
        ticket,
        approve,
        reject,
        cancel,
        grant,
        grants,
        revoke,
        redeploy_app,
        audit,
        audit_verify,
        audit_export,
        audit_checkpoints,
        audit_record,
        openapi_doc,
        jwks_doc,
    ] = ROUTES;
    Router::new()
        .route(tickets, post(create_ticket).get(list_tickets))
        .route(ticket, get(show_ticket))
        .route(approve, post(approve_ticket))
        .route(reject, post(reject_ticket))
        .route(cancel, post(cancel_ticket))
        .route(grant, get(ticket_grant))
        .route(grants, get(list_grants))
        .route(revoke, post(revoke_grant))
        .route(redeploy_app, post(redeploy))
        .route(audit, get(list_audit))
        .route(audit_verify, get(verify_audit))
        .route(audit_export, get(export_audit))
        .route(audit_checkpoints, post(create_checkpoint))
        .route(audit_record, get(show_audit))
        .route(openapi_doc, get(openapi))
        .route(jwks_doc, get(jwks))
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

/// Body of revoke.
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
    if ticket.status == TicketStatus::Approved {
        tracing::info!(ticket = %ticket.number, approver = %caller.username, requester = %ticket.requester, "ticket approved, grant issued");
    } else {
        tracing::info!(ticket = %ticket.number, approver = %caller.username, approvals = ticket.approvals.len(),
            required = ticket.required_approvals, "approval recorded, more needed");
    }
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

/// Requires the caller to read `namespace` (or everything when `None`):
/// an auditor or an approver there.
async fn require_auditor(
    s: &AppState,
    caller: &Caller,
    namespace: Option<&str>,
) -> Result<(), ApiError> {
    for role in [Role::Auditor, Role::Approver] {
        if s.authorizer.allows(caller, role, namespace).await? {
            return Ok(());
        }
    }
    Err(ApiError::forbidden(match namespace {
        Some(ns) => format!(
            "{} is neither an auditor nor an approver for namespace {ns}: auditors are listed in rollgate's config \
             (roles.auditors) or hold RBAC verb \"get\" on resource \"audit\" of API group rollgate.io there",
            caller.username
        ),
        None => format!(
            "{} may not read every namespace: name one with ?namespace=, or ask for the auditor role in every \
             namespace (roles.auditors \"*\", or a ClusterRoleBinding for \"get\" on audit.rollgate.io)",
            caller.username
        ),
    }))
}

async fn list_grants(
    State(s): State<AppState>,
    caller: Caller,
    ApiQuery(filter): ApiQuery<GrantFilter>,
) -> Result<impl IntoResponse, ApiError> {
    require_auditor(&s, &caller, filter.namespace.as_deref()).await?;
    let grants = s
        .stores
        .grants
        .list_grants(&filter, jiff::Timestamp::now().as_second())
        .await?;
    Ok(Json(Items {
        items: grants.into_iter().map(GrantView::from).collect(),
    }))
}

/// A live grant as `GET /v1/grants` shows it: never its token (a bearer
/// credential), and times in RFC 3339 like everywhere else in the API.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct GrantView {
    jti: String,
    user: String,
    namespace: String,
    application: String,
    ticket_id: String,
    ticket_number: String,
    expires_at: jiff::Timestamp,
}

impl From<StoredGrant> for GrantView {
    fn from(g: StoredGrant) -> Self {
        Self {
            expires_at: jiff::Timestamp::from_second(g.expires_at)
                .unwrap_or(jiff::Timestamp::UNIX_EPOCH),
            jti: g.jti,
            user: g.user,
            namespace: g.namespace,
            application: g.application,
            ticket_id: g.ticket_id,
            ticket_number: g.ticket_number,
        }
    }
}

async fn revoke_grant(
    State(s): State<AppState>,
    caller: Caller,
    Path(jti): Path<String>,
    OptionalJson(body): OptionalJson<ReasonBody>,
) -> Result<impl IntoResponse, ApiError> {
    let grant = s.desk.revoke(&caller, &jti, body.reason).await?;
    tracing::info!(jti = %grant.jti, ticket = %grant.ticket_number, by = %caller.username, "grant revoked");
    Ok(Json(
        json!({"jti": grant.jti, "revoked": true, "ticketNumber": grant.ticket_number}),
    ))
}

/// What a grant whose ticket allows only `action` admits, for messages.
fn only_change(action: &str) -> String {
    match action {
        "image" => "an image change".into(),
        "debug" => "a debug container (`kubectl debug`)".into(),
        other => format!("{other} changes"),
    }
}

/// Body of redeploy: which workload, when the application has several.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RedeployBody {
    reason: Option<String>,
    kind: Option<String>,
    name: Option<String>,
}

/// Restarts an application as rollgate, authorised by the grant sent as the
/// Bearer token (DESIGN.md flow step 7).
async fn redeploy(
    State(s): State<AppState>,
    Path((namespace, application)): Path<(String, String)>,
    headers: http::HeaderMap,
    OptionalJson(body): OptionalJson<RedeployBody>,
) -> Result<Response, ApiError> {
    let token = crate::auth::bearer(&headers)?;
    let now = jiff::Timestamp::now().as_second();
    let claims = s.verifier.verify_token(token, now).map_err(|rejection| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            format!("the bearer token is not a valid grant ({rejection}): send the token `rollgate ticket grant ID` prints"),
        )
    })?;
    if claims.ns != namespace || claims.app != application {
        return Err(ApiError::forbidden(format!(
            "this grant is for {}/{}, not {namespace}/{application}",
            claims.ns, claims.app
        )));
    }
    // An allow-list: a grant for any other action (image, debug, or one added
    // later) cannot restart.
    if !matches!(claims.action.as_str(), "restart" | "any") {
        return Err(ApiError::forbidden(format!(
            "this grant's ticket allows only {}, and a redeploy is a restart: request a ticket with --action restart",
            only_change(&claims.action)
        )));
    }
    if s.stores
        .grants
        .grant_by_jti(&claims.jti, now)
        .await?
        .is_none()
    {
        return Err(ApiError::forbidden(format!(
            "grant {} was revoked or has expired: request a new ticket",
            claims.jti
        )));
    }
    let kind = match body.kind.as_deref() {
        None => None,
        // A restart annotation rolls the pods of these kinds only.
        Some(k) => Some(
            WorkloadKind::from_kind(k)
                .filter(|kind| kind.is_restartable())
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "kind {k:?} is not one of Deployment, StatefulSet, DaemonSet: \
                         only those can be redeployed"
                    ))
                })?,
        ),
    };
    let Some(client) = &s.kube else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Service Unavailable",
            format!(
                "no cluster configured: rollgate cannot redeploy {namespace}/{application} itself; \
                 run `kubectl rollout restart` with your grant instead, or start rollgate with --kubeconfig"
            ),
        ));
    };
    let selector = crate::redeploy::Selector {
        kind,
        name: body.name,
    };
    let found = crate::redeploy::find(client, &namespace, &application).await?;
    let workload = crate::redeploy::choose(&namespace, &application, found, &selector)?;
    let operation_id = crate::names::random_id();
    crate::redeploy::restart(client, &namespace, &workload, &claims.jti, &operation_id).await?;
    tracing::info!(
        namespace = %namespace, application = %application, user = %claims.sub, ticket = %claims.tno,
        kind = %workload.kind, name = %workload.name, operation = %operation_id, reason = ?body.reason,
        "redeploy started"
    );
    let answer = json!({
        "operationId": operation_id,
        "kind": workload.kind,
        "name": workload.name,
        "ticketNumber": claims.tno,
    });
    Ok((StatusCode::ACCEPTED, Json(answer)).into_response())
}

async fn list_audit(
    State(s): State<AppState>,
    caller: Caller,
    ApiQuery(filter): ApiQuery<AuditFilter>,
) -> Result<impl IntoResponse, ApiError> {
    require_auditor(&s, &caller, filter.namespace.as_deref()).await?;
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
    require_auditor(&s, &caller, record.namespace.as_deref()).await?;
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

/// Query of `GET /v1/audit/verify`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyQuery {
    /// A checkpoint JWS the auditor kept, to check the chain against.
    checkpoint: Option<String>,
}

async fn verify_audit(
    State(s): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<VerifyQuery>,
) -> Result<impl IntoResponse, ApiError> {
    require_auditor(&s, &caller, None).await?;
    Ok(Json(s.trail.verify(query.checkpoint.as_deref()).await?))
}

/// No query parameters: the export is the whole chain, which alone verifies.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportQuery {}

/// Every record, oldest first, as JSON lines, streamed from the store.
async fn export_audit(
    State(s): State<AppState>,
    caller: Caller,
    ApiQuery(ExportQuery {}): ApiQuery<ExportQuery>,
) -> Result<Response, ApiError> {
    require_auditor(&s, &caller, None).await?;
    tracing::info!(user = %caller.username, "audit export");
    Ok((
        [(http::header::CONTENT_TYPE, "application/jsonl")],
        axum::body::Body::from_stream(s.trail.export()),
    )
        .into_response())
}

/// Signs a checkpoint of the chain now and appends it (201), or answers the
/// checkpoint already at the head (200).
async fn create_checkpoint(
    State(s): State<AppState>,
    caller: Caller,
) -> Result<Response, ApiError> {
    require_auditor(&s, &caller, None).await?;
    let made = s
        .trail
        .checkpoint(
            Some(&caller.username),
            "on demand (POST /v1/audit/checkpoints)",
            jiff::Timestamp::now(),
        )
        .await?;
    let status = if made.created {
        tracing::info!(user = %caller.username, id = %made.record.id, records = ?made.record.checkpoint_records, "audit checkpoint appended");
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let location = format!("/v1/audit/{}", made.record.id);
    Ok((
        status,
        [(http::header::LOCATION, location)],
        Json(made.record),
    )
        .into_response())
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::*;
    use crate::audit::{AuditPage, AuditRecord, VerifyReport};
    use crate::tickets::{Action, Ticket};

    fn mk_doc() -> Value {
        serde_json::from_str(include_str!("openapi.json")).expect("openapi.json is JSON")
    }

    /// The property names of a schema in `components.schemas`.
    fn properties(doc: &Value, schema: &str) -> BTreeSet<String> {
        doc["components"]["schemas"][schema]["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("schema {schema} has no properties"))
            .keys()
            .cloned()
            .collect()
    }

    /// The top-level keys `value` serializes to.
    fn keys(value: impl Serialize) -> BTreeSet<String> {
        serde_json::to_value(value)
            .unwrap()
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    }

    fn collect_refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    out.push(r);
                }
                map.values().for_each(|v| collect_refs(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn openapi_documents_every_route_and_no_other() {
        let doc = mk_doc();
        assert!(
            doc["openapi"]
                .as_str()
                .is_some_and(|v| v.starts_with("3.1.")),
            "openapi.json must be OpenAPI 3.1"
        );
        let documented: BTreeSet<&str> = doc["paths"]
            .as_object()
            .expect("openapi.json has paths")
            .keys()
            .map(String::as_str)
            .collect();
        let served: BTreeSet<&str> = ROUTES.into_iter().collect();
        let undocumented: Vec<_> = served.difference(&documented).collect();
        assert!(
            undocumented.is_empty(),
            "routes missing from openapi.json: {undocumented:?}"
        );
        let stale: Vec<_> = documented.difference(&served).collect();
        assert!(
            stale.is_empty(),
            "openapi.json documents unserved paths: {stale:?}"
        );
    }

    #[test]
    fn every_operation_has_responses_and_every_ref_resolves() {
        let doc = mk_doc();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                if method == "parameters" {
                    continue;
                }
                assert!(
                    op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                    "{method} {path} documents no responses"
                );
            }
        }
        let mut refs = Vec::new();
        collect_refs(&doc, &mut refs);
        assert!(!refs.is_empty());
        for r in refs {
            let pointer = r
                .strip_prefix('#')
                .unwrap_or_else(|| panic!("external $ref {r}"));
            assert!(doc.pointer(pointer).is_some(), "$ref {r} does not resolve");
        }
    }

    #[test]
    fn schemas_name_exactly_the_fields_the_rust_types_serialize() {
        let doc = mk_doc();
        let now = jiff::Timestamp::from_second(1_800_000_000).unwrap();
        let ticket = Ticket::file(
            42,
            NewTicket {
                namespace: "production".into(),
                application: "checkout-api".into(),
                reason: "roll the new config".into(),
                action: Action::Any,
                images: vec!["registry.example.com/shop/checkout-api:v3.42.0".into()],
                max_uses: Some(1),
            },
            "alice",
            now,
        )
        .requiring(2)
        .add_approval("bob", Some("looks right".into()), now)
        .expect("bob is not the requester");
        let grant = StoredGrant {
            jti: "jti-1".into(),
            user: "alice".into(),
            namespace: "production".into(),
            application: "checkout-api".into(),
            ticket_id: "42".into(),
            ticket_number: "RG-000042".into(),
            expires_at: 1_800_007_200,
            token: "eyJ.secret".into(),
        };
        let token = GrantToken {
            token: "eyJ...".into(),
            jti: "jti-1".into(),
            expires_at: now,
            ticket_number: "RG-000042".into(),
        };
        let report = VerifyReport {
            ok: true,
            records: 0,
            head: crate::audit::GENESIS_HASH.into(),
            first_bad_id: None,
            checkpoint: None,
            problem: None,
        };
        let page = AuditPage {
            items: vec![],
            next: None,
        };
        let summary = crate::audit::chain::CheckpointSummary {
            id: Some("42".into()),
            records: 41,
            head: crate::audit::GENESIS_HASH.into(),
            issued_at: now.to_string(),
            source: crate::audit::checkpoint::CheckpointSource::Memory,
        };
        let rows: [(&str, BTreeSet<String>); 8] = [
            ("Ticket", keys(&ticket)),
            ("TicketEntry", keys(&ticket.entry)),
            ("TicketApproval", keys(&ticket.approvals[0])),
            ("StoredGrant", keys(GrantView::from(grant))),
            ("GrantToken", keys(&token)),
            ("VerifyReport", keys(&report)),
            ("AuditPage", keys(&page)),
            ("CheckpointSummary", keys(&summary)),
        ];
        for (schema, serialized) in rows {
            assert_eq!(properties(&doc, schema), serialized, "schema {schema}");
        }
    }

    #[test]
    fn action_schema_lists_exactly_the_ticket_actions() {
        let doc = mk_doc();
        let documented: Vec<&str> = doc["components"]["schemas"]["Action"]["enum"]
            .as_array()
            .expect("schema Action has an enum")
            .iter()
            .map(|v| v.as_str().expect("action names are strings"))
            .collect();
        let served: Vec<&str> = Action::ALL.iter().map(|a| a.as_str()).collect();
        assert_eq!(documented, served, "schema Action");
        for name in documented {
            let parsed: Action =
                serde_json::from_value(Value::from(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(parsed.as_str(), name);
        }
    }

    #[test]
    fn kind_and_change_schemas_list_exactly_what_the_webhook_records() {
        use crate::policy::{ChangeKind, WorkloadKind};
        let doc = mk_doc();
        let documented = |schema: &str| -> Vec<Value> {
            doc["components"]["schemas"][schema]["enum"]
                .as_array()
                .unwrap_or_else(|| panic!("schema {schema} has an enum"))
                .clone()
        };
        let kinds: Vec<Value> = WorkloadKind::ALL
            .iter()
            .map(|k| serde_json::to_value(k).unwrap())
            .collect();
        assert_eq!(documented("WorkloadKind"), kinds);
        let changes: Vec<Value> = [
            ChangeKind::Restart,
            ChangeKind::Image,
            ChangeKind::Both,
            ChangeKind::Template,
            ChangeKind::Relabel,
            ChangeKind::Debug,
        ]
        .iter()
        .map(|c| serde_json::to_value(c).unwrap())
        .collect();
        assert_eq!(documented("ChangeKind"), changes);
    }

    #[test]
    fn audit_record_schema_names_every_field() {
        let doc = mk_doc();
        let mut record = AuditRecord::new(
            AuditEvent::Admission,
            jiff::Timestamp::from_second(1_800_000_000).unwrap(),
        );
        record.decision = Some(crate::audit::AuditDecision::Allowed);
        record.reason = Some("grant of ticket RG-000042".into());
        record.operation_id = Some("op".into());
        record.request_uid = Some("uid".into());
        record.username = Some("alice".into());
        record.groups = vec!["devs".into()];
        record.actor = Some("system:serviceaccount:rollgate:rollgate".into());
        record.namespace = Some("production".into());
        record.application_name = Some("checkout-api".into());
        record.kind = Some(crate::policy::WorkloadKind::Deployment);
        record.deployment_name = Some("checkout-api".into());
        record.change = Some(crate::policy::ChangeKind::Image);
        record.image_changes = vec![crate::policy::ImageChange {
            container: "app".into(),
            init: true,
            ephemeral: true,
            previous_image: Some("a:1".into()),
            current_image: Some("a:2".into()),
        }];
        record.template_changes = vec!["env of container app".into()];
        record.previous_image = Some("a:1".into());
        record.current_image = Some("a:2".into());
        record.ticket_id = Some("42".into());
        record.ticket_number = Some("RG-000042".into());
        record.ticket_entry_id = Some("42".into());
        record.grant_jti = Some("jti-1".into());
        record.approvers = vec!["bob".into()];
        record.dry_run = Some(false);
        record.rollout_status = Some(crate::audit::RolloutStatus::Completed);
        record.previous_replicas = Some(3);
        record.current_replicas = Some(3);
        record.rollout_strategy = Some("RollingUpdate".into());
        record.operation_start_time = Some(record.timestamp.clone());
        record.operation_end_time = Some(record.timestamp.clone());
        record.duration_seconds = Some(210);
        record.success = Some(true);
        record.error_message = Some("none".into());
        record.new_pods = Some(vec!["p1".into()]);
        record.terminated_pods = Some(vec!["p0".into()]);
        record.previous_pods = Some(vec!["p0".into()]);
        record.new_replica_set = Some("checkout-api-7d4f8b9c".into());
        record.controller_revision = Some("checkout-api-5d8f".into());
        record.restarted_at = Some("2026-03-02T10:15:04Z".into());
        record.checkpoint = Some("eyJ.checkpoint.jws".into());
        record.checkpoint_records = Some(41);
        record.checkpoint_head = Some(crate::audit::GENESIS_HASH.into());
        // Every field is set, so the serialized keys are all the fields.
        assert_eq!(
            properties(&doc, "AuditRecord"),
            keys(&record),
            "schema AuditRecord"
        );
        let image_change = keys(&record.image_changes[0]);
        assert_eq!(
            properties(&doc, "ImageChange"),
            image_change,
            "schema ImageChange"
        );
    }
}
