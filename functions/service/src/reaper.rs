//! The reaper: deletes sessions that made no progress for the configured time,
//! finishes finalisations a crash interrupted, and re-drives slots reported
//! uploaded whose job never got processed (the enqueue failed after the
//! report, or the job ended in a DLQ) so no upload stays stuck. Scheduled in
//! the cloud (EventBridge → worker function), periodic in the runner.
//!
//! It scales with the number of *live* sessions, not with every video ever
//! stored: it walks the `live/` index (finalised sessions leave it), within a
//! time budget, and resumes where the last pass stopped (`reaper/cursor.json`).
//! One bad session is reported and skipped; it never stops a pass.

use std::time::{Duration, Instant};

use bytes::Bytes;
use chunkstream_domain::state::{SchedulePolicy, SlotState};

use crate::inits;
use crate::queue::{Job, JobQueue};
use crate::sessions::{self, SessionError, Sessions};
use crate::store::{PutCondition, StoreError};

/// Where the last pass stopped (a `live/` key), or empty after a full pass.
pub const CURSOR_KEY: &str = "reaper/cursor.json";
/// Index keys read per listing call.
const PAGE: usize = 200;

#[derive(Debug, Clone, Copy)]
pub struct ReapSettings {
    /// A session with no progress for this long is deleted.
    pub ttl: Duration,
    /// A slot "uploaded" this long without being processed gets its job again.
    pub redrive_after: Duration,
    /// Stop starting new sessions after this long (the rest: next pass).
    pub budget: Duration,
    pub policy: SchedulePolicy,
}

/// A slot "uploaded" this long without being processed gets its job again.
pub const REDRIVE_AFTER: Duration = Duration::from_secs(600);
/// A pass stops starting sessions after this long: inside the worker
/// Lambda's 30 s timeout with room for the session in hand.
pub const PASS_BUDGET: Duration = Duration::from_secs(20);

