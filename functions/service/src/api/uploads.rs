//! Uploader calls: create a session, init uploads, next assignments, uploaded reports.

use std::time::SystemTime;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chunkstream_domain::plan::SegmentPlan;
use chunkstream_domain::state::{Lane, SessionState, StateError};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::*;
use crate::error::ApiError;
use crate::queue::Job;
use crate::sessions::{self, SessionRecord};
use crate::store::PresignedUpload;

#[derive(Serialize)]
pub(crate) struct InitUpload {
    /// Index of the track in the plan.
    track: usize,
    track_id: u32,
    #[serde(flatten)]
    upload: PresignedUpload,
}

pub(crate) async fn presign_inits(
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

pub(crate) async fn create_video(
    State(state): State<AppState>,
    body: Bytes,
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
pub(crate) struct InitRequest {
    /// The uploader is resuming (e.g. after a reload): release the leases of its earlier run.
    #[serde(default)]
    release_leases: bool,
}

pub(crate) async fn init_uploads(
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
    Ok(Json(json!({
        "init_uploads": presign_inits(&state, &record).await?,
        "released_leases": released,
    })))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct NextRequest {
    max: Option<usize>,
}

#[derive(Serialize)]
pub(crate) struct SlotUpload {
    /// Index of the track in the plan.
    track: usize,
    track_id: u32,
    #[serde(flatten)]
    upload: PresignedUpload,
}

#[derive(Serialize)]
pub(crate) struct Assignment {
    slot: usize,
    priority: bool,
    #[serde(with = "crate::rfc3339")]
    lease_expires_at: SystemTime,
    uploads: Vec<SlotUpload>,
}

pub(crate) async fn next_assignments(
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
    Ok(Json(json!({
        "assignments": assignments,
        "complete": complete,
        "remaining": remaining,
        "priority_slots": priority_slots,
    })))
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
