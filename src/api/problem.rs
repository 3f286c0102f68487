//! API errors as RFC 9457 `application/problem+json`, and the extractors
//! that make malformed bodies and queries come back in the same format.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{auth, tickets};

/// An API error: status, a short title, and a detail saying what to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub title: &'static str,
    pub detail: String,
    /// Seconds for a `Retry-After` header (429, 503).
    pub retry_after: Option<i64>,
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    title: &'a str,
    status: u16,
    detail: &'a str,
}

impl ApiError {
    pub fn new(status: StatusCode, title: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            title,
            detail: detail.into(),
            retry_after: None,
        }
    }

    #[must_use]
    pub fn retry_after(mut self, seconds: i64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "Bad Request", detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "Forbidden", detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "Not Found", detail)
    }

    /// A 503 whose cause is logged here, once, and not shown to the caller.
    pub fn unavailable(what: &str, cause: &dyn std::error::Error) -> Self {
        tracing::error!(error = %crate::error::error_chain(cause), "{what} failed");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Service Unavailable",
            format!(
                "rollgate's {what} is unavailable right now; nothing was changed. Retry in a minute; if it persists, tell the platform team."
            ),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = Problem {
            kind: "about:blank",
            title: self.title,
            status: self.status.as_u16(),
            detail: &self.detail,
        };
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (
            self.status,
            [(http::header::CONTENT_TYPE, "application/problem+json")],
            body,
        )
            .into_response();
        if let Some(value) = self
            .retry_after
            .and_then(|s| http::HeaderValue::from_str(&s.to_string()).ok())
        {
            response
                .headers_mut()
                .insert(http::header::RETRY_AFTER, value);
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer realm=\"rollgate\""),
            );
        }
        response
    }
}

impl From<auth::Error> for ApiError {
    fn from(e: auth::Error) -> Self {
        match e {
            auth::Error::MissingToken | auth::Error::InvalidToken => Self::new(
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                format!(
                    "{e}; in dev mode the demo tokens are in users.json, in a cluster use your Kubernetes token"
                ),
            ),
            other => Self::unavailable("authentication", &other),
        }
    }
}

impl From<tickets::Error> for ApiError {
    fn from(e: tickets::Error) -> Self {
        use tickets::Error as E;
        match e {
            E::Invalid { .. } => Self::bad_request(e.to_string()),
            E::NotFound(_) => Self::not_found(format!("{e}: list tickets with GET /v1/tickets")),
            E::NoSuchGrant(_) => Self::not_found(e.to_string()),
            E::RateLimited {
                detail,
                retry_after,
            } => Self::new(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests", detail)
                .retry_after(retry_after),
            E::Forbidden(detail) => Self::forbidden(detail),
            E::AlreadyDecided { .. }
            | E::NoGrant { .. }
            | E::AlreadyApproved { .. }
            | E::AwaitingApprovals { .. }
            | E::Contention(_) => Self::new(StatusCode::CONFLICT, "Conflict", e.to_string()),
            E::Store(ref cause) => Self::unavailable("store", cause),
            E::Sign(ref cause) => Self::unavailable("grant signer", cause),
            E::Auth(cause) => cause.into(),
        }
    }
}

impl From<crate::redeploy::Error> for ApiError {
    fn from(e: crate::redeploy::Error) -> Self {
        use crate::redeploy::Error as E;
        match e {
            E::NotFound { .. } => Self::not_found(e.to_string()),
            E::Ambiguous { .. } => Self::new(StatusCode::CONFLICT, "Conflict", e.to_string()),
            E::Refused(_) => Self::forbidden(e.to_string()),
            E::NotRestartable(_) => Self::bad_request(e.to_string()),
            E::Kube(ref cause) => Self::unavailable("Kubernetes API", cause),
        }
    }
}

impl From<crate::audit::trail::Error> for ApiError {
    fn from(e: crate::audit::trail::Error) -> Self {
        use crate::audit::trail::Error as E;
        match e {
            E::Store(ref cause) => Self::unavailable("store", cause),
            E::Sign(ref cause) => Self::unavailable("checkpoint signer", cause),
            E::Rejected(_) => Self::bad_request(format!(
                "{e}: pass a checkpoint this rollgate signed, as `rollgate audit checkpoint` prints it \
                 (a JWS with typ rollgate-checkpoint+jwt)"
            )),
            E::Diverged(_) => Self::new(
                StatusCode::CONFLICT,
                "Conflict",
                format!("no checkpoint was made: {e}"),
            ),
            E::Contention(_) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "Service Unavailable",
                format!("{e}; retry in a moment"),
            ),
        }
    }
}

impl From<crate::error::Error> for ApiError {
    fn from(e: crate::error::Error) -> Self {
        Self::unavailable("store", &e)
    }
}

/// `Json<T>` whose rejections are problem+json 400s naming what is wrong.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Unsupported Media Type",
            "send the body as JSON with `Content-Type: application/json`",
        ),
        JsonRejection::BytesRejection(_) => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Payload Too Large",
            "request bodies are limited to 64 KiB",
        ),
        other => ApiError::bad_request(format!("invalid JSON body: {}", other.body_text())),
    }
}

/// `Query<T>` whose rejections are problem+json 400s.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Self(value)),
            Err(rejection) => Err(query_rejection(rejection)),
        }
    }
}

fn query_rejection(rejection: QueryRejection) -> ApiError {
    ApiError::bad_request(format!("invalid query: {}", rejection.body_text()))
}

/// Optional JSON body: empty means `T::default()`; unknown fields are refused.
#[derive(Debug, Clone, Default)]
pub struct OptionalJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "Payload Too Large",
                    "request bodies are limited to 64 KiB",
                )
            })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(T::default()));
        }
        serde_json::from_slice(&bytes)
            .map(Self)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
    }
}
