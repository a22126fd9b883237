//! The priority feed's wake-up across processes: a viewer's new window, written
//! by one API instance, wakes the uploader's long poll held by another.
//!
//! Without it the held poll re-reads `windows.json` every 250 ms to notice a
//! change made elsewhere: 14 400 GETs per watched upload-hour, and up to 250 ms
//! between a seek and the uploader's lease. With the SQS adapter the poll waits
//! in an SQS long poll on a queue of its own video (one receive per wait, billed
//! per request, not per second) and a prioritize sends it one message; the
//! windows are then re-read only on a message, or every few seconds as a safety
//! net for a message lost or taken by another waiter.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aws_credential_types::provider::SharedCredentialsProvider;

use crate::queue::{sqs_error, QueueError};

/// A per-video doorbell between the writers of `windows.json` and the feed.
#[async_trait]
pub trait FeedSignal: Send + Sync {
    /// Whether a change made in another process reaches [`FeedSignal::wait`]
    /// (if not, the feed keeps re-reading the windows at the quick pace).
    fn crosses_processes(&self) -> bool;
    /// The video's windows changed: wake a feed waiting on it, in any process.
    /// Nobody waiting is not an error.
    async fn notify(&self, video_id: &str) -> Result<(), QueueError>;
    /// Waits up to `timeout` for a notification of this video; `true` if one came.
    async fn wait(&self, video_id: &str, timeout: Duration) -> Result<bool, QueueError>;
    /// The video is complete or gone: nothing will wait on it again.
    async fn close(&self, video_id: &str) -> Result<(), QueueError>;
    /// A URL the uploader itself can wait on (a plain GET held until the video's
    /// signal rings, or 20 s), so no Lambda is held while nobody watches; `None`
    /// if this signal has none.
    async fn wake_url(&self, _video_id: &str) -> Result<Option<String>, QueueError> {
        Ok(None)
    }
}

/// No cross-process signal: `wait` sleeps out its timeout.
#[derive(Default)]
pub struct NoFeedSignal;

#[async_trait]
impl FeedSignal for NoFeedSignal {
    fn crosses_processes(&self) -> bool {
        false
    }
    async fn notify(&self, _: &str) -> Result<(), QueueError> {
        Ok(())
    }
    async fn wait(&self, _: &str, timeout: Duration) -> Result<bool, QueueError> {
        tokio::time::sleep(timeout).await;
        Ok(false)
    }
    async fn close(&self, _: &str) -> Result<(), QueueError> {
        Ok(())
    }
}

/// The longest SQS long poll.
const MAX_RECEIVE_WAIT_SECS: u64 = 20;

/// The SQS adapter: one standard queue per video being uploaded, named
/// `{prefix}{video_id}`, made by the first wait and deleted by [`FeedSignal::close`]
/// (the feed once the video is complete, the reaper, an owner's delete).
/// Messages live 60 s: a doorbell nobody heard soon is worthless.
pub struct SqsFeedSignal {
    client: aws_sdk_sqs::Client,
    /// Signs the uploaders' wake-up URLs (`None`: they get none).
    signer: Option<WakeSigner>,
    /// A queue URL of the same account and region, up to its last `/`.
    url_base: String,
    prefix: String,
    /// Queues this process made (so a wait does not ask SQS again).
    made: Mutex<HashMap<String, String>>,
}

impl SqsFeedSignal {
    /// `sibling_queue_url`: any queue URL of the stack (the job queues'), to
    /// address the feed queues by name without a GetQueueUrl per call.
    pub fn new(client: aws_sdk_sqs::Client, sibling_queue_url: &str, prefix: &str) -> Self {
        let url_base = sibling_queue_url
            .rsplit_once('/')
            .map_or(sibling_queue_url, |(base, _)| base)
            .to_string();
        Self {
            client,
            signer: None,
            url_base,
            prefix: prefix.to_string(),
            made: Mutex::new(HashMap::new()),
        }
    }

    /// Wake-up URLs signed with these credentials, addressed to `public_endpoint`
    /// (scheme and authority) when clients reach SQS by another address.
    pub fn with_wake_urls(
        mut self,
        credentials: SharedCredentialsProvider,
        region: &str,
        public_endpoint: Option<&str>,
    ) -> Self {
        self.signer = Some(WakeSigner {
            credentials,
            region: region.to_string(),
            public_endpoint: public_endpoint.map(str::to_string),
        });
        self
    }

