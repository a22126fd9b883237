//! The reaper: deletes sessions that made no progress for the configured time.
//! Scheduled in the cloud (EventBridge → worker function), periodic in the runner.

use std::time::Duration;

use crate::sessions::{self, now_ms, SessionError, Sessions};

#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReapReport {
    pub checked: usize,
    pub reaped: Vec<String>,
    pub objects_deleted: usize,
}

pub async fn reap_abandoned(sessions: &Sessions, ttl: Duration) -> anyhow::Result<ReapReport> {
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
        if state.is_abandoned(now_ms(), ttl_ms) {
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
