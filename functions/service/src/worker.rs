//! The worker: checks uploaded segments against the plan and publishes them.
//!
//! [`handle_batch`] is the one entry point, called by Lambda's SQS trigger and
//! by the local runner's poller alike. It answers with partial batch failures:
//! only messages that hit a transient error are retried (and, past the
//! queue's maxReceiveCount, land in its dead-letter queue).

use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use chunkstream_domain::plan::TrackKind;
use chunkstream_domain::published::PublishState;
use chunkstream_domain::segment_check::{check_media_segment, ExpectedFragment};
use chunkstream_domain::state::{InitState, Lane};

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
        // Only the worker's record is read: whether a job is current is
        // decided by the objects themselves (their ETags against the job's).
        let mut state = self.sessions.publish_state(id).await?;
        if state.inits.iter().any(|i| *i != InitState::Published) {
            inits::publish_inits(&self.sessions, &record).await?;
            state = self.sessions.publish_state(id).await?;
        }
        if job.slot >= state.slot_count() {
            return Ok(Outcome::Dropped(format!("slot {} out of range", job.slot)));
        }
        if state.is_published(job.slot) {
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
        let plan = &record.plan;
        let store = self.sessions.store();
        // The tracks' heads are read together, and every track is validated before any goes
        // public; then the copies run together, each of exactly the bytes validated
        // (If-Match on the source's ETag).
        let heads = futures::future::try_join_all((0..plan.tracks.len()).map(|index| {
            let from = sessions::incoming_key(id, job.slot, index);
            async move {
                let head = store.get_head(&from, MAX_CHECK_BYTES).await?;
                Ok::<_, StoreError>((from, head))
            }
        }))
        .await?;
        let mut checked = Vec::with_capacity(plan.tracks.len());
        for (index, ((track, frag), (from, head))) in plan
            .tracks
            .iter()
            .zip(&plan.slots[job.slot].tracks)
            .zip(heads)
            .enumerate()
        {
            let refusal = match head {
                // `uploaded` checked it was there: removed since (reaped, or a
                // new upload is on its way): nothing to do for this job.
                None => {
                    return Ok(Outcome::Dropped(format!(
                        "stale job: track {} is not in the upload area",
                        track.id
                    )))
                }
                Some(head) if job.etags.get(index).is_some_and(|e| *e != head.etag) => {
                    return Ok(Outcome::Dropped(
                        "stale job: superseded by a newer upload".into(),
                    ))
                }
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
                Err(reason) => return self.refuse(id, job, reason).await,
            }
        }
        let copies = futures::future::join_all(
            checked
                .iter()
                .map(|(from, to, etag)| async move { (from, store.copy(from, to, etag).await) }),
        )
        .await;
        for (from, copied) in copies {
            match copied {
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
            .update_published(id, |s: &mut PublishState| {
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

    async fn refuse(&self, id: &str, job: &Job, reason: String) -> Result<Outcome, JobError> {
        let recorded = reason.clone();
        let slot = job.slot;
        // The refusal names the version refused: a newer upload of the slot
        // is never shown as failed because of it.
        let etags = job.etags.clone();
        let marked = self
            .sessions
            .update_published(id, move |s: &mut PublishState| {
                let changed = s.mark_failed(slot, recorded.clone(), etags.clone())?;
                Ok::<_, chunkstream_domain::state::StateError>((changed, changed))
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
