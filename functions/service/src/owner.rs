//! Owners of videos: who created each session, what they may still create
//! (quotas), what they can see and delete (the owner API), and how long
//! their videos live (retention).
//!
//! Everything here lives under `owners/` in the bucket, apart from the
//! session objects it reads and deletes:
//! - `owners/o/<owner id>/videos/<video id>.json`: one [`VideoEntry`] per video;
//! - `owners/o/<owner id>/usage/<YYYY-MM-DD>.json`: bytes created that UTC day;
//! - `owners/expiry/<expires ms, 13 digits>_<video id>`: the retention index
//!   (listed in key order, so a pass reads only what is due);
//! - `owners/deleted/<video id>`: a tombstone, so objects a running upload
//!   PUTs after its video was deleted are swept once its URLs have expired.
//!
//! Wiring: [`guard_create`] wraps the create route (credential, quotas, and
//! the ownership record once the session exists); [`router`] serves the
//! owner routes; [`expire_due`] runs with the reaper.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::body::{to_bytes, Body};
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use bytes::Bytes;
use chunkstream_domain::plan::SegmentPlan;
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::RawBody;
use crate::auth::{require_owner, AuthConfig, Authenticator, Owner, Via};
use crate::cdn::CdnInvalidator;
use crate::error::{ErrorBody, QuotaLimit, QuotaName};
use crate::live_slots;
use crate::sessions::{self, SessionError, Sessions};
use crate::store::{ObjectStore, PutCondition, StoreError};

/// Reads in flight at once when an owner's videos are listed (one entry and one state object per
/// video): the list takes a few round trips, not two per video.
const OWNER_READ_CONCURRENCY: usize = 16;

const OWNERS: &str = "owners/o/";
pub const EXPIRY_PREFIX: &str = "owners/expiry/";
pub const TOMBSTONE_PREFIX: &str = "owners/deleted/";
const DAY_MS: u64 = 24 * 3600 * 1000;
/// Request and response bodies the guard reads (the API's own body limit).
const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
const MAX_STATE_ATTEMPTS: u32 = 8;

fn videos_prefix(owner_id: &str) -> String {
    format!("{OWNERS}{owner_id}/videos/")
}
fn entry_key(owner_id: &str, video_id: &str) -> String {
    format!("{OWNERS}{owner_id}/videos/{video_id}.json")
}
fn usage_key(owner_id: &str, day: &str) -> String {
    format!("{OWNERS}{owner_id}/usage/{day}.json")
}
fn expiry_key(expires_ms: u64, video_id: &str) -> String {
    format!("{EXPIRY_PREFIX}{expires_ms:013}_{video_id}")
}
fn tombstone_key(video_id: &str) -> String {
    format!("{TOMBSTONE_PREFIX}{video_id}")
}

/// `YYYY-MM-DD` (UTC) of a time in ms since the epoch.
pub fn utc_day(ms: u64) -> String {
    let at = time::OffsetDateTime::UNIX_EPOCH + time::Duration::milliseconds(ms as i64);
    format!(
        "{:04}-{:02}-{:02}",
        at.year(),
        u8::from(at.month()),
        at.day()
    )
}

/// Quotas and retention; read once from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerConfig {
    pub auth: AuthConfig,
    /// `CHUNKSTREAM_QUOTA_LIVE_SESSIONS`: uploads not complete yet, per owner.
    pub max_live_sessions: usize,
    /// `CHUNKSTREAM_QUOTA_BYTES_PER_DAY`: bytes of new sessions per owner and UTC day.
    pub max_bytes_per_day: u64,
    /// `CHUNKSTREAM_RETENTION_DAYS`: videos expire this long after creation unless
    /// kept; 0 keeps every video.
    pub retention_days: u64,
    /// `CHUNKSTREAM_CLOUDFRONT_DISTRIBUTION_ID`: invalidated when a video is deleted.
    pub distribution_id: Option<String>,
}

