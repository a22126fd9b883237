//! The worker: checks uploaded segments against the plan and publishes them.
//!
//! [`handle_batch`] is the one entry point, called by Lambda's SQS trigger and
//! by the local runner's poller alike. It answers with partial batch failures:
//! only messages that hit a transient error are retried (and, past the
//! queue's maxReceiveCount, land in its dead-letter queue).

use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use chunkstream_domain::plan::TrackKind;
use chunkstream_domain::segment_check::{check_media_segment, ExpectedFragment};
use chunkstream_domain::state::{InitState, Lane, SessionState, SlotState};

use crate::inits;
use crate::queue::Job;
use crate::sessions::{self, SessionError, Sessions};
use crate::store::StoreError;

/// How much of a segment is read to check it: the `moof` must fit in here;
/// the `mdat` payload is never downloaded.
pub const MAX_CHECK_BYTES: u64 = 4 * 1024 * 1024;

/// What happened to one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Published {
        complete: bool,
    },
    AlreadyPublished,
    /// The segment was refused; the slot is marked failed with this reason.
    Refused(String),
    /// Nothing to do: unknown video (reaped), or a stale job.
    Dropped(String),
}

/// Why a job did not finish.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Transient (throttling, 5xx, a lost race): the message is retried.
    #[error("{0:#}")]
    Retry(anyhow::Error),
    /// Retrying cannot help (access denied, corrupt record): the message is
    /// not retried into the DLQ. The slot stays "uploaded", so once the cause
    /// is fixed the reaper's re-drive finishes it.
    #[error("{0:#}")]
    Fatal(anyhow::Error),
}

impl From<StoreError> for JobError {
    fn from(e: StoreError) -> Self {
        if e.is_retryable() {
            JobError::Retry(e.into())
        } else {
            JobError::Fatal(e.into())
        }
    }
}

impl From<SessionError> for JobError {
    fn from(e: SessionError) -> Self {
        match e {
            SessionError::Store(e) => e.into(),
            e @ SessionError::Contention(_) => JobError::Retry(e.into()),
            e => JobError::Fatal(e.into()),
        }
    }
}

#[derive(Clone)]
pub struct Worker {
    sessions: Sessions,
}

impl Worker {
    pub fn new(sessions: Sessions) -> Self {
        Self { sessions }
    }

    /// Processes one job. `Err(Retry)` means "try again later"; everything
    /// that a retry cannot change is an `Ok` outcome or `Err(Fatal)`.
    pub async fn process(&self, job: &Job) -> Result<Outcome, JobError> {
        let id = job.video_id.as_str();
        let record = match self.sessions.load(id).await {
            Ok(r) => r,
            Err(SessionError::NotFound) => return Ok(Outcome::Dropped("no such video".into())),
            Err(e) => return Err(e.into()),
        };
        let (mut state, _) = self.sessions.state(id).await?;
        if state.inits.iter().any(|i| *i != InitState::Published) {
            inits::publish_inits(&self.sessions, &record).await?;
            state = self.sessions.state(id).await?.0;
        }
        let Some(current) = state.slots.get(job.slot) else {
            return Ok(Outcome::Dropped(format!("slot {} out of range", job.slot)));
        };
        match current {
            SlotState::Published { .. } => {
                // Redelivered after a crash between publishing the last slot
                // and finalising: finish the finalisation.
                if state.complete && !state.finalised {
                    self.finalise(id).await?;
                }
                if !state.complete && state.all_slots_published() {
                    return Err(waiting_for_inits());
                }
                return Ok(Outcome::AlreadyPublished);
            }
            SlotState::Uploaded { .. } => {
                let reported = state.uploads.get(&job.slot).map(|u| &u.etags);
                if !job.etags.is_empty() && reported.is_some_and(|r| *r != job.etags) {
                    return Ok(Outcome::Dropped(
                        "stale job: superseded by a newer upload".into(),
                    ));
                }
            }
            other => {
                // Only a reported upload is processed: the uploader is (re)uploading.
                return Ok(Outcome::Dropped(format!(
                    "stale job: the slot is {}",
                    other.name()
                )));
            }
        }
        let plan = &record.plan;
        let store = self.sessions.store();
        let mut checked = Vec::with_capacity(plan.tracks.len());
        for (index, (track, frag)) in plan
            .tracks
            .iter()
            .zip(&plan.slots[job.slot].tracks)
            .enumerate()
        {
            let from = sessions::incoming_key(id, job.slot, index);
            let refusal = match store.get_head(&from, MAX_CHECK_BYTES).await? {
                None => Err(format!(
                    "track {}: segment not found in upload area",
                    track.id
                )),
                Some(head) => {
                    let expected = ExpectedFragment {
                        track_id: track.id,
                        is_video: track.kind == TrackKind::Video,
                        start: frag.start,
                        duration: frag.duration,
                        size: frag.size,
                    };
                    match check_media_segment(&head.head, head.total_len, &expected) {
                        Ok(_) => Ok(head.etag),
                        Err(e) => Err(format!("track {}: {e}", track.id)),
                    }
                }
            };
            match refusal {
                Ok(etag) => {
                    checked.push((from, sessions::published_key(id, index, job.slot), etag))
                }
                Err(reason) => return self.refuse(id, job.slot, reason).await,
            }
        }
        // Every track is validated before any goes public, and each copy is
        // of exactly the bytes validated (If-Match on the source's ETag).
        for (from, to, etag) in &checked {
            match store.copy(from, to, etag).await {
                Ok(()) => {}
                // Re-uploaded while we checked: check the new bytes on the retry.
                Err(StoreError::PreconditionFailed(_)) => {
                    return Err(JobError::Retry(anyhow::anyhow!(
                        "{from} changed while it was being checked"
                    )))
                }
                Err(e) => return Err(e.into()),
            }
        }
        let slot = job.slot;
        let now = self.sessions.now_ms();
        let (newly, complete, inits_missing) = self
            .sessions
            .update_state(id, |s: &mut SessionState| {
                let newly = s.mark_published(slot, now)?;
                Ok::<_, chunkstream_domain::state::StateError>((
                    (
                        newly,
                        s.complete && !s.finalised,
                        !s.complete && s.all_slots_published(),
                    ),
                    newly,
                ))
            })
            .await?
            .map_err(|e| JobError::Fatal(e.into()))?;
        if complete {
            self.finalise(id).await?;
        }
        if inits_missing {
            // The slot is public; the redelivery finishes the video once the inits are.
            return Err(waiting_for_inits());
        }
        Ok(if newly {
            Outcome::Published { complete }
        } else {
            Outcome::AlreadyPublished
        })
    }

