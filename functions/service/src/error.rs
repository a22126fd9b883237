//! The API's one error type, mapped to HTTP in one place. Client errors carry
//! a code and a reason; server errors are logged once here and stay opaque.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chunkstream_domain::plan::PlanError;
use chunkstream_domain::state::StateError;
use serde_json::json;

use crate::queue::QueueError;
use crate::sessions::SessionError;
use crate::store::StoreError;

#[derive(Debug)]
pub enum ApiError {
    Client {
        status: StatusCode,
        code: &'static str,
        message: String,
    },
    Internal(anyhow::Error),
}

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
            } => (status, Json(json!({"error": code, "message": message}))).into_response(),
            ApiError::Internal(err) => {
                tracing::error!(error = format!("{err:#}"), "request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Json(json!({"error": "internal", "message": "internal error"})),
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
            other => Self::Internal(other.into()),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        Self::Internal(e.into())
    }
}

impl From<QueueError> for ApiError {
    fn from(e: QueueError) -> Self {
        Self::Internal(e.into())
    }
}