    fn name(&self, video_id: &str) -> String {
        format!("{}{video_id}", self.prefix)
    }

    fn url(&self, video_id: &str) -> String {
        format!("{}/{}", self.url_base, self.name(video_id))
    }

    fn made(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.made.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn ensure_queue(&self, video_id: &str) -> Result<String, QueueError> {
        if let Some(url) = self.made().get(video_id) {
            return Ok(url.clone());
        }
        let out = self
            .client
            .create_queue()
            .queue_name(self.name(video_id))
            .attributes(
                aws_sdk_sqs::types::QueueAttributeName::MessageRetentionPeriod,
                "60",
            )
            .send()
            .await
            .map_err(|e| sqs_error(e, "create the feed queue"))?;
        let url = out.queue_url.unwrap_or_else(|| self.url(video_id));
        self.made().insert(video_id.to_string(), url.clone());
        Ok(url)
    }
}

/// Whether `authority_and_path` (a URL after its `://`) names an AWS endpoint.
fn aws_host(authority_and_path: &str) -> bool {
    let host = authority_and_path
        .split(['/', ':'])
        .next()
        .unwrap_or_default();
    host.ends_with(".amazonaws.com") || host.ends_with(".amazonaws.com.cn")
}

fn queue_missing<E: aws_sdk_sqs::error::ProvideErrorMetadata>(e: &E) -> bool {
    matches!(
        e.code(),
        Some("AWS.SimpleQueueService.NonExistentQueue" | "QueueDoesNotExist")
    )
}

#[async_trait]
impl FeedSignal for SqsFeedSignal {
    fn crosses_processes(&self) -> bool {
        true
    }

    async fn notify(&self, video_id: &str) -> Result<(), QueueError> {
        match self
            .client
            .send_message()
            .queue_url(self.url(video_id))
            .message_body("windows changed")
            .send()
            .await
        {
            Ok(_) => Ok(()),
            // No feed has waited on this video yet: nobody to wake.
            Err(e) if e.as_service_error().is_some_and(queue_missing) => Ok(()),
            Err(e) => Err(sqs_error(e, "notify the feed queue")),
        }
    }

    async fn wait(&self, video_id: &str, timeout: Duration) -> Result<bool, QueueError> {
        // SQS waits in whole seconds: a shorter rest is slept (it only ends a poll).
        let secs = timeout.as_secs().min(MAX_RECEIVE_WAIT_SECS);
        if secs == 0 {
            tokio::time::sleep(timeout).await;
            return Ok(false);
        }
        let url = self.ensure_queue(video_id).await?;
        let received = self
            .client
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(10)
            .wait_time_seconds(secs as i32)
            // A receive cut short by an in-process wake-up hides what it took for 1 s only.
            .visibility_timeout(1)
            .send()
            .await;
        let messages = match received {
            Ok(out) => out.messages.unwrap_or_default(),
            Err(e) if e.as_service_error().is_some_and(queue_missing) => {
                // Closed by another process (the video completed or was deleted).
                self.made().remove(video_id);
                return Ok(false);
            }
            Err(e) => return Err(sqs_error(e, "wait on the feed queue")),
        };
        if messages.is_empty() {
            return Ok(false);
        }
        let mut batch = self.client.delete_message_batch().queue_url(&url);
        for (i, m) in messages.iter().enumerate() {
            if let Some(handle) = m.receipt_handle() {
                let entry = aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(handle)
                    .build()
                    .map_err(|e| QueueError {
                        retryable: false,
                        detail: e.to_string(),
                    })?;
                batch = batch.entries(entry);
            }
        }
        // A message left undeleted only wakes a feed once more, harmlessly.
        if let Err(e) = batch.send().await {
            tracing::warn!(video_id, error = %sqs_error(e, "delete feed messages"), "feed signal");
        }
        Ok(true)
    }

    async fn close(&self, video_id: &str) -> Result<(), QueueError> {
        self.made().remove(video_id);
        match self
            .client
            .delete_queue()
            .queue_url(self.url(video_id))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(queue_missing) => Ok(()),
            Err(e) => Err(sqs_error(e, "delete the feed queue")),
        }
    }

