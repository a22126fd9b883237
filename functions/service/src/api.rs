//! The HTTP API as one axum `Router`: run by `lambda_http::run` in Lambda and
//! by `axum::serve` in the local runner. See docs/api.md.

use std::sync::Arc;
use std::time::SystemTime;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chunkstream_domain::plan::SegmentPlan;
use chunkstream_domain::state::{Lane, SessionState, SlotState, StateError};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::config::Config;
use crate::error::ApiError;
use crate::queue::{Job, JobQueue};
use crate::sessions::{self, now_ms, SessionRecord, Sessions};
use crate::store::PresignedUpload;

/// What every handler shares; built once per process.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub sessions: Sessions,
    pub queue: Arc<dyn JobQueue>,
    pub events: PriorityEvents,
}

/// Wakes uploaders long-polling `/priority` in this process the moment a
/// prioritize lands here. Other processes (other Lambda instances) are noticed
/// by the long poll re-reading the state every [`PRIORITY_POLL_MS`].
#[derive(Clone)]
pub struct PriorityEvents(tokio::sync::broadcast::Sender<String>);

impl Default for PriorityEvents {
    fn default() -> Self {
        Self(tokio::sync::broadcast::channel(1024).0)
    }
}

impl PriorityEvents {
    fn changed(&self, video_id: &str) {
        // No receiver is fine: nobody is waiting.
        let _ = self.0.send(video_id.to_string());
    }
}

/// How often a waiting long poll re-reads the state (changes made by other processes).
const PRIORITY_POLL_MS: u64 = 250;
/// The longest request the API serves: a priority long poll's cap. The API
/// Lambda's timeout (infra/template.yaml) must be above it (pinned by a test).
pub const MAX_PRIORITY_WAIT_MS: u64 = 25_000;

/// Largest request body accepted: a plan of `max_slots` slots fits easily.
const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
const MAX_ASSIGNMENTS: usize = 16;
/// How long a hinted segment miss is held, re-checking every [`SEGMENT_HOLD_POLL`],
/// before it answers 404 (the player then retries): a viewer learns of the
/// publication within one poll, not one player retry interval.
const SEGMENT_HOLD: std::time::Duration = std::time::Duration::from_millis(1_200);
const SEGMENT_HOLD_POLL: std::time::Duration = std::time::Duration::from_millis(50);
/// A viewer's repeated misses on the same slot refresh its window at most this often.
const HINT_REFRESH_MS: u64 = 2_000;

pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/api/health", get(|| async { Json(json!({"ok": true})) }))
        .route("/api/videos", post(create_video))
        .route("/api/videos/{id}/init", post(init_uploads))
        .route("/api/videos/{id}/next", post(next_assignments))
        .route(
            "/api/videos/{id}/slots/{slot}/uploaded",
            post(slot_uploaded),
        )
        .route("/api/videos/{id}/prioritize", post(prioritize))
        .route("/api/videos/{id}/status", get(status))
        .route("/api/videos/{id}/priority", get(priority_feed))
        .route("/v/{id}/manifest.mpd", get(manifest))
        .route("/v/{id}/init/{file}", get(init_segment))
        .route("/v/{id}/seg/{track}/{file}", get(media_segment))
        .route("/v/{id}/master.m3u8", get(hls_master))
        .route("/v/{id}/hls/{file}", get(hls_media_playlist))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(
            tower_http::cors::CorsLayer::new()
                .allow_origin(tower_http::cors::Any)
                .allow_methods([axum::http::Method::GET, axum::http::Method::POST])
                .allow_headers([header::CONTENT_TYPE, header::AUTHORIZATION]),
        )
        .with_state(state)
}

/// Parses a JSON body, turning every failure into a 400 that says what is wrong.
fn parse_json<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
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

async fn load_authorized(
    state: &AppState,
    id: &str,
    headers: &HeaderMap,
) -> Result<Arc<SessionRecord>, ApiError> {
    let record = state.sessions.load(id).await?;
    check_secret(headers, &record)?;
    Ok(record)
}

