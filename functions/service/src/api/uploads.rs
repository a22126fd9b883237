//! Uploader calls: create a session, init uploads, next assignments, uploaded reports.

use std::time::SystemTime;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chunkstream_domain::plan::SegmentPlan;
use chunkstream_domain::state::{SessionState, StateError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::reports::{check_reports, dispatch, refused, validate_report_list, SlotReport};
use super::*;
use crate::error::ApiError;
use crate::sessions::{self, SessionRecord};
use crate::store::PresignedUpload;

/// Where to PUT one track's object (an init segment, or a part's media segment).
#[derive(Serialize, ToSchema)]
pub(crate) struct TrackUpload {
    /// Index of the track in the plan.
    track: usize,
    /// The track's `id` in the plan.
    track_id: u32,
    #[serde(flatten)]
    upload: PresignedUpload,
}

pub(crate) async fn presign_inits(
    state: &AppState,
    record: &SessionRecord,
) -> Result<Vec<TrackUpload>, ApiError> {
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
        out.push(TrackUpload {
            track: index,
            track_id: track.id,
            upload,
        });
    }
    Ok(out)
}

/// A new session.
#[derive(Serialize, ToSchema)]
pub(crate) struct CreatedVideo {
    video_id: String,
    /// Authorises the upload routes of this video: `Authorization: Bearer <upload_secret>`.
    /// Shown once; the server keeps only its hash.
    upload_secret: String,
    /// The watch page: share this link.
    watch_url: String,
    /// The DASH manifest (MPD).
    manifest_url: String,
    /// The HLS multivariant playlist.
    hls_url: String,
    status_url: String,
    slot_count: usize,
    /// One per track: where to PUT its init segment.
    init_uploads: Vec<TrackUpload>,
}

