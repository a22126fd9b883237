//! Builds the AWS clients once per process, from the environment
//! (`AWS_ENDPOINT_URL`, `AWS_REGION`, credentials...). Against LocalStack
//! (an endpoint override is set) S3 uses path-style addressing.

pub struct AwsClients {
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
}

pub async fn clients_from_env() -> AwsClients {
    let shared = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let path_style = std::env::var("AWS_ENDPOINT_URL").is_ok_and(|v| !v.is_empty())
        || std::env::var("CHUNKSTREAM_S3_PATH_STYLE").is_ok_and(|v| v == "1" || v == "true");
    let s3_config = aws_sdk_s3::config::Builder::from(&shared)
        .force_path_style(path_style)
        .build();
    AwsClients {
        s3: aws_sdk_s3::Client::from_conf(s3_config),
        sqs: aws_sdk_sqs::Client::new(&shared),
    }
}

/// A CloudFormation client from the same environment: the local runner deploys
/// the storage stack with it ([`crate::provision`]).
#[cfg(feature = "provision")]
pub async fn cloudformation_from_env() -> aws_sdk_cloudformation::Client {
    let shared = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    aws_sdk_cloudformation::Client::new(&shared)
}
