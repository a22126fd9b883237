//! The job queue capability: two lanes (priority, normal) and the SQS adapter.

use async_trait::async_trait;
use aws_sdk_sqs::error::ProvideErrorMetadata;
use chunkstream_domain::state::Lane;
use serde::{Deserialize, Serialize};

/// Process the uploaded segments of one slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub video_id: String,
    pub slot: usize,
    pub lane: Lane,
}

#[derive(Debug, thiserror::Error)]
#[error("job queue: {0}")]
pub struct QueueError(pub String);

#[async_trait]
pub trait JobQueue: Send + Sync {
    async fn enqueue(&self, job: &Job) -> Result<(), QueueError>;
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
        let body = serde_json::to_string(job).map_err(|e| QueueError(e.to_string()))?;
        self.client
            .send_message()
            .queue_url(self.url(job.lane))
            .message_body(body)
            .send()
            .await
            .map_err(|e| {
                QueueError(format!(
                    "send to {:?} lane: {}",
                    job.lane,
                    e.as_service_error()
                        .and_then(|s| s.message())
                        .map_or_else(|| format!("{e:?}"), str::to_string)
                ))
            })?;
        Ok(())
    }
}
