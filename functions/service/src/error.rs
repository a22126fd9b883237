//! The API's one error type, mapped to HTTP in one place. Client errors carry
//! a code and a reason; server errors are logged once here and stay opaque.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chunkstream_domain::plan::PlanError;
use chunkstream_domain::state::StateError;
use serde::Serialize;

use crate::queue::QueueError;
use crate::sessions::SessionError;
use crate::store::StoreError;

/// The body of every error answer (4xx, 503 and the opaque 500).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong, for programs: e.g. `bad_json`, `unknown_video`, `busy`.
    pub error: String,
    /// What went wrong, for people.
    pub message: String,
    /// The quota that refused the request (only on quota answers).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = QuotaLimit)]
    pub limit: Option<QuotaLimit>,
}

impl ErrorBody {
    pub fn new(error: impl Into<String>, message: impl Into<String>) -> Json<Self> {
        Json(Self {
            error: error.into(),
            message: message.into(),
            limit: None,
        })
    }
}

/// A quota and its configured value.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct QuotaLimit {
    pub name: QuotaName,
    pub value: u64,
}

#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum QuotaName {
    /// Uploads in progress per owner.
    LiveSessions,
    /// Bytes of new videos per owner and UTC day.
    BytesPerDay,
}

#[derive(Debug)]
pub enum ApiError {
    /// Answered with a code and a reason: 4xx, or 503 (which always carries
    /// Retry-After) for contention or a briefly unavailable backend.
    Client {
        status: StatusCode,
        code: &'static str,
        message: String,
    },
    Internal(anyhow::Error),
}

/// How long a client waits before retrying after a 503.
pub(crate) const RETRY_AFTER_SECS: u32 = 1;

impl ApiError {
    pub fn client(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self::Client {
            status,
            code,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::client(StatusCode::BAD_REQUEST, "bad_request", message)
    }
    pub fn unknown_video() -> Self {
        Self::client(
            StatusCode::NOT_FOUND,
            "unknown_video",
            "no video with that id",
        )
    }
    /// 503 with Retry-After: the same request should work shortly.
    pub fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        Self::client(StatusCode::SERVICE_UNAVAILABLE, code, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::client(StatusCode::NOT_FOUND, "not_found", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Client {
                status,
                code,
                message,
            } => {
                let mut response = (status, ErrorBody::new(code, message)).into_response();
                if status == StatusCode::SERVICE_UNAVAILABLE
                    || status == StatusCode::TOO_MANY_REQUESTS
                {
                    response.headers_mut().insert(
                        axum::http::header::RETRY_AFTER,
                        axum::http::HeaderValue::from(RETRY_AFTER_SECS),
                    );
                }
                response
            }
            ApiError::Internal(err) => {
                tracing::error!(error = format!("{err:#}"), "request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    ErrorBody::new("internal", "internal error"),
                )
                    .into_response()
            }
        }
    }
}

impl From<PlanError> for ApiError {
    fn from(e: PlanError) -> Self {
        let code = match &e {
            PlanError::Invalid(_) => "invalid_plan",
            PlanError::CapsExceeded(_) => "caps_exceeded",
            PlanError::BrokenTimeline(_) => "broken_timeline",
            PlanError::UnsupportedCodec { .. } => "unsupported_codec",
        };
        let status = if matches!(e, PlanError::CapsExceeded(_)) {
            StatusCode::PAYLOAD_TOO_LARGE
        } else {
            StatusCode::UNPROCESSABLE_ENTITY
        };
        Self::client(status, code, e.to_string())
    }
}

impl From<StateError> for ApiError {
    fn from(e: StateError) -> Self {
        match e {
            StateError::SlotOutOfRange { .. } => {
                Self::client(StatusCode::NOT_FOUND, "slot_out_of_range", e.to_string())
            }
            StateError::AlreadyPublished(_) => {
                Self::client(StatusCode::CONFLICT, "already_published", e.to_string())
            }
        }
    }
}

impl From<SessionError> for ApiError {
    fn from(e: SessionError) -> Self {
        match e {
            SessionError::NotFound => Self::unknown_video(),
            SessionError::Contention(_) => Self::unavailable(
                "busy",
                "too many concurrent changes to this video; retry shortly",
            ),
            SessionError::Store(e) => e.into(),
            other => Self::Internal(other.into()),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        if e.is_retryable() {
            tracing::warn!(error = %e, "object store unavailable");
            Self::unavailable(
                "unavailable",
                "storage is briefly unavailable; retry shortly",
            )
        } else {
            Self::Internal(e.into())
        }
    }
}

impl From<QueueError> for ApiError {
    fn from(e: QueueError) -> Self {
        if e.is_retryable() {
            tracing::warn!(error = %e, "job queue unavailable");
            Self::unavailable(
                "unavailable",
                "the job queue is briefly unavailable; retry shortly",
            )
        } else {
            Self::Internal(e.into())
        }
    }
}