impl OwnerConfig {
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_lookup(&|name| std::env::var(name).ok())
    }

    /// Every variable [`OwnerConfig::from_env`] reads (all optional), found by
    /// reading a config through a recording lookup; the template test checks
    /// the cloud stack against it.
    pub fn variables() -> Vec<String> {
        let seen = std::sync::Mutex::new(Vec::<String>::new());
        let _ = Self::from_lookup(&|name: &str| {
            if let Ok(mut seen) = seen.lock() {
                seen.push(name.to_string());
            }
            Some(match name {
                "CHUNKSTREAM_AUTH" => "keys".to_string(),
                n if n.ends_with("_URL") || n.ends_with("_ISSUER") || n.ends_with("_ORIGINS") => {
                    "http://127.0.0.1:1".to_string()
                }
                _ => "1".to_string(),
            })
        });
        seen.into_inner().unwrap_or_default()
    }

    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        fn number<T: std::str::FromStr>(
            v: Option<String>,
            name: &str,
            default: T,
        ) -> anyhow::Result<T> {
            match v {
                None => Ok(default),
                Some(v) => v
                    .trim()
                    .parse()
                    .ok()
                    .with_context(|| format!("{name}={v:?} is not a valid number")),
            }
        }
        Ok(Self {
            auth: AuthConfig::from_lookup(lookup)?,
            max_live_sessions: number(
                get("CHUNKSTREAM_QUOTA_LIVE_SESSIONS"),
                "CHUNKSTREAM_QUOTA_LIVE_SESSIONS",
                5,
            )?,
            max_bytes_per_day: number(
                get("CHUNKSTREAM_QUOTA_BYTES_PER_DAY"),
                "CHUNKSTREAM_QUOTA_BYTES_PER_DAY",
                100 * 1024 * 1024 * 1024,
            )?,
            retention_days: number(
                get("CHUNKSTREAM_RETENTION_DAYS"),
                "CHUNKSTREAM_RETENTION_DAYS",
                30,
            )?,
            distribution_id: get("CHUNKSTREAM_CLOUDFRONT_DISTRIBUTION_ID")
                .map(|v| v.trim().to_string()),
        })
    }
}

/// What the owner index keeps per video.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VideoEntry {
    pub video_id: String,
    /// From the file name.
    pub title: String,
    pub duration_secs: f64,
    pub size_bytes: u64,
    /// Created then (ms since the epoch).
    pub created_ms: u64,
    /// Kept past the retention period.
    #[serde(default)]
    #[schema(required = true)]
    pub kept: bool,
    /// Deleted then by retention (ms since the epoch); absent when kept or retention is off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = u64)]
    pub expires_ms: Option<u64>,
    /// The upload completed (no longer counts against the live-session quota). Taken from
    /// the video's state when listed; the stored entry is not rewritten when it completes.
    #[serde(default)]
    #[schema(required = true)]
    pub done: bool,
}

/// Title from the file name: without directories and extension.
pub fn title_from_file_name(name: Option<&str>) -> String {
    let base = name
        .unwrap_or_default()
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or_default();
    let stem = match base.rsplit_once('.') {
        Some((stem, _)) if !stem.is_empty() => stem,
        _ => base,
    };
    let title: String = stem.chars().filter(|c| !c.is_control()).take(200).collect();
    if title.trim().is_empty() {
        "Untitled video".into()
    } else {
        title.trim().to_string()
    }
}

fn plan_bytes(plan: &SegmentPlan) -> u64 {
    (0..plan.slots.len()).map(|s| plan.slot_bytes(s)).sum()
}

#[derive(Default, Serialize, Deserialize)]
struct Usage {
    bytes: u64,
}

