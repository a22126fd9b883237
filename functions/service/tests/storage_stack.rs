//! infra/storage.yaml deployed with CloudFormation on LocalStack: the queues
//! and the bucket come out as the template says, and deploying again is a no-op.
#![allow(clippy::unwrap_used)]

mod common;

use aws_sdk_sqs::types::QueueAttributeName;
use chunkstream::provision::{provision, queue_name, QueueSettings};
use common::{localstack_clients, localstack_cloudformation, unique};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_storage_stack_creates_both_lanes_with_their_dlqs_and_the_bucket_cors() {
    let clients = localstack_clients().await;
    let cloudformation = localstack_cloudformation().await;
    let name = unique("cs-stack");
    let settings = QueueSettings::default();
    let first = provision(&cloudformation, &name, &name, &settings)
        .await
        .expect("LocalStack must run with cloudformation (localstack/start.sh)");
    assert_eq!(first.bucket, name);

    for (url, dlq_url, lane) in [
        (
            &first.priority_queue_url,
            &first.priority_dlq_url,
            "priority",
        ),
        (&first.normal_queue_url, &first.normal_dlq_url, "normal"),
    ] {
        assert!(url.ends_with(&queue_name(&name, lane, false)), "{url}");
        assert!(
            dlq_url.ends_with(&queue_name(&name, lane, true)),
            "{dlq_url}"
        );
        let attrs = clients
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::All)
            .send()
            .await
            .unwrap()
            .attributes
            .unwrap();
        assert_eq!(
            attrs[&QueueAttributeName::VisibilityTimeout],
            settings.visibility_timeout_secs.to_string()
        );
        let redrive: serde_json::Value =
            serde_json::from_str(&attrs[&QueueAttributeName::RedrivePolicy]).unwrap();
        assert_eq!(
            redrive["maxReceiveCount"].to_string().trim_matches('"'),
            settings.max_receive_count.to_string()
        );
        let dlq_arn = redrive["deadLetterTargetArn"].as_str().unwrap();
        assert!(
            dlq_arn.ends_with(&queue_name(&name, lane, true)),
            "{dlq_arn}"
        );
    }

    let cors = clients
        .s3
        .get_bucket_cors()
        .bucket(&name)
        .send()
        .await
        .unwrap();
    let rule = &cors.cors_rules()[0];
    assert!(rule.allowed_methods().iter().any(|m| m == "PUT"));
    assert!(rule.allowed_headers().iter().any(|h| h == "content-type"));
    assert!(rule.expose_headers().iter().any(|h| h == "ETag"));

    // A second deploy (the runner's restart) finds the stack and changes nothing.
    let again = provision(&cloudformation, &name, &name, &settings)
        .await
        .unwrap();
    assert_eq!(again.priority_queue_url, first.priority_queue_url);
    assert_eq!(again.normal_dlq_url, first.normal_dlq_url);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redeploying_with_other_queue_settings_updates_the_queues() {
    let clients = localstack_clients().await;
    let cloudformation = localstack_cloudformation().await;
    let name = unique("cs-stack");
    provision(&cloudformation, &name, &name, &QueueSettings::default())
        .await
        .unwrap();
    let changed = QueueSettings {
        visibility_timeout_secs: 7,
        max_receive_count: 9,
    };
    let out = provision(&cloudformation, &name, &name, &changed)
        .await
        .unwrap();
    let attrs = clients
        .sqs
        .get_queue_attributes()
        .queue_url(&out.normal_queue_url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap();
    assert_eq!(attrs[&QueueAttributeName::VisibilityTimeout], "7");
    assert!(
        attrs[&QueueAttributeName::RedrivePolicy].contains('9'),
        "{:?}",
        attrs[&QueueAttributeName::RedrivePolicy]
    );
}
