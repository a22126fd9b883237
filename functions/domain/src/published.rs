//! What the worker writes: which slots and init segments are public, which
//! uploads it refused, and whether the video is complete (`published.json`).
//! The uploader's calls write the other record (`state.json`: leases,
//! reported uploads), so the two writers never contend on one object.
//! [`SessionState::merged`] joins both into the one view every decision and
//! the status use.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::state::{InitState, SessionState, SlotState, StateError};

/// A refused upload: why, and which version (ETags) was refused, so a newer
/// upload of the slot is never shown as failed by an older refusal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub reason: String,
    pub etags: Vec<String>,
}

/// The worker's record of one video.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishState {
    /// One character per slot: `1` published, `0` not. Stored as the
    /// published ranges (see [`crate::slot_runs`]).
    #[serde(with = "crate::slot_runs::flags_field")]
    pub published: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub failed: BTreeMap<usize, Refusal>,
    /// One per track (empty for sessions whose inits were public from the start).
    #[serde(default)]
    pub inits: Vec<InitState>,
    pub complete: bool,
    /// Set once the incoming objects of a complete video are cleaned up.
    pub finalised: bool,
    /// Last publication.
    pub progress_ms: u64,
}

impl PublishState {
    pub fn new(slot_count: usize, track_count: usize, now_ms: u64) -> Self {
        Self {
            published: "0".repeat(slot_count),
            failed: BTreeMap::new(),
            inits: vec![InitState::Pending; track_count],
            complete: false,
            finalised: false,
            progress_ms: now_ms,
        }
    }

    /// The worker's share of a state written before the split (everything was in `state.json`).
    pub fn from_legacy(s: &SessionState) -> Self {
        Self {
            published: s
                .slots
                .iter()
                .map(|x| {
                    if matches!(x, SlotState::Published { .. }) {
                        '1'
                    } else {
                        '0'
                    }
                })
                .collect(),
            failed: s
                .slots
                .iter()
                .enumerate()
                .filter_map(|(i, x)| match x {
                    SlotState::Failed { reason } => Some((
                        i,
                        Refusal {
                            reason: reason.clone(),
                            etags: Vec::new(),
                        },
                    )),
                    _ => None,
                })
                .collect(),
            inits: s.inits.clone(),
            complete: s.complete,
            finalised: s.finalised,
            progress_ms: s.progress_ms,
        }
    }

    pub fn slot_count(&self) -> usize {
        self.published.len()
    }

    pub fn is_published(&self, slot: usize) -> bool {
        self.published.as_bytes().get(slot) == Some(&b'1')
    }

    pub fn all_slots_published(&self) -> bool {
        !self.published.contains('0')
    }

    fn check_slot(&self, slot: usize) -> Result<(), StateError> {
        if slot < self.slot_count() {
            Ok(())
        } else {
            Err(StateError::SlotOutOfRange {
                slot,
                count: self.slot_count(),
            })
        }
    }

    fn update_complete(&mut self) {
        self.complete =
            self.all_slots_published() && self.inits.iter().all(|i| *i == InitState::Published);
    }

    /// The slot's tracks are public. Returns false if it already was.
    pub fn mark_published(&mut self, slot: usize, now_ms: u64) -> Result<bool, StateError> {
        self.check_slot(slot)?;
        if self.is_published(slot) {
            return Ok(false);
        }
        self.published.replace_range(slot..=slot, "1");
        self.failed.remove(&slot);
        self.progress_ms = now_ms;
        self.update_complete();
        Ok(true)
    }

    /// The upload `etags` of `slot` was refused. A published slot stays published.
    pub fn mark_failed(
        &mut self,
        slot: usize,
        reason: String,
        etags: Vec<String>,
    ) -> Result<bool, StateError> {
        self.check_slot(slot)?;
        if self.is_published(slot) {
            return Ok(false);
        }
        let refusal = Refusal { reason, etags };
        if self.failed.get(&slot) == Some(&refusal) {
            return Ok(false);
        }
        self.failed.insert(slot, refusal);
        Ok(true)
    }

    /// Track `track`'s init segment is public. Returns false if it already was.
    pub fn mark_init_published(&mut self, track: usize) -> bool {
        let changed = crate::state::publish_init(&mut self.inits, track);
        if changed {
            self.update_complete();
        }
        changed
    }

    /// The uploaded init segment of `track` was refused (the uploader sends it again via /init).
    pub fn mark_init_failed(&mut self, track: usize, reason: String) -> bool {
        crate::state::fail_init(&mut self.inits, track, reason)
    }
}

