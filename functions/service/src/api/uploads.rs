//! Uploader calls: create a session, init uploads, next assignments, uploaded reports.

use std::time::SystemTime;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chunkstream_domain::plan::SegmentPlan;
use chunkstream_domain::state::{Lane, SessionState, StateError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::*;
use crate::error::ApiError;
use crate::queue::Job;
use crate::sessions::{self, SessionRecord};
use crate::store::PresignedUpload;
use crate::worker::{Outcome, Worker};

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
    let policy = state.config.policy;
    let now = state.sessions.now_ms();
    let windows = state.sessions.windows(&id).await?.active(now, &policy);
    let (picks, complete, remaining, priority_slots) = state
        .sessions
        .update_state(&id, |s: &mut SessionState| {
            let picks = s.assign(max, now, &policy, &windows);
            let dirty = !picks.is_empty();
            Ok::<_, std::convert::Infallible>((
                (picks, s.complete, s.remaining(), s.priority_slots(&windows)),
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
    Ok(Json(NextAnswer {
        assignments,
        complete,
        remaining,
        priority_slots,
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

#[derive(Serialize, ToSchema)]
pub(crate) struct UploadedAnswer {
    slot: usize,
    /// The queue its check went to.
    queue: Lane,
    /// A job went to `queue`. False for a repeat of a fresh report (its job is on its way),
    /// and for a part a viewer waits for that this call checked and published itself.
    enqueued: bool,
    /// This call checked the part and it is public now (a part a viewer waits for is
    /// checked at once, without the queue's hop).
    published: bool,
}

/// How long a report may spend checking and publishing a part a viewer waits for
/// before it leaves the job to the worker (two ranged GETs, two copies, a state write).
const INLINE_PUBLISH_BUDGET: std::time::Duration = std::time::Duration::from_secs(3);

/// Checks and publishes a part at once, with the worker's own code. `None` when the
/// job must go to the queue after all (a transient error, a fatal one the worker's
/// retries and the reaper handle, or out of time).
async fn publish_inline(state: &AppState, job: &Job) -> Option<Outcome> {
    let worker = Worker::new(state.sessions.clone());
    match tokio::time::timeout(INLINE_PUBLISH_BUDGET, worker.process(job)).await {
        Ok(Ok(outcome)) => {
            tracing::info!(video_id = %job.video_id, slot = job.slot, lane = ?job.lane, ?outcome, inline = true, "job done");
            Some(outcome)
        }
        Ok(Err(e)) => {
            tracing::warn!(video_id = %job.video_id, slot = job.slot, error = %e, "inline check failed; queued for the worker");
            None
        }
        Err(_) => {
            tracing::warn!(video_id = %job.video_id, slot = job.slot, "inline check ran out of time; queued for the worker");
            None
        }
    }
}

/// Reports a part's PUTs done: its objects are checked and it is published.
#[utoipa::path(
    post,
    path = "/api/videos/{id}/slots/{slot}/uploaded",
    tag = "uploader",
    params(
        ("id" = String, Path, description = "The video id"),
        ("slot" = usize, Path, description = "The part's index"),
    ),
    security(("upload_secret" = [])),
    responses(
        (status = 202, description = "Accepted: the part is queued for its check, or (a part a viewer waits for) checked and published already", body = UploadedAnswer),
        crate::openapi::SecretErrors,
        (status = 409, response = crate::openapi::Conflict),
    )
)]
pub(crate) async fn slot_uploaded(
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
    // The objects must be there, with the planned sizes, before a job is worth sending
    // (the tracks' HEADs together: one round trip).
    let store = state.sessions.store();
    let heads =
        futures::future::try_join_all((0..record.plan.slots[slot].tracks.len()).map(|track| {
            let key = sessions::incoming_key(&id, slot, track);
            async move { store.head(&key).await }
        }))
        .await?;
    let mut etags = Vec::with_capacity(record.plan.tracks.len());
    for ((track, frag), head) in record.plan.slots[slot].tracks.iter().enumerate().zip(heads) {
        match head {
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
    let now = state.sessions.now_ms();
    let windows = state
        .sessions
        .windows(&id)
        .await?
        .active(now, &state.config.policy);
    let reported = etags.clone();
    let (lane, send) = state
        .sessions
        .update_state(&id, |s: &mut SessionState| {
            Ok::<_, StateError>(
                match s.mark_uploaded(slot, reported.clone(), now, &windows)? {
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
    tracing::info!(video_id = %id, slot, ?lane, fresh = send, "slot uploaded");
    let job = Job {
        video_id: record.video_id.clone(),
        slot,
        lane,
        etags,
    };
    // A viewer waits for this part: check and publish it now rather than after the
    // queue's hop (the worker's code, idempotent like a redelivery).
    let inline = if send && lane == Lane::Priority {
        publish_inline(&state, &job).await
    } else {
        None
    };
    let published = matches!(
        inline,
        Some(Outcome::Published { .. } | Outcome::AlreadyPublished)
    );
    let enqueued = send && inline.is_none();
    if enqueued {
        state.queue.enqueue(&job).await?;
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(UploadedAnswer {
            slot,
            queue: lane,
            enqueued,
            published,
        }),
    )
        .into_response())
}
