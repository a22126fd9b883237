//! Viewer calls and the uploader's view of them: prioritize, the priority long poll, status.
//!
//! Viewers write only `windows.json` (never `state.json`, which the uploader
//! and the worker write), and most hints write nothing: the [`HintGate`]
//! answers those a viewer's window already covers, and rate-limits the rest.
//!
//! [`HintGate`]: crate::hints::HintGate

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chunkstream_domain::state::{InitState, Lane, SessionState, SlotState, StateError};
use chunkstream_domain::windows::{is_valid_viewer_id, HintKind, HintOutcome};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::uploads::{presign_assignments, Assignment};
use super::*;
use crate::error::ApiError;
use crate::hints::{Gate, Hinter};
use crate::queue::Job;
use crate::sessions;

/// What viewers read (status) may be kept this long by an edge cache; browsers revalidate.
pub(crate) const VIEWER_READ_CACHE: &str = "public, max-age=1";

/// Exactly one of `position` and `slot`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PrioritizeRequest {
    /// Seconds from the start (finite, >= 0).
    #[schema(minimum = 0)]
    position: Option<f64>,
    /// A part's index.
    slot: Option<usize>,
    /// The watch page's viewer id: its seek replaces its own window only.
    viewer: Option<String>,
}

/// Who sent a hint: the viewer id (when valid) and the client's address
/// (the first `X-Forwarded-For` hop, which CloudFront and API Gateway set).
pub(crate) fn hinter(headers: &HeaderMap, viewer: Option<&str>) -> Hinter {
    let viewer = viewer
        .filter(|v| is_valid_viewer_id(v))
        .unwrap_or_default()
        .to_string();
    let client = headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(str::trim)
        .filter(|c| !c.is_empty() && c.len() <= 64)
        .unwrap_or_default()
        .to_string();
    Hinter { viewer, client }
}

/// What a hint did.
pub(crate) struct Hinted {
    /// The viewer's window (slots).
    pub window: Vec<usize>,
    /// Uploaded, unprocessed slots of a new window moved to the priority lane.
    pub requeued: Vec<usize>,
    /// Dropped by the rate limit.
    pub limited: bool,
}

