//! The local runner's stand-in for Lambda's SQS event source mappings: it
//! polls the priority queue first, then the normal one, and hands each batch
//! to the same [`handle_batch`] Lambda calls. Successful messages are deleted;
//! failed ones become visible again and, past maxReceiveCount, go to the DLQ.

use std::time::{Duration, Instant};

use anyhow::Context;
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use aws_sdk_sqs::types::DeleteMessageBatchRequestEntry;

use crate::worker::{handle_batch, Worker};

/// How long one batch may take: the worker Lambda's timeout (infra/template.yaml),
/// well inside the queues' visibility timeout.
pub const LOCAL_BATCH_BUDGET: Duration = Duration::from_secs(30);

/// Polling settings of the local event source.
#[derive(Debug, Clone)]
pub struct PollerSettings {
    pub priority_url: String,
    pub normal_url: String,
    /// Normal jobs taken per batch: small, so a priority job never waits long behind one.
    pub normal_batch: i32,
    /// Long-poll on the priority queue while both are empty.
    pub idle_wait_secs: i32,
}

async fn receive(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    max: i32,
    wait_secs: i32,
) -> anyhow::Result<Vec<aws_sdk_sqs::types::Message>> {
    let out = sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(max)
        .wait_time_seconds(wait_secs)
        .message_system_attribute_names(
            aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount,
        )
        .send()
        .await
        .with_context(|| format!("receiving from {url}"))?;
    Ok(out.messages.unwrap_or_default())
}

fn to_event(messages: &[aws_sdk_sqs::types::Message], source_arn: &str) -> SqsEvent {
    let mut event = SqsEvent::default();
    event.records = messages
        .iter()
        .map(|m| {
            let mut record = SqsMessage::default();
            record.message_id = m.message_id.clone();
            record.receipt_handle = m.receipt_handle.clone();
            record.body = m.body.clone();
            record.event_source = Some("aws:sqs".into());
            record.event_source_arn = Some(source_arn.into());
            record
        })
        .collect();
    event
}

/// Runs one poll-and-handle round; returns how many messages it handled.
pub async fn poll_once(
    sqs: &aws_sdk_sqs::Client,
    worker: &Worker,
    settings: &PollerSettings,
    wait: bool,
) -> anyhow::Result<usize> {
    let mut url = settings.priority_url.as_str();
    let mut messages = receive(sqs, url, 10, 0).await?;
    if messages.is_empty() {
        url = settings.normal_url.as_str();
        messages = receive(sqs, url, settings.normal_batch, 0).await?;
    }
    if messages.is_empty() && wait {
        url = settings.priority_url.as_str();
        messages = receive(sqs, url, 10, settings.idle_wait_secs).await?;
    }
    if messages.is_empty() {
        return Ok(0);
    }
    let deadline = Instant::now() + LOCAL_BATCH_BUDGET;
    let response = handle_batch(worker, to_event(&messages, url), Some(deadline)).await;
    let failed: std::collections::HashSet<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    let entries: Vec<DeleteMessageBatchRequestEntry> = messages
        .iter()
        .filter(|m| !failed.contains(m.message_id.as_deref().unwrap_or_default()))
        .enumerate()
        .filter_map(|(i, m)| {
            DeleteMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .set_receipt_handle(m.receipt_handle.clone())
                .build()
                .ok()
        })
        .collect();
    if !entries.is_empty() {
        sqs.delete_message_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .send()
            .await
            .context("deleting handled messages")?;
    }
    Ok(messages.len())
}

/// Polls forever (until the task is dropped).
pub async fn run_poller(sqs: aws_sdk_sqs::Client, worker: Worker, settings: PollerSettings) {
    loop {
        if let Err(e) = poll_once(&sqs, &worker, &settings, true).await {
            tracing::warn!(error = format!("{e:#}"), "poller round failed");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}
