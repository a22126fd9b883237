//! The HTTP API as one axum `Router`: run by `lambda_http::run` in Lambda and
//! by `axum::serve` in the local runner. Each handler's `#[utoipa::path]`
//! both documents it and registers its route (see [`routes`] and
//! crate::openapi). See docs/api.md and docs/openapi.json.

mod playback;
mod reports;
mod uploads;
mod viewers;

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::config::Config;
use crate::error::ApiError;
use crate::queue::JobQueue;
use crate::sessions::{SessionRecord, Sessions};
use chunkstream_domain::windows::ViewerWindows;

pub(crate) use playback::stream_object;

/// What every handler shares; built once per process.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub sessions: Sessions,
    pub queue: Arc<dyn JobQueue>,
    pub events: PriorityEvents,
    /// Deduplicates and rate-limits viewers' hints before they cost S3 requests.
    pub hints: Arc<crate::hints::HintGate>,
}

/// Wakes uploaders long-polling `/priority` in this process the moment a
/// prioritize lands here, with the viewers' windows just written (so the woken
/// poll answers without reading them again: one S3 round trip less between a
/// seek and the uploader's lease). Changes made by other processes (other Lambda
/// instances) ring the sessions' [`FeedSignal`](crate::feed_signal::FeedSignal), or
/// without one are noticed by the long poll re-reading the windows every [`PRIORITY_POLL_MS`].
#[derive(Clone)]
pub struct PriorityEvents(pub(crate) tokio::sync::broadcast::Sender<WindowsChanged>);

/// One video's viewer windows, as written by a prioritize in this process.
#[derive(Clone)]
pub(crate) struct WindowsChanged {
    pub(crate) video_id: String,
    pub(crate) windows: Arc<ViewerWindows>,
}

impl Default for PriorityEvents {
    fn default() -> Self {
        Self(tokio::sync::broadcast::channel(1024).0)
    }
}

impl PriorityEvents {
    pub(crate) fn changed(&self, video_id: &str, windows: ViewerWindows) {
        // No receiver is fine: nobody is waiting.
        let _ = self.0.send(WindowsChanged {
            video_id: video_id.to_string(),
            windows: Arc::new(windows),
        });
    }
}

/// How often a waiting long poll re-reads the windows (changes made by other
/// processes) while the video is watched (a watch page open, or a live window).
pub const PRIORITY_POLL_MS: u64 = 250;
/// ... and while nobody watches: a quarter of the S3 reads of an unwatched upload.
pub const UNWATCHED_PRIORITY_POLL_MS: u64 = 1_000;
/// With a cross-process [`FeedSignal`](crate::feed_signal::FeedSignal) a change rings
/// the feed at once, so the windows are re-read only as a safety net (a notification
/// lost, or taken by another waiter on the same video): this often while watched...
pub const SIGNALLED_PRIORITY_POLL_MS: u64 = 3_000;
/// ... and while nobody watches (one SQS long poll of 20 s, the longest).
pub const SIGNALLED_UNWATCHED_PRIORITY_POLL_MS: u64 = 20_000;
/// The longest request the API serves: a priority long poll's cap. The API
/// Lambda's timeout (infra/template.yaml) must be above it (pinned by a test).
pub const MAX_PRIORITY_WAIT_MS: u64 = 25_000;

/// Largest request body accepted: a plan of `max_slots` slots fits easily.
pub(crate) const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
pub(crate) const MAX_ASSIGNMENTS: usize = 16;
/// A hinted segment miss is held (`Config::segment_hold`), re-checking every
/// [`SEGMENT_HOLD_POLL`], before it answers 404 (the player then retries): a viewer
/// learns of the publication within one poll, not one player retry interval.
pub(crate) const SEGMENT_HOLD_POLL: std::time::Duration = std::time::Duration::from_millis(50);

/// Every route of the API (with `previews::routes`; the owner routes are
/// added by `owner::wrap`), each with its OpenAPI operation.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(openapi_document))
        .routes(routes!(uploads::create_video))
        .routes(routes!(uploads::init_uploads))
        .routes(routes!(uploads::next_assignments))
        .routes(routes!(reports::slot_uploaded))
        .routes(routes!(viewers::prioritize))
        .routes(routes!(viewers::watching))
        .routes(routes!(viewers::status))
        .routes(routes!(viewers::priority_feed))
        .routes(routes!(playback::manifest))
        .routes(routes!(playback::init_segment))
        .routes(routes!(playback::media_segment))
        .routes(routes!(playback::hls_master))
        .routes(routes!(playback::hls_media_playlist))
        .merge(crate::previews::routes())
}

pub fn app(state: AppState) -> Router {
    let (router, _) = routes().split_for_parts();
    router
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        // CORS is one layer around the whole API: `owner::wrap` (auth::AuthConfig::cors_layer)
        .with_state(state)
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct Health {
    ok: bool,
}

/// Liveness: the process answers (it touches no backend).
#[utoipa::path(get, path = "/api/health", tag = "meta", responses((status = 200, description = "OK", body = Health)))]
async fn health() -> Json<Health> {
    Json(Health { ok: true })
}

/// This document (OpenAPI 3.1).
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    tag = "meta",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json", body = Object))
)]
async fn openapi_document() -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        crate::openapi::document_json(),
    )
        .into_response()
}

/// A request body as bytes. Over [`MAX_BODY_BYTES`], or unreadable, it is an [`ApiError`]
/// with a JSON reason like every other refusal (axum's own rejection is plain text).
pub(crate) struct RawBody(pub Bytes);

impl<S: Send + Sync> axum::extract::FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        match Bytes::from_request(req, state).await {
            Ok(body) => Ok(Self(body)),
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(ApiError::client(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("the request body is over the {MAX_BODY_BYTES} bytes allowed"),
            )),
            Err(e) => Err(ApiError::bad_request(format!(
                "request body: {}",
                e.body_text()
            ))),
        }
    }
}

/// Parses a JSON body, turning every failure into a 400 that says what is wrong.
pub(crate) fn parse_json<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::client(
            StatusCode::BAD_REQUEST,
            "bad_json",
            format!("request body: {e}"),
        )
    })
}

fn check_secret(headers: &HeaderMap, record: &SessionRecord) -> Result<(), ApiError> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            ApiError::client(
                StatusCode::UNAUTHORIZED,
                "missing_secret",
                "send the session's upload secret as 'Authorization: Bearer <upload_secret>'",
            )
        })?;
    if record.secret_matches(presented) {
        Ok(())
    } else {
        Err(ApiError::client(
            StatusCode::FORBIDDEN,
            "wrong_secret",
            "the upload secret does not match this video",
        ))
    }
}

pub(crate) async fn load_authorized(
    state: &AppState,
    id: &str,
    headers: &HeaderMap,
) -> Result<Arc<SessionRecord>, ApiError> {
    let record = state.sessions.load(id).await?;
    check_secret(headers, &record)?;
    Ok(record)
}
