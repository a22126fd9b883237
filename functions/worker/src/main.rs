//! The worker Lambda. SQS batches (from either lane's event source mapping) go
//! to the shared batch handler; an EventBridge schedule event runs the reaper.

use aws_lambda_events::event::sqs::SqsEvent;
use chunkstream::owner::{self, OwnerConfig};
use chunkstream::queue::SqsQueues;
use chunkstream::sessions::Sessions;
use chunkstream::store::S3Store;
use chunkstream::worker::{handle_batch, Worker};
use chunkstream::{aws, config::Config, reaper, telemetry};
use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Lambda's deadline (ms since the epoch) as an `Instant` on this clock.
fn invocation_deadline(deadline_ms: u64) -> Instant {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    Instant::now() + Duration::from_millis(deadline_ms.saturating_sub(now_ms))
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init_tracing();
    let config = Config::from_env()?;
    let aws_config = aws::sdk_config_from_lambda_env()?;
    let clients = aws::clients(&aws_config);
    let sessions = Sessions::new(Arc::new(S3Store::new(
        clients.s3.clone(),
        config.bucket.clone(),
    )))
    .with_feed_signal(chunkstream::feed_signal(&config, &clients));
    let worker = Worker::new(sessions.clone());
    let queue = Arc::new(SqsQueues::new(
        clients.sqs.clone(),
        config.priority_queue_url.clone(),
        config.normal_queue_url.clone(),
    ));
    let reap_settings = reaper::ReapSettings::from_config(&config);
    let owners = owner::owner_state_from_env(
        OwnerConfig::from_env()?,
        sessions.clone(),
        config.public_base_url.clone(),
        config.presign_ttl,
        &aws_config,
    );
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let worker = worker.clone();
        let sessions = sessions.clone();
        let queue = queue.clone();
        let owners = owners.clone();
        async move {
            if event.payload.get("Records").is_some() {
                let deadline = invocation_deadline(event.context.deadline);
                let batch: SqsEvent = serde_json::from_value(event.payload)?;
                Ok::<Value, lambda_runtime::Error>(serde_json::to_value(
                    handle_batch(&worker, batch, Some(deadline)).await,
                )?)
            } else {
                let report =
                    reaper::reap_abandoned(&sessions, queue.as_ref(), &reap_settings).await?;
                // Retention runs with the reaper (same schedule).
                let retention = owner::expire_due(&owners).await?;
                Ok(serde_json::json!({"reaper": report, "retention": retention}))
            }
        }
    }))
    .await
}