#[derive(Serialize)]
struct InitUpload {
    /// Index of the track in the plan.
    track: usize,
    track_id: u32,
    #[serde(flatten)]
    upload: PresignedUpload,
}

async fn presign_inits(
    state: &AppState,
    record: &SessionRecord,
) -> Result<Vec<InitUpload>, ApiError> {
    let mut out = Vec::with_capacity(record.plan.tracks.len());
    for (index, track) in record.plan.tracks.iter().enumerate() {
        let upload = state
            .sessions
            .store()
            .presign_put(
                &sessions::incoming_init_key(&record.video_id, index),
                "video/mp4",
                track.init_size,
                state.config.presign_ttl,
            )
            .await?;
        out.push(InitUpload {
            track: index,
            track_id: track.id,
            upload,
        });
    }
    Ok(out)
}

async fn create_video(State(state): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let plan: SegmentPlan = parse_json(&body)?;
    plan.validate(&state.config.limits)?;
    let slot_count = plan.slots.len();
    let (record, secret) = state.sessions.create(plan).await?;
    let id = record.video_id.clone();
    let base = &state.config.public_base_url;
    let init_uploads = presign_inits(&state, &record).await?;
    tracing::info!(video_id = %id, slots = slot_count, "session created");
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "video_id": id,
            "upload_secret": secret,
            "watch_url": format!("{base}/watch.html?v={id}"),
            "manifest_url": format!("{base}/v/{id}/manifest.mpd"),
            "hls_url": format!("{base}/v/{id}/{}", chunkstream_domain::hls::MASTER_PATH),
            "status_url": format!("{base}/api/videos/{id}/status"),
            "slot_count": slot_count,
            "init_uploads": init_uploads,
        })),
    )
        .into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct InitRequest {
    /// The uploader is resuming (e.g. after a reload): release the leases of its earlier run.
    #[serde(default)]
    release_leases: bool,
}