/// Errors of the owner routes and the guard, mapped to HTTP here.
#[derive(Debug, thiserror::Error)]
pub enum OwnerError {
    #[error("no video with that id")]
    UnknownVideo,
    #[error("quota: at most {limit} uploads in progress per owner ({live} now); finish or delete one first")]
    LiveSessions { limit: usize, live: usize },
    #[error("quota: {limit} bytes per day per owner; {used} used today, this video is {size}")]
    BytesPerDay {
        limit: u64,
        used: u64,
        size: u64,
        retry_after_secs: u64,
    },
    #[error("quota: this video is {size} bytes, more than the {limit} bytes an owner may upload per day")]
    TooLargeForDay { limit: u64, size: u64 },
    #[error("request body: {0}")]
    BadRequest(String),
    #[error("request body larger than {MAX_BODY_BYTES} bytes")]
    BodyTooLarge,
    #[error("contention on {0}; retry")]
    Contention(String),
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<live_slots::LiveSlotError> for OwnerError {
    fn from(e: live_slots::LiveSlotError) -> Self {
        match e {
            live_slots::LiveSlotError::Store(e) => OwnerError::Store(e),
            live_slots::LiveSlotError::Session(e) => OwnerError::Session(e),
            e @ live_slots::LiveSlotError::Corrupt(_) => OwnerError::Internal(e.into()),
        }
    }
}

impl IntoResponse for OwnerError {
    fn into_response(self) -> Response {
        let (status, code, retry_after) = match &self {
            OwnerError::UnknownVideo => (StatusCode::NOT_FOUND, "unknown_video", None),
            OwnerError::LiveSessions { .. } => {
                (StatusCode::TOO_MANY_REQUESTS, "quota_live_sessions", None)
            }
            OwnerError::BytesPerDay {
                retry_after_secs, ..
            } => (
                StatusCode::TOO_MANY_REQUESTS,
                "quota_bytes_per_day",
                Some(*retry_after_secs),
            ),
            OwnerError::TooLargeForDay { .. } => {
                (StatusCode::PAYLOAD_TOO_LARGE, "quota_bytes_per_day", None)
            }
            OwnerError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request", None),
            OwnerError::BodyTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", None),
            OwnerError::Contention(_) => (StatusCode::SERVICE_UNAVAILABLE, "contention", Some(1)),
            OwnerError::Session(SessionError::NotFound) => {
                (StatusCode::NOT_FOUND, "unknown_video", None)
            }
            OwnerError::Session(_) | OwnerError::Store(_) | OwnerError::Internal(_) => {
                tracing::error!(error = %self, "owner request failed");
                return (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    ErrorBody::new("internal", "internal error"),
                )
                    .into_response();
            }
        };
        let mut body = ErrorBody::new(code, self.to_string());
        body.limit = match &self {
            OwnerError::LiveSessions { limit, .. } => Some(QuotaLimit {
                name: QuotaName::LiveSessions,
                value: *limit as u64,
            }),
            OwnerError::BytesPerDay { limit, .. } | OwnerError::TooLargeForDay { limit, .. } => {
                Some(QuotaLimit {
                    name: QuotaName::BytesPerDay,
                    value: *limit,
                })
            }
            _ => None,
        };
        let mut response = (status, body).into_response();
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        response
    }
}

/// What the owner routes, the guard and the retention pass share.
#[derive(Clone)]
pub struct OwnerState {
    pub config: Arc<OwnerConfig>,
    pub auth: Authenticator,
    pub sessions: Sessions,
    pub cdn: Arc<dyn CdnInvalidator>,
    /// Where watch links point (`CHUNKSTREAM_PUBLIC_BASE_URL`).
    pub public_base_url: String,
    /// How long a presigned upload URL stays usable: tombstones are swept after it.
    pub presign_ttl: Duration,
}

impl OwnerState {
    fn store(&self) -> &Arc<dyn ObjectStore> {
        self.sessions.store()
    }

    fn now_ms(&self) -> u64 {
        self.sessions.now_ms()
    }

    async fn read_json<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<(T, String)>, OwnerError> {
        let Some(obj) = self.store().get(key).await? else {
            return Ok(None);
        };
        let value =
            serde_json::from_slice(&obj.body).with_context(|| format!("{key} is corrupt"))?;
        Ok(Some((value, obj.etag)))
    }

    async fn write_json<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        cond: PutCondition,
    ) -> Result<(), OwnerError> {
        let body = serde_json::to_vec(value).context("serialising")?;
        self.store()
            .put(key, Bytes::from(body), "application/json", cond)
            .await?;
        Ok(())
    }