/// Creates a video from the uploader's plan: the share link is usable at once.
#[utoipa::path(
    post,
    path = "/api/videos",
    tag = "uploader",
    request_body = SegmentPlan,
    security(("api_key" = []), ("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = CreatedVideo),
        (status = 400, response = crate::openapi::BadRequest),
        crate::openapi::CredentialErrors,
        (status = 413, response = crate::openapi::PayloadTooLarge),
        (status = 422, response = crate::openapi::Unprocessable),
        (status = 429, response = crate::openapi::TooManyRequests),
    )
)]
pub(crate) async fn create_video(
    State(state): State<AppState>,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
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
        Json(CreatedVideo {
            upload_secret: secret,
            watch_url: format!("{base}/watch.html?v={id}"),
            manifest_url: format!("{base}/v/{id}/manifest.mpd"),
            hls_url: format!("{base}/v/{id}/{}", chunkstream_domain::hls::MASTER_PATH),
            status_url: format!("{base}/api/videos/{id}/status"),
            slot_count,
            init_uploads,
            video_id: id,
        }),
    )
        .into_response())
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct InitRequest {
    /// The uploader is resuming (e.g. after a reload): release the leases of its earlier run.
    #[serde(default)]
    release_leases: bool,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct InitAnswer {
    /// Fresh presigned PUTs for the init segments.
    init_uploads: Vec<TrackUpload>,
    /// Leases released (`release_leases`).
    released_leases: usize,
}

/// Fresh init-segment uploads (the first ones expired, or the uploader resumes).
#[utoipa::path(
    post,
    path = "/api/videos/{id}/init",
    tag = "uploader",
    params(("id" = String, Path, description = "The video id")),
    request_body(content = Option<InitRequest>, description = "Optional: an empty body is `{}`"),
    security(("upload_secret" = [])),
    responses(
        (status = 200, description = "OK", body = InitAnswer),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 413, response = crate::openapi::PayloadTooLarge),
        crate::openapi::SecretErrors,
        (status = 409, response = crate::openapi::Conflict),
    )
)]
pub(crate) async fn init_uploads(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Json<InitAnswer>, ApiError> {
    let record = load_authorized(&state, &id, &headers).await?;
    let request: InitRequest = if body.iter().all(u8::is_ascii_whitespace) {
        InitRequest::default()
    } else {
        parse_json(&body)?
    };
    if state.sessions.publish_state(&id).await?.complete {
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
    Ok(Json(InitAnswer {
        init_uploads: presign_inits(&state, &record).await?,
        released_leases: released,
    }))
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NextRequest {
    /// At most this many parts (1..=16, default 4).
    #[schema(minimum = 1, maximum = 16)]
    max: Option<usize>,
    /// Parts whose PUTs (every track) are done, reported here rather than one
    /// `POST /slots/{n}/uploaded` each (at most 16, no repeats). They are applied
    /// before this call's leases are picked, in the same `state.json` write; each
    /// gets an entry in `reports`. Meant for parts nobody waits for: a part a viewer
    /// waits for is better reported at once through the single route.
    #[serde(default)]
    #[schema(max_items = 16)]
    uploaded: Vec<usize>,
}

/// A part leased to the caller: PUT each track's object, then report it.
#[derive(Serialize, ToSchema)]
pub(crate) struct Assignment {
    slot: usize,
    /// Leased for a viewer waiting on it.
    priority: bool,
    /// The lease ends then (RFC 3339): the part may go to another uploader after.
    #[serde(with = "crate::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    lease_expires_at: SystemTime,
    /// One per track.
    uploads: Vec<TrackUpload>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct NextAnswer {
    /// Parts to upload now, priority ones first (may be empty).
    assignments: Vec<Assignment>,
    /// Every part and init segment is published.
    complete: bool,
    /// Parts not published yet.
    remaining: usize,
    /// Parts viewers are waiting on, nearest to a playhead first.
    priority_slots: Vec<usize>,
    /// One per part the request reported (`uploaded`), in its order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    reports: Vec<SlotReport>,
}

/// Leases the next parts to upload, in the order the server decides.
#[utoipa::path(
    post,
    path = "/api/videos/{id}/next",
    tag = "uploader",
    params(("id" = String, Path, description = "The video id")),
    request_body(content = Option<NextRequest>, description = "Optional: an empty body is `{}`"),
    security(("upload_secret" = [])),
    responses(
        (status = 200, description = "OK", body = NextAnswer),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 413, response = crate::openapi::PayloadTooLarge),
        crate::openapi::SecretErrors,
    )
)]
pub(crate) async fn next_assignments(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Json<NextAnswer>, ApiError> {
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
    validate_report_list(&request.uploaded, record.plan.slots.len())?;
    // The reported objects are checked before the write (all HEADs at once).
    let mut checked = Vec::new();
    let mut refusals = Vec::new();
    for (index, check) in check_reports(&state, &record, &request.uploaded)
        .await?
        .into_iter()
        .enumerate()
    {
        match check {
            Ok(c) => checked.push(c),
            Err((slot, refusal)) => refusals.push((index, refused(slot, refusal))),
        }
    }
    let policy = state.config.policy;
    let now = state.sessions.now_ms();
    let windows = state.sessions.windows(&id).await?.active(now, &policy);
    let (marks, picks, complete, remaining, priority_slots) = state
        .sessions
        .update_state(&id, |s: &mut SessionState| {
            let marks = checked
                .iter()
                .map(|c| c.mark(s, now, &windows))
                .collect::<Result<Vec<_>, StateError>>()?;
            let picks = s.assign(max, now, &policy, &windows);
            let dirty = !picks.is_empty() || marks.iter().any(|m| matches!(m, Ok((_, true))));
            Ok::<_, StateError>((
                (
                    marks,
                    picks,
                    s.complete,
                    s.remaining(),
                    s.priority_slots(&windows),
                ),
                dirty,
            ))
        })
        .await?
        .map_err(ApiError::from)?;
    let mut reports = dispatch(&state, &record, checked.into_iter().zip(marks).collect()).await?;
    // Refused reports back in their places (ascending, so each lands where it was asked).
    for (index, refusal) in refusals {
        reports.insert(index, refusal);
    }
    // Every slot is public but the video is not complete: the init segments
    // arrived after the last job ran. The uploader waiting here finishes it.
    let complete = if !complete && remaining == 0 && picks.is_empty() {
        crate::inits::publish_inits(&state.sessions, &record).await?
    } else {
        complete
    };
    let assignments = presign_assignments(&state, &record, picks).await?;
    Ok(Json(NextAnswer {
        assignments,
        complete,
        remaining,
        priority_slots,
        reports,
    }))
}

/// Presigned PUT URLs (one per track) for slots just leased.
pub(crate) async fn presign_assignments(
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
            uploads.push(TrackUpload {
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
