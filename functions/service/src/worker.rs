//! The worker: checks uploaded segments against the plan and publishes them.
//!
//! [`handle_batch`] is the one entry point, called by Lambda's SQS trigger and
//! by the local runner's poller alike. It answers with partial batch failures:
//! only messages that hit a transient error are retried (and, past the
//! queue's maxReceiveCount, land in its dead-letter queue).

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use chunkstream_domain::plan::TrackKind;
use chunkstream_domain::segment_check::{check_media_segment, ExpectedFragment};
use chunkstream_domain::state::{Lane, SessionState, SlotState};

use crate::queue::Job;
use crate::sessions::{self, now_ms, SessionError, Sessions};
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

#[derive(Clone)]
pub struct Worker {
    sessions: Sessions,
}

impl Worker {
    pub fn new(sessions: Sessions) -> Self {
        Self { sessions }
    }

    /// Processes one job. `Err` means "try again later"; everything that a
    /// retry cannot change is an `Ok` outcome.
    pub async fn process(&self, job: &Job) -> anyhow::Result<Outcome> {
        let id = job.video_id.as_str();
        let record = match self.sessions.load(id).await {
            Ok(r) => r,
            Err(SessionError::NotFound) => return Ok(Outcome::Dropped("no such video".into())),
            Err(e) => return Err(e.into()),
        };
        let (state, _) = self.sessions.state(id).await?;
        let Some(current) = state.slots.get(job.slot) else {
            return Ok(Outcome::Dropped(format!("slot {} out of range", job.slot)));
        };
        if matches!(current, SlotState::Published { .. }) {
            return Ok(Outcome::AlreadyPublished);
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
        for (from, to, etag) in &checked {
            match store.copy(from, to, etag).await {
                Ok(()) => {}
                // Re-uploaded while we checked: check the new bytes on the retry.
                Err(StoreError::PreconditionFailed(_)) => {
                    anyhow::bail!("{from} changed while it was being checked")
                }
                Err(e) => return Err(e.into()),
            }
        }
        let slot = job.slot;
        let (newly, complete) = self
            .sessions
            .update_state(id, |s: &mut SessionState| {
                let newly = s.mark_published(slot, now_ms())?;
                Ok::<_, chunkstream_domain::state::StateError>((
                    (newly, s.complete && !s.finalised),
                    newly,
                ))
            })
            .await??;
        if complete {
            self.finalise(id).await?;
        }
        Ok(if newly {
            Outcome::Published { complete }
        } else {
            Outcome::AlreadyPublished
        })
    }

    async fn refuse(&self, id: &str, slot: usize, reason: String) -> anyhow::Result<Outcome> {
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
            .await??;
        if marked {
            tracing::warn!(video_id = %id, slot, %reason, "segment refused");
            Ok(Outcome::Refused(reason))
        } else {
            Ok(Outcome::Dropped(format!("stale job: {reason}")))
        }
    }

    /// Every slot is published: the upload area is cleaned and the session retires.
    async fn finalise(&self, id: &str) -> anyhow::Result<()> {
        let removed = self
            .sessions
            .store()
            .delete_prefix(&sessions::incoming_prefix(id))
            .await?;
        self.sessions
            .update_state(id, |s: &mut SessionState| {
                let dirty = !s.finalised;
                s.finalised = true;
                Ok::<_, std::convert::Infallible>(((), dirty))
            })
            .await?
            .unwrap_or_else(|never| match never {});
        tracing::info!(video_id = %id, removed, "video complete; session finalised");
        Ok(())
    }
}

fn parse_job(message: &SqsMessage) -> Result<Job, String> {
    let body = message.body.as_deref().ok_or("message has no body")?;
    serde_json::from_str(body).map_err(|e| format!("not a job: {e}"))
}

/// Handles a batch of SQS messages, priority-lane jobs first, and reports
/// the messages to retry. Poison messages are reported too, so they end in the DLQ.
pub async fn handle_batch(worker: &Worker, event: SqsEvent) -> SqsBatchResponse {
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
    for (message_id, job) in jobs {
        let failed = match job {
            Err(reason) => {
                tracing::error!(%message_id, %reason, "poison message");
                true
            }
            Ok(job) => match worker.process(&job).await {
                Ok(outcome) => {
                    tracing::info!(video_id = %job.video_id, slot = job.slot, lane = ?job.lane, ?outcome, "job done");
                    false
                }
                Err(e) => {
                    tracing::warn!(video_id = %job.video_id, slot = job.slot, error = format!("{e:#}"), "job will be retried");
                    true
                }
            },
        };
        if failed {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = message_id;
            response.batch_item_failures.push(failure);
        }
    }
    response
}