    async fn entries(&self, owner_id: &str) -> Result<Vec<VideoEntry>, OwnerError> {
        let prefix = videos_prefix(owner_id);
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let keys = self
                .store()
                .list_keys(&prefix, after.as_deref(), 1000)
                .await?;
            let Some(last) = keys.last().cloned() else {
                break;
            };
            let read: Vec<Option<(VideoEntry, String)>> = futures::stream::iter(keys)
                .map(|key| async move { self.read_json::<VideoEntry>(&key).await })
                .buffered(OWNER_READ_CONCURRENCY)
                .try_collect()
                .await?;
            out.extend(read.into_iter().flatten().map(|(entry, _)| entry));
            after = Some(last);
        }
        out.sort_by_key(|e| std::cmp::Reverse(e.created_ms));
        Ok(out)
    }

    /// Adds `size` to today's usage, refusing past the quota.
    async fn reserve_bytes(&self, owner_id: &str, size: u64) -> Result<String, OwnerError> {
        let limit = self.config.max_bytes_per_day;
        if size > limit {
            return Err(OwnerError::TooLargeForDay { limit, size });
        }
        let now = self.now_ms();
        let day = utc_day(now);
        let key = usage_key(owner_id, &day);
        for _ in 0..MAX_STATE_ATTEMPTS {
            let (usage, cond) = match self.read_json::<Usage>(&key).await? {
                Some((u, etag)) => (u, PutCondition::IfMatch(etag)),
                None => (Usage::default(), PutCondition::IfAbsent),
            };
            if usage.bytes.saturating_add(size) > limit {
                return Err(OwnerError::BytesPerDay {
                    limit,
                    used: usage.bytes,
                    size,
                    retry_after_secs: (DAY_MS - now % DAY_MS).div_ceil(1000),
                });
            }
            let next = Usage {
                bytes: usage.bytes + size,
            };
            match self.write_json(&key, &next, cond).await {
                Ok(()) => return Ok(day),
                Err(OwnerError::Store(StoreError::PreconditionFailed(_))) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(OwnerError::Contention(key))
    }

    /// Gives back a reservation whose session was not created.
    async fn refund_bytes(&self, owner_id: &str, day: &str, size: u64) {
        let key = usage_key(owner_id, day);
        for _ in 0..MAX_STATE_ATTEMPTS {
            let Ok(Some((usage, etag))) = self.read_json::<Usage>(&key).await else {
                return;
            };
            let next = Usage {
                bytes: usage.bytes.saturating_sub(size),
            };
            match self
                .write_json(&key, &next, PutCondition::IfMatch(etag))
                .await
            {
                Err(OwnerError::Store(StoreError::PreconditionFailed(_))) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "could not refund a quota reservation");
                    return;
                }
                Ok(()) => return,
            }
        }
    }

    async fn usage_today(&self, owner_id: &str) -> Result<u64, OwnerError> {
        let key = usage_key(owner_id, &utc_day(self.now_ms()));
        Ok(self
            .read_json::<Usage>(&key)
            .await?
            .map_or(0, |(u, _)| u.bytes))
    }

    /// Records a new session as the owner's.
    async fn record(
        &self,
        owner: &Owner,
        plan: &SegmentPlan,
        video_id: &str,
    ) -> Result<(), OwnerError> {
        let now = self.now_ms();
        let expires_ms =
            (self.config.retention_days > 0).then(|| now + self.config.retention_days * DAY_MS);
        let entry = VideoEntry {
            video_id: video_id.to_string(),
            title: title_from_file_name(plan.file_name.as_deref()),
            duration_secs: plan.duration_secs(),
            size_bytes: plan_bytes(plan),
            created_ms: now,
            kept: false,
            expires_ms,
            done: false,
        };
        if let Some(at) = expires_ms {
            self.store()
                .put(
                    &expiry_key(at, video_id),
                    Bytes::from(owner.id()),
                    "text/plain",
                    PutCondition::Always,
                )
                .await?;
        }
        self.write_json(
            &entry_key(&owner.id(), video_id),
            &entry,
            PutCondition::Always,
        )
        .await
    }

    async fn forget(&self, owner_id: &str, entry: &VideoEntry) -> Result<(), OwnerError> {
        if let Some(at) = entry.expires_ms {
            self.store()
                .delete_prefix(&expiry_key(at, &entry.video_id))
                .await?;
        }
        self.store()
            .delete_prefix(&entry_key(owner_id, &entry.video_id))
            .await?;
        Ok(())
    }

    /// Deletes every object of a video, then its owner entry; a tombstone
    /// first, so late uploads are swept by [`expire_due`].
    async fn delete_video(&self, owner_id: &str, entry: &VideoEntry) -> Result<usize, OwnerError> {
        let id = &entry.video_id;
        self.store()
            .put(
                &tombstone_key(id),
                Bytes::from(self.now_ms().to_string()),
                "text/plain",
                PutCondition::Always,
            )
            .await?;
        let deleted = delete_objects(self.store().as_ref(), id).await?;
        self.sessions.close_feed(id).await;
        self.forget(owner_id, entry).await?;
        if let Err(e) = self.cdn.invalidate(&[format!("/v/{id}/*")]).await {
            // The objects are gone; edge copies expire on their own.
            tracing::warn!(video_id = %id, error = %e, "CDN invalidation failed");
        }
        tracing::info!(video_id = %id, deleted, "video deleted");
        Ok(deleted)
    }

    fn summary(
        &self,
        mut entry: VideoEntry,
        state: Option<&chunkstream_domain::state::SessionState>,
    ) -> VideoSummary {
        entry.done = state.is_some_and(|s| s.complete);
        let (state_name, published, total) = match state {
            None => (VideoPhase::Gone, 0, 0),
            Some(s) => {
                let published = s.slots.iter().filter(|s| s.name() == "published").count();
                let name = if s.complete {
                    VideoPhase::Ready
                } else if published == s.slots.len() {
                    VideoPhase::Processing
                } else {
                    VideoPhase::Uploading
                };
                (name, published, s.slots.len())
            }
        };
        let base = &self.public_base_url;
        let id = &entry.video_id;
        VideoSummary {
            watch_url: format!("{base}/watch.html?v={id}"),
            state: state_name,
            published_slots: published,
            total_slots: total,
            entry,
        }
    }
}

