//! Client for the Chunkstream HTTP API (docs/api.md): typed bodies, one attempt
//! per call; `retry` wraps calls with backoff on transient failures.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use chunkstream_domain::plan::SegmentPlan;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresignedUpload {
    #[serde(default)]
    pub track: Option<usize>,
    pub track_id: u32,
    #[serde(default = "put")]
    pub method: String,
    pub url: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub expires_at: String,
}

fn put() -> String {
    "PUT".into()
}

#[derive(Debug, Clone, Deserialize)]
pub struct CreateSessionResponse {
    pub video_id: String,
    pub upload_secret: String,
    pub watch_url: String,
    pub manifest_url: String,
    #[serde(default)]
    pub status_url: String,
    pub slot_count: usize,
    pub init_uploads: Vec<PresignedUpload>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct InitResponse {
    pub init_uploads: Vec<PresignedUpload>,
    #[serde(default)]
    pub released_leases: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub slot: usize,
    #[serde(default)]
    pub priority: bool,
    #[serde(default)]
    pub lease_expires_at: String,
    pub uploads: Vec<PresignedUpload>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct NextResponse {
    pub assignments: Vec<Assignment>,
    #[serde(default)]
    pub complete: bool,
    #[serde(default)]
    pub remaining: usize,
    #[serde(default)]
    pub priority_slots: Vec<usize>,
    /// One per part the call reported (`uploaded`), in its order (newer servers).
    #[serde(default)]
    pub reports: Vec<SlotReport>,
}

/// What became of one part reported in a `next` call: the same meaning as the single
/// route's answer ([`UploadedResponse`]), or `error` when the report was refused
/// (`upload_missing` / `upload_size_mismatch`: as that route's 409; `already_published`:
/// the part is public already).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotReport {
    pub slot: usize,
    /// `normal` or `priority`: the queue its check went to
    #[serde(default)]
    pub queue: String,
    #[serde(default)]
    pub enqueued: bool,
    #[serde(default)]
    pub published: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The answer of `POST /slots/{n}/uploaded` (a refusal is a 409 instead).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct UploadedResponse {
    #[serde(default)]
    pub queue: String,
    #[serde(default)]
    pub enqueued: bool,
    /// this call checked the part and published it (a part a viewer waits for)
    #[serde(default)]
    pub published: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PriorityResponse {
    #[serde(default)]
    pub version: Option<u64>,
    #[serde(default)]
    pub priority_slots: Vec<usize>,
    #[serde(default)]
    pub complete: bool,
    /// leased to this uploader by the server along with the answer (optional; newer servers)
    #[serde(default)]
    pub assignments: Option<Vec<Assignment>>,
    /// While nobody watches (newer servers with feed queues): instead of holding the
    /// poll, GET this URL ([`Api::wake`]; SQS holds it up to 20 s until a watch page
    /// opens or a viewer seeks), then ask again with `wait_ms=0`. Absent: hold the poll.
    #[serde(default)]
    pub wake_url: Option<String>,
    /// A watch page is open or a viewer waits for a part (newer servers): report each
    /// finished part at once. Absent: an answer without `wake_url` counts as watched.
    #[serde(default)]
    pub watched: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SlotState {
    Pending,
    Assigned,
    Uploaded,
    Published,
    Failed,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SlotStatus {
    pub start: f64,
    pub duration: f64,
    pub state: SlotState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusResponse {
    pub video_id: String,
    pub complete: bool,
    pub slot_count: usize,
    #[serde(default)]
    pub duration: f64,
    #[serde(default)]
    pub counts: BTreeMap<String, usize>,
    #[serde(default)]
    pub slots: Vec<SlotStatus>,
    #[serde(default)]
    pub priority_slots: Vec<usize>,
}

/// One of the owner's videos, as `GET /api/me/videos` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OwnedVideo {
    pub video_id: String,
    pub title: String,
    #[serde(default)]
    pub duration_secs: f64,
    #[serde(default)]
    pub size_bytes: u64,
    #[serde(default)]
    pub created_ms: u64,
    /// kept: exempt from retention
    #[serde(default)]
    pub kept: bool,
    /// when retention deletes it (ms since the epoch); none when kept or retention is off
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_ms: Option<u64>,
    /// `uploading`, `processing` (every part uploaded, not all published) or `ready`
    pub state: String,
    #[serde(default)]
    pub published_slots: usize,
    #[serde(default)]
    pub total_slots: usize,
    pub watch_url: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MyVideos {
    pub videos: Vec<OwnedVideo>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Deleted {
    pub video_id: String,
    #[serde(default)]
    pub deleted_objects: usize,
}

#[derive(Serialize)]
struct KeepRequest {
    kept: bool,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Serialize)]
struct NextRequest<'a> {
    max: usize,
    /// parts whose PUTs are done, reported in this call (omitted when none)
    #[serde(skip_serializing_if = "<[usize]>::is_empty")]
    uploaded: &'a [usize],
}

#[derive(Serialize)]
struct InitRequest {
    release_leases: bool,
}

/// Header names the HTTP client sets itself.
const DERIVED_HEADERS: &[&str] = &["content-length", "host", "connection", "transfer-encoding"];

#[derive(Clone)]
pub struct Api {
    base: String,
    http: reqwest::Client,
}

fn network(e: reqwest::Error) -> ApiError {
    ApiError::Network(e.to_string())
}

async fn error_from(res: reqwest::Response) -> ApiError {
    let status = res.status().as_u16();
    let text = res.text().await.unwrap_or_default();
    let (code, message) = match serde_json::from_str::<ErrorBody>(&text) {
        Ok(b) => (
            b.error.unwrap_or_else(|| format!("http_{status}")),
            b.message.unwrap_or_else(|| format!("HTTP {status}")),
        ),
        Err(_) => (format!("http_{status}"), format!("HTTP {status}")),
    };
    ApiError::Status {
        status,
        code,
        message,
    }
}

impl Api {
    pub fn new(base: &str) -> Result<Self, ApiError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(50))
            .build()
            .map_err(network)?;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            http,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
        secret: Option<&str>,
        timeout: Duration,
    ) -> Result<T, ApiError> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .timeout(timeout);
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        if let Some(s) = secret {
            req = req.bearer_auth(s);
        }
        let res = req.send().await.map_err(network)?;
        if !res.status().is_success() {
            return Err(error_from(res).await);
        }
        let bytes = res.bytes().await.map_err(network)?;
        serde_json::from_slice(&bytes).map_err(|e| ApiError::Decode(e.to_string()))
    }

    fn json<T: Serialize>(v: &T) -> Result<Vec<u8>, ApiError> {
        serde_json::to_vec(v).map_err(|e| ApiError::Decode(e.to_string()))
    }

    /// `{"max": …, "uploaded": […]}`, `uploaded` left out when there is nothing to report.
    fn next_body(max: usize, uploaded: &[usize]) -> Result<Vec<u8>, ApiError> {
        Self::json(&NextRequest {
            max: max.clamp(1, 16),
            uploaded,
        })
    }

    /// `key`: the uploader credential, sent as a bearer token where the server requires one.
    pub async fn create_session(
        &self,
        plan: &SegmentPlan,
        key: Option<&str>,
    ) -> Result<CreateSessionResponse, ApiError> {
        let body = Self::json(plan)?;
        self.call(
            reqwest::Method::POST,
            "/api/videos",
            Some(body),
            key,
            Duration::from_secs(30),
        )
        .await
    }

    pub async fn fresh_init_uploads(
        &self,
        id: &str,
        secret: &str,
    ) -> Result<InitResponse, ApiError> {
        let body = Self::json(&InitRequest {
            release_leases: true,
        })?;
        self.call(
            reqwest::Method::POST,
            &format!("/api/videos/{id}/init"),
            Some(body),
            Some(secret),
            Duration::from_secs(30),
        )
        .await
    }

    /// `POST next`: lease up to `max` parts (1..=16) and report `uploaded` (at most 16,
    /// no repeats: parts whose PUTs are done; the answer's `reports` says what became of each).
    pub async fn next(
        &self,
        id: &str,
        secret: &str,
        max: usize,
        uploaded: &[usize],
    ) -> Result<NextResponse, ApiError> {
        let body = Self::next_body(max, uploaded)?;
        self.call(
            reqwest::Method::POST,
            &format!("/api/videos/{id}/next"),
            Some(body),
            Some(secret),
            Duration::from_secs(30),
        )
        .await
    }

    pub async fn report_uploaded(
        &self,
        id: &str,
        secret: &str,
        slot: usize,
    ) -> Result<UploadedResponse, ApiError> {
        self.call(
            reqwest::Method::POST,
            &format!("/api/videos/{id}/slots/{slot}/uploaded"),
            None,
            Some(secret),
            Duration::from_secs(30),
        )
        .await
    }

    /// Long poll: answers when the viewers' priority windows change (or after `wait`).
    pub async fn priority(
        &self,
        id: &str,
        secret: &str,
        after: Option<u64>,
        wait: Duration,
    ) -> Result<PriorityResponse, ApiError> {
        let wait_ms = wait.as_millis().min(25_000);
        let mut path = format!("/api/videos/{id}/priority?wait_ms={wait_ms}");
        if let Some(v) = after {
            path.push_str(&format!("&after={v}"));
        }
        self.call(
            reqwest::Method::GET,
            &path,
            None,
            Some(secret),
            wait + Duration::from_secs(15),
        )
        .await
    }

    /// GET a priority answer's `wake_url`: a presigned SQS ReceiveMessage that SQS
    /// holds until a viewer opens a watch page or seeks (or 20 s). Only that it came
    /// back matters: the body is drained (so the connection can be reused), not read.
    /// A non-2xx answer is an error (`http_{status}`), as is `timeout` passing.
    pub async fn wake(&self, url: &str, timeout: Duration) -> Result<(), ApiError> {
        let res = self
            .http
            .get(url)
            .timeout(timeout)
            .send()
            .await
            .map_err(network)?;
        let status = res.status().as_u16();
        let ok = res.status().is_success();
        let _ = res.bytes().await;
        if ok {
            Ok(())
        } else {
            Err(ApiError::Status {
                status,
                code: format!("http_{status}"),
                message: format!("wake-up URL answered HTTP {status}"),
            })
        }
    }

    pub async fn status(&self, id: &str) -> Result<StatusResponse, ApiError> {
        self.call(
            reqwest::Method::GET,
            &format!("/api/videos/{id}/status"),
            None,
            None,
            Duration::from_secs(30),
        )
        .await
    }

    /// `GET /api/me/videos`: the videos of the key's owner, newest first.
    pub async fn my_videos(&self, key: Option<&str>) -> Result<MyVideos, ApiError> {
        self.call(
            reqwest::Method::GET,
            "/api/me/videos",
            None,
            key,
            Duration::from_secs(30),
        )
        .await
    }

    /// `DELETE /api/me/videos/{id}`: every object of the video.
    pub async fn delete_video(&self, id: &str, key: Option<&str>) -> Result<Deleted, ApiError> {
        self.call(
            reqwest::Method::DELETE,
            &format!("/api/me/videos/{id}"),
            None,
            key,
            Duration::from_secs(120),
        )
        .await
    }

    /// `POST /api/me/videos/{id}/keep`: exempt the video from retention (or not).
    pub async fn keep_video(
        &self,
        id: &str,
        kept: bool,
        key: Option<&str>,
    ) -> Result<OwnedVideo, ApiError> {
        let body = Self::json(&KeepRequest { kept })?;
        self.call(
            reqwest::Method::POST,
            &format!("/api/me/videos/{id}/keep"),
            Some(body),
            key,
            Duration::from_secs(30),
        )
        .await
    }

    /// PUT `body` to a presigned URL with exactly the headers it was signed over.
    pub async fn put(
        &self,
        upload: &PresignedUpload,
        body: reqwest::Body,
        timeout: Duration,
    ) -> Result<(), ApiError> {
        let method =
            reqwest::Method::from_bytes(upload.method.as_bytes()).unwrap_or(reqwest::Method::PUT);
        let mut req = self.http.request(method, &upload.url).timeout(timeout);
        for (k, v) in &upload.headers {
            if !DERIVED_HEADERS.contains(&k.to_ascii_lowercase().as_str()) {
                req = req.header(k, v);
            }
        }
        if let Some(len) = upload
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        {
            req = req.header("content-length", len.1);
        }
        let res = req.body(body).send().await.map_err(network)?;
        if res.status().is_success() {
            return Ok(());
        }
        let status = res.status().as_u16();
        let text = res.text().await.unwrap_or_default();
        let code = text
            .split("<Code>")
            .nth(1)
            .and_then(|s| s.split("</Code>").next())
            .map(str::to_owned)
            .unwrap_or_else(|| format!("http_{status}"));
        Err(ApiError::Status {
            status,
            message: format!("upload refused by storage: {status} {code}"),
            code,
        })
    }
}

/// Retries `f` on transient errors with jittered exponential backoff (0.5 s … 15 s),
/// calling `on_retry` before each wait; gives up after `max_attempts` (None: never).
pub async fn retry<T, F, Fut>(
    max_attempts: Option<u32>,
    mut on_retry: impl FnMut(&ApiError, u32, Duration),
    mut f: F,
) -> Result<T, ApiError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ApiError>>,
{
    let mut attempt = 0u32;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) => {
                attempt += 1;
                if !e.is_transient() || max_attempts.is_some_and(|m| attempt >= m) {
                    return Err(e);
                }
                let base = (500u64 << (attempt - 1).min(10)).min(15_000);
                let jitter = 0.75 + rand_unit() * 0.5;
                let delay = Duration::from_millis((base as f64 * jitter) as u64);
                on_retry(&e, attempt, delay);
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// A cheap uniform number in [0, 1) for backoff jitter (no need for a CSPRNG).
fn rand_unit() -> f64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    f64::from(nanos % 1_000_000) / 1_000_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(max: usize, uploaded: &[usize]) -> serde_json::Value {
        serde_json::from_slice(&Api::next_body(max, uploaded).expect("body")).expect("json")
    }

    #[test]
    fn a_next_call_without_reports_sends_only_max() {
        assert_eq!(body(3, &[]), serde_json::json!({ "max": 3 }));
        // the server's bounds
        assert_eq!(body(0, &[]), serde_json::json!({ "max": 1 }));
        assert_eq!(body(40, &[]), serde_json::json!({ "max": 16 }));
    }

    #[test]
    fn a_next_call_carries_the_reported_slots_in_order() {
        assert_eq!(
            body(2, &[14, 12, 13]),
            serde_json::json!({ "max": 2, "uploaded": [14, 12, 13] })
        );
    }

    #[test]
    fn a_next_answer_reads_its_reports_and_defaults_to_none() {
        let old: NextResponse =
            serde_json::from_str(r#"{"assignments": [], "complete": false, "remaining": 3}"#)
                .expect("an answer without reports");
        assert!(old.reports.is_empty());
        let r: NextResponse = serde_json::from_str(
            r#"{"assignments": [], "complete": false, "remaining": 3, "priority_slots": [],
                "reports": [
                  {"slot": 12, "queue": "normal", "enqueued": true, "published": false},
                  {"slot": 13, "queue": "priority", "enqueued": false, "published": true},
                  {"slot": 14, "queue": "normal", "enqueued": false, "published": false,
                   "error": "upload_missing", "message": "slot 14 track 0: nothing uploaded yet"}
                ]}"#,
        )
        .expect("an answer with reports");
        assert_eq!(r.reports.len(), 3);
        assert_eq!(r.reports[0].slot, 12);
        assert!(r.reports[0].enqueued && r.reports[0].error.is_none());
        assert_eq!(r.reports[1].queue, "priority");
        assert!(r.reports[1].published);
        assert_eq!(r.reports[2].error.as_deref(), Some("upload_missing"));
        assert!(r.reports[2]
            .message
            .as_deref()
            .is_some_and(|m| m.contains("14")));
    }

    #[test]
    fn the_single_routes_answer_says_whether_it_published() {
        let a: UploadedResponse = serde_json::from_str(
            r#"{"slot": 4, "queue": "priority", "enqueued": false, "published": true}"#,
        )
        .expect("answer");
        assert!(a.published && !a.enqueued);
        assert_eq!(a.queue, "priority");
    }
}
