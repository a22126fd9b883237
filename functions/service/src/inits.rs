//! Init segments: uploaded to `incoming/`, checked against the plan
//! ([`check_init_segment`]) and published by a server-side copy of exactly
//! the bytes checked. The worker does it with every job until all are
//! public; a viewer's miss on an init does it at once; the reaper finishes
//! videos whose last job ended before the inits arrived.

use chunkstream_domain::init_check::check_init_segment;
use chunkstream_domain::state::{InitState, SessionState};

use crate::sessions::{self, SessionError, SessionRecord, Sessions};
use crate::store::StoreError;

/// Largest init segment read (the plan caps them at 1 MiB).
pub const MAX_INIT_BYTES: u64 = 1024 * 1024;

/// Checks and publishes each uploaded init segment that is not public yet.
/// Returns whether the video is complete afterwards.
pub async fn publish_inits(
    sessions: &Sessions,
    record: &SessionRecord,
) -> Result<bool, SessionError> {
    let id = record.video_id.as_str();
    let (state, _) = sessions.state(id).await?;
    let store = sessions.store();
    let mut complete = state.complete;
    for (track, plan) in record.plan.tracks.iter().enumerate() {
        if state
            .inits
            .get(track)
            .is_none_or(|s| *s == InitState::Published)
        {
            continue;
        }
        let from = sessions::incoming_init_key(id, track);
        let Some(head) = store.get_head(&from, MAX_INIT_BYTES).await? else {
            continue; // not uploaded yet
        };
        let verdict = if head.total_len > MAX_INIT_BYTES {
            Err(format!(
                "{} bytes, more than the {MAX_INIT_BYTES} allowed",
                head.total_len
            ))
        } else {
            check_init_segment(&head.head, plan).map_err(|e| e.to_string())
        };
        let outcome: Result<(), String> = match verdict {
            Ok(()) => match store
                .copy(&from, &sessions::init_key(id, track), &head.etag)
                .await
            {
                Ok(()) => Ok(()),
                // Uploaded again while we checked: the next call checks the new bytes.
                Err(StoreError::PreconditionFailed(_)) => continue,
                Err(e) => return Err(e.into()),
            },
            Err(reason) => Err(reason),
        };
        complete = sessions
            .update_state(id, |s: &mut SessionState| {
                let changed = match &outcome {
                    Ok(()) => s.mark_init_published(track),
                    Err(reason) => s.mark_init_failed(track, format!("init {track}: {reason}")),
                };
                Ok::<_, std::convert::Infallible>((s.complete, changed))
            })
            .await?
            .unwrap_or_else(|never| match never {});
        match outcome {
            Ok(()) => tracing::info!(video_id = %id, track, "init segment published"),
            Err(reason) => tracing::warn!(video_id = %id, track, %reason, "init segment refused"),
        }
    }
    Ok(complete)
}