/// Builds the owner state once per process: API keys on the sessions' bucket,
/// the OIDC verifier if an issuer is configured, CloudFront if a distribution is.
pub fn owner_state_from_env(
    config: OwnerConfig,
    sessions: Sessions,
    public_base_url: String,
    presign_ttl: Duration,
    aws: &aws_types::SdkConfig,
) -> OwnerState {
    let cdn: Arc<dyn CdnInvalidator> = match &config.distribution_id {
        Some(id) => Arc::new(crate::cdn::CloudFrontInvalidator::new(
            crate::cdn::cloudfront(aws),
            id.clone(),
        )),
        None => Arc::new(crate::cdn::NoCdn),
    };
    owner_state(config, sessions, public_base_url, presign_ttl, cdn)
}

/// [`owner_state_from_env`] with the CDN given (tests: a recording fake).
pub fn owner_state(
    config: OwnerConfig,
    sessions: Sessions,
    public_base_url: String,
    presign_ttl: Duration,
    cdn: Arc<dyn CdnInvalidator>,
) -> OwnerState {
    let jwt = config.auth.oidc.as_ref().map(|o| {
        Arc::new(crate::jwt::JwtVerifier::new(
            o.issuer.clone(),
            o.audience.clone(),
            Arc::new(crate::jwt::HttpJwks::new(o.jwks_url.clone())),
        ))
    });
    let keys = crate::keys::Keys::new(sessions.store().clone());
    OwnerState {
        auth: Authenticator::new(keys, jwt, config.auth.open),
        config: Arc::new(config),
        sessions,
        cdn,
        public_base_url,
        presign_ttl,
    }
}

/// Deletes the objects of a video: upload area, published objects, the live
/// index entry. Returns how many were deleted.
async fn delete_objects(store: &dyn ObjectStore, id: &str) -> Result<usize, StoreError> {
    let mut deleted = store.delete_prefix(&sessions::incoming_prefix(id)).await?;
    deleted += store.delete_prefix(&sessions::video_prefix(id)).await?;
    deleted += store.delete_prefix(&sessions::live_key(id)).await?;
    Ok(deleted)
}

/// Where a video is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum VideoPhase {
    Uploading,
    /// Every part uploaded, not all published yet.
    Processing,
    Ready,
    /// Its session is gone (removed while this answer was made).
    Gone,
    /// Its state in the bucket cannot be read (a corrupt object): it can still be deleted.
    Damaged,
}

/// One video in "my videos".
#[derive(Debug, Serialize, ToSchema)]
pub struct VideoSummary {
    #[serde(flatten)]
    pub entry: VideoEntry,
    pub state: VideoPhase,
    pub published_slots: usize,
    pub total_slots: usize,
    pub watch_url: String,
}

#[derive(Serialize, ToSchema)]
struct MeAnswer {
    /// The owner's name: an API key's owner, `<issuer>#<sub>` for a JWT, `local` when open.
    owner: String,
    via: Via,
    limits: Limits,
    usage: UsageAnswer,
    /// Videos are deleted this long after creation unless kept; 0: never.
    retention_days: u64,
}

#[derive(Serialize, ToSchema)]
struct Limits {
    live_sessions: usize,
    bytes_per_day: u64,
}

#[derive(Serialize, ToSchema)]
struct UsageAnswer {
    live_sessions: usize,
    bytes_today: u64,
}

#[derive(Serialize, ToSchema)]
struct VideosAnswer {
    /// Newest first.
    videos: Vec<VideoSummary>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct KeepRequest {
    kept: bool,
}

#[derive(Serialize, ToSchema)]
struct DeletedAnswer {
    video_id: String,
    /// Objects deleted from the bucket.
    deleted_objects: usize,
}

/// Every owner route, each with its OpenAPI operation.
pub(crate) fn routes() -> OpenApiRouter<OwnerState> {
    OpenApiRouter::new()
        .routes(routes!(me))
        .routes(routes!(list_videos))
        .routes(routes!(delete_video))
        .routes(routes!(keep_video))
}

/// The owner routes, behind the credential check.
pub fn router(state: OwnerState) -> Router {
    let auth = state.auth.clone();
    let (router, _) = routes().split_for_parts();
    router
        .layer(from_fn_with_state(auth, require_owner))
        .with_state(state)
}

/// The caller: who they are, their quotas and usage.
#[utoipa::path(
    get,
    path = "/api/me",
    tag = "owner",
    security(("api_key" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "OK", body = MeAnswer),
        crate::openapi::CredentialErrors,
    )
)]
async fn me(State(state): State<OwnerState>, owner: Owner) -> Result<Response, OwnerError> {
    let id = owner.id();
    let body = MeAnswer {
        limits: Limits {
            live_sessions: state.config.max_live_sessions,
            bytes_per_day: state.config.max_bytes_per_day,
        },
        usage: UsageAnswer {
            // what the quota counts (its slots), not a read of every video the owner has
            live_sessions: live_slots::occupied(&state.sessions, &id).await?,
            bytes_today: state.usage_today(&id).await?,
        },
        retention_days: state.config.retention_days,
        owner: owner.name,
        via: owner.via,
    };
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response())
}

