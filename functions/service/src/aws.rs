//! Builds the AWS clients once per process, from the environment
//! (`AWS_ENDPOINT_URL`, `AWS_REGION`, credentials...). Against LocalStack
//! (an endpoint override is set) S3 uses path-style addressing.
//!
//! Two ways to read the environment:
//! - [`sdk_config_from_env`]: aws-config's full provider chain (profiles, SSO
//!   caches, IMDS, web identity): the local runner and the admin command, run by
//!   people with whatever credentials they have;
//! - [`sdk_config_from_lambda_env`]: the variables Lambda sets for every
//!   function (the role's credentials and the region), read once. The Lambda
//!   bootstraps use only this, so the provider chain (and its STS client) is
//!   not linked into them (docs/benchmarks.md, "Lambda functions").

use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;
use aws_sdk_s3::config::{BehaviorVersion, Region, SharedHttpClient};
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
use aws_types::SdkConfig;

/// What Lambda's environment lacks to build the clients.
#[derive(Debug, thiserror::Error)]
#[error(
    "{0} is not set (Lambda sets it for every function; set it when running a bootstrap by hand)"
)]
pub struct MissingVariable(&'static str);

pub struct AwsClients {
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
    /// The configuration's credentials and region, for URLs signed by hand
    /// (the uploaders' wake-up URLs; the SDK presigns only S3 here).
    pub signing: Option<(
        aws_credential_types::provider::SharedCredentialsProvider,
        String,
    )>,
}

/// The credentials and region of `shared`, when it has both.
pub fn signing_of(
    shared: &SdkConfig,
) -> Option<(
    aws_credential_types::provider::SharedCredentialsProvider,
    String,
)> {
    Some((
        shared.credentials_provider()?,
        shared.region()?.as_ref().to_string(),
    ))
}

/// The SDK's own hyper + rustls HTTPS client (system roots), on ring rather than the
/// default aws-lc: the SDK crates are built without "default-https-client" (Cargo.toml),
/// so every configuration gets this one.
pub fn https_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// aws-config's default chain (region, credentials, endpoint from env or profile).
pub async fn sdk_config_from_env() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(https_client())
        .load()
        .await
}

/// The configuration from Lambda's own variables: `AWS_REGION`,
/// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN` (the
/// execution role's credentials, valid for the execution environment's life)
/// and an optional `AWS_ENDPOINT_URL`.
pub fn sdk_config_from_lambda_env() -> Result<SdkConfig, MissingVariable> {
    sdk_config_from_vars(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
}

fn sdk_config_from_vars(
    var: impl Fn(&'static str) -> Option<String>,
) -> Result<SdkConfig, MissingVariable> {
    let need = |name| var(name).ok_or(MissingVariable(name));
    let credentials = Credentials::new(
        need("AWS_ACCESS_KEY_ID")?,
        need("AWS_SECRET_ACCESS_KEY")?,
        var("AWS_SESSION_TOKEN"),
        None,
        "lambda-environment",
    );
    let mut builder = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(need("AWS_REGION")?))
        .http_client(https_client())
        .credentials_provider(SharedCredentialsProvider::new(credentials));
    if let Some(endpoint) = var("AWS_ENDPOINT_URL") {
        builder = builder.endpoint_url(endpoint);
    }
    Ok(builder.build())
}

/// The S3 and SQS clients of one configuration.
pub fn clients(shared: &SdkConfig) -> AwsClients {
    let path_style = shared.endpoint_url().is_some()
        || std::env::var("CHUNKSTREAM_S3_PATH_STYLE").is_ok_and(|v| v == "1" || v == "true");
    let s3_config = aws_sdk_s3::config::Builder::from(shared)
        .force_path_style(path_style)
        .build();
    AwsClients {
        s3: aws_sdk_s3::Client::from_conf(s3_config),
        sqs: aws_sdk_sqs::Client::new(shared),
        signing: signing_of(shared),
    }
}

/// [`clients`] of [`sdk_config_from_env`].
pub async fn clients_from_env() -> AwsClients {
    clients(&sdk_config_from_env().await)
}

/// A CloudFormation client from the same environment: the local runner deploys
/// the storage stack with it ([`crate::provision`]).
#[cfg(feature = "provision")]
pub async fn cloudformation_from_env() -> aws_sdk_cloudformation::Client {
    aws_sdk_cloudformation::Client::new(&sdk_config_from_env().await)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn vars(pairs: &[(&'static str, &str)]) -> impl Fn(&'static str) -> Option<String> {
        let map: HashMap<&'static str, String> =
            pairs.iter().map(|(k, v)| (*k, v.to_string())).collect();
        move |name| map.get(name).cloned()
    }

    const LAMBDA: [(&str, &str); 4] = [
        ("AWS_REGION", "eu-west-1"),
        ("AWS_ACCESS_KEY_ID", "ASIAEXAMPLE"),
        ("AWS_SECRET_ACCESS_KEY", "secret"),
        ("AWS_SESSION_TOKEN", "token"),
    ];

    #[test]
    fn the_lambda_environment_gives_region_credentials_and_no_endpoint_override() {
        let Ok(config) = sdk_config_from_vars(vars(&LAMBDA)) else {
            panic!("the Lambda variables were refused");
        };
        assert_eq!(config.region().map(|r| r.as_ref()), Some("eu-west-1"));
        assert!(config.credentials_provider().is_some());
        assert_eq!(config.endpoint_url(), None);
        // the SDK crates have no default client (Cargo.toml): without this every call fails
        assert!(config.http_client().is_some(), "no HTTP client");
    }

    #[test]
    fn an_endpoint_override_is_taken_from_aws_endpoint_url() {
        let mut pairs = LAMBDA.to_vec();
        pairs.push(("AWS_ENDPOINT_URL", "http://127.0.0.1:4566"));
        let Ok(config) = sdk_config_from_vars(vars(&pairs)) else {
            panic!("the Lambda variables were refused");
        };
        assert_eq!(config.endpoint_url(), Some("http://127.0.0.1:4566"));
    }

    #[test]
    fn a_missing_lambda_variable_is_named() {
        for missing in ["AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
            let pairs: Vec<_> = LAMBDA
                .iter()
                .copied()
                .filter(|(k, _)| *k != missing)
                .collect();
            let Err(err) = sdk_config_from_vars(vars(&pairs)) else {
                panic!("{missing} missing, yet a configuration was built");
            };
            assert!(err.to_string().starts_with(missing), "{err}");
        }
    }
}