    async fn wake_url(&self, video_id: &str) -> Result<Option<String>, QueueError> {
        let Some(signer) = &self.signer else {
            return Ok(None);
        };
        let url = self.ensure_queue(video_id).await?;
        signer.sign(&url).await.map(Some)
    }
}

/// How long a wake-up URL stays valid (SQS honours at most 15 minutes); each
/// priority answer carries a fresh one.
pub const WAKE_URL_TTL: Duration = Duration::from_secs(600);

/// The uploader's own long poll on its feed queue: SQS's query API as a
/// presigned GET. The answer is never read (a browser gets it as an opaque
/// cross-origin response); that it came back is the news. A message is taken
/// for 60 s, its whole life, so each ring wakes one wait.
pub const WAKE_QUERY: &str =
    "Action=ReceiveMessage&MaxNumberOfMessages=10&Version=2012-11-05&VisibilityTimeout=60&WaitTimeSeconds=20";

struct WakeSigner {
    credentials: SharedCredentialsProvider,
    region: String,
    public_endpoint: Option<String>,
}

impl WakeSigner {
    async fn sign(&self, queue_url: &str) -> Result<String, QueueError> {
        use aws_credential_types::provider::ProvideCredentials;
        let credentials = self
            .credentials
            .provide_credentials()
            .await
            .map_err(|e| QueueError {
                retryable: true,
                detail: format!("credentials for the wake-up URL: {e}"),
            })?;
        let queue_url = match (&self.public_endpoint, queue_url.split_once("://")) {
            // The public endpoint stands for a local SQS (LocalStack behind another
            // address); AWS's own queue URLs are reachable as they are.
            (Some(_), Some((_, rest))) if aws_host(rest) => queue_url.to_string(),
            (Some(public), Some((_, rest))) => {
                let path = rest.find('/').map_or("", |i| &rest[i..]);
                format!("{public}{path}")
            }
            _ => queue_url.to_string(),
        };
        presign_wake(
            &queue_url,
            credentials,
            &self.region,
            std::time::SystemTime::now(),
        )
    }
}

/// `queue_url` + [`WAKE_QUERY`], presigned (SigV4 in the query, [`WAKE_URL_TTL`]).
fn presign_wake(
    queue_url: &str,
    credentials: aws_credential_types::Credentials,
    region: &str,
    time: std::time::SystemTime,
) -> Result<String, QueueError> {
    use aws_sigv4::http_request::{
        sign, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
    };
    let failed = |detail: String| QueueError {
        retryable: false,
        detail: format!("sign the wake-up URL: {detail}"),
    };
    let unsigned = format!("{queue_url}?{WAKE_QUERY}");
    let identity = credentials.into();
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(WAKE_URL_TTL);
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("sqs")
        .time(time)
        .settings(settings)
        .build()
        .map_err(|e| failed(e.to_string()))?
        .into();
    let request = SignableRequest::new(
        "GET",
        &unsigned,
        std::iter::empty(),
        SignableBody::Bytes(&[]),
    )
    .map_err(|e| failed(e.to_string()))?;
    let (instructions, _) = sign(request, &params)
        .map_err(|e| failed(e.to_string()))?
        .into_parts();
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (name, value) in instructions.params() {
        query.append_pair(name, value);
    }
    Ok(format!("{unsigned}&{}", query.finish()))
}

/// The in-memory fake, shared by every "process" (API state) of a test: a
/// notification waits for the next wait on its video, as an SQS message does.
#[derive(Default)]
pub struct MemoryFeedSignal {
    pending: Mutex<HashMap<String, usize>>,
    rung: tokio::sync::Notify,
    /// Calls made, for tests that pin what a path costs: (notify, wait, close).
    calls: Mutex<(usize, usize, usize)>,
}

impl MemoryFeedSignal {
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// (notifications, waits, closes) so far.
    pub fn calls(&self) -> (usize, usize, usize) {
        *self.calls.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn take(&self, video_id: &str) -> bool {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(video_id)
            .is_some()
    }
}

#[async_trait]
impl FeedSignal for MemoryFeedSignal {
    fn crosses_processes(&self) -> bool {
        true
    }

