//! Upload reports: the uploader says a part's PUTs are done. The objects are
//! checked (there, with the planned sizes), the slot turns "uploaded" and its
//! job is sent — or, for a part a viewer waits for, the part is checked and
//! published at once. One part per call (`POST /slots/{n}/uploaded`, for parts
//! someone waits for), or several in the `next` call that leases the next parts
//! (one `state.json` write and one API request for all of them: what an upload
//! nobody watches uses, see [`apply_reports`]).

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chunkstream_domain::state::{Lane, SessionState, StateError};
use chunkstream_domain::windows::PriorityWindow;
use serde::Serialize;
use utoipa::ToSchema;

use super::*;
use crate::error::ApiError;
use crate::queue::Job;
use crate::sessions::{self, SessionRecord};
use crate::worker::{Outcome, Worker};

/// The most parts one `next` call may report.
pub(crate) const MAX_REPORTS: usize = MAX_ASSIGNMENTS;

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

/// What became of one part reported in a `next` call.
#[derive(Serialize, ToSchema)]
pub(crate) struct SlotReport {
    slot: usize,
    /// The queue its check went to (for a refused report: the one it would have gone to).
    queue: Lane,
    /// As for `POST /slots/{n}/uploaded`.
    enqueued: bool,
    /// As for `POST /slots/{n}/uploaded`; also true for `already_published`.
    published: bool,
    /// Present when the report was refused: `upload_missing` or `upload_size_mismatch` (the
    /// objects are not there with the planned sizes; the lease stays: PUT again, report
    /// again), `already_published` (the part is public already).
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
}

/// Why a report is refused (answered 409 by the single route, an entry's `error` in a batch).
pub(crate) struct Refusal {
    code: &'static str,
    message: String,
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        ApiError::client(StatusCode::CONFLICT, r.code, r.message)
    }
}

/// The part's objects as uploaded (one ETag per track), or why a report of it is refused.
/// The tracks' HEADs go together: one round trip.
async fn check_objects(
    state: &AppState,
    record: &SessionRecord,
    slot: usize,
) -> Result<Result<Vec<String>, Refusal>, ApiError> {
    let store = state.sessions.store();
    let id = &record.video_id;
    let planned = &record.plan.slots[slot].tracks;
    let heads = futures::future::try_join_all((0..planned.len()).map(|track| {
        let key = sessions::incoming_key(id, slot, track);
        async move { store.head(&key).await }
    }))
    .await?;
    let mut etags = Vec::with_capacity(planned.len());
    for ((track, frag), head) in planned.iter().enumerate().zip(heads) {
        match head {
            None => {
                return Ok(Err(Refusal {
                    code: "upload_missing",
                    message: format!("slot {slot} track {track}: nothing uploaded yet; PUT it to the URL from /next first"),
                }))
            }
            Some(meta) if meta.len != frag.size => {
                return Ok(Err(Refusal {
                    code: "upload_size_mismatch",
                    message: format!(
                        "slot {slot} track {track}: {} bytes uploaded, {} planned",
                        meta.len, frag.size
                    ),
                }))
            }
            Some(meta) => etags.push(meta.etag),
        }
    }
    Ok(Ok(etags))
}

fn already_published(slot: usize) -> Refusal {
    Refusal {
        code: "already_published",
        message: format!("slot {slot} is published already"),
    }
}

/// A report whose objects checked out, as applied to the state by [`apply_reports`].
pub(crate) struct Checked {
    slot: usize,
    etags: Vec<String>,
}

/// The parts `slots` reported together: their objects checked (all HEADs at once), the
/// refused ones answered as such. The caller then applies [`Checked::mark`] to the state
/// in its own write and finishes with [`dispatch`].
pub(crate) async fn check_reports(
    state: &AppState,
    record: &SessionRecord,
    slots: &[usize],
) -> Result<Vec<Result<Checked, (usize, Refusal)>>, ApiError> {
    let checks =
        futures::future::try_join_all(slots.iter().map(|&slot| check_objects(state, record, slot)))
            .await?;
    Ok(slots
        .iter()
        .zip(checks)
        .map(|(&slot, check)| match check {
            Ok(etags) => Ok(Checked { slot, etags }),
            Err(refusal) => Err((slot, refusal)),
        })
        .collect())
}

/// A checked report's effect on the state: the lane of the job to send (`Some`), or
/// `None` for a repeat of a fresh report, or the refusal of a part published already.
pub(crate) type Marked = Result<(Lane, bool), Refusal>;