/// The caller's videos, newest first.
#[utoipa::path(
    get,
    path = "/api/me/videos",
    tag = "owner",
    security(("api_key" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "OK", body = VideosAnswer),
        crate::openapi::CredentialErrors,
    )
)]
async fn list_videos(
    State(state): State<OwnerState>,
    owner: Owner,
) -> Result<Response, OwnerError> {
    let id = owner.id();
    let entries = state.entries(&id).await?;
    let sessions = &state.sessions;
    let ids: Vec<String> = entries.iter().map(|e| e.video_id.clone()).collect();
    let states: Vec<_> = futures::stream::iter(ids)
        .map(|video_id| async move { sessions.state(&video_id).await })
        .buffered(OWNER_READ_CONCURRENCY)
        .collect()
        .await;
    let mut videos = Vec::new();
    for (entry, read) in entries.into_iter().zip(states) {
        match read {
            Ok((s, _)) => videos.push(state.summary(entry, Some(&s))),
            // Reaped (an abandoned upload): no longer the owner's.
            Err(SessionError::NotFound) => state.forget(&id, &entry).await?,
            // One unreadable video must not hide the others: listed, so that it can be deleted.
            Err(SessionError::Corrupt { key, detail }) => {
                tracing::warn!(%key, %detail, "owner list: unreadable session state");
                let mut summary = state.summary(entry, None);
                summary.state = VideoPhase::Damaged;
                videos.push(summary);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        Json(VideosAnswer { videos }),
    )
        .into_response())
}

async fn owned_entry(
    state: &OwnerState,
    owner: &Owner,
    video_id: &str,
) -> Result<(VideoEntry, String), OwnerError> {
    if !sessions::is_valid_video_id(video_id) {
        return Err(OwnerError::UnknownVideo);
    }
    // Another owner's video is indistinguishable from a missing one.
    state
        .read_json::<VideoEntry>(&entry_key(&owner.id(), video_id))
        .await?
        .ok_or(OwnerError::UnknownVideo)
}

/// Deletes one of the caller's videos: every object, its CDN copies, and any upload still running.
/// Another owner's video is `unknown_video`, like a missing one.
#[utoipa::path(
    delete,
    path = "/api/me/videos/{id}",
    tag = "owner",
    params(("id" = String, Path, description = "The video id")),
    security(("api_key" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "OK", body = DeletedAnswer),
        crate::openapi::CredentialErrors,
        (status = 404, response = crate::openapi::NotFound),
    )
)]
async fn delete_video(
    State(state): State<OwnerState>,
    owner: Owner,
    Path(video_id): Path<String>,
) -> Result<Response, OwnerError> {
    let (entry, _) = owned_entry(&state, &owner, &video_id).await?;
    let deleted = state.delete_video(&owner.id(), &entry).await?;
    Ok(Json(DeletedAnswer {
        video_id,
        deleted_objects: deleted,
    })
    .into_response())
}

/// Keeps a video past the retention period (`kept: true`), or lets it expire again.
#[utoipa::path(
    post,
    path = "/api/me/videos/{id}/keep",
    tag = "owner",
    params(("id" = String, Path, description = "The video id")),
    request_body = KeepRequest,
    security(("api_key" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "OK", body = VideoSummary),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 413, response = crate::openapi::PayloadTooLarge),
        crate::openapi::CredentialErrors,
        (status = 404, response = crate::openapi::NotFound),
    )
)]
async fn keep_video(
    State(state): State<OwnerState>,
    owner: Owner,
    Path(video_id): Path<String>,
    RawBody(body): RawBody,
) -> Result<Response, OwnerError> {
    let request: KeepRequest =
        serde_json::from_slice(&body).map_err(|e| OwnerError::BadRequest(e.to_string()))?;
    let (mut entry, etag) = owned_entry(&state, &owner, &video_id).await?;
    if let Some(at) = entry.expires_ms {
        state
            .store()
            .delete_prefix(&expiry_key(at, &video_id))
            .await?;
    }
    entry.kept = request.kept;
    entry.expires_ms = if request.kept || state.config.retention_days == 0 {
        None
    } else {
        let at = state.now_ms() + state.config.retention_days * DAY_MS;
        state
            .store()
            .put(
                &expiry_key(at, &video_id),
                Bytes::from(owner.id()),
                "text/plain",
                PutCondition::Always,
            )
            .await?;
        Some(at)
    };
    match state
        .write_json(
            &entry_key(&owner.id(), &video_id),
            &entry,
            PutCondition::IfMatch(etag),
        )
        .await
    {
        Err(OwnerError::Store(StoreError::PreconditionFailed(k))) => {
            return Err(OwnerError::Contention(k))
        }
        other => other?,
    }
    let s = state.sessions.state(&video_id).await.ok().map(|(s, _)| s);
    Ok(Json(state.summary(entry, s.as_ref())).into_response())
}

