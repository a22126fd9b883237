//! Removing a deleted video's copies from the CDN's edge caches. In the cloud
//! a CloudFront invalidation; locally (no CDN) nothing to do.

use async_trait::async_trait;

#[async_trait]
pub trait CdnInvalidator: Send + Sync {
    /// Invalidates these paths (`/v/<id>/*`).
    async fn invalidate(&self, paths: &[String]) -> Result<(), String>;
}

/// No CDN in front (the local runner).
pub struct NoCdn;

#[async_trait]
impl CdnInvalidator for NoCdn {
    async fn invalidate(&self, _paths: &[String]) -> Result<(), String> {
        Ok(())
    }
}

/// CloudFront's CreateInvalidation on one distribution.
pub struct CloudFrontInvalidator {
    client: aws_sdk_cloudfront::Client,
    distribution_id: String,
}

impl CloudFrontInvalidator {
    pub fn new(client: aws_sdk_cloudfront::Client, distribution_id: impl Into<String>) -> Self {
        Self {
            client,
            distribution_id: distribution_id.into(),
        }
    }
}

#[async_trait]
impl CdnInvalidator for CloudFrontInvalidator {
    async fn invalidate(&self, paths: &[String]) -> Result<(), String> {
        use aws_sdk_cloudfront::types::{InvalidationBatch, Paths};
        let paths = Paths::builder()
            .quantity(paths.len() as i32)
            .set_items(Some(paths.to_vec()))
            .build()
            .map_err(|e| e.to_string())?;
        // Unique per call: CloudFront treats a repeated reference as the same request.
        let reference = format!(
            "chunkstream-{}-{}",
            crate::sessions::now_ms(),
            rand::random::<u32>()
        );
        let batch = InvalidationBatch::builder()
            .paths(paths)
            .caller_reference(reference)
            .build()
            .map_err(|e| e.to_string())?;
        self.client
            .create_invalidation()
            .distribution_id(&self.distribution_id)
            .invalidation_batch(batch)
            .send()
            .await
            .map_err(|e| format!("{}", aws_sdk_cloudfront::error::DisplayErrorContext(e)))?;
        Ok(())
    }
}

/// A CloudFront client of the process's AWS configuration.
pub fn cloudfront(shared: &aws_types::SdkConfig) -> aws_sdk_cloudfront::Client {
    aws_sdk_cloudfront::Client::new(shared)
}
