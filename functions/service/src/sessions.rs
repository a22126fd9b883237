//! Sessions stored in S3, one prefix per video:
//!
//! ```text
//! v/{id}/session.json          immutable: plan, hash of the upload secret (written If-None-Match)
//! v/{id}/state.json            mutable: slot states (as runs), leases, uploads, inits — written
//!                              (If-Match ETag) by the uploader's calls only
//! v/{id}/published.json        mutable: which slots (as ranges) and inits are public, refusals,
//!                              complete, finalised — written (If-Match ETag) by the worker (and
//!                              by the API publishing an init on a viewer's miss)
//! v/{id}/windows.json          mutable: the viewers' priority windows — written (If-Match /
//!                              If-None-Match) by viewers' hints only; absent until the first hint
//! v/{id}/manifest.mpd          written once at creation
//! v/{id}/master.m3u8, v/{id}/hls/{track}.m3u8   HLS playlists, written with the MPD
//! v/{id}/init/{track}.mp4      ({track}: the track's index in the plan)      checked and published (server-side copy)
//! v/{id}/seg/{track}/{slot}.m4s        checked and published (server-side copy)
//! incoming/{id}/{slot}/{track}.m4s          uploaded, not yet checked
//! incoming/{id}/init/{track}.mp4           uploaded init segment, not yet checked
//! live/{id}                    index of sessions not yet finalised (body: created ms); the reaper reads only these
//! reaper/cursor.json           where the reaper's last pass stopped
//! ```
//!
//! Only `manifest.mpd`, `master.m3u8`, `hls/`, `init/` and `seg/` are ever readable by viewers.
//! Incoming objects live under their own top-level prefix so one S3 lifecycle
//! rule (literal prefixes only) can expire forgotten uploads.
//!
//! Two writers racing on `state.json` are resolved by optimistic concurrency:
//! every change is a pure transition re-applied on a fresh read until its
//! conditional write wins.

use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use chunkstream_domain::plan::SegmentPlan;
use chunkstream_domain::published::PublishState;
use chunkstream_domain::state::SessionState;
use chunkstream_domain::windows::ViewerWindows;
use chunkstream_domain::{hls, manifest};
use rand::RngCore;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::clock::{Clock, SystemClock};
use crate::feed_signal::{FeedSignal, NoFeedSignal};
use crate::store::{ObjectStore, PutCondition, StoreError};

/// The S3 prefix mirrors the public playback path `/v/{id}/…`, so in the cloud
/// CloudFront can serve manifests and segments straight from S3 (bucket policy:
/// only `manifest.mpd`, `init/*` and `seg/*`) and fail over to the API on a miss.
pub const VIDEOS_PREFIX: &str = "v/";

pub fn video_prefix(id: &str) -> String {
    format!("{VIDEOS_PREFIX}{id}/")
}
pub fn session_key(id: &str) -> String {
    format!("{VIDEOS_PREFIX}{id}/session.json")
}
pub fn state_key(id: &str) -> String {
    format!("{VIDEOS_PREFIX}{id}/state.json")
}
pub fn published_state_key(id: &str) -> String {
    format!("{VIDEOS_PREFIX}{id}/published.json")
}
pub fn windows_key(id: &str) -> String {
    format!("{VIDEOS_PREFIX}{id}/windows.json")
}
pub fn manifest_key(id: &str) -> String {
    format!("{VIDEOS_PREFIX}{id}/manifest.mpd")
}
pub fn hls_master_key(id: &str) -> String {
    format!("{VIDEOS_PREFIX}{id}/{}", hls::MASTER_PATH)
}
pub fn hls_media_key(id: &str, track: usize) -> String {
    format!("{VIDEOS_PREFIX}{id}/{}", hls::media_playlist_path(track))
}
pub fn init_key(id: &str, track: usize) -> String {
    format!("{VIDEOS_PREFIX}{id}/{}", manifest::init_path(track))
}
pub const INCOMING_PREFIX: &str = "incoming/";
/// One empty-ish object per session that is not finalised yet, so the reaper
/// lists only live sessions, never every video ever stored.
pub const LIVE_PREFIX: &str = "live/";

