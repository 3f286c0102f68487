//! The API's request input without a store, for the fuzz targets in `fuzz/`
//! (not part of rollgate's interface): each body goes through the extractor
//! its handler uses and then the checks the ticket desk makes before it
//! touches the store; each query through its handler's query extractor.

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts};
use http::Request;

use super::{
    ApiError, ApiJson, ApiQuery, DecisionBody, OptionalJson, ReasonBody, RedeployBody, VerifyQuery,
};
use crate::audit::AuditFilter;
use crate::grants::GrantFilter;
use crate::policy::WorkloadKind;
use crate::tickets::{self, NewTicket, TicketFilter};

/// Which request input [`read`] parses, chosen by the fuzzer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// `POST /v1/tickets`.
    NewTicket,
    /// `POST /v1/tickets/{id}/approve` and `/reject`.
    Decision,
    /// `POST /v1/grants/{jti}/revoke`.
    Revoke,
    /// `POST /v1/applications/{namespace}/{application}/redeploy`.
    Redeploy,
    /// `GET /v1/tickets?…`.
    TicketQuery,
    /// `GET /v1/grants?…`.
    GrantQuery,
    /// `GET /v1/audit?…`.
    AuditQuery,
    /// `GET /v1/audit/verify?…`.
    VerifyQuery,
}

impl Input {
    pub const ALL: [Input; 8] = [
        Self::NewTicket,
        Self::Decision,
        Self::Revoke,
        Self::Redeploy,
        Self::TicketQuery,
        Self::GrantQuery,
        Self::AuditQuery,
        Self::VerifyQuery,
    ];
}

/// Parses `bytes` as `input` the way the API does; `Err` is the problem the
/// caller would get. Never panics, whatever the bytes.
pub fn read(input: Input, bytes: &[u8]) -> Result<(), ApiError> {
    futures::executor::block_on(read_async(input, bytes))
}

async fn read_async(input: Input, bytes: &[u8]) -> Result<(), ApiError> {
    match input {
        Input::NewTicket => {
            let ApiJson(new) = ApiJson::<NewTicket>::from_request(json_request(bytes), &()).await?;
            new.validate().map_err(ApiError::from)
        }
        Input::Decision => {
            let OptionalJson(body) = body::<DecisionBody>(bytes).await?;
            text("comment", body.comment.as_deref())
        }
        Input::Revoke => {
            let OptionalJson(body) = body::<ReasonBody>(bytes).await?;
            text("reason", body.reason.as_deref())
        }
        Input::Redeploy => {
            let OptionalJson(body) = body::<RedeployBody>(bytes).await?;
            match body
                .kind
                .as_deref()
                .map(|k| WorkloadKind::from_kind(k).filter(|k| k.is_restartable()))
            {
                Some(None) => Err(ApiError::bad_request("kind is not a workload kind")),
                _ => Ok(()),
            }
        }
        Input::TicketQuery => query::<TicketFilter>(bytes).await,
        Input::GrantQuery => query::<GrantFilter>(bytes).await,
        Input::AuditQuery => query::<AuditFilter>(bytes).await,
        Input::VerifyQuery => query::<VerifyQuery>(bytes).await,
    }
}

fn json_request(bytes: &[u8]) -> Request<Body> {
    let mut req = Request::new(Body::from(bytes.to_vec()));
    req.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    req
}

async fn body<T: serde::de::DeserializeOwned + Default>(
    bytes: &[u8],
) -> Result<OptionalJson<T>, ApiError> {
    OptionalJson::<T>::from_request(json_request(bytes), &()).await
}

fn text(field: &'static str, value: Option<&str>) -> Result<(), ApiError> {
    match value {
        Some(v) => tickets::validate_text(field, v, false).map_err(ApiError::from),
        None => Ok(()),
    }
}

async fn query<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<(), ApiError> {
    let query = String::from_utf8_lossy(bytes);
    // A query the HTTP layer could not carry never reaches the extractor.
    let Ok(uri) = http::Uri::try_from(format!("/?{query}")) else {
        return Ok(());
    };
    let (mut parts, ()) = Request::get(uri)
        .body(())
        .map_err(|e| ApiError::bad_request(e.to_string()))?
        .into_parts();
    let ApiQuery(_) = ApiQuery::<T>::from_request_parts(&mut parts, &()).await?;
    Ok(())
}
