//! The local runner: deploys the storage stack (infra/storage.yaml) on
//! LocalStack, serves the API Router plus the static web pages on 127.0.0.1,
//! plays Lambda's SQS event source mappings (priority queue first) and runs
//! the reaper periodically.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use chunkstream::config::Config;
use chunkstream::local::{run_poller, PollerSettings};
use chunkstream::owner::{self, OwnerConfig};
use chunkstream::provision::{provision, QueueSettings};
use chunkstream::worker::Worker;
use chunkstream::{api, app_state, aws, reaper, telemetry};
use tower_http::services::ServeDir;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_string())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init_tracing();
    let listen: SocketAddr = env_or("CHUNKSTREAM_LISTEN", "127.0.0.1:8080")
        .parse()
        .context("CHUNKSTREAM_LISTEN must be host:port")?;
    let bucket = env_or("CHUNKSTREAM_BUCKET", "chunkstream-local");
    let queue_prefix = env_or("CHUNKSTREAM_QUEUE_PREFIX", "chunkstream");
    let web_dir = env_or("CHUNKSTREAM_WEB_DIR", "web/dist");
    let reap_every = Duration::from_secs(
        env_or("CHUNKSTREAM_REAP_INTERVAL_SECS", "300")
            .parse()
            .context("CHUNKSTREAM_REAP_INTERVAL_SECS")?,
    );

    let aws_config = aws::sdk_config_from_env().await;
    let clients = aws::clients(&aws_config);
    let cloudformation = aws::cloudformation_from_env().await;
    let queues = provision(
        &cloudformation,
        &bucket,
        &queue_prefix,
        &QueueSettings::default(),
    )
    .await
    .context(
        "deploying infra/storage.yaml on LocalStack (is it running with cloudformation? \
         see localstack/start.sh)",
    )?;
    let config = Config::from_env_with(&[
        ("CHUNKSTREAM_BUCKET", bucket.clone()),
        (
            "CHUNKSTREAM_PRIORITY_QUEUE_URL",
            queues.priority_queue_url.clone(),
        ),
        (
            "CHUNKSTREAM_NORMAL_QUEUE_URL",
            queues.normal_queue_url.clone(),
        ),
        // The same wake-up as in the cloud: per-video feed queues beside the job queues.
        (
            "CHUNKSTREAM_FEED_QUEUE_PREFIX",
            env_or(
                "CHUNKSTREAM_FEED_QUEUE_PREFIX",
                &format!("{queue_prefix}-feed-"),
            ),
        ),
        (
            "CHUNKSTREAM_PUBLIC_BASE_URL",
            env_or("CHUNKSTREAM_PUBLIC_BASE_URL", &format!("http://{listen}")),
        ),
    ])?;
    let reap_settings = reaper::ReapSettings::from_config(&config);
    let owner_config = OwnerConfig::from_env()?;
    let state = app_state(config, &clients);
    let owners = owner::owner_state_from_env(
        owner_config,
        state.sessions.clone(),
        state.config.public_base_url.clone(),
        state.config.presign_ttl,
        &aws_config,
    );
    // Keys are required unless CHUNKSTREAM_AUTH=open: a development key per start.
    let dev_key = if owners.config.auth.open {
        None
    } else {
        let issued = owners
            .auth
            .keys()
            .issue("dev", "local runner")
            .await
            .context("issuing the development API key")?;
        Some(issued.key)
    };

    let worker = Worker::new(state.sessions.clone());
    tokio::spawn(run_poller(
        clients.sqs.clone(),
        worker,
        PollerSettings {
            priority_url: queues.priority_queue_url,
            normal_url: queues.normal_queue_url,
            normal_batch: 2,
            idle_wait_secs: 1,
        },
    ));
    let reaper_sessions = state.sessions.clone();
    let reaper_queue = state.queue.clone();
    let reaper_owners = owners.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(reap_every);
        loop {
            tick.tick().await;
            match reaper::reap_abandoned(&reaper_sessions, reaper_queue.as_ref(), &reap_settings)
                .await
            {
                Ok(report)
                    if !report.reaped.is_empty()
                        || !report.redriven.is_empty()
                        || !report.errors.is_empty() =>
                {
                    tracing::info!(?report, "reaper")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = format!("{e:#}"), "reaper failed"),
            }
            match owner::expire_due(&reaper_owners).await {
                Ok(r) if !r.expired.is_empty() || !r.swept.is_empty() => {
                    tracing::info!(report = ?r, "retention")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "retention pass failed"),
            }
        }
    });

    let app = owner::wrap(api::app(state), owners).fallback_service(ServeDir::new(&web_dir));
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    tracing::info!(%listen, %web_dir, %bucket, "runner ready");
    println!("Chunkstream is running: open http://{listen}/");
    match &dev_key {
        Some(key) => println!(
            "Development API key (owner 'dev'; the page asks for it once): {key}\n\
             (CHUNKSTREAM_AUTH=open runs without keys; chunkstream-admin issues more)"
        ),
        None => println!("Running open (CHUNKSTREAM_AUTH=open): no API key needed"),
    }
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("serving")?;
    Ok(())
}
