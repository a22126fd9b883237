//! Provisions the bucket and the job queues by deploying `infra/storage.yaml`
//! — the same template the cloud stack nests — with CloudFormation (LocalStack
//! locally). There is no second definition of these resources in code.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{bail, Context};
use aws_sdk_cloudformation::error::ProvideErrorMetadata;
use aws_sdk_cloudformation::types::{Parameter, StackStatus};
use aws_sdk_cloudformation::Client;

/// The storage template, embedded so the runner needs no file at run time.
pub const STORAGE_TEMPLATE: &str = include_str!("../../../infra/storage.yaml");

/// Queue settings: parameters of the storage template. The defaults are the
/// template's own (a test pins that they agree).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSettings {
    pub visibility_timeout_secs: u32,
    pub max_receive_count: u32,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            visibility_timeout_secs: 180,
            max_receive_count: 5,
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

/// `{prefix}-jobs-{lane}[-dlq]`, as `infra/storage.yaml` names the queues.
pub fn queue_name(prefix: &str, lane: &str, dlq: bool) -> String {
    format!("{prefix}-jobs-{lane}{}", if dlq { "-dlq" } else { "" })
}

/// The storage stack's name for a queue prefix.
pub fn stack_name(queue_prefix: &str) -> String {
    format!("{queue_prefix}-storage")
}

const POLL: Duration = Duration::from_millis(200);
const DEPLOY_TIMEOUT: Duration = Duration::from_secs(120);

/// Creates the storage stack `{queue_prefix}-storage`, or updates it to these
/// parameters when it exists, waits for it and returns its outputs.
pub async fn provision(
    cloudformation: &Client,
    bucket: &str,
    queue_prefix: &str,
    settings: &QueueSettings,
) -> anyhow::Result<Provisioned> {
    let stack = stack_name(queue_prefix);
    let parameters = [
        ("BucketName", bucket.to_string()),
        ("QueuePrefix", queue_prefix.to_string()),
        (
            "VisibilityTimeoutSecs",
            settings.visibility_timeout_secs.to_string(),
        ),
        ("MaxReceiveCount", settings.max_receive_count.to_string()),
    ]
    .map(|(k, v)| {
        Parameter::builder()
            .parameter_key(k)
            .parameter_value(v)
            .build()
    });

    match status(cloudformation, &stack).await? {
        None => create(cloudformation, &stack, &parameters).await?,
        // A failed first creation leaves a stack that can only be deleted.
        Some(StackStatus::RollbackComplete) => {
            cloudformation
                .delete_stack()
                .stack_name(&stack)
                .send()
                .await
                .with_context(|| format!("deleting failed stack {stack}"))?;
            wait(cloudformation, &stack).await?;
            create(cloudformation, &stack, &parameters).await?
        }
        Some(_) => {
            let updated = cloudformation
                .update_stack()
                .stack_name(&stack)
                .template_body(STORAGE_TEMPLATE)
                .set_parameters(Some(parameters.to_vec()))
                .send()
                .await;
            match updated {
                Ok(_) => {}
                Err(e) if e.message().is_some_and(|m| m.contains("No updates")) => {}
                Err(e) => return Err(e).with_context(|| format!("updating stack {stack}")),
            }
        }
    }
    let outputs = wait(cloudformation, &stack).await?;
    let output = |key: &str| {
        outputs
            .get(key)
            .cloned()
            .with_context(|| format!("stack {stack} has no output {key}"))
    };
    Ok(Provisioned {
        bucket: output("BucketName")?,
        priority_queue_url: output("PriorityQueueUrl")?,
        normal_queue_url: output("NormalQueueUrl")?,
        priority_dlq_url: output("PriorityDlqUrl")?,
        normal_dlq_url: output("NormalDlqUrl")?,
    })
}

async fn create(
    cloudformation: &Client,
    stack: &str,
    parameters: &[Parameter],
) -> anyhow::Result<()> {
    cloudformation
        .create_stack()
        .stack_name(stack)
        .template_body(STORAGE_TEMPLATE)
        .set_parameters(Some(parameters.to_vec()))
        .send()
        .await
        .with_context(|| format!("creating stack {stack}"))?;
    Ok(())
}

/// The stack's status, `None` if there is no such stack.
async fn status(cloudformation: &Client, stack: &str) -> anyhow::Result<Option<StackStatus>> {
    match cloudformation
        .describe_stacks()
        .stack_name(stack)
        .send()
        .await
    {
        Ok(out) => Ok(out
            .stacks()
            .first()
            .and_then(|s| s.stack_status().cloned())
            .filter(|s| *s != StackStatus::DeleteComplete)),
        Err(e) if e.message().is_some_and(|m| m.contains("does not exist")) => Ok(None),
        Err(e) => Err(e).with_context(|| format!("describing stack {stack}")),
    }
}

/// Waits until the stack leaves its `*_IN_PROGRESS` state; returns its outputs
/// if it ended complete, else the failure reasons from its events.
async fn wait(cloudformation: &Client, stack: &str) -> anyhow::Result<HashMap<String, String>> {
    let deadline = tokio::time::Instant::now() + DEPLOY_TIMEOUT;
    loop {
        let described = match cloudformation
            .describe_stacks()
            .stack_name(stack)
            .send()
            .await
        {
            Ok(out) => out,
            // Deleted while we waited (the delete of a failed stack).
            Err(e) if e.message().is_some_and(|m| m.contains("does not exist")) => {
                return Ok(HashMap::new())
            }
            Err(e) => return Err(e).with_context(|| format!("describing stack {stack}")),
        };
        let Some(s) = described.stacks().first() else {
            bail!("stack {stack} vanished");
        };
        let status = s
            .stack_status()
            .cloned()
            .unwrap_or(StackStatus::CreateInProgress);
        let name = status.as_str();
        if !name.ends_with("_IN_PROGRESS") {
            if matches!(
                status,
                StackStatus::CreateComplete
                    | StackStatus::UpdateComplete
                    | StackStatus::DeleteComplete
            ) {
                return Ok(s
                    .outputs()
                    .iter()
                    .filter_map(|o| {
                        Some((o.output_key()?.to_string(), o.output_value()?.to_string()))
                    })
                    .collect());
            }
            bail!(
                "stack {stack} ended {name}: {}",
                failure_reasons(cloudformation, stack).await
            );
        }
        if tokio::time::Instant::now() > deadline {
            bail!("stack {stack} still {name} after {DEPLOY_TIMEOUT:?}");
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn failure_reasons(cloudformation: &Client, stack: &str) -> String {
    let Ok(events) = cloudformation
        .describe_stack_events()
        .stack_name(stack)
        .send()
        .await
    else {
        return "(no events)".into();
    };
    events
        .stack_events()
        .iter()
        .filter(|e| {
            e.resource_status()
                .is_some_and(|s| s.as_str().ends_with("_FAILED"))
        })
        .filter_map(|e| {
            Some(format!(
                "{}: {}",
                e.logical_resource_id()?,
                e.resource_status_reason().unwrap_or("?")
            ))
        })
        .collect::<Vec<_>>()
        .join("; ")
}