pub fn live_key(id: &str) -> String {
    format!("{LIVE_PREFIX}{id}")
}

pub fn incoming_prefix(id: &str) -> String {
    format!("{INCOMING_PREFIX}{id}/")
}
/// An uploaded init segment, until the worker checked and published it.
pub fn incoming_init_key(id: &str, track: usize) -> String {
    format!("{INCOMING_PREFIX}{id}/init/{track}.mp4")
}
pub fn incoming_key(id: &str, slot: usize, track: usize) -> String {
    format!("{INCOMING_PREFIX}{id}/{slot}/{track}.m4s")
}
pub fn published_key(id: &str, track: usize, slot: usize) -> String {
    format!(
        "{VIDEOS_PREFIX}{id}/{}",
        manifest::segment_path(track, slot)
    )
}

/// Cache-Control of the MPD and the HLS playlists (stored with them and sent
/// by the API): short, so a CDN re-reads them soon (they are written once,
/// but a reaped session's must not linger).
pub const MANIFEST_CACHE: &str = "public, max-age=60";

pub const HLS_CONTENT_TYPE: &str = "application/vnd.apple.mpegurl";

/// 128 random bits, base64url: 22 characters.
const VIDEO_ID_LEN: usize = 22;

/// True for strings that could be a video id; anything else never reaches S3.
pub fn is_valid_video_id(id: &str) -> bool {
    id.len() == VIDEO_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    // ThreadRng is a CSPRNG seeded from the OS.
    rand::rng().fill_bytes(&mut buf);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

pub fn secret_hash(secret: &str) -> String {
    hex_lower(&Sha256::digest(secret.as_bytes()))
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares without an early exit, so timing does not leak how much matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Wall-clock time; code that has a [`Sessions`] reads [`Sessions::now_ms`]
/// instead, so tests can drive time.
pub fn now_ms() -> u64 {
    SystemClock.now_ms()
}

/// The immutable part of a session.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionRecord {
    pub video_id: String,
    pub plan: SegmentPlan,
    pub secret_sha256: String,
    pub created_ms: u64,
}

impl SessionRecord {
    pub fn secret_matches(&self, presented: &str) -> bool {
        constant_time_eq(
            secret_hash(presented).as_bytes(),
            self.secret_sha256.as_bytes(),
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored record {key} is corrupt: {detail}")]
    Corrupt { key: String, detail: String },
    #[error("too much contention on {0}")]
    Contention(String),
    #[error("no such video")]
    NotFound,
}

/// Reads and writes sessions through an [`ObjectStore`].
#[derive(Clone)]
pub struct Sessions {
    store: Arc<dyn ObjectStore>,
    clock: Arc<dyn Clock>,
    /// Session records never change once written: each process keeps the ones
    /// it has read, saving an S3 GET on every API call and job.
    records: Arc<std::sync::Mutex<std::collections::HashMap<String, Arc<SessionRecord>>>>,
    /// Wakes a priority feed held in another process when `windows.json` changes.
    feed_signal: Arc<dyn FeedSignal>,
}

const MAX_CACHED_RECORDS: usize = 256;

/// A stored record larger than this is corrupt: `state.json` of the largest
/// plan in the form before runs (~50 B per slot) is well under it.
pub const MAX_RECORD_BYTES: usize = 16 * 1024 * 1024;

/// Conditional-write attempts on `state.json` before the caller gets a 503.
const MAX_STATE_ATTEMPTS: u32 = 25;
/// … and on `windows.json` (a hint lost to another viewer's is cheap to drop).
const MAX_WINDOWS_ATTEMPTS: u32 = 8;

impl Sessions {
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self::with_clock(store, Arc::new(SystemClock))
    }

    pub fn with_clock(store: Arc<dyn ObjectStore>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            clock,
            records: Arc::default(),
            feed_signal: Arc::new(NoFeedSignal),
        }
    }

    /// The same sessions, with `signal` waking feeds across processes.
    pub fn with_feed_signal(mut self, signal: Arc<dyn FeedSignal>) -> Self {
        self.feed_signal = signal;
        self
    }

    pub fn feed_signal(&self) -> &dyn FeedSignal {
        self.feed_signal.as_ref()
    }

    /// Nothing will wait on this video's feed again (complete, reaped, deleted):
    /// its signal goes. A failure only leaves an idle queue behind; it is logged.
    pub async fn close_feed(&self, id: &str) {
        if let Err(e) = self.feed_signal.close(id).await {
            tracing::warn!(video_id = %id, error = %e, "could not close the feed signal");
        }
    }

    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    fn cached(&self, video_id: &str) -> Option<Arc<SessionRecord>> {
        self.records.lock().ok()?.get(video_id).cloned()
    }

    fn remember(&self, record: Arc<SessionRecord>) {
        if let Ok(mut records) = self.records.lock() {
            if records.len() >= MAX_CACHED_RECORDS {
                records.clear();
            }
            records.insert(record.video_id.clone(), record);
        }
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Stores a validated plan: state, then the immutable record, then the manifests
    /// (MPD and HLS playlists, written side by side).
    /// Returns the record and the clear-text upload secret (never stored).
    pub async fn create(
        &self,
        plan: SegmentPlan,
    ) -> Result<(Arc<SessionRecord>, String), SessionError> {
        let video_id = random_token(16);
        let secret = random_token(32);
        let now = self.now_ms();
        let record = SessionRecord {
            video_id: video_id.clone(),
            secret_sha256: secret_hash(&secret),
            created_ms: now,
            plan,
        };
        let state =
            SessionState::with_inits(record.plan.slots.len(), record.plan.tracks.len(), now);
        // Indexed first, so even a half-created session is found and reaped.
        self.store
            .put(
                &live_key(&video_id),
                Bytes::from(now.to_string()),
                "text/plain",
                PutCondition::IfAbsent,
            )
            .await?;
        self.put_json(&state_key(&video_id), &state, PutCondition::IfAbsent)
            .await?;
        let published = PublishState::new(record.plan.slots.len(), record.plan.tracks.len(), now);
        self.put_json(
            &published_state_key(&video_id),
            &published,
            PutCondition::IfAbsent,
        )
        .await?;
        self.put_json(&session_key(&video_id), &record, PutCondition::IfAbsent)
            .await?;
        let plan = &record.plan;
        let mut manifests = vec![
            (
                manifest_key(&video_id),
                manifest::render_mpd(plan),
                "application/dash+xml",
            ),
            (
                hls_master_key(&video_id),
                hls::render_master_playlist(plan),
                HLS_CONTENT_TYPE,
            ),
        ];
        for track in 0..plan.tracks.len() {
            manifests.push((
                hls_media_key(&video_id, track),
                hls::render_media_playlist(plan, track),
                HLS_CONTENT_TYPE,
            ));
        }
        futures::future::try_join_all(manifests.into_iter().map(|(key, body, content_type)| {
            let store = self.store.clone();
            async move {
                store
                    .put_cached(&key, Bytes::from(body), content_type, MANIFEST_CACHE)
                    .await
            }
        }))
        .await?;
        let record = Arc::new(record);
        self.remember(record.clone());
        Ok((record, secret))
    }

    async fn put_json<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        cond: PutCondition,
    ) -> Result<String, SessionError> {
        let body = serde_json::to_vec(value).map_err(|e| SessionError::Corrupt {
            key: key.into(),
            detail: e.to_string(),
        })?;
        Ok(self
            .store
            .put(key, Bytes::from(body), "application/json", cond)
            .await?)
    }

    pub async fn load(&self, video_id: &str) -> Result<Arc<SessionRecord>, SessionError> {
        if !is_valid_video_id(video_id) {
            return Err(SessionError::NotFound);
        }
        if let Some(record) = self.cached(video_id) {
            return Ok(record);
        }
        let key = session_key(video_id);
        let obj = self.store.get(&key).await?.ok_or(SessionError::NotFound)?;
        let record: Arc<SessionRecord> = Arc::new(serde_json::from_slice(&obj.body).map_err(
            |e| SessionError::Corrupt {
                key,
                detail: e.to_string(),
            },
        )?);
        self.remember(record.clone());
        Ok(record)
    }

    /// Every slot is published: the upload area is cleaned, the session is
    /// marked finalised and leaves the live index. Idempotent: a redelivery
    /// after a crash at any step finishes the rest.
    pub async fn finalise(&self, video_id: &str) -> Result<usize, SessionError> {
        // The flag goes last: once it is set, nothing is left to clean.
        let removed = self.store.delete_prefix(&incoming_prefix(video_id)).await?;
        self.close_feed(video_id).await;
        self.store.delete_prefix(&live_key(video_id)).await?;
        self.update_published(video_id, |p: &mut PublishState| {
            let dirty = !p.finalised;
            p.finalised = true;
            Ok::<_, std::convert::Infallible>(((), dirty))
        })
        .await?
        .unwrap_or_else(|never| match never {});
        Ok(removed)
    }

    async fn read_json<S: DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<(S, String)>, SessionError> {
        let Some(obj) = self.store.get(key).await? else {
            return Ok(None);
        };
        if obj.body.len() > MAX_RECORD_BYTES {
            return Err(SessionError::Corrupt {
                key: key.to_string(),
                detail: format!(
                    "{} bytes, more than the {MAX_RECORD_BYTES} a record may have",
                    obj.body.len()
                ),
            });
        }
        let value = serde_json::from_slice(&obj.body).map_err(|e| SessionError::Corrupt {
            key: key.to_string(),
            detail: e.to_string(),
        })?;
        Ok(Some((value, obj.etag)))
    }

    /// The uploader's record as stored (no merge), with its ETag.
    async fn upload_state(&self, video_id: &str) -> Result<(SessionState, String), SessionError> {
        self.read_json(&state_key(video_id))
            .await?
            .ok_or(SessionError::NotFound)
    }

    /// The worker's record (`published.json`).
    pub async fn publish_state(&self, video_id: &str) -> Result<PublishState, SessionError> {
        if let Some((p, _)) = self.read_json(&published_state_key(video_id)).await? {
            return Ok(p);
        }
        let (uploader, _) = self.upload_state(video_id).await?;
        Ok(PublishState::from_legacy(&uploader))
    }

    /// Both records, read together (one round trip): `state.json` with its ETag, and
    /// `published.json` (or, for a pre-split session, the one derived from `state.json`).
    /// Sequential reads would be no more of a snapshot: each record is consistent on its
    /// own and the merge takes them in any order.
    async fn both_records(
        &self,
        video_id: &str,
    ) -> Result<((SessionState, String), PublishState), SessionError> {
        let published_key = published_state_key(video_id);
        let (uploader, published) = tokio::try_join!(
            self.upload_state(video_id),
            self.read_json::<PublishState>(&published_key)
        )?;
        let worker = match published {
            Some((p, _)) => p,
            None => PublishState::from_legacy(&uploader.0),
        };
        check_same_slot_count(&published_key, &uploader.0, &worker)?;
        Ok((uploader, worker))
    }

    /// What a viewer's new window on `window` re-queues on the priority lane
    /// (see [`SessionState::normal_lane_uploads_among`], on the merged view).
    /// Reads `state.json`, and `published.json` only if that finds any: the
    /// merge only ever takes slots out of "uploaded", so without a candidate in
    /// the uploader's record there is none in the merged view either.
    pub async fn requeue_candidates(
        &self,
        video_id: &str,
        window: std::ops::Range<usize>,
    ) -> Result<Vec<(usize, Vec<String>)>, SessionError> {
        let (uploader, _) = self.upload_state(video_id).await?;
        if uploader
            .normal_lane_uploads_among(window.clone())
            .is_empty()
        {
            return Ok(Vec::new());
        }
        let published_key = published_state_key(video_id);
        let worker = match self.read_json::<PublishState>(&published_key).await? {
            Some((p, _)) => p,
            None => PublishState::from_legacy(&uploader),
        };
        check_same_slot_count(&published_key, &uploader, &worker)?;
        Ok(uploader.merged(&worker).normal_lane_uploads_among(window))
    }

    /// The merged view of both records (2 GETs, together), with the ETag of `state.json`.
    pub async fn state(&self, video_id: &str) -> Result<(SessionState, String), SessionError> {
        let ((uploader, etag), worker) = self.both_records(video_id).await?;
        Ok((uploader.merged(&worker), etag))
    }

    /// Rewrites `state.json` unchanged if its ETag is still `etag`: false if
    /// someone wrote in between (the reaper's re-check before deleting).
    pub async fn confirm_unchanged(
        &self,
        video_id: &str,
        etag: &str,
    ) -> Result<bool, SessionError> {
        let key = state_key(video_id);
        let Some(obj) = self.store.get(&key).await? else {
            return Ok(false);
        };
        if obj.etag != etag {
            return Ok(false);
        }
        match self
            .store
            .put(
                &key,
                obj.body,
                "application/json",
                PutCondition::IfMatch(obj.etag),
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(StoreError::PreconditionFailed(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// The viewers' priority windows (none until the first hint).
    pub async fn windows(&self, video_id: &str) -> Result<ViewerWindows, SessionError> {
        Ok(self
            .read_json(&windows_key(video_id))
            .await?
            .map(|(w, _)| w)
            .unwrap_or_default())
    }

    /// Applies `change` to the current state and writes it back if nothing else
    /// wrote in between; otherwise re-reads and re-applies. `change` returning
    /// `Err` aborts without writing; `Ok((value, false))` means "nothing to write".
    ///
    /// `change` sees the merged view (the worker's record read on each
    /// attempt); only the uploader's share is written, to `state.json`, which
    /// only the uploader's calls write.
    pub async fn update_state<T, E, F>(
        &self,
        video_id: &str,
        mut change: F,
    ) -> Result<Result<T, E>, SessionError>
    where
        F: FnMut(&mut SessionState) -> Result<(T, bool), E>,
    {
        let key = state_key(video_id);
        for attempt in 0..MAX_STATE_ATTEMPTS {
            let ((uploader, etag), worker) = self.both_records(video_id).await?;
            let mut merged = uploader.clone().merged(&worker);
            let (value, dirty) = match change(&mut merged) {
                Ok(v) => v,
                Err(e) => return Ok(Err(e)),
            };
            if !dirty {
                return Ok(Ok(value));
            }
            let written = merged.upload_part(&uploader);
            match self
                .put_json(&key, &written, PutCondition::IfMatch(etag))
                .await
            {
                Ok(_) => return Ok(Ok(value)),
                Err(SessionError::Store(StoreError::PreconditionFailed(_))) => {
                    backoff(attempt).await
                }
                Err(e) => return Err(e),
            }
        }
        Err(SessionError::Contention(key))
    }

    /// Changes the worker's record (`published.json`), which only the worker
    /// writes; created from a pre-split `state.json` the first time if missing.
    pub async fn update_published<T, E, F>(
        &self,
        video_id: &str,
        change: F,
    ) -> Result<Result<T, E>, SessionError>
    where
        F: FnMut(&mut PublishState) -> Result<(T, bool), E>,
    {
        let key = published_state_key(video_id);
        let mut change = change;
        match self
            .update_json(&key, MAX_STATE_ATTEMPTS, None, &mut change)
            .await
        {
            Err(SessionError::NotFound) => {}
            done => return done,
        }
        let (uploader, _) = self.upload_state(video_id).await?;
        match self
            .put_json(
                &key,
                &PublishState::from_legacy(&uploader),
                PutCondition::IfAbsent,
            )
            .await
        {
            Ok(_) | Err(SessionError::Store(StoreError::PreconditionFailed(_))) => {}
            Err(e) => return Err(e),
        }
        self.update_json(&key, MAX_STATE_ATTEMPTS, None, change)
            .await
    }

    /// Like [`Sessions::update_state`] for the viewers' windows (created on the first hint).
    pub async fn update_windows<T, F>(
        &self,
        video_id: &str,
        mut change: F,
    ) -> Result<T, SessionError>
    where
        F: FnMut(&mut ViewerWindows) -> (T, bool),
    {
        self.update_json(
            &windows_key(video_id),
            MAX_WINDOWS_ATTEMPTS,
            Some(ViewerWindows::default),
            |w: &mut ViewerWindows| Ok::<_, std::convert::Infallible>(change(w)),
        )
        .await?
        .map_err(|never| match never {})
    }

    /// The optimistic-concurrency loop: read, apply, write If-Match (or
    /// If-None-Match when the object is absent and `absent` makes a fresh one),
    /// at most `attempts` times, then [`SessionError::Contention`].
    async fn update_json<S, T, E, F>(
        &self,
        key: &str,
        attempts: u32,
        absent: Option<fn() -> S>,
        mut change: F,
    ) -> Result<Result<T, E>, SessionError>
    where
        S: Serialize + DeserializeOwned,
        F: FnMut(&mut S) -> Result<(T, bool), E>,
    {
        for attempt in 0..attempts {
            let (mut value, condition) = match (self.read_json(key).await?, absent) {
                (Some((value, etag)), _) => (value, PutCondition::IfMatch(etag)),
                (None, Some(fresh)) => (fresh(), PutCondition::IfAbsent),
                (None, None) => return Err(SessionError::NotFound),
            };
            let (result, dirty) = match change(&mut value) {
                Ok(v) => v,
                Err(e) => return Ok(Err(e)),
            };
            if !dirty {
                return Ok(Ok(result));
            }
            match self.put_json(key, &value, condition).await {
                Ok(_) => return Ok(Ok(result)),
                Err(SessionError::Store(StoreError::PreconditionFailed(_))) => {
                    backoff(attempt).await
                }
                Err(e) => return Err(e),
            }
        }
        Err(SessionError::Contention(key.to_string()))
    }
}

/// Both records were created from one plan: a different slot count means one is corrupt.
fn check_same_slot_count(
    published_key: &str,
    uploader: &SessionState,
    worker: &PublishState,
) -> Result<(), SessionError> {
    if uploader.slots.len() == worker.slot_count() {
        return Ok(());
    }
    Err(SessionError::Corrupt {
        key: published_key.to_string(),
        detail: format!(
            "{} slots, state.json has {}",
            worker.slot_count(),
            uploader.slots.len()
        ),
    })
}

/// Backs off a little, with jitter, before re-reading after a lost race.
async fn backoff(attempt: u32) {
    let jitter = rand::random::<u64>() % (5 + 5 * u64::from(attempt));
    tokio::time::sleep(std::time::Duration::from_millis(jitter)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_valid_and_distinct() {
        let a = random_token(16);
        let b = random_token(16);
        assert!(is_valid_video_id(&a), "{a}");
        assert_ne!(a, b);
        assert!(!is_valid_video_id("../../etc/passwd"));
        assert!(!is_valid_video_id("short"));
        assert!(!is_valid_video_id("aaaaaaaaaaaaaaaaaaaaa/"));
    }

    #[test]
    fn secrets_match_only_themselves() {
        let record = SessionRecord {
            video_id: "x".into(),
            plan: SegmentPlan {
                file_name: None,
                fingerprint: None,
                tracks: vec![],
                slots: vec![],
            },
            secret_sha256: secret_hash("right"),
            created_ms: 0,
        };
        assert!(record.secret_matches("right"));
        assert!(!record.secret_matches("wrong"));
        assert!(!record.secret_matches(""));
    }
}
