//! The job queue capability: two lanes (priority, normal) and the SQS adapter.

use async_trait::async_trait;
use aws_sdk_sqs::config::http::HttpResponse;
use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use chunkstream_domain::state::Lane;
use serde::{Deserialize, Serialize};

/// Process the uploaded segments of one slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub video_id: String,
    pub slot: usize,
    pub lane: Lane,
    /// The reported version (one ETag per track). A job whose version is no
    /// longer the slot's reported one was superseded by a re-upload and does
    /// nothing. Empty: whatever version is reported now.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub etags: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("job queue: {detail}")]
pub struct QueueError {
    /// Throttling, 5xx, the network: the same send may work later.
    pub retryable: bool,
    pub detail: String,
}

impl QueueError {
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }
}

/// SQS error codes that mean "busy or briefly broken".
const TRANSIENT_CODES: &[&str] = &[
    "ThrottlingException",
    "RequestThrottled",
    "ServiceUnavailable",
    "InternalFailure",
    "InternalError",
    "KmsThrottled",
];

#[async_trait]
pub trait JobQueue: Send + Sync {
    async fn enqueue(&self, job: &Job) -> Result<(), QueueError>;

    /// Several jobs at once (a batch of reports). An adapter that can send them in
    /// fewer requests does; this one sends them one by one. On an error some may
    /// have gone: jobs are idempotent, the caller's retry sends them again.
    async fn enqueue_batch(&self, jobs: &[Job]) -> Result<(), QueueError> {
        for job in jobs {
            self.enqueue(job).await?;
        }
        Ok(())
    }
}

/// SQS takes at most this many messages per SendMessageBatch.
pub const SEND_BATCH_MAX: usize = 10;

/// The requests a batch of jobs takes: the jobs of each lane (priority first, each
/// lane in the given order) in groups of at most [`SEND_BATCH_MAX`].
pub fn batch_requests(jobs: &[Job]) -> Vec<(Lane, Vec<&Job>)> {
    [Lane::Priority, Lane::Normal]
        .into_iter()
        .flat_map(|lane| {
            let of_lane: Vec<&Job> = jobs.iter().filter(|j| j.lane == lane).collect();
            of_lane
                .chunks(SEND_BATCH_MAX)
                .map(|c| (lane, c.to_vec()))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The SQS adapter: one queue URL per lane.
#[derive(Clone)]
pub struct SqsQueues {
    client: aws_sdk_sqs::Client,
    priority_url: String,
    normal_url: String,
}

impl SqsQueues {
    pub fn new(
        client: aws_sdk_sqs::Client,
        priority_url: impl Into<String>,
        normal_url: impl Into<String>,
    ) -> Self {
        Self {
            client,
            priority_url: priority_url.into(),
            normal_url: normal_url.into(),
        }
    }

    pub fn url(&self, lane: Lane) -> &str {
        match lane {
            Lane::Priority => &self.priority_url,
            Lane::Normal => &self.normal_url,
        }
    }
}

#[async_trait]
impl JobQueue for SqsQueues {
    async fn enqueue(&self, job: &Job) -> Result<(), QueueError> {
        let body = serde_json::to_string(job).map_err(|e| QueueError {
            retryable: false,
            detail: e.to_string(),
        })?;
        self.client
            .send_message()
            .queue_url(self.url(job.lane))
            .message_body(body)
            .send()
            .await
            .map_err(|e| sqs_error(e, &format!("send to {:?} lane", job.lane)))?;
        Ok(())
    }

    /// One SendMessageBatch per lane and ten jobs (one SQS request instead of ten).
    async fn enqueue_batch(&self, jobs: &[Job]) -> Result<(), QueueError> {
        for (lane, group) in batch_requests(jobs) {
            if let [job] = group.as_slice() {
                self.enqueue(job).await?;
                continue;
            }
            let mut request = self.client.send_message_batch().queue_url(self.url(lane));
            for (i, job) in group.iter().enumerate() {
                let body = serde_json::to_string(job).map_err(|e| QueueError {
                    retryable: false,
                    detail: e.to_string(),
                })?;
                let entry = aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(body)
                    .build()
                    .map_err(|e| QueueError {
                        retryable: false,
                        detail: format!("send batch entry: {e}"),
                    })?;
                request = request.entries(entry);
            }
            let out = request
                .send()
                .await
                .map_err(|e| sqs_error(e, &format!("send batch to {lane:?} lane")))?;
            if let Some(failed) = out.failed().first() {
                return Err(QueueError {
                    // A sender's fault (a malformed entry) will not go better on a retry.
                    retryable: !failed.sender_fault(),
                    detail: format!(
                        "send batch to {lane:?} lane: {} of {} failed, e.g. {}: {}",
                        out.failed().len(),
                        group.len(),
                        failed.code(),
                        failed.message().unwrap_or("")
                    ),
                });
            }
        }
        Ok(())
    }
}

/// An SQS call's error as a [`QueueError`]: retryable for throttling, 5xx and the
/// network; `what` says which call (it leads the detail).
pub(crate) fn sqs_error<E>(e: SdkError<E, HttpResponse>, what: &str) -> QueueError
where
    E: ProvideErrorMetadata + std::fmt::Debug,
{
    let status = e.raw_response().map(|r| r.status().as_u16());
    let code = e.as_service_error().and_then(|s| s.code());
    let retryable = match (&e, code) {
        (SdkError::ServiceError(_), Some(code)) => {
            TRANSIENT_CODES.contains(&code) || status.is_some_and(|s| s == 429 || s >= 500)
        }
        (SdkError::ServiceError(_), None) => status.is_some_and(|s| s == 429 || s >= 500),
        (SdkError::ConstructionFailure(_), _) => false,
        _ => true,
    };
    QueueError {
        retryable,
        detail: format!(
            "{what}: {}{}",
            code.map(|c| format!("{c}: ")).unwrap_or_default(),
            e.as_service_error()
                .and_then(|s| s.message())
                .map_or_else(|| format!("{e:?}"), str::to_string)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(slot: usize, lane: Lane) -> Job {
        Job {
            video_id: "v".into(),
            slot,
            lane,
            etags: Vec::new(),
        }
    }

    #[test]
    fn a_batch_goes_priority_first_in_groups_of_ten_per_lane_in_order() {
        let mut jobs: Vec<Job> = (0..12).map(|s| job(s, Lane::Normal)).collect();
        jobs.insert(5, job(99, Lane::Priority));
        let requests = batch_requests(&jobs);
        let shape: Vec<(Lane, Vec<usize>)> = requests
            .iter()
            .map(|(lane, group)| (*lane, group.iter().map(|j| j.slot).collect()))
            .collect();
        assert_eq!(
            shape,
            [
                (Lane::Priority, vec![99]),
                (Lane::Normal, (0..10).collect()),
                (Lane::Normal, vec![10, 11]),
            ]
        );
        assert!(batch_requests(&[]).is_empty());
    }
}
