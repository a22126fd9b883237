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
use crate::sessions::{self, SessionError, SessionRecord, Sessions};
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

/// One job's result: its outcome, or why it did not finish.
pub type JobResult = Result<Outcome, JobError>;

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
        self.process_video(&[job], None)
            .await
            .pop()
            .flatten()
            .unwrap_or_else(|| Err(JobError::Retry(anyhow::anyhow!("job not started"))))
    }

    /// Processes a batch's jobs, one video and lane at a time (in the order each
    /// first appears, so a video's normal jobs never go ahead of another video's
    /// priority job), and answers one result per job in the batch's order;
    /// `None` for a job not started because `deadline` was near.
    pub async fn process_batch(
        &self,
        jobs: &[Job],
        deadline: Option<Instant>,
    ) -> Vec<Option<JobResult>> {
        let mut videos: Vec<((&str, Lane), Vec<usize>)> = Vec::new();
        for (i, job) in jobs.iter().enumerate() {
            let key = (job.video_id.as_str(), job.lane);
            match videos.iter_mut().find(|(k, _)| *k == key) {
                Some((_, members)) => members.push(i),
                None => videos.push((key, vec![i])),
            }
        }
        let mut results: Vec<Option<JobResult>> = jobs.iter().map(|_| None).collect();
        for (_, members) in videos {
            let group: Vec<&Job> = members.iter().map(|&i| &jobs[i]).collect();
            for (i, result) in members
                .into_iter()
                .zip(self.process_video(&group, deadline).await)
            {
                results[i] = result;
            }
        }
        results
    }

    /// One video's jobs: each slot is checked and copied in turn, then every
    /// slot copied is marked published in one write of `published.json` (one
    /// write per batch instead of one per job). A crash before that write
    /// loses nothing: the redelivered jobs copy the same validated bytes again.
    async fn process_video(
        &self,
        jobs: &[&Job],
        deadline: Option<Instant>,
    ) -> Vec<Option<JobResult>> {
        let every = |result: &JobResult| -> Vec<Option<JobResult>> {
            jobs.iter().map(|_| Some(shared(result))).collect()
        };
        let Some(id) = jobs.first().map(|j| j.video_id.as_str()) else {
            return Vec::new();
        };
        let out_of_time = || {
            deadline.is_some_and(|d| d.saturating_duration_since(Instant::now()) < JOB_TIME_RESERVE)
        };
        if out_of_time() {
            return jobs.iter().map(|_| None).collect();
        }
        let (record, state) = match self.load_video(id).await {
            Ok(Some(loaded)) => loaded,
            Ok(None) => return every(&Ok(Outcome::Dropped("no such video".into()))),
            Err(e) => return every(&Err(e)),
        };
        let mut results: Vec<Option<JobResult>> = jobs.iter().map(|_| None).collect();
        let mut copied: Vec<usize> = Vec::new();
        for (i, job) in jobs.iter().enumerate() {
            if out_of_time() {
                break;
            }
            match self.check_and_copy(id, &record, &state, job).await {
                Ok(None) => copied.push(i),
                Ok(Some(outcome)) => results[i] = Some(Ok(outcome)),
                Err(e) => results[i] = Some(Err(e)),
            }
        }
        if !copied.is_empty() {
            let slots: Vec<usize> = copied.iter().map(|&i| jobs[i].slot).collect();
            match self.publish_slots(id, &slots).await {
                Ok(outcomes) => {
                    for (i, outcome) in copied.into_iter().zip(outcomes) {
                        results[i] = Some(outcome);
                    }
                }
                Err(e) => {
                    let e = Err(e);
                    for i in copied {
                        results[i] = Some(shared(&e));
                    }
                }
            }
        }
        results
    }

    /// The session and the worker's record, with the inits published first if
    /// they are not yet; `None` for an unknown (reaped) video.
    async fn load_video(
        &self,
        id: &str,
    ) -> Result<Option<(std::sync::Arc<SessionRecord>, PublishState)>, JobError> {
        let record = match self.sessions.load(id).await {
            Ok(r) => r,
            Err(SessionError::NotFound) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        // Only the worker's record is read: whether a job is current is
        // decided by the objects themselves (their ETags against the job's).
        let mut state = self.sessions.publish_state(id).await?;
        if state.inits.iter().any(|i| *i != InitState::Published) {
            inits::publish_inits(&self.sessions, &record).await?;
            state = self.sessions.publish_state(id).await?;
        }
        Ok(Some((record, state)))
    }

    /// Checks one job's tracks and copies them public: `Ok(None)` once copied
    /// (the slot still has to be marked published), else the job's outcome.
    async fn check_and_copy(
        &self,
        id: &str,
        record: &SessionRecord,
        state: &PublishState,
        job: &Job,
    ) -> Result<Option<Outcome>, JobError> {
        if job.slot >= state.slot_count() {
            return Ok(Some(Outcome::Dropped(format!(
                "slot {} out of range",
                job.slot
            ))));
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
            return Ok(Some(Outcome::AlreadyPublished));
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
                    return Ok(Some(Outcome::Dropped(format!(
                        "stale job: track {} is not in the upload area",
                        track.id
                    ))))
                }
                Some(head) if job.etags.get(index).is_some_and(|e| *e != head.etag) => {
                    return Ok(Some(Outcome::Dropped(
                        "stale job: superseded by a newer upload".into(),
                    )))
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
                Err(reason) => return self.refuse(id, job, reason).await.map(Some),
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
        Ok(None)
    }

    /// Marks the copied slots published in one write, finalises the video if
    /// that completed it, and answers each slot's outcome.
    async fn publish_slots(&self, id: &str, slots: &[usize]) -> Result<Vec<JobResult>, JobError> {
        let now = self.sessions.now_ms();
        let (newly, complete, inits_missing) = self
            .sessions
            .update_published(id, |s: &mut PublishState| {
                let newly = slots
                    .iter()
                    .map(|&slot| s.mark_published(slot, now))
                    .collect::<Result<Vec<bool>, _>>()?;
                let dirty = newly.iter().any(|n| *n);
                Ok::<_, chunkstream_domain::state::StateError>((
                    (
                        newly,
                        s.complete && !s.finalised,
                        !s.complete && s.all_slots_published(),
                    ),
                    dirty,
                ))
            })
            .await?
            .map_err(|e| JobError::Fatal(e.into()))?;
        if complete {
            self.finalise(id).await?;
        }
        Ok(newly
            .into_iter()
            .map(|newly| {
                if inits_missing {
                    // The slot is public; the redelivery finishes the video once the inits are.
                    Err(waiting_for_inits())
                } else if newly {
                    Ok(Outcome::Published { complete })
                } else {
                    Ok(Outcome::AlreadyPublished)
                }
            })
            .collect())
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

/// The same result for another job of the batch (errors are not `Clone`).
fn shared(result: &JobResult) -> JobResult {
    match result {
        Ok(outcome) => Ok(outcome.clone()),
        Err(JobError::Retry(e)) => Err(JobError::Retry(anyhow::anyhow!("{e:#}"))),
        Err(JobError::Fatal(e)) => Err(JobError::Fatal(anyhow::anyhow!("{e:#}"))),
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

/// Handles a batch of SQS messages, priority-lane jobs first, one video at a
/// time (a video's slots are marked published in one write), and reports
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
    let mut fail = |message_id: String| {
        let mut failure = BatchItemFailure::default();
        failure.item_identifier = message_id;
        response.batch_item_failures.push(failure);
    };
    let mut runnable: Vec<(String, Job)> = Vec::with_capacity(jobs.len());
    for (message_id, job) in jobs {
        match job {
            Ok(job) => runnable.push((message_id, job)),
            Err(reason) => {
                tracing::error!(%message_id, %reason, "poison message");
                fail(message_id);
            }
        }
    }
    let (message_ids, jobs): (Vec<String>, Vec<Job>) = runnable.into_iter().unzip();
    let results = worker.process_batch(&jobs, deadline).await;
    let mut deferred = 0;
    for ((message_id, job), result) in message_ids.into_iter().zip(&jobs).zip(results) {
        let failed = match result {
            None => {
                deferred += 1;
                true
            }
            Some(Ok(outcome)) => {
                tracing::info!(video_id = %job.video_id, slot = job.slot, lane = ?job.lane, ?outcome, "job done");
                false
            }
            Some(Err(JobError::Retry(e))) => {
                tracing::warn!(video_id = %job.video_id, slot = job.slot, error = format!("{e:#}"), "job will be retried");
                true
            }
            Some(Err(JobError::Fatal(e))) => {
                tracing::error!(video_id = %job.video_id, slot = job.slot, error = format!("{e:#}"), "job failed and will not be retried; the reaper re-drives the slot once the cause is fixed");
                false
            }
        };
        if failed {
            fail(message_id);
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
