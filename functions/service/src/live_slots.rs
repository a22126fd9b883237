//! The live-session quota, race-free: an owner with a limit of N live uploads has N
//! slot objects (`owners/o/{owner}/live-slots/{k}.json`). A create claims one with a
//! conditional write (If-None-Match for a slot never used, If-Match on the ETag it read
//! for a slot whose video finished, was deleted, or whose create never completed), so
//! two creates racing for the last slot cannot both win: one write fails its
//! precondition and that create tries the next slot, then gets the 429.
//!
//! Slots are freed lazily: nothing has to run when a video completes or is deleted;
//! the next create finds the slot's video complete (or gone) and takes it over.
//!
//! A create starts its search at a random slot, so its cost does not grow with the
//! owner's live uploads while most slots are free: one GET and one conditional PUT
//! (plus one state read per occupied slot it passes). Only an owner near the limit
//! pays for reading the occupied ones.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::sessions::{SessionError, Sessions};
use crate::store::{PutCondition, StoreError};

/// A claimed slot not bound to a video this long after its claim belongs to a create
/// that died half-way (a create takes well under a second).
const UNBOUND_CLAIM_MS: u64 = 120_000;

#[derive(Debug, Serialize, Deserialize)]
struct SlotRecord {
    /// The video holding the slot; none while its create is running.
    video_id: Option<String>,
    claimed_ms: u64,
}

/// A slot this create holds.
#[derive(Debug)]
pub struct LiveSlot {
    key: String,
    etag: String,
    claimed_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum LiveSlotError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error("{0} is corrupt")]
    Corrupt(String),
}

fn slots_prefix(owner_id: &str) -> String {
    format!("owners/o/{owner_id}/live-slots/")
}

fn slot_key(owner_id: &str, k: usize) -> String {
    format!("{}{k}.json", slots_prefix(owner_id))
}

/// Slot reads in flight at once when the occupied ones are counted.
const COUNT_CONCURRENCY: usize = 16;

/// How many of the owner's slots hold a live upload (or a create still running): what the
/// quota counts. Reads the slot objects and the state of each bound video, so the cost
/// follows the live-session limit, never the owner's count of finished videos.
pub async fn occupied(sessions: &Sessions, owner_id: &str) -> Result<usize, LiveSlotError> {
    use futures::{StreamExt, TryStreamExt};
    let store = sessions.store();
    let now = sessions.now_ms();
    let prefix = slots_prefix(owner_id);
    let (mut count, mut after) = (0, None::<String>);
    loop {
        let keys = store.list_keys(&prefix, after.as_deref(), 1000).await?;
        let Some(last) = keys.last().cloned() else {
            return Ok(count);
        };
        let busy: Vec<bool> = futures::stream::iter(keys)
            .map(|key| async move {
                let Some(obj) = store.get(&key).await? else {
                    return Ok(false);
                };
                let record: SlotRecord =
                    serde_json::from_slice(&obj.body).map_err(|_| LiveSlotError::Corrupt(key))?;
                Ok::<_, LiveSlotError>(!is_free(sessions, &record, now).await?)
            })
            .buffer_unordered(COUNT_CONCURRENCY)
            .try_collect()
            .await?;
        count += busy.into_iter().filter(|b| *b).count();
        after = Some(last);
    }
}

/// Claims one of the owner's `limit` slots; `None` when all hold live uploads.
pub async fn claim(
    sessions: &Sessions,
    owner_id: &str,
    limit: usize,
) -> Result<Option<LiveSlot>, LiveSlotError> {
    let store = sessions.store();
    let now = sessions.now_ms();
    let body = record_body(&SlotRecord {
        video_id: None,
        claimed_ms: now,
    });
    let start = if limit == 0 {
        0
    } else {
        rand::random_range(0..limit)
    };
    for k in (start..limit).chain(0..start) {
        let key = slot_key(owner_id, k);
        let condition = match store.get(&key).await? {
            None => PutCondition::IfAbsent,
            Some(obj) => {
                let record: SlotRecord = serde_json::from_slice(&obj.body)
                    .map_err(|_| LiveSlotError::Corrupt(key.clone()))?;
                if !is_free(sessions, &record, now).await? {
                    continue;
                }
                PutCondition::IfMatch(obj.etag)
            }
        };
        match store
            .put(&key, body.clone(), "application/json", condition)
            .await
        {
            Ok(etag) => {
                return Ok(Some(LiveSlot {
                    key,
                    etag,
                    claimed_ms: now,
                }))
            }
            // another create took this slot between our read and our write
            Err(StoreError::PreconditionFailed(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(None)
}

async fn is_free(
    sessions: &Sessions,
    record: &SlotRecord,
    now: u64,
) -> Result<bool, LiveSlotError> {
    let Some(video_id) = &record.video_id else {
        return Ok(now.saturating_sub(record.claimed_ms) > UNBOUND_CLAIM_MS);
    };
    match sessions.state(video_id).await {
        Ok((state, _)) => Ok(state.complete),
        Err(SessionError::NotFound) => Ok(true),
        Err(e) => Err(e.into()),
    }
}

/// The create succeeded: the slot now belongs to `video_id` until it completes.
pub async fn bind(
    sessions: &Sessions,
    slot: LiveSlot,
    video_id: &str,
) -> Result<(), LiveSlotError> {
    let body = record_body(&SlotRecord {
        video_id: Some(video_id.to_owned()),
        claimed_ms: slot.claimed_ms,
    });
    sessions
        .store()
        .put(
            &slot.key,
            body,
            "application/json",
            PutCondition::IfMatch(slot.etag),
        )
        .await?;
    Ok(())
}

/// The create failed: the slot is free again at once (not only after the claim ages out).
pub async fn release(sessions: &Sessions, slot: LiveSlot) {
    let body = record_body(&SlotRecord {
        video_id: None,
        claimed_ms: 0,
    });
    if let Err(e) = sessions
        .store()
        .put(
            &slot.key,
            body,
            "application/json",
            PutCondition::IfMatch(slot.etag),
        )
        .await
    {
        tracing::warn!(error = %e, key = %slot.key, "could not release a live-session slot; it frees itself");
    }
}

fn record_body(record: &SlotRecord) -> Bytes {
    Bytes::from(serde_json::to_vec(record).unwrap_or_default())
}