async fn init_uploads(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let record = load_authorized(&state, &id, &headers).await?;
    let request: InitRequest = if body.iter().all(u8::is_ascii_whitespace) {
        InitRequest::default()
    } else {
        parse_json(&body)?
    };
    if state.sessions.state(&id).await?.0.complete {
        return Err(ApiError::client(
            StatusCode::CONFLICT,
            "already_complete",
            "the video is complete: its init segments are published and final",
        ));
    }
    let mut released = 0;
    if request.release_leases {
        released = state
            .sessions
            .update_state(&id, |s: &mut SessionState| {
                let n = s.release_leases();
                Ok::<_, std::convert::Infallible>((n, n > 0))
            })
            .await?
            .unwrap_or_else(|never| match never {});
    }
    Ok(Json(json!({
        "init_uploads": presign_inits(&state, &record).await?,
        "released_leases": released,
    })))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct NextRequest {
    max: Option<usize>,
}

#[derive(Serialize)]
struct SlotUpload {
    /// Index of the track in the plan.
    track: usize,
    track_id: u32,
    #[serde(flatten)]
    upload: PresignedUpload,
}

#[derive(Serialize)]
struct Assignment {
    slot: usize,
    priority: bool,
    #[serde(with = "crate::rfc3339")]
    lease_expires_at: SystemTime,
    uploads: Vec<SlotUpload>,
}

async fn next_assignments(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let record = load_authorized(&state, &id, &headers).await?;
    let request: NextRequest = if body.iter().all(u8::is_ascii_whitespace) {
        NextRequest::default()
    } else {
        parse_json(&body)?
    };
    let max = request.max.unwrap_or(4);
    if !(1..=MAX_ASSIGNMENTS).contains(&max) {
        return Err(ApiError::bad_request(format!(
            "max must be between 1 and {MAX_ASSIGNMENTS}"
        )));
    }
    let policy = state.config.policy;
    let (picks, complete, remaining, priority_slots) = state
        .sessions
        .update_state(&id, |s: &mut SessionState| {
            let now = now_ms();
            let picks = s.assign(max, now, &policy);
            let dirty = !picks.is_empty();
            Ok::<_, std::convert::Infallible>((
                (
                    picks,
                    s.complete,
                    s.remaining(),
                    s.priority_slots(now, &policy),
                ),
                dirty,
            ))
        })
        .await?
        .unwrap_or_else(|never| match never {});
    // Every slot is public but the video is not complete: the init segments
    // arrived after the last job ran. The uploader waiting here finishes it.
    let complete = if !complete && remaining == 0 && picks.is_empty() {
        crate::inits::publish_inits(&state.sessions, &record).await?
    } else {
        complete
    };
    let assignments = presign_assignments(&state, &record, picks).await?;
    Ok(Json(json!({
        "assignments": assignments,
        "complete": complete,
        "remaining": remaining,
        "priority_slots": priority_slots,
    })))
}

/// Presigned PUT URLs (one per track) for slots just leased.
async fn presign_assignments(
    state: &AppState,
    record: &SessionRecord,
    picks: Vec<chunkstream_domain::scheduler::Pick>,
) -> Result<Vec<Assignment>, ApiError> {
    let lease_expires_at =
        SystemTime::now() + std::time::Duration::from_millis(state.config.policy.lease_ms);
    let mut assignments = Vec::with_capacity(picks.len());
    for pick in picks {
        let mut uploads = Vec::with_capacity(record.plan.tracks.len());
        for (index, (track, frag)) in record
            .plan
            .tracks
            .iter()
            .zip(&record.plan.slots[pick.slot].tracks)
            .enumerate()
        {
            let upload = state
                .sessions
                .store()
                .presign_put(
                    &sessions::incoming_key(&record.video_id, pick.slot, index),
                    "video/mp4",
                    frag.size,
                    state.config.presign_ttl,
                )
                .await?;
            uploads.push(SlotUpload {
                track: index,
                track_id: track.id,
                upload,
            });
        }
        assignments.push(Assignment {
            slot: pick.slot,
            priority: pick.priority,
            lease_expires_at,
            uploads,
        });
    }
    Ok(assignments)
}

async fn slot_uploaded(
    State(state): State<AppState>,
    Path((id, slot)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let record = load_authorized(&state, &id, &headers).await?;
    let slot: usize = slot
        .parse()
        .ok()
        .filter(|s| *s < record.plan.slots.len())
        .ok_or_else(|| {
            ApiError::client(
                StatusCode::NOT_FOUND,
                "slot_out_of_range",
                format!(
                    "'{slot}' is not a slot of this video (it has {})",
                    record.plan.slots.len()
                ),
            )
        })?;
    // The objects must be there, with the planned sizes, before a job is worth sending.
    let mut etags = Vec::with_capacity(record.plan.tracks.len());
    for (track, frag) in record.plan.slots[slot].tracks.iter().enumerate() {
        let key = sessions::incoming_key(&id, slot, track);
        match state.sessions.store().head(&key).await? {
            None => {
                return Err(ApiError::client(
                    StatusCode::CONFLICT,
                    "upload_missing",
                    format!("slot {slot} track {track}: nothing uploaded yet; PUT it to the URL from /next first"),
                ))
            }
            Some(meta) if meta.len != frag.size => {
                return Err(ApiError::client(
                    StatusCode::CONFLICT,
                    "upload_size_mismatch",
                    format!(
                        "slot {slot} track {track}: {} bytes uploaded, {} planned",
                        meta.len, frag.size
                    ),
                ))
            }
            Some(meta) => etags.push(meta.etag),
        }
    }
    let policy = state.config.policy;
    let now = state.sessions.now_ms();
    let reported = etags.clone();
    let (lane, send) = state
        .sessions
        .update_state(&id, |s: &mut SessionState| {
            Ok::<_, StateError>(
                match s.mark_uploaded(slot, reported.clone(), now, &policy)? {
                    Some(lane) => ((lane, true), true),
                    // A repeat of a fresh report: its job is on its way.
                    None => (
                        (s.uploads.get(&slot).map_or(Lane::Normal, |u| u.lane), false),
                        false,
                    ),
                },
            )
        })
        .await?
        .map_err(ApiError::from)?;
    if send {
        state
            .queue
            .enqueue(&Job {
                video_id: record.video_id.clone(),
                slot,
                lane,
                etags,
            })
            .await?;
    }
    tracing::info!(video_id = %id, slot, ?lane, enqueued = send, "slot uploaded");
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"slot": slot, "queue": lane, "enqueued": send})),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PrioritizeRequest {
    position: Option<f64>,
    slot: Option<usize>,
}