impl SessionState {
    /// The uploader's record joined with the worker's: published slots are
    /// published, an upload the worker refused (that very version) is failed,
    /// completion and inits are the worker's.
    pub fn merged(mut self, worker: &PublishState) -> SessionState {
        for (slot, s) in self.slots.iter_mut().enumerate() {
            if worker.is_published(slot) {
                if !matches!(s, SlotState::Published { .. }) {
                    *s = SlotState::Published {
                        at_ms: worker.progress_ms,
                    };
                }
                self.uploads.remove(&slot);
            } else if let Some(refusal) = worker.failed.get(&slot) {
                let same_version = self
                    .uploads
                    .get(&slot)
                    .is_none_or(|u| refusal.etags.is_empty() || u.etags == refusal.etags);
                if matches!(s, SlotState::Uploaded { .. }) && same_version {
                    *s = SlotState::Failed {
                        reason: refusal.reason.clone(),
                    };
                    self.uploads.remove(&slot);
                }
            }
        }
        self.inits = worker.inits.clone();
        self.complete = worker.complete;
        self.finalised = worker.finalised;
        self.progress_ms = self.progress_ms.max(worker.progress_ms);
        self
    }

    /// What the uploader writes back after changing a merged view: its own
    /// fields, with a refused slot left as `original` had it (the refusal is
    /// the worker's to record) and the worker's fields as `original` had them.
    pub fn upload_part(&self, original: &SessionState) -> SessionState {
        let mut out = self.clone();
        for (slot, s) in self.slots.iter().enumerate() {
            if matches!(s, SlotState::Failed { .. }) {
                if let Some(before) = original.slots.get(slot) {
                    out.slots[slot] = before.clone();
                }
                match original.uploads.get(&slot) {
                    Some(u) => out.uploads.insert(slot, u.clone()),
                    None => out.uploads.remove(&slot),
                };
            }
        }
        out.inits = original.inits.clone();
        out.complete = original.complete;
        out.finalised = original.finalised;
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::state::{SchedulePolicy, UploadRecord};

    fn v(e: &str) -> Vec<String> {
        vec![format!("{e}0"), format!("{e}1")]
    }

    #[test]
    fn a_refusal_fails_only_the_version_it_refused() {
        let p = SchedulePolicy::default();
        let mut upl = SessionState::new(3, 0);
        upl.assign(3, 0, &p, &[]);
        upl.mark_uploaded(1, v("a"), 1, &[]).unwrap();
        let mut w = PublishState::new(3, 0, 0);
        assert!(w.mark_failed(1, "bad tfdt".into(), v("a")).unwrap());
        let merged = upl.clone().merged(&w);
        assert_eq!(merged.slots[1].name(), "failed");
        // The uploader re-reports other bytes: uploaded again, the refusal no longer applies.
        let mut changed = merged.clone();
        assert!(changed.mark_uploaded(1, v("b"), 2, &[]).unwrap().is_some());
        let written = changed.upload_part(&upl);
        assert_eq!(
            written.uploads[&1],
            UploadRecord {
                etags: v("b"),
                lane: crate::state::Lane::Normal
            }
        );
        assert_eq!(written.clone().merged(&w).slots[1].name(), "uploaded");
        // An unrelated uploader change leaves the refused slot as the uploader had it.
        let mut other = merged.clone();
        assert_eq!(other.release_leases(), 2);
        let kept = other.upload_part(&upl);
        assert_eq!(kept.slots[1], upl.slots[1]);
        assert_eq!(kept.uploads[&1].etags, v("a"));
        assert_eq!(kept.slots[0], SlotState::Pending);
        // Assigned again, the slot is the uploader's once more.
        let mut again = merged.clone();
        let picks = again.assign(1, 200_000, &p, &[]);
        assert_eq!(picks[0].slot, 0, "expired leases first in natural order");
        let mut again = merged;
        again.release_leases();
        assert!(again.assign(3, 3, &p, &[]).iter().any(|p| p.slot == 1));
        assert!(matches!(
            again.upload_part(&upl).slots[1],
            SlotState::Assigned { .. }
        ));
    }

    #[test]
    fn publication_and_completion_are_the_workers() {
        let upl = SessionState::new(2, 0);
        let mut w = PublishState::new(2, 1, 0);
        assert!(w.mark_published(0, 5).unwrap());
        assert!(!w.mark_published(0, 6).unwrap());
        assert!(w.mark_published(1, 7).unwrap());
        assert!(!w.complete, "the init is missing");
        assert!(!w.mark_failed(1, "late".into(), v("x")).unwrap());
        assert!(w.mark_init_published(0));
        assert!(w.complete);
        let m = upl.merged(&w);
        assert!(m.complete && m.all_slots_published());
        assert!(m.mark_uploaded_refused());
        let back: PublishState = serde_json::from_str(&serde_json::to_string(&w).unwrap()).unwrap();
        assert_eq!(back, w);
        assert!(w.mark_published(2, 0).is_err());
    }

    #[test]
    fn a_legacy_state_splits_into_the_same_view() {
        let mut s = SessionState::with_inits(3, 1, 0);
        s.mark_published(0, 1).unwrap();
        s.mark_failed(2, "bad".into()).unwrap();
        s.mark_init_published(0);
        let w = PublishState::from_legacy(&s);
        assert_eq!(w.published, "100");
        assert_eq!(s.clone().merged(&w), s);
    }

    impl SessionState {
        fn mark_uploaded_refused(&self) -> bool {
            self.clone().mark_uploaded(0, v("z"), 9, &[]).is_err()
        }
    }
}