/// A viewer needs `slot` soon: opens, moves or refreshes that viewer's
/// window, unless the gate or the viewer's own window says it is not needed.
/// Costs: nothing when covered or limited; 1 GET + (at most) 1 conditional
/// PUT of `windows.json` otherwise, plus a GET of `state.json` when a window
/// opens or moves (and of `published.json` if the window has uploaded parts),
/// and one SQS send per requeued slot.
pub(crate) async fn apply_hint(
    state: &AppState,
    record: &SessionRecord,
    who: &Hinter,
    slot: usize,
    kind: HintKind,
) -> Result<Hinted, ApiError> {
    let id = record.video_id.as_str();
    let count = record.plan.slots.len();
    if slot >= count {
        return Err(StateError::SlotOutOfRange { slot, count }.into());
    }
    let policy = state.config.policy;
    let now = state.sessions.now_ms();
    let span = |from: usize| from..from.saturating_add(policy.window_len).min(count);
    let unchanged = |limited| Hinted {
        window: span(slot).collect(),
        requeued: Vec::new(),
        limited,
    };
    match state.hints.check(id, who, slot, kind, now, &policy) {
        Gate::Covered => return Ok(unchanged(false)),
        Gate::Limited => return Ok(unchanged(true)),
        Gate::Pass => {}
    }
    // A seek to a published slot needs no window (its next miss opens one);
    // a miss already knows the slot is not public.
    if kind == HintKind::Seek
        && state
            .sessions
            .store()
            .head(&sessions::published_key(id, 0, slot))
            .await?
            .is_some()
    {
        return Ok(unchanged(false));
    }
    let (own, written) = state
        .sessions
        .update_windows(id, |w| {
            let outcome = w.hint(&who.viewer, &who.client, slot, kind, now, &policy);
            let own = w.own(&who.viewer, slot).map(|i| w.windows[i].clone());
            let moved = outcome == HintOutcome::Moved;
            (
                (own, moved.then(|| w.clone())),
                outcome != HintOutcome::Unchanged,
            )
        })
        .await?;
    state.hints.remember(id, who, own.clone());
    let window: Vec<usize> = own
        .as_ref()
        .map_or_else(|| span(slot), |w| span(w.playhead_slot))
        .collect();
    let mut requeued = Vec::new();
    if let Some(windows) = written {
        state.events.changed(id, windows);
        // A feed held by another process hears of it at once.
        if let Err(e) = state.sessions.feed_signal().notify(id).await {
            tracing::warn!(video_id = %id, error = %e, "could not ring the feed signal");
        }
        // Only jobs that went to the normal lane need a priority copy.
        let candidates = state
            .sessions
            .requeue_candidates(
                id,
                window
                    .first()
                    .map_or(0..0, |&first| first..first + window.len()),
            )
            .await?;
        for (slot, etags) in candidates {
            state
                .queue
                .enqueue(&Job {
                    video_id: id.to_string(),
                    slot,
                    lane: Lane::Priority,
                    etags,
                })
                .await?;
            requeued.push(slot);
        }
    }
    Ok(Hinted {
        window,
        requeued,
        limited: false,
    })
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct PriorityQuery {
    /// The `version` the caller has: answer when the windows differ from it (absent: at once).
    after: Option<i64>,
    /// How long to wait for a change, in ms (capped at 25000; default 0).
    wait_ms: Option<u64>,
    /// Lease up to this many not-yet-leased window slots and return their
    /// presigned assignments with the answer (saves the uploader a `next`). 0..=16.
    #[param(maximum = 16)]
    lease: Option<usize>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct PriorityAnswer {
    /// Changes whenever the viewers' priority windows change.
    version: u64,
    /// Not-yet-published parts of active viewer windows, nearest to a playhead first.
    priority_slots: Vec<usize>,
    complete: bool,
    /// Window slots leased to the caller by this answer (`lease` > 0).
    assignments: Vec<Assignment>,
    /// A watch page is open (it said so in the last 90 s) or a viewer waits for a part:
    /// report each finished part at once rather than with the next `next` call.
    watched: bool,
    /// While no viewer waits for a part (no live priority window): instead of holding
    /// this poll open, GET this URL (held up to 20 s by SQS until a page opens or a
    /// viewer seeks; its answer need not be read) and then ask again with `wait_ms=0`.
    /// Absent while a viewer waits: hold the poll, it answers their next seek at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    wake_url: Option<String>,
}

/// Long poll for uploaders: answers at once when the priority windows differ
/// from version `after` (or the video is complete), otherwise when they
/// change or `wait_ms` runs out. A change made by another process rings the
/// video's SQS feed queue, on which it waits; it re-reads `windows.json` only as
/// a safety net: every 3 s while the video is watched, every 20 s otherwise.
#[utoipa::path(
    get,
    path = "/api/videos/{id}/priority",
    tag = "uploader",
    params(("id" = String, Path, description = "The video id"), PriorityQuery),
    security(("upload_secret" = [])),
    responses(
        (status = 200, description = "The windows changed, the wait ran out, or the video is complete (`Cache-Control: no-store`)", body = PriorityAnswer),
        (status = 400, response = crate::openapi::BadRequest),
        crate::openapi::SecretErrors,
    )
)]
pub(crate) async fn priority_feed(
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
    let complete_at_start = state.sessions.publish_state(&id).await?.complete;
    // The windows a prioritize in this process just wrote (it woke this poll).
    let mut handed: Option<Arc<ViewerWindows>> = None;
    let mut signal_works = true;
    loop {
        let windows = match handed.take() {
            Some(w) => Arc::unwrap_or_clone(w),
            None => state.sessions.windows(&id).await?,
        };
        let changed = query
            .after
            .is_none_or(|after| after != windows.version as i64);
        let now = tokio::time::Instant::now();
        if changed || now >= deadline || complete_at_start {
            let now_ms = state.sessions.now_ms();
            let active = windows.active(now_ms, &policy);
            let lease_now = changed && lease > 0 && !active.is_empty();
            // Leasing reads the state anyway: the answer comes from that read.
            let (picks, priority_slots, complete) = state
                .sessions
                .update_state(&id, |s: &mut SessionState| {
                    let picks = if lease_now && !s.complete {
                        s.assign_priority(lease, now_ms, &policy, &active)
                    } else {
                        Vec::new()
                    };
                    let dirty = !picks.is_empty();
                    Ok::<_, std::convert::Infallible>((
                        (picks, s.priority_slots(&active), s.complete),
                        dirty,
                    ))
                })
                .await?
                .unwrap_or_else(|never| match never {});
            let watched = windows.watched(now_ms, &policy);
            // Held only while a viewer waits for a part: a page that is merely open costs
            // the uploader an SQS receive every 20 s, not a Lambda held all along, and its
            // first seek one round trip more (the wake-up, then this short poll).
            let wake_url = if complete || complete_at_start || !active.is_empty() {
                None
            } else {
                // Without one the uploader holds the poll, as before: never an error.
                state
                    .sessions
                    .feed_signal()
                    .wake_url(&id)
                    .await
                    .unwrap_or_else(|e| {
                        tracing::warn!(video_id = %id, error = %e, "no wake-up URL");
                        None
                    })
            };
            let body = PriorityAnswer {
                version: windows.version,
                priority_slots,
                complete,
                assignments: presign_assignments(&state, &record, picks).await?,
                watched,
                wake_url,
            };
            if complete || complete_at_start {
                // The uploader is done: nothing waits on this video's signal again.
                state.sessions.close_feed(&id).await;
            }
            return Ok(([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response());
        }
        // Nobody watching: nobody to seek soon, so re-read less often (a watch page
        // says it is open when it loads, so its first seek finds the quick pace).
        let signal = state.sessions.feed_signal();
        let signalled = signal_works && signal.crosses_processes();
        let watched = windows.watched(state.sessions.now_ms(), &policy);
        let every = match (signalled, watched) {
            (false, true) => PRIORITY_POLL_MS,
            (false, false) => UNWATCHED_PRIORITY_POLL_MS,
            (true, true) => SIGNALLED_PRIORITY_POLL_MS,
            (true, false) => SIGNALLED_UNWATCHED_PRIORITY_POLL_MS,
        };
        let poll = std::time::Duration::from_millis(every).min(deadline - now);
        // Wake on a change to this video in this process, on the signal of a change
        // made in another, or re-read after `poll`.
        let in_process = async {
            loop {
                match wake.recv().await {
                    Ok(changed) if changed.video_id == id => return Some(changed.windows),
                    Ok(_) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => return None,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                        std::future::pending::<()>().await
                    }
                }
            }
        };
        let rung = async {
            if !signalled {
                tokio::time::sleep(poll).await;
                return Ok(false);
            }
            signal.wait(&id, poll).await
        };
        tokio::select! {
            woken = in_process => handed = woken,
            rung = rung => {
                if let Err(e) = rung {
                    // Re-read at the quick pace for the rest of this poll.
                    tracing::warn!(video_id = %id, error = %e, "feed signal wait failed");
                    signal_works = false;
                }
            }
        }
    }
}

#[derive(Serialize, ToSchema)]
pub(crate) struct PrioritizeAnswer {
    /// The viewer's window: the parts uploaded next, in order.
    window: Vec<usize>,
    /// Uploaded parts of the window whose check moved to the priority queue.
    requeued: Vec<usize>,
}

/// A viewer's seek: the parts from there on are uploaded and published first.
#[utoipa::path(
    post,
    path = "/api/videos/{id}/prioritize",
    tag = "viewer",
    params(("id" = String, Path, description = "The video id")),
    request_body = PrioritizeRequest,
    responses(
        (status = 200, description = "OK", body = PrioritizeAnswer),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 413, response = crate::openapi::PayloadTooLarge),
        crate::openapi::PublicErrors,
        (status = 410, response = crate::openapi::Gone),
        (status = 429, response = crate::openapi::TooManyRequests),
    )
)]
pub(crate) async fn prioritize(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Json<PrioritizeAnswer>, ApiError> {
    let request: PrioritizeRequest = parse_json(&body)?;
    if request
        .viewer
        .as_deref()
        .is_some_and(|v| !is_valid_viewer_id(v))
    {
        return Err(ApiError::bad_request(
            "viewer must be 1..=64 characters of A-Z a-z 0-9 - _",
        ));
    }
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
    let who = hinter(&headers, request.viewer.as_deref());
    let hinted = apply_hint(&state, &record, &who, slot, HintKind::Seek).await?;
    if hinted.limited {
        return Err(ApiError::client(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many priority hints for this video or from this viewer; retry after a second",
        ));
    }
    tracing::info!(video_id = %id, slot, requeued = ?hinted.requeued, "prioritized");
    Ok(Json(PrioritizeAnswer {
        window: hinted.window,
        requeued: hinted.requeued,
    }))
}

/// A watch page is open: the uploader's priority feed watches for this
/// video's seeks closely for the next 90 s (it holds its poll instead of
/// waiting on a wake-up URL, and re-reads every 3 s instead of 20 s; 250 ms
/// instead of 1 s without a feed queue). The first page while nobody watched
/// rings the video's feed queue. The watch page says so when it loads and
/// every minute while the video is still uploading. One process writes it at
/// most every 30 s per video (`windows.json`, 1 GET + 1 PUT); the other calls
/// cost no S3 request.
#[utoipa::path(
    post,
    path = "/api/videos/{id}/watching",
    tag = "viewer",
    params(("id" = String, Path, description = "The video id")),
    responses(
        (status = 204, description = "Noted"),
        crate::openapi::PublicErrors,
        (status = 410, response = crate::openapi::Gone),
    )
)]
pub(crate) async fn watching(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.sessions.load(&id).await?;
    let now = state.sessions.now_ms();
    let policy = state.config.policy;
    if state.hints.watching_due(&id, now) {
        let recorded = state
            .sessions
            .update_windows(&id, |w| {
                let was_watched = w.watched(now, &policy);
                let changed = w.watched_ms < now;
                w.watched_ms = w.watched_ms.max(now);
                (was_watched, changed)
            })
            .await;
        match recorded {
            Err(e) => {
                state.hints.watching_failed(&id);
                return Err(e.into());
            }
            // The first page: an uploader waiting on its wake-up URL comes back and
            // holds the poll, so this viewer's first seek is answered at once.
            Ok(false) => {
                if let Err(e) = state.sessions.feed_signal().notify(&id).await {
                    tracing::warn!(video_id = %id, error = %e, "could not ring the feed signal");
                }
            }
            Ok(true) => {}
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Where a part is in its life cycle.
#[derive(Serialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub(crate) enum SlotPhase {
    Pending,
    /// Leased to an uploader.
    Assigned,
    /// Uploaded and reported; its check is queued.
    Uploaded,
    Published,
    /// Refused by the check (`reason` says why).
    Failed,
}

impl From<&SlotState> for SlotPhase {
    fn from(slot: &SlotState) -> Self {
        match slot {
            SlotState::Pending => Self::Pending,
            SlotState::Assigned { .. } => Self::Assigned,
            SlotState::Uploaded { .. } => Self::Uploaded,
            SlotState::Published { .. } => Self::Published,
            SlotState::Failed { .. } => Self::Failed,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub(crate) struct SlotStatus {
    /// Seconds from the start.
    start: f64,
    /// Seconds.
    duration: f64,
    state: SlotPhase,
    /// Why the check refused it (`failed` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String)]
    reason: Option<String>,
}

/// Parts per state.
#[derive(Serialize, ToSchema)]
pub(crate) struct SlotCounts {
    pending: usize,
    assigned: usize,
    uploaded: usize,
    published: usize,
    failed: usize,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct StatusAnswer {
    video_id: String,
    /// Every part and init segment is published.
    complete: bool,
    slot_count: usize,
    /// Seconds.
    duration: f64,
    counts: SlotCounts,
    /// One per part, in order (empty with `?parts=states`).
    slots: Vec<SlotStatus>,
    /// One letter per part, in order: `p` pending, `a` assigned, `u` uploaded, `P` published,
    /// `f` failed. What a viewer polling status needs (the times are in the MPD, or in one
    /// full answer); 1 byte per part against ~50 for `slots`.
    states: String,
    /// One per track: its init segment's state (empty for sessions older than init checks).
    inits: Vec<InitState>,
    /// Parts viewers are waiting on, nearest to a playhead first.
    priority_slots: Vec<usize>,
}

/// How much of each part a status answer lists.
#[derive(Deserialize, ToSchema, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum PartsDetail {
    /// `slots` lists every part's times and state (and `states` too).
    #[default]
    Full,
    /// Only `states`; `slots` is empty.
    States,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct StatusQuery {
    /// `full` (default) or `states` (for polling: one byte per part).
    #[param(inline)]
    parts: Option<PartsDetail>,
}

/// Where the upload is: every part's state (`Cache-Control: public, max-age=1`).
#[utoipa::path(
    get,
    path = "/api/videos/{id}/status",
    tag = "viewer",
    params(("id" = String, Path, description = "The video id"), StatusQuery),
    responses(
        (status = 200, description = "OK", body = StatusAnswer),
        crate::openapi::PublicErrors,
        (status = 410, response = crate::openapi::Gone),
    )
)]
pub(crate) async fn status(
    State(state): State<AppState>,
    Path(id): Path<String>,
    query: Result<axum::extract::Query<StatusQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let axum::extract::Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let full = query.parts.unwrap_or_default() == PartsDetail::Full;
    let record = state.sessions.load(&id).await?;
    // the three records in one round trip
    let ((s, _), windows) =
        tokio::try_join!(state.sessions.state(&id), state.sessions.windows(&id))?;
    let active = windows.active(state.sessions.now_ms(), &state.config.policy);
    let states = s.slots.iter().map(SlotState::letter).collect();
    let slots = if full {
        let times = record.plan.slot_times();
        s.slots
            .iter()
            .zip(&times)
            .map(|(slot, &(start, duration))| SlotStatus {
                start,
                duration,
                state: slot.into(),
                reason: match slot {
                    SlotState::Failed { reason } => Some(reason.clone()),
                    _ => None,
                },
            })
            .collect()
    } else {
        Vec::new()
    };
    let counts = s.counts();
    let count = |name: &str| counts.get(name).copied().unwrap_or(0);
    let body = StatusAnswer {
        video_id: id,
        complete: s.complete,
        slot_count: s.slots.len(),
        duration: record.plan.duration_secs(),
        counts: SlotCounts {
            pending: count("pending"),
            assigned: count("assigned"),
            uploaded: count("uploaded"),
            published: count("published"),
            failed: count("failed"),
        },
        slots,
        states,
        priority_slots: s.priority_slots(&active),
        inits: s.inits,
    };
    Ok(([(header::CACHE_CONTROL, VIEWER_READ_CACHE)], Json(body)).into_response())
}