/// Opens (or refreshes) a priority window at `slot` and moves uploaded,
/// unprocessed slots of it to the priority lane. `min_refresh_ms` lets a
/// burst of identical hints cost one write.
async fn apply_priority(
    state: &AppState,
    id: &str,
    slot: usize,
    min_refresh_ms: u64,
) -> Result<(Vec<usize>, Vec<usize>), ApiError> {
    let policy = state.config.policy;
    let prioritized = state
        .sessions
        .update_state(id, |s: &mut SessionState| {
            let now = now_ms();
            let fresh = s.windows.iter().any(|w| {
                w.playhead_slot == slot && now.saturating_sub(w.updated_ms) < min_refresh_ms
            });
            if fresh {
                return Ok::<_, StateError>(((Vec::new(), Vec::new()), false));
            }
            let p = s.prioritize(slot, now, &policy)?;
            Ok(((p.window, p.requeue), true))
        })
        .await?
        .map_err(ApiError::from)?;
    for &requeued in &prioritized.1 {
        state
            .queue
            .enqueue(&Job {
                video_id: id.to_string(),
                slot: requeued,
                lane: Lane::Priority,
                etags: Vec::new(),
            })
            .await?;
    }
    if !prioritized.0.is_empty() {
        state.events.changed(id);
    }
    Ok(prioritized)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PriorityQuery {
    after: Option<i64>,
    wait_ms: Option<u64>,
    /// Lease up to this many not-yet-leased window slots and return their
    /// presigned assignments with the answer (saves the uploader a `next`).
    lease: Option<usize>,
}

#[derive(Serialize)]
struct PriorityAnswer {
    version: u64,
    priority_slots: Vec<usize>,
    complete: bool,
    /// Window slots leased to the caller by this answer (`lease` > 0).
    assignments: Vec<Assignment>,
}

/// Long poll for uploaders: answers at once when the priority windows differ
/// from version `after`, otherwise when they change or `wait_ms` runs out.
async fn priority_feed(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    query: Result<axum::extract::Query<PriorityQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let axum::extract::Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let record = load_authorized(&state, &id, &headers).await?;
    let lease = query.lease.unwrap_or(0);
    if lease > MAX_ASSIGNMENTS {
        return Err(ApiError::bad_request(format!(
            "lease must be between 0 and {MAX_ASSIGNMENTS}"
        )));
    }
    let wait =
        std::time::Duration::from_millis(query.wait_ms.unwrap_or(0).min(MAX_PRIORITY_WAIT_MS));
    let deadline = tokio::time::Instant::now() + wait;
    let mut wake = state.events.0.subscribe();
    let policy = state.config.policy;
    loop {
        let (s, _) = state.sessions.state(&id).await?;
        let changed = query
            .after
            .is_none_or(|after| after != s.windows_version as i64);
        let now = tokio::time::Instant::now();
        if changed || now >= deadline || s.complete {
            let priority_slots = s.priority_slots(now_ms(), &policy);
            let picks = if changed && lease > 0 && !s.complete && !priority_slots.is_empty() {
                state
                    .sessions
                    .update_state(&id, |s: &mut SessionState| {
                        let picks = s.assign_priority(lease, now_ms(), &policy);
                        let dirty = !picks.is_empty();
                        Ok::<_, std::convert::Infallible>((picks, dirty))
                    })
                    .await?
                    .unwrap_or_else(|never| match never {})
            } else {
                Vec::new()
            };
            let body = PriorityAnswer {
                version: s.windows_version,
                priority_slots,
                complete: s.complete,
                assignments: presign_assignments(&state, &record, picks).await?,
            };
            return Ok(([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response());
        }
        let poll = std::time::Duration::from_millis(PRIORITY_POLL_MS).min(deadline - now);
        // Wake on a change to this video in this process, or re-read after `poll`.
        let _ = tokio::time::timeout(poll, async {
            loop {
                match wake.recv().await {
                    Ok(changed_id) if changed_id == id => return,
                    Ok(_) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => return,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                        std::future::pending::<()>().await
                    }
                }
            }
        })
        .await;
    }
}

async fn prioritize(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let request: PrioritizeRequest = parse_json(&body)?;
    let record = state.sessions.load(&id).await?;
    let slot = match (request.slot, request.position) {
        (Some(slot), None) => slot,
        (None, Some(position)) if position.is_finite() && position >= 0.0 => {
            record.plan.slot_at(position)
        }
        (None, Some(_)) => {
            return Err(ApiError::bad_request(
                "position must be a finite number of seconds >= 0",
            ))
        }
        _ => {
            return Err(ApiError::bad_request(
                "send exactly one of 'position' (seconds) or 'slot'",
            ))
        }
    };
    let (window, requeued) = apply_priority(&state, &id, slot, 0).await?;
    tracing::info!(video_id = %id, slot, ?requeued, "prioritized");
    Ok(Json(json!({"window": window, "requeued": requeued})))
}

async fn status(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let record = state.sessions.load(&id).await?;
    let (s, _) = state.sessions.state(&id).await?;
    let times = record.plan.slot_times();
    let slots: Vec<serde_json::Value> = s
        .slots
        .iter()
        .zip(&times)
        .map(|(slot, (start, duration))| {
            let mut v = json!({"start": start, "duration": duration, "state": slot.name()});
            if let SlotState::Failed { reason } = slot {
                v["reason"] = json!(reason);
            }
            v
        })
        .collect();
    let body = json!({
        "video_id": id,
        "complete": s.complete,
        "slot_count": s.slots.len(),
        "duration": record.plan.duration_secs(),
        "counts": s.counts(),
        "slots": slots,
        "inits": s.inits,
        "priority_slots": s.priority_slots(now_ms(), &state.config.policy),
    });
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response())
}

async fn stream_object(
    state: &AppState,
    key: &str,
    content_type: &'static str,
    cache: &'static str,
) -> Result<Option<Response>, ApiError> {
    let Some(object) = state.sessions.store().get_stream(key).await? else {
        return Ok(None);
    };
    let mut response = Response::new(Body::from_stream(object.body));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(
        header::CONTENT_LENGTH,
        HeaderValue::from(object.content_length),
    );
    Ok(Some(response))
}

async fn manifest(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    if !sessions::is_valid_video_id(&id) {
        return Err(ApiError::unknown_video());
    }
    stream_object(
        &state,
        &sessions::manifest_key(&id),
        "application/dash+xml",
        "public, max-age=60",
    )
    .await?
    .ok_or_else(ApiError::unknown_video)
}

fn parse_numbered(file: &str, ext: &str) -> Option<usize> {
    file.strip_suffix(ext)?.parse().ok()
}

async fn init_segment(
    State(state): State<AppState>,
    Path((id, file)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let track =
        parse_numbered(&file, ".mp4").ok_or_else(|| ApiError::not_found("no such init segment"))?;
    if !sessions::is_valid_video_id(&id) {
        return Err(ApiError::not_found("no such init segment"));
    }
    let key = sessions::init_key(&id, track);
    let cache = "public, max-age=31536000, immutable";
    if let Some(response) = stream_object(&state, &key, "video/mp4", cache).await? {
        return Ok(response);
    }
    // Not public yet: check and publish it now if it is uploaded, rather
    // than make the viewer wait for the worker's next job.
    let record = state.sessions.load(&id).await?;
    if track < record.plan.tracks.len() {
        crate::inits::publish_inits(&state.sessions, &record).await?;
        if let Some(response) = stream_object(&state, &key, "video/mp4", cache).await? {
            return Ok(response);
        }
    }
    let mut response =
        ApiError::not_found("init segment not uploaded (or not valid) yet").into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

#[derive(Deserialize)]
struct SegmentQuery {
    /// `nohint=1`: a miss is not a priority hint (benchmarks' natural-order baseline).
    nohint: Option<String>,
}

/// A published media segment (immutable once public), if it is there.
async fn published_segment(state: &AppState, key: &str) -> Result<Option<Response>, ApiError> {
    stream_object(
        state,
        key,
        "video/mp4",
        "public, max-age=31536000, immutable",
    )
    .await
}

async fn media_segment(
    State(state): State<AppState>,
    Path((id, track, file)): Path<(String, String, String)>,
    axum::extract::Query(query): axum::extract::Query<SegmentQuery>,
) -> Result<Response, ApiError> {
    let hint = query.nohint.as_deref() != Some("1");
    let slot =
        parse_numbered(&file, ".m4s").ok_or_else(|| ApiError::not_found("no such segment"))?;
    let track: usize = track
        .parse()
        .map_err(|_| ApiError::not_found("no such segment"))?;
    if !sessions::is_valid_video_id(&id) {
        return Err(ApiError::not_found("no such segment"));
    }
    let key = sessions::published_key(&id, track, slot);
    if let Some(response) = published_segment(&state, &key).await? {
        return Ok(response);
    }
    // A viewer wants this slot and it is not there: that is a priority hint.
    let hinted = if hint {
        apply_priority(&state, &id, slot, HINT_REFRESH_MS).await
    } else {
        Ok((Vec::new(), Vec::new()))
    };
    match hinted {
        Ok(_) => {}
        Err(ApiError::Client { .. }) => {}
        Err(ApiError::Internal(e)) => {
            tracing::warn!(video_id = %id, slot, error = %e, "priority hint failed")
        }
    }
    // A viewer waiting on this slot gets it the moment it is published instead
    // of after its player's next retry: hold the miss a little, re-checking.
    if hint {
        let deadline = tokio::time::Instant::now() + SEGMENT_HOLD;
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(SEGMENT_HOLD_POLL).await;
            if let Some(response) = published_segment(&state, &key).await? {
                return Ok(response);
            }
        }
    }
    let mut response = ApiError::not_found("segment not published yet").into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// `GET /v/{id}/master.m3u8`: the HLS multivariant playlist, written with the MPD.
async fn hls_master(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    if !sessions::is_valid_video_id(&id) {
        return Err(ApiError::unknown_video());
    }
    stream_object(
        &state,
        &sessions::hls_master_key(&id),
        sessions::HLS_CONTENT_TYPE,
        "public, max-age=60",
    )
    .await?
    .ok_or_else(ApiError::unknown_video)
}

/// `GET /v/{id}/hls/{track}.m3u8`: one track's HLS media playlist.
async fn hls_media_playlist(
    State(state): State<AppState>,
    Path((id, file)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let track =
        parse_numbered(&file, ".m3u8").ok_or_else(|| ApiError::not_found("no such playlist"))?;
    if !sessions::is_valid_video_id(&id) {
        return Err(ApiError::not_found("no such playlist"));
    }
    stream_object(
        &state,
        &sessions::hls_media_key(&id, track),
        sessions::HLS_CONTENT_TYPE,
        "public, max-age=60",
    )
    .await?
    .ok_or_else(|| ApiError::not_found("no such playlist"))
}