    async fn notify(&self, video_id: &str) -> Result<(), QueueError> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).0 += 1;
        *self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(video_id.to_string())
            .or_default() += 1;
        self.rung.notify_waiters();
        Ok(())
    }

    async fn wait(&self, video_id: &str, timeout: Duration) -> Result<bool, QueueError> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).1 += 1;
        let until = tokio::time::Instant::now() + timeout;
        loop {
            let rung = self.rung.notified();
            if self.take(video_id) {
                return Ok(true);
            }
            if tokio::time::timeout_at(until, rung).await.is_err() {
                return Ok(self.take(video_id));
            }
        }
    }

    async fn close(&self, video_id: &str) -> Result<(), QueueError> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).2 += 1;
        self.take(video_id);
        Ok(())
    }

    /// Names the video (nothing serves it: clients are not run against the fakes).
    async fn wake_url(&self, video_id: &str) -> Result<Option<String>, QueueError> {
        Ok(Some(format!("memory://feed/{video_id}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_notification_before_the_wait_is_not_lost_and_is_heard_once() {
        let s = MemoryFeedSignal::default();
        s.notify("v").await.expect("notify");
        assert!(s.wait("v", Duration::from_secs(5)).await.expect("wait"));
        assert!(!s.wait("v", Duration::from_secs(5)).await.expect("wait"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_wakes_on_its_own_video_only() {
        let s = Arc::new(MemoryFeedSignal::default());
        let waiter = {
            let s = s.clone();
            tokio::spawn(async move { s.wait("v", Duration::from_secs(20)).await.expect("wait") })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        s.notify("other").await.expect("notify");
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiter.is_finished());
        s.notify("v").await.expect("notify");
        let started = tokio::time::Instant::now();
        assert!(waiter.await.expect("the waiter ends"));
        assert!(started.elapsed() < Duration::from_millis(10));
    }

    /// The reference: botocore 1.42's `SigV4QueryAuth` (what the AWS CLI presigns with)
    /// for the same request, credentials and time.
    #[test]
    fn the_wake_up_url_is_signed_as_botocore_signs_it() {
        let time = std::time::UNIX_EPOCH + Duration::from_secs(1_796_644_800); // 2026-12-07T12:00:00Z
        let credentials = aws_credential_types::Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            Some("session/token+with=chars".into()),
            None,
            "test",
        );
        let url = presign_wake(
            "https://sqs.us-east-1.amazonaws.com/123456789012/cs-feed-AbC_d-1",
            credentials,
            "us-east-1",
            time,
        )
        .expect("signed");
        let (base, query) = url.split_once('?').expect("a query");
        assert_eq!(
            base,
            "https://sqs.us-east-1.amazonaws.com/123456789012/cs-feed-AbC_d-1"
        );
        let mut got: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        got.sort();
        let botocore = "Action=ReceiveMessage&MaxNumberOfMessages=10&Version=2012-11-05&VisibilityTimeout=60&WaitTimeSeconds=20&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20261207%2Fus-east-1%2Fsqs%2Faws4_request&X-Amz-Date=20261207T120000Z&X-Amz-Expires=600&X-Amz-SignedHeaders=host&X-Amz-Security-Token=session%2Ftoken%2Bwith%3Dchars&X-Amz-Signature=4dc4651b820fbdd518bb2ac389d20d9ad56c017b8048708dbecbcee961103485";
        let mut want: Vec<(String, String)> = form_urlencoded::parse(botocore.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        want.sort();
        assert_eq!(got, want);
    }

    #[test]
    fn only_local_queue_urls_are_readdressed_to_the_public_endpoint() {
        assert!(aws_host("sqs.us-east-1.amazonaws.com/123456789012/q"));
        assert!(aws_host("sqs.cn-north-1.amazonaws.com.cn/1/q"));
        assert!(!aws_host("127.0.0.1:4566/queue/us-east-1/000000000000/q"));
        assert!(!aws_host("localhost.localstack.cloud:4566/000000000000/q"));
    }

    #[test]
    fn feed_queues_are_addressed_beside_the_job_queues() {
        let conf = aws_sdk_sqs::Config::builder()
            .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
            .build();
        let s = SqsFeedSignal::new(
            aws_sdk_sqs::Client::from_conf(conf),
            "https://sqs.us-east-1.amazonaws.com/123456789012/cs-priority",
            "cs-feed-",
        );
        assert_eq!(
            s.url("AbC_d-1"),
            "https://sqs.us-east-1.amazonaws.com/123456789012/cs-feed-AbC_d-1"
        );
    }
}