    async fn refuse(&self, id: &str, slot: usize, reason: String) -> Result<Outcome, JobError> {
        let recorded = reason.clone();
        let marked = self
            .sessions
            .update_state(id, move |s: &mut SessionState| {
                // Only an upload the uploader reported is failed: a stale job for a
                // slot that is being re-uploaded must not cancel that upload.
                if !matches!(s.slots.get(slot), Some(SlotState::Uploaded { .. })) {
                    return Ok::<_, chunkstream_domain::state::StateError>((false, false));
                }
                let changed = s.mark_failed(slot, recorded.clone())?;
                Ok((changed, changed))
            })
            .await?
            .map_err(|e| JobError::Fatal(e.into()))?;
        if marked {
            tracing::warn!(video_id = %id, slot, %reason, "segment refused");
            Ok(Outcome::Refused(reason))
        } else {
            Ok(Outcome::Dropped(format!("stale job: {reason}")))
        }
    }

    /// Every slot is published: the upload area is cleaned and the session retires.
    async fn finalise(&self, id: &str) -> Result<(), JobError> {
        let removed = self.sessions.finalise(id).await?;
        tracing::info!(video_id = %id, removed, "video complete; session finalised");
        Ok(())
    }
}

fn waiting_for_inits() -> JobError {
    JobError::Retry(anyhow::anyhow!(
        "every slot is published; waiting for valid init segments"
    ))
}

fn parse_job(message: &SqsMessage) -> Result<Job, String> {
    let body = message.body.as_deref().ok_or("message has no body")?;
    serde_json::from_str(body).map_err(|e| format!("not a job: {e}"))
}

/// A job is started only if at least this much time is left before the
/// invocation's deadline: two ranged GETs, two server-side copies (up to
/// 128 MiB each) and a state write fit in it with room to spare.
pub const JOB_TIME_RESERVE: Duration = Duration::from_secs(8);

/// Handles a batch of SQS messages, priority-lane jobs first, and reports
/// the messages to retry. Poison messages are reported too, so they end in
/// the DLQ. Once less than [`JOB_TIME_RESERVE`] is left before `deadline`
/// (Lambda's, or the local poller's), no further job is started: the rest
/// are reported as failures, so they come back instead of being cut off.
pub async fn handle_batch(
    worker: &Worker,
    event: SqsEvent,
    deadline: Option<Instant>,
) -> SqsBatchResponse {
    let mut jobs: Vec<(String, Result<Job, String>)> = event
        .records
        .iter()
        .map(|m| (m.message_id.clone().unwrap_or_default(), parse_job(m)))
        .collect();
    jobs.sort_by_key(|(_, job)| {
        !matches!(
            job,
            Ok(Job {
                lane: Lane::Priority,
                ..
            })
        )
    });
    let mut response = SqsBatchResponse::default();
    let mut deferred = 0;
    for (message_id, job) in jobs {
        let out_of_time = deadline
            .is_some_and(|d| d.saturating_duration_since(Instant::now()) < JOB_TIME_RESERVE);
        let failed = match job {
            Err(reason) => {
                tracing::error!(%message_id, %reason, "poison message");
                true
            }
            Ok(_) if out_of_time => {
                deferred += 1;
                true
            }
            Ok(job) => match worker.process(&job).await {
                Ok(outcome) => {
                    tracing::info!(video_id = %job.video_id, slot = job.slot, lane = ?job.lane, ?outcome, "job done");
                    false
                }
                Err(JobError::Retry(e)) => {
                    tracing::warn!(video_id = %job.video_id, slot = job.slot, error = format!("{e:#}"), "job will be retried");
                    true
                }
                Err(JobError::Fatal(e)) => {
                    tracing::error!(video_id = %job.video_id, slot = job.slot, error = format!("{e:#}"), "job failed and will not be retried; the reaper re-drives the slot once the cause is fixed");
                    false
                }
            },
        };
        if failed {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = message_id;
            response.batch_item_failures.push(failure);
        }
    }
    if deferred > 0 {
        tracing::warn!(
            deferred,
            "deadline near: jobs returned to the queue unstarted"
        );
    }
    response
}
