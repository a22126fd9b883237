//! Chunkstream's service layer: the S3 and SQS adapters behind narrow traits,
//! the HTTP API `Router`, the worker's batch handler, the reaper, and the
//! local runner's queue poller. Domain logic lives in `chunkstream-domain`.

pub mod api;
pub mod auth;
pub mod aws;
pub mod cdn;
pub mod clock;
pub mod config;
pub mod counting;
pub mod error;
pub mod faults;
pub mod feed_signal;
pub mod hints;
pub mod inits;
pub mod jwt;
pub mod jwt_ring;
pub mod keys;
pub mod live_slots;
pub mod local;
pub mod memory;
pub mod openapi;
pub mod owner;
pub mod previews;
#[cfg(feature = "provision")]
pub mod provision;
pub mod queue;
pub mod reaper;
pub mod rfc3339;
pub mod sessions;
pub mod store;
pub mod telemetry;
pub mod worker;

use std::sync::Arc;

/// Builds the API state from config and clients (once per process).
pub fn app_state(config: config::Config, clients: &aws::AwsClients) -> api::AppState {
    let store: Arc<dyn store::ObjectStore> = Arc::new(
        store::S3Store::new(clients.s3.clone(), config.bucket.clone())
            .with_presign_endpoint(config.s3_public_endpoint.as_deref()),
    );
    let queue = Arc::new(queue::SqsQueues::new(
        clients.sqs.clone(),
        config.priority_queue_url.clone(),
        config.normal_queue_url.clone(),
    ));
    let sessions = sessions::Sessions::new(store).with_feed_signal(feed_signal(&config, clients));
    api::AppState {
        config: Arc::new(config),
        sessions,
        queue,
        events: api::PriorityEvents::default(),
        hints: Default::default(),
    }
}

/// The feed's cross-process wake-up: per-video SQS queues beside the job queues
/// when `CHUNKSTREAM_FEED_QUEUE_PREFIX` is set, none otherwise.
pub fn feed_signal(
    config: &config::Config,
    clients: &aws::AwsClients,
) -> Arc<dyn feed_signal::FeedSignal> {
    match &config.feed_queue_prefix {
        Some(prefix) => {
            let signal = feed_signal::SqsFeedSignal::new(
                clients.sqs.clone(),
                &config.priority_queue_url,
                prefix,
            );
            Arc::new(match &clients.signing {
                Some((credentials, region)) => signal.with_wake_urls(
                    credentials.clone(),
                    region,
                    config.s3_public_endpoint.as_deref(),
                ),
                None => signal,
            })
        }
        None => Arc::new(feed_signal::NoFeedSignal),
    }
}
