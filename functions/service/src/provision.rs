//! Idempotent provisioning of the bucket and the queues, with the same names
//! and settings as the cloud template (infra/template.yaml).

use anyhow::Context;
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::types::{CorsConfiguration, CorsRule};
use aws_sdk_sqs::types::QueueAttributeName;

use crate::aws::AwsClients;

/// Queue settings shared with infra/template.yaml.
#[derive(Debug, Clone)]
pub struct QueueSettings {
    pub visibility_timeout_secs: u32,
    pub max_receive_count: u32,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            visibility_timeout_secs: 60,
            max_receive_count: 3,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Provisioned {
    pub bucket: String,
    pub priority_queue_url: String,
    pub normal_queue_url: String,
    pub priority_dlq_url: String,
    pub normal_dlq_url: String,
}

pub fn queue_name(prefix: &str, lane: &str, dlq: bool) -> String {
    format!("{prefix}-jobs-{lane}{}", if dlq { "-dlq" } else { "" })
}

pub async fn provision(
    clients: &AwsClients,
    bucket: &str,
    queue_prefix: &str,
    settings: &QueueSettings,
) -> anyhow::Result<Provisioned> {
    ensure_bucket(clients, bucket).await?;
    let (priority_dlq_url, priority_queue_url) =
        ensure_lane(clients, queue_prefix, "priority", settings).await?;
    let (normal_dlq_url, normal_queue_url) =
        ensure_lane(clients, queue_prefix, "normal", settings).await?;
    Ok(Provisioned {
        bucket: bucket.to_string(),
        priority_queue_url,
        normal_queue_url,
        priority_dlq_url,
        normal_dlq_url,
    })
}

async fn ensure_bucket(clients: &AwsClients, bucket: &str) -> anyhow::Result<()> {
    if let Err(e) = clients.s3.create_bucket().bucket(bucket).send().await {
        let code = e
            .as_service_error()
            .and_then(|s| s.code())
            .unwrap_or_default()
            .to_string();
        if code != "BucketAlreadyOwnedByYou" && code != "BucketAlreadyExists" {
            return Err(e).with_context(|| format!("creating bucket {bucket}"));
        }
    }
    // Browsers PUT segments straight to S3 and read them back from any origin.
    let rule = CorsRule::builder()
        .allowed_origins("*")
        .allowed_methods("GET")
        .allowed_methods("PUT")
        .allowed_methods("HEAD")
        .allowed_headers("*")
        .expose_headers("ETag")
        .max_age_seconds(3600)
        .build()
        .context("building CORS rule")?;
    clients
        .s3
        .put_bucket_cors()
        .bucket(bucket)
        .cors_configuration(
            CorsConfiguration::builder()
                .cors_rules(rule)
                .build()
                .context("CORS")?,
        )
        .send()
        .await
        .with_context(|| format!("setting CORS on {bucket}"))?;
    Ok(())
}

async fn ensure_queue(
    clients: &AwsClients,
    name: &str,
    attributes: Vec<(QueueAttributeName, String)>,
) -> anyhow::Result<String> {
    let created = clients
        .sqs
        .create_queue()
        .queue_name(name)
        .set_attributes(Some(attributes.iter().cloned().collect()))
        .send()
        .await;
    match created {
        Ok(out) => out
            .queue_url
            .with_context(|| format!("no URL for queue {name}")),
        Err(_) => {
            // Exists with other attributes: bring it in line.
            let url = clients
                .sqs
                .get_queue_url()
                .queue_name(name)
                .send()
                .await
                .with_context(|| format!("creating or finding queue {name}"))?
                .queue_url
                .with_context(|| format!("no URL for queue {name}"))?;
            clients
                .sqs
                .set_queue_attributes()
                .queue_url(&url)
                .set_attributes(Some(attributes.into_iter().collect()))
                .send()
                .await
                .with_context(|| format!("updating queue {name}"))?;
            Ok(url)
        }
    }
}

async fn ensure_lane(
    clients: &AwsClients,
    prefix: &str,
    lane: &str,
    settings: &QueueSettings,
) -> anyhow::Result<(String, String)> {
    let dlq_name = queue_name(prefix, lane, true);
    let dlq_url = ensure_queue(
        clients,
        &dlq_name,
        vec![(
            QueueAttributeName::MessageRetentionPeriod,
            (14 * 24 * 3600).to_string(),
        )],
    )
    .await?;
    let dlq_arn = clients
        .sqs
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .with_context(|| format!("reading ARN of {dlq_name}"))?
        .attributes
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .with_context(|| format!("no ARN for {dlq_name}"))?;
    let redrive = serde_json::json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": settings.max_receive_count});
    let url = ensure_queue(
        clients,
        &queue_name(prefix, lane, false),
        vec![
            (
                QueueAttributeName::VisibilityTimeout,
                settings.visibility_timeout_secs.to_string(),
            ),
            (QueueAttributeName::RedrivePolicy, redrive.to_string()),
        ],
    )
    .await?;
    Ok((dlq_url, url))
}
