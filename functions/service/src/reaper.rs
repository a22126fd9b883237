//! The reaper: deletes sessions that made no progress for the configured time,
//! and re-drives slots reported uploaded whose job never got processed (the
//! enqueue failed after the report, or the job ended in a DLQ) so no upload
//! stays stuck. Scheduled in the cloud (EventBridge → worker function),
//! periodic in the runner.

use std::time::Duration;

use chunkstream_domain::state::{Lane, SlotState};

use crate::queue::{Job, JobQueue};
use crate::sessions::{self, now_ms, SessionError, Sessions};

#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReapReport {
    pub checked: usize,
    pub reaped: Vec<String>,
    pub objects_deleted: usize,
    /// (video id, slot) jobs enqueued again.
    pub redriven: Vec<(String, usize)>,
}

/// One pass over every session: delete the abandoned ones (no progress for
/// `ttl`), re-enqueue slots that have sat "uploaded" for longer than `redrive_after`.
pub async fn reap_abandoned(
    sessions: &Sessions,
    queue: &dyn JobQueue,
    ttl: Duration,
    redrive_after: Duration,
) -> anyhow::Result<ReapReport> {
    let mut report = ReapReport::default();
    let ttl_ms = ttl.as_millis() as u64;
    for prefix in sessions
        .store()
        .list_children(sessions::VIDEOS_PREFIX)
        .await?
    {
        let Some(id) = prefix
            .strip_prefix(sessions::VIDEOS_PREFIX)
            .and_then(|p| p.strip_suffix('/'))
        else {
            continue;
        };
        report.checked += 1;
        let state = match sessions.state(id).await {
            Ok((state, _)) => state,
            // Half-created or already being deleted: nothing reliable to judge by.
            Err(SessionError::NotFound) => continue,
            Err(e) => return Err(e.into()),
        };
        let now = now_ms();
        if !state.is_abandoned(now, ttl_ms) {
            let stale = state.slots.iter().enumerate().filter(|(_, s)| {
                matches!(s, SlotState::Uploaded { at_ms } if now.saturating_sub(*at_ms) >= redrive_after.as_millis() as u64)
            });
            for (slot, _) in stale {
                queue
                    .enqueue(&Job {
                        video_id: id.to_string(),
                        slot,
                        lane: Lane::Normal,
                    })
                    .await?;
                tracing::warn!(video_id = %id, slot, "re-drove a slot stuck in 'uploaded'");
                report.redriven.push((id.to_string(), slot));
            }
        }
        if state.is_abandoned(now, ttl_ms) {
            let deleted = sessions
                .store()
                .delete_prefix(&sessions::video_prefix(id))
                .await?;
            tracing::info!(video_id = %id, deleted, "reaped abandoned session");
            report.objects_deleted += deleted;
            report.reaped.push(id.to_string());
        }
    }
    Ok(report)
}