impl ReapSettings {
    pub fn from_config(config: &crate::config::Config) -> Self {
        Self {
            ttl: config.session_ttl,
            redrive_after: REDRIVE_AFTER,
            budget: PASS_BUDGET,
            policy: config.policy,
        }
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReapReport {
    pub checked: usize,
    pub reaped: Vec<String>,
    pub objects_deleted: usize,
    /// (video id, slot) jobs enqueued again.
    pub redriven: Vec<(String, usize)>,
    /// Complete sessions whose interrupted finalisation was finished.
    pub finalised: Vec<String>,
    /// Sessions that could not be handled this pass, with the reason.
    pub errors: Vec<(String, String)>,
    /// True when the pass reached the end of the index (the next one starts over).
    pub pass_complete: bool,
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Cursor {
    after: Option<String>,
}

async fn load_cursor(sessions: &Sessions) -> Result<Option<String>, StoreError> {
    Ok(sessions
        .store()
        .get(CURSOR_KEY)
        .await?
        .and_then(|o| serde_json::from_slice::<Cursor>(&o.body).ok())
        .and_then(|c| c.after))
}

async fn save_cursor(sessions: &Sessions, after: Option<String>) -> Result<(), StoreError> {
    let body = serde_json::to_vec(&Cursor { after }).unwrap_or_default();
    sessions
        .store()
        .put(
            CURSOR_KEY,
            Bytes::from(body),
            "application/json",
            PutCondition::Always,
        )
        .await
        .map(|_| ())
}

/// One pass (or the part of one that fits in the budget) over the live index.
pub async fn reap_abandoned(
    sessions: &Sessions,
    queue: &dyn JobQueue,
    settings: &ReapSettings,
) -> anyhow::Result<ReapReport> {
    let started = Instant::now();
    let mut report = ReapReport::default();
    let mut after = load_cursor(sessions).await?;
    loop {
        let keys = sessions
            .store()
            .list_keys(sessions::LIVE_PREFIX, after.as_deref(), PAGE)
            .await?;
        if keys.is_empty() {
            report.pass_complete = true;
            save_cursor(sessions, None).await?;
            return Ok(report);
        }
        for key in keys {
            // At least one session per pass, so a pass always moves on.
            if report.checked > 0 && started.elapsed() >= settings.budget {
                save_cursor(sessions, after).await?;
                return Ok(report);
            }
            after = Some(key.clone());
            let Some(id) = key.strip_prefix(sessions::LIVE_PREFIX) else {
                continue;
            };
            report.checked += 1;
            if let Err(e) = reap_one(sessions, queue, settings, id, &mut report).await {
                tracing::warn!(video_id = %id, error = format!("{e:#}"), "reaper skipped a session");
                report.errors.push((id.to_string(), format!("{e:#}")));
            }
        }
    }
}

/// Deletes everything of a session, its index entry last (so an interrupted
/// deletion is found and finished by the next pass).
async fn delete_session(sessions: &Sessions, id: &str) -> Result<usize, StoreError> {
    let store = sessions.store();
    let mut deleted = store.delete_prefix(&sessions::incoming_prefix(id)).await?;
    deleted += store.delete_prefix(&sessions::video_prefix(id)).await?;
    sessions.close_feed(id).await;
    store.delete_prefix(&sessions::live_key(id)).await?;
    Ok(deleted)
}

async fn reap_one(
    sessions: &Sessions,
    queue: &dyn JobQueue,
    settings: &ReapSettings,
    id: &str,
    report: &mut ReapReport,
) -> anyhow::Result<()> {
    let ttl_ms = settings.ttl.as_millis() as u64;
    let now = sessions.now_ms();
    let (state, etag) = match sessions.state(id).await {
        Ok(found) => found,
        Err(SessionError::NotFound) => {
            // Half-created, or a deletion cut short: judge by the index entry's age.
            let created = sessions
                .store()
                .get(&sessions::live_key(id))
                .await?
                .and_then(|o| {
                    std::str::from_utf8(&o.body)
                        .ok()?
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
                .unwrap_or(0);
            if now.saturating_sub(created) >= ttl_ms {
                report.objects_deleted += delete_session(sessions, id).await?;
                report.reaped.push(id.to_string());
            }
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    let mut complete = state.complete;
    if !complete && state.all_slots_published() {
        // The last job ended before the init segments arrived (or were valid).
        let record = sessions.load(id).await?;
        complete = inits::publish_inits(sessions, &record).await?;
    }
    if complete {
        // Finalisation was interrupted (or only the index entry is left).
        sessions.finalise(id).await?;
        report.finalised.push(id.to_string());
        return Ok(());
    }
    if state.is_abandoned(now, ttl_ms) {
        // Re-check right before deleting: the uploader's record written back
        // unchanged only if nobody wrote in between, so a reap never races a
        // live upload.
        if !sessions.confirm_unchanged(id, &etag).await? {
            return Ok(());
        }
        let deleted = delete_session(sessions, id).await?;
        tracing::info!(video_id = %id, deleted, "reaped abandoned session");
        report.objects_deleted += deleted;
        report.reaped.push(id.to_string());
        return Ok(());
    }
    let redrive_ms = settings.redrive_after.as_millis() as u64;
    let mut windows = None;
    for (slot, s) in state.slots.iter().enumerate() {
        let SlotState::Uploaded { at_ms } = s else {
            continue;
        };
        if now.saturating_sub(*at_ms) < redrive_ms {
            continue;
        }
        if windows.is_none() {
            windows = Some(sessions.windows(id).await?.active(now, &settings.policy));
        }
        let active = windows.as_deref().unwrap_or_default();
        queue
            .enqueue(&Job {
                video_id: id.to_string(),
                slot,
                lane: state.redrive_lane(slot, active),
                etags: state
                    .uploads
                    .get(&slot)
                    .map(|u| u.etags.clone())
                    .unwrap_or_default(),
            })
            .await?;
        tracing::warn!(video_id = %id, slot, "re-drove a slot stuck in 'uploaded'");
        report.redriven.push((id.to_string(), slot));
    }
    Ok(())
}