/// The API with owners: the owner routes merged in, and [`guard`] in front of
/// every route (it acts on `POST /api/videos` only). One call where the
/// process builds its Router (API Lambda, local runner).
pub fn wrap(app: Router, state: OwnerState) -> Router {
    let cors = state.config.auth.cors_layer();
    app.merge(router(state.clone()))
        .layer(from_fn_with_state(state, guard))
        .layer(cors)
}

/// [`guard_create`] for `POST /api/videos`. An uploader's request for a video
/// its owner deleted gets 410 naming why, instead of the 404/409 the upload
/// routes would give (checked only on those answers: no cost otherwise).
pub async fn guard(State(state): State<OwnerState>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_string();
    if request.method() == axum::http::Method::POST && path == "/api/videos" {
        return guard_create(State(state), request, next).await;
    }
    let reading = request.method() == axum::http::Method::GET;
    let response = next.run(request).await;
    let video_id = path
        .strip_prefix("/api/videos/")
        .and_then(|rest| rest.split('/').next())
        .filter(|id| sessions::is_valid_video_id(id));
    let refused = matches!(
        response.status(),
        StatusCode::NOT_FOUND | StatusCode::CONFLICT
    );
    if let (true, Some(id)) = (refused, video_id) {
        if let Ok(Some(_)) = state.store().head(&tombstone_key(id)).await {
            return (
                StatusCode::GONE,
                ErrorBody::new(
                    "video_deleted",
                    if reading {
                        "this video was deleted by its owner"
                    } else {
                        "this video was deleted by its owner; the upload cannot continue"
                    },
                ),
            )
                .into_response();
        }
    }
    response
}

/// Middleware for `POST /api/videos`: a valid credential (401), the quotas
/// (429/413 naming the limit), then the create handler; a created session is
/// recorded as the owner's.
pub async fn guard_create(
    State(state): State<OwnerState>,
    request: Request,
    next: Next,
) -> Response {
    match guarded_create(state, request, next).await {
        Ok(r) | Err(r) => r,
    }
}

async fn guarded_create(
    state: OwnerState,
    request: Request,
    next: Next,
) -> Result<Response, Response> {
    let owner = state
        .auth
        .authenticate(request.headers())
        .await
        .map_err(IntoResponse::into_response)?;
    let (parts, body) = request.into_parts();
    let body = to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| OwnerError::BodyTooLarge.into_response())?;
    let Ok(plan) = serde_json::from_slice::<SegmentPlan>(&body) else {
        // Not a plan: the create handler answers with the reason.
        return Ok(next.run(Request::from_parts(parts, Body::from(body))).await);
    };
    let owner_id = owner.id();
    // The slots are the quota: no count of the owner's uploads first (it read every
    // entry, so a create grew slower with each video the owner had).
    let busy = || OwnerError::LiveSessions {
        limit: state.config.max_live_sessions,
        live: state.config.max_live_sessions,
    };
    let slot = live_slots::claim(&state.sessions, &owner_id, state.config.max_live_sessions)
        .await
        .map_err(|e| OwnerError::from(e).into_response())?
        .ok_or_else(|| busy().into_response())?;
    let size = plan_bytes(&plan);
    let day = match state.reserve_bytes(&owner_id, size).await {
        Ok(day) => day,
        Err(e) => {
            live_slots::release(&state.sessions, slot).await;
            return Err(e.into_response());
        }
    };
    let mut request = Request::from_parts(parts, Body::from(body));
    request.extensions_mut().insert(owner.clone());
    let response = next.run(request).await;
    if response.status() != StatusCode::CREATED {
        live_slots::release(&state.sessions, slot).await;
        state.refund_bytes(&owner_id, &day, size).await;
        return Ok(response);
    }
    let (parts, body) = response.into_parts();
    let body = to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| OwnerError::BodyTooLarge.into_response())?;
    let video_id = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["video_id"].as_str().map(str::to_string))
        .filter(|id| sessions::is_valid_video_id(id));
    let Some(video_id) = video_id else {
        return Err(
            OwnerError::Internal(anyhow::anyhow!("create answered without a video id"))
                .into_response(),
        );
    };
    if let Err(e) = state.record(&owner, &plan, &video_id).await {
        // An unowned session would escape the quotas and the owner's delete: undo it.
        let _ = delete_objects(state.store().as_ref(), &video_id).await;
        live_slots::release(&state.sessions, slot).await;
        state.refund_bytes(&owner_id, &day, size).await;
        return Err(e.into_response());
    }
    if let Err(e) = live_slots::bind(&state.sessions, slot, &video_id).await {
        // the claim stays unbound and frees itself after a while: the quota errs lenient
        tracing::warn!(%video_id, error = %e, "could not bind the live-session slot");
    }
    tracing::info!(%video_id, owner = %owner.name, size, "session owned");
    Ok(Response::from_parts(parts, Body::from(body)))
}

