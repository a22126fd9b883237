//! Viewer calls and the uploader's view of them: prioritize, the priority long poll, status.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chunkstream_domain::state::{Lane, SessionState, SlotState, StateError};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::uploads::{presign_assignments, Assignment};
use super::*;
use crate::error::ApiError;
use crate::queue::Job;
use crate::sessions::now_ms;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PrioritizeRequest {
    position: Option<f64>,
    slot: Option<usize>,
}

/// Opens (or refreshes) a priority window at `slot` and moves uploaded,
/// unprocessed slots of it to the priority lane. `min_refresh_ms` lets a
/// burst of identical hints cost one write.
pub(crate) async fn apply_priority(
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
pub(crate) struct PriorityQuery {
    after: Option<i64>,
    wait_ms: Option<u64>,
    /// Lease up to this many not-yet-leased window slots and return their
    /// presigned assignments with the answer (saves the uploader a `next`).
    lease: Option<usize>,
}

#[derive(Serialize)]
pub(crate) struct PriorityAnswer {
    version: u64,
    priority_slots: Vec<usize>,
    complete: bool,
    /// Window slots leased to the caller by this answer (`lease` > 0).
    assignments: Vec<Assignment>,
}

/// Long poll for uploaders: answers at once when the priority windows differ
/// from version `after`, otherwise when they change or `wait_ms` runs out.
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

pub(crate) async fn prioritize(
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

pub(crate) async fn status(
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