impl Checked {
    pub(crate) fn mark(
        &self,
        s: &mut SessionState,
        now_ms: u64,
        windows: &[PriorityWindow],
    ) -> Result<Marked, StateError> {
        match s.mark_uploaded(self.slot, self.etags.clone(), now_ms, windows) {
            Ok(Some(lane)) => Ok(Ok((lane, true))),
            // A repeat of a fresh report: its job is on its way.
            Ok(None) => Ok(Ok((
                s.uploads.get(&self.slot).map_or(Lane::Normal, |u| u.lane),
                false,
            ))),
            Err(StateError::AlreadyPublished(slot)) => Ok(Err(already_published(slot))),
            Err(e) => Err(e),
        }
    }
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

/// After the state write: a part a viewer waits for is checked and published now
/// (the worker's code, idempotent like a redelivery); every other fresh report's job
/// is sent, all of them in one batch per lane. Answers in the order of `reports`.
pub(crate) async fn dispatch(
    state: &AppState,
    record: &SessionRecord,
    reports: Vec<(Checked, Marked)>,
) -> Result<Vec<SlotReport>, ApiError> {
    let mut answers = Vec::with_capacity(reports.len());
    let mut to_send = Vec::new();
    for (checked, marked) in reports {
        let (lane, send) = match marked {
            Ok(m) => m,
            Err(refusal) => {
                answers.push(refused(checked.slot, refusal));
                continue;
            }
        };
        tracing::info!(video_id = %record.video_id, slot = checked.slot, ?lane, fresh = send, "slot uploaded");
        let job = Job {
            video_id: record.video_id.clone(),
            slot: checked.slot,
            lane,
            etags: checked.etags,
        };
        let inline = if send && lane == Lane::Priority {
            publish_inline(state, &job).await
        } else {
            None
        };
        let enqueued = send && inline.is_none();
        answers.push(SlotReport {
            slot: job.slot,
            queue: lane,
            enqueued,
            published: matches!(
                inline,
                Some(Outcome::Published { .. } | Outcome::AlreadyPublished)
            ),
            error: None,
            message: None,
        });
        if enqueued {
            to_send.push(job);
        }
    }
    state.queue.enqueue_batch(&to_send).await?;
    Ok(answers)
}

pub(crate) fn refused(slot: usize, refusal: Refusal) -> SlotReport {
    SlotReport {
        slot,
        queue: Lane::Normal,
        enqueued: false,
        published: refusal.code == "already_published",
        error: Some(refusal.code),
        message: Some(refusal.message),
    }
}

/// `next`'s `uploaded` list, checked: each a slot of the video, no repeats, at most
/// [`MAX_REPORTS`].
pub(crate) fn validate_report_list(slots: &[usize], slot_count: usize) -> Result<(), ApiError> {
    if slots.len() > MAX_REPORTS {
        return Err(ApiError::bad_request(format!(
            "uploaded lists at most {MAX_REPORTS} parts"
        )));
    }
    if let Some(bad) = slots.iter().find(|&&s| s >= slot_count) {
        return Err(ApiError::bad_request(format!(
            "uploaded: {bad} is not a slot of this video (it has {slot_count})"
        )));
    }
    let mut seen = std::collections::BTreeSet::new();
    if let Some(dup) = slots.iter().find(|&&s| !seen.insert(s)) {
        return Err(ApiError::bad_request(format!(
            "uploaded: slot {dup} is listed twice"
        )));
    }
    Ok(())
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
    // The objects must be there, with the planned sizes, before a job is worth sending.
    let checked = match check_reports(&state, &record, &[slot]).await?.pop() {
        Some(Ok(checked)) => checked,
        Some(Err((_, refusal))) => return Err(refusal.into()),
        None => {
            return Err(ApiError::Internal(anyhow::anyhow!(
                "no check for slot {slot}"
            )))
        }
    };
    let now = state.sessions.now_ms();
    let windows = state
        .sessions
        .windows(&id)
        .await?
        .active(now, &state.config.policy);
    let marked = state
        .sessions
        .update_state(&id, |s: &mut SessionState| {
            let marked = checked.mark(s, now, &windows)?;
            let dirty = matches!(marked, Ok((_, true)));
            Ok::<_, StateError>((marked, dirty))
        })
        .await?
        .map_err(ApiError::from)?;
    let marked = marked.map_err(ApiError::from)?;
    let answer = dispatch(&state, &record, vec![(checked, Ok(marked))])
        .await?
        .pop()
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("no answer for slot {slot}")))?;
    Ok((
        StatusCode::ACCEPTED,
        Json(UploadedAnswer {
            slot: answer.slot,
            queue: answer.queue,
            enqueued: answer.enqueued,
            published: answer.published,
        }),
    )
        .into_response())
}