/// What one retention pass did.
#[derive(Debug, Default, Serialize)]
pub struct ExpiryReport {
    /// Videos deleted because their retention ran out.
    pub expired: Vec<String>,
    /// Deleted videos whose late uploads were swept.
    pub swept: Vec<String>,
}

/// Deletes videos whose retention ran out, and sweeps what uploads still
/// running at deletion PUT afterwards. Called with the reaper.
pub async fn expire_due(state: &OwnerState) -> Result<ExpiryReport, OwnerError> {
    let now = state.now_ms();
    let store = state.store().clone();
    let mut report = ExpiryReport::default();
    'pages: loop {
        let keys = store.list_keys(EXPIRY_PREFIX, None, 100).await?;
        if keys.is_empty() {
            break;
        }
        for key in keys {
            let Some((at, video_id)) = key
                .strip_prefix(EXPIRY_PREFIX)
                .and_then(|k| k.split_once('_'))
            else {
                store.delete_prefix(&key).await?;
                continue;
            };
            if at.parse::<u64>().map_or(true, |at| at > now) {
                break 'pages; // in key order: nothing later is due
            }
            let owner_id = store
                .get(&key)
                .await?
                .map(|o| String::from_utf8_lossy(&o.body).trim().to_string())
                .unwrap_or_default();
            let entry = state
                .read_json::<VideoEntry>(&entry_key(&owner_id, video_id))
                .await?;
            match entry {
                Some((entry, _)) if !entry.kept => {
                    state.delete_video(&owner_id, &entry).await?;
                    report.expired.push(video_id.to_string());
                }
                _ => {}
            }
            store.delete_prefix(&key).await?;
        }
    }
    let sweep_ms = state.presign_ttl.as_millis() as u64 + 60_000;
    let mut after: Option<String> = None;
    loop {
        let keys = store
            .list_keys(TOMBSTONE_PREFIX, after.as_deref(), 100)
            .await?;
        let Some(last) = keys.last().cloned() else {
            break;
        };
        for key in keys {
            let deleted_ms = store
                .get(&key)
                .await?
                .and_then(|o| String::from_utf8_lossy(&o.body).trim().parse::<u64>().ok())
                .unwrap_or(0);
            if now.saturating_sub(deleted_ms) < sweep_ms {
                continue;
            }
            let id = key.strip_prefix(TOMBSTONE_PREFIX).unwrap_or_default();
            if sessions::is_valid_video_id(id) {
                delete_objects(store.as_ref(), id).await?;
                report.swept.push(id.to_string());
            }
            store.delete_prefix(&key).await?;
        }
        after = Some(last);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_days_are_calendar_dates() {
        assert_eq!(utc_day(0), "1970-01-01");
        assert_eq!(utc_day(951_782_400_000), "2000-02-29");
        assert_eq!(utc_day(1_798_761_600_000 - 1), "2026-12-31");
    }

    #[test]
    fn titles_come_from_the_file_name() {
        assert_eq!(
            title_from_file_name(Some("C:\\rec\\Demo day.mp4")),
            "Demo day"
        );
        assert_eq!(title_from_file_name(Some("talk.final.mov")), "talk.final");
        assert_eq!(title_from_file_name(Some(".mp4")), ".mp4");
        assert_eq!(title_from_file_name(None), "Untitled video");
    }

    #[test]
    fn quota_numbers_are_checked_by_name() {
        let err = OwnerConfig::from_lookup(&|n| {
            (n == "CHUNKSTREAM_QUOTA_BYTES_PER_DAY").then(|| "lots".to_string())
        })
        .expect_err("not a number");
        assert!(
            err.to_string().contains("CHUNKSTREAM_QUOTA_BYTES_PER_DAY"),
            "{err}"
        );
        let c = OwnerConfig::from_lookup(&|_| None).expect("defaults");
        assert_eq!((c.max_live_sessions, c.retention_days), (5, 30));
        let vars = OwnerConfig::variables();
        for name in [
            "CHUNKSTREAM_OIDC_AUDIENCE",
            "CHUNKSTREAM_RETENTION_DAYS",
            "CHUNKSTREAM_ALLOWED_ORIGINS",
        ] {
            assert!(vars.iter().any(|v| v == name), "{name} not in {vars:?}");
        }
    }
}
