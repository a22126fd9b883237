//! The mutable state of one upload session: each slot's life cycle and the
//! viewers' priority windows. Every transition is a pure method, so the
//! storage layer can apply it inside an optimistic-concurrency retry loop.

use serde::{Deserialize, Serialize};

use crate::scheduler::{self, Pick};

/// Life cycle of one slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum SlotState {
    Pending,
    Assigned { lease_expires_ms: u64 },
    Uploaded { at_ms: u64 },
    Published { at_ms: u64 },
    Failed { reason: String },
}

impl SlotState {
    pub fn name(&self) -> &'static str {
        match self {
            SlotState::Pending => "pending",
            SlotState::Assigned { .. } => "assigned",
            SlotState::Uploaded { .. } => "uploaded",
            SlotState::Published { .. } => "published",
            SlotState::Failed { .. } => "failed",
        }
    }

    /// Its letter: in the status answer's `states` and in the stored runs (`slot_runs`).
    pub fn letter(&self) -> char {
        match self {
            SlotState::Pending => 'p',
            SlotState::Assigned { .. } => 'a',
            SlotState::Uploaded { .. } => 'u',
            SlotState::Published { .. } => 'P',
            SlotState::Failed { .. } => 'f',
        }
    }
}

pub use crate::windows::PriorityWindow;

/// Which processing queue a job goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Lane {
    Priority,
    Normal,
}

/// Life cycle of one track's init segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum InitState {
    Pending,
    Published,
    Failed { reason: String },
}

/// A repeated report of the same upload sends its job again only this long after the last.
pub const REPEAT_REPORT_MS: u64 = 1_000;

/// What was reported for a slot in "uploaded": the version its job refers to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadRecord {
    /// ETag of each track's uploaded object, in plan order.
    pub etags: Vec<String>,
    /// The lane its job went to; a re-drive keeps it.
    pub lane: Lane,
}

/// Tunables of the state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedulePolicy {
    pub lease_ms: u64,
    pub window_len: usize,
    pub window_ttl_ms: u64,
    /// Windows per video, and per client (address): see [`crate::windows`].
    pub max_windows: usize,
    pub max_windows_per_client: usize,
    /// While viewers keep windows busy, natural order still gets a slot this often.
    pub natural_every_ms: u64,
}

impl Default for SchedulePolicy {
    fn default() -> Self {
        Self {
            lease_ms: 120_000,
            window_len: 4,
            window_ttl_ms: 120_000,
            max_windows: 16,
            max_windows_per_client: 2,
            natural_every_ms: 20_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("slot {slot} is out of range (the video has {count} slots)")]
    SlotOutOfRange { slot: usize, count: usize },
    #[error("slot {0} is already published")]
    AlreadyPublished(usize),
}

/// The whole mutable record of a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionState {
    /// Stored as runs of equal states (see [`crate::slot_runs`]).
    #[serde(with = "crate::slot_runs::slots_field")]
    pub slots: Vec<SlotState>,
    pub created_ms: u64,
    /// Last time an uploader made progress (assignment, upload, publication).
    pub progress_ms: u64,
    #[serde(default)]
    pub complete: bool,
    /// Set once the incoming objects of a complete video are cleaned up.
    #[serde(default)]
    pub finalised: bool,
    /// Last time a natural-order slot was assigned (starvation guard).
    #[serde(default)]
    pub last_natural_ms: u64,
    /// For each slot in "uploaded": the reported version and its lane.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub uploads: std::collections::BTreeMap<usize, UploadRecord>,
    /// One per track: the init segment's state. Empty for sessions stored
    /// before inits were checked (their inits were public from the start).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inits: Vec<InitState>,
}

impl SessionState {
    pub fn new(slot_count: usize, now_ms: u64) -> Self {
        Self {
            slots: vec![SlotState::Pending; slot_count],
            created_ms: now_ms,
            progress_ms: now_ms,
            complete: false,
            finalised: false,
            last_natural_ms: now_ms,
            uploads: Default::default(),
            inits: Vec::new(),
        }
    }

    /// A new session whose `track_count` init segments must be checked and published too.
    pub fn with_inits(slot_count: usize, track_count: usize, now_ms: u64) -> Self {
        Self {
            inits: vec![InitState::Pending; track_count],
            ..Self::new(slot_count, now_ms)
        }
    }

    fn update_complete(&mut self) {
        self.complete = self
            .slots
            .iter()
            .all(|s| matches!(s, SlotState::Published { .. }))
            && self.inits.iter().all(|i| *i == InitState::Published);
    }

    /// Every slot is published (the inits may still be missing).
    pub fn all_slots_published(&self) -> bool {
        self.slots
            .iter()
            .all(|s| matches!(s, SlotState::Published { .. }))
    }

    /// The worker published track `track`'s init segment. Returns false if it already was.
    pub fn mark_init_published(&mut self, track: usize) -> bool {
        let changed = publish_init(&mut self.inits, track);
        if changed {
            self.update_complete();
        }
        changed
    }

    /// The uploaded init segment of `track` was refused (the uploader sends it again via /init).
    pub fn mark_init_failed(&mut self, track: usize, reason: String) -> bool {
        fail_init(&mut self.inits, track, reason)
    }

    fn check_slot(&self, slot: usize) -> Result<(), StateError> {
        if slot < self.slots.len() {
            Ok(())
        } else {
            Err(StateError::SlotOutOfRange {
                slot,
                count: self.slots.len(),
            })
        }
    }

    /// The lane a job for `slot` belongs in, given the viewers' active windows.
    pub fn lane_for(slot: usize, windows: &[PriorityWindow]) -> Lane {
        if windows.iter().any(|w| w.contains(slot)) {
            Lane::Priority
        } else {
            Lane::Normal
        }
    }

    /// Slots covered by the active `windows` not yet published, nearest a playhead first.
    pub fn priority_slots(&self, windows: &[PriorityWindow]) -> Vec<usize> {
        scheduler::window_order(windows, self.slots.len())
            .into_iter()
            .filter(|s| !matches!(self.slots[*s], SlotState::Published { .. }))
            .collect()
    }

    /// Leases up to `max` slots to the uploader.
    /// `windows`: the viewers' active windows.
    pub fn assign(
        &mut self,
        max: usize,
        now_ms: u64,
        policy: &SchedulePolicy,
        windows: &[PriorityWindow],
    ) -> Vec<Pick> {
        let natural_due = now_ms.saturating_sub(self.last_natural_ms) >= policy.natural_every_ms;
        let picks = scheduler::pick_next(&self.slots, windows, now_ms, max, natural_due);
        if picks.iter().any(|p| !p.priority) {
            self.last_natural_ms = now_ms;
        }
        let lease_expires_ms = now_ms.saturating_add(policy.lease_ms);
        for pick in &picks {
            self.slots[pick.slot] = SlotState::Assigned { lease_expires_ms };
        }
        if !picks.is_empty() {
            self.progress_ms = now_ms;
        }
        picks
    }

    /// Leases up to `max` priority-window slots (nearest a playhead first) and
    /// nothing else: what the priority feed hands the uploader together with
    /// the news, so a viewer's slot needs no extra round trip to be leased.
    pub fn assign_priority(
        &mut self,
        max: usize,
        now_ms: u64,
        policy: &SchedulePolicy,
        windows: &[PriorityWindow],
    ) -> Vec<Pick> {
        let lease_expires_ms = now_ms.saturating_add(policy.lease_ms);
        let picks: Vec<Pick> = scheduler::window_order(windows, self.slots.len())
            .into_iter()
            .filter(|s| scheduler::is_assignable(&self.slots[*s], now_ms))
            .take(max)
            .map(|slot| Pick {
                slot,
                priority: true,
            })
            .collect();
        for pick in &picks {
            self.slots[pick.slot] = SlotState::Assigned { lease_expires_ms };
        }
        if !picks.is_empty() {
            self.progress_ms = now_ms;
        }
        picks
    }

    /// The uploader says `slot` is in S3, with these objects (one ETag per
    /// track). Returns the lane its job goes to, or `None` when exactly this
    /// version was reported less than [`REPEAT_REPORT_MS`] ago (its job is on
    /// its way: no second one). A later repeat sends the job again (the first
    /// send may have failed after the state write; jobs are idempotent), at
    /// most once per [`REPEAT_REPORT_MS`]. Another version supersedes the
    /// earlier report.
    pub fn mark_uploaded(
        &mut self,
        slot: usize,
        etags: Vec<String>,
        now_ms: u64,
        windows: &[PriorityWindow],
    ) -> Result<Option<Lane>, StateError> {
        self.check_slot(slot)?;
        match &self.slots[slot] {
            SlotState::Published { .. } => return Err(StateError::AlreadyPublished(slot)),
            SlotState::Uploaded { at_ms } => {
                if let Some(upload) = self.uploads.get(&slot).filter(|u| u.etags == etags) {
                    if now_ms.saturating_sub(*at_ms) < REPEAT_REPORT_MS {
                        return Ok(None);
                    }
                    let lane = upload.lane;
                    self.slots[slot] = SlotState::Uploaded { at_ms: now_ms };
                    return Ok(Some(lane));
                }
            }
            _ => {}
        }
        let lane = Self::lane_for(slot, windows);
        self.slots[slot] = SlotState::Uploaded { at_ms: now_ms };
        self.uploads.insert(slot, UploadRecord { etags, lane });
        self.progress_ms = now_ms;
        Ok(Some(lane))
    }

    /// The lane a re-driven job for `slot` goes to: the one it had, or the
    /// priority lane if a viewer's window covers it now.
    pub fn redrive_lane(&self, slot: usize, windows: &[PriorityWindow]) -> Lane {
        match (
            self.uploads.get(&slot).map(|u| u.lane),
            Self::lane_for(slot, windows),
        ) {
            (Some(Lane::Priority), _) | (_, Lane::Priority) => Lane::Priority,
            _ => Lane::Normal,
        }
    }

    /// Slots of `window` that are uploaded but not processed yet (their jobs
    /// move to the priority lane when a viewer's window opens on them).
    pub fn uploaded_among(&self, window: std::ops::Range<usize>) -> Vec<usize> {
        window
            .filter(|s| matches!(self.slots.get(*s), Some(SlotState::Uploaded { .. })))
            .collect()
    }

    /// What a viewer's new window on `window` re-queues on the priority lane:
    /// its uploaded, unchecked slots whose job went to the normal lane, each
    /// with the version reported for it.
    pub fn normal_lane_uploads_among(
        &self,
        window: std::ops::Range<usize>,
    ) -> Vec<(usize, Vec<String>)> {
        self.uploaded_among(window)
            .into_iter()
            .filter_map(|slot| match self.uploads.get(&slot) {
                Some(u) if u.lane == Lane::Priority => None,
                upload => Some((slot, upload.map(|u| u.etags.clone()).unwrap_or_default())),
            })
            .collect()
    }

    /// The worker accepted the slot's segments. Returns false if it already was published.
    pub fn mark_published(&mut self, slot: usize, now_ms: u64) -> Result<bool, StateError> {
        self.check_slot(slot)?;
        if matches!(self.slots[slot], SlotState::Published { .. }) {
            return Ok(false);
        }
        self.slots[slot] = SlotState::Published { at_ms: now_ms };
        self.uploads.remove(&slot);
        self.progress_ms = now_ms;
        self.update_complete();
        Ok(true)
    }

    /// The worker refused the slot's segments; the uploader will be asked again.
    /// A published slot stays published (a late duplicate must not undo it).
    pub fn mark_failed(&mut self, slot: usize, reason: String) -> Result<bool, StateError> {
        self.check_slot(slot)?;
        if matches!(self.slots[slot], SlotState::Published { .. }) {
            return Ok(false);
        }
        self.slots[slot] = SlotState::Failed { reason };
        self.uploads.remove(&slot);
        Ok(true)
    }

    /// An uploader resuming after a reload starts over: the leases its earlier
    /// run held are released so those slots can be assigned at once.
    /// Returns how many were released.
    pub fn release_leases(&mut self) -> usize {
        let mut released = 0;
        for slot in &mut self.slots {
            if matches!(slot, SlotState::Assigned { .. }) {
                *slot = SlotState::Pending;
                released += 1;
            }
        }
        released
    }

    /// Counts per state name.
    pub fn counts(&self) -> std::collections::BTreeMap<&'static str, usize> {
        let mut counts: std::collections::BTreeMap<&'static str, usize> =
            ["pending", "assigned", "uploaded", "published", "failed"]
                .into_iter()
                .map(|k| (k, 0))
                .collect();
        for s in &self.slots {
            *counts.entry(s.name()).or_default() += 1;
        }
        counts
    }

    /// Slots not yet published.
    pub fn remaining(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| !matches!(s, SlotState::Published { .. }))
            .count()
    }

    /// No progress for `ttl_ms` and not complete: the session is abandoned.
    pub fn is_abandoned(&self, now_ms: u64, ttl_ms: u64) -> bool {
        !self.complete && now_ms.saturating_sub(self.progress_ms) >= ttl_ms
    }
}

/// Track `track`'s init segment is public. Returns false if it already was (or no such track).
/// Shared by the uploader's state and the worker's published state.
pub(crate) fn publish_init(inits: &mut [InitState], track: usize) -> bool {
    match inits.get_mut(track) {
        Some(state) if *state != InitState::Published => {
            *state = InitState::Published;
            true
        }
        _ => false,
    }
}

/// Track `track`'s uploaded init segment was refused; a published one stays published.
/// Returns whether anything changed.
pub(crate) fn fail_init(inits: &mut [InitState], track: usize, reason: String) -> bool {
    match inits.get_mut(track) {
        Some(state) if *state != InitState::Published => {
            let changed = !matches!(state, InitState::Failed { reason: r } if *r == reason);
            *state = InitState::Failed { reason };
            changed
        }
        _ => false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::windows::{HintKind, ViewerWindows};

    /// An anonymous viewer's seek to `slot` at `now`.
    fn seek(w: &mut ViewerWindows, slot: usize, now: u64) {
        w.hint("", "", slot, HintKind::Seek, now, &P);
    }

    const P: SchedulePolicy = SchedulePolicy {
        lease_ms: 1_000,
        window_len: 3,
        window_ttl_ms: 10_000,
        max_windows: 2,
        max_windows_per_client: 2,
        natural_every_ms: 5_000,
    };

    fn v(etag: &str) -> Vec<String> {
        vec![format!("{etag}0"), format!("{etag}1")]
    }

    #[test]
    fn only_the_first_report_of_a_version_gets_a_job_and_a_new_version_supersedes() {
        let mut s = SessionState::new(4, 0);
        let mut w = ViewerWindows::default();
        seek(&mut w, 1, 0);
        assert_eq!(
            s.mark_uploaded(1, v("a"), 5, &w.active(5, &P)).unwrap(),
            Some(Lane::Priority)
        );
        assert_eq!(
            s.mark_uploaded(1, v("a"), 6, &w.active(6, &P)).unwrap(),
            None,
            "a repeat"
        );
        assert_eq!(s.slots[1], SlotState::Uploaded { at_ms: 5 });
        // A repeat a while later re-sends (the first send may have been lost), keeping the lane.
        let later = 5 + REPEAT_REPORT_MS + P.window_ttl_ms;
        assert_eq!(
            s.mark_uploaded(1, v("a"), later, &w.active(later, &P))
                .unwrap(),
            Some(Lane::Priority)
        );
        assert_eq!(
            s.mark_uploaded(1, v("a"), later + 1, &w.active(later + 1, &P))
                .unwrap(),
            None
        );
        assert_eq!(
            s.mark_uploaded(1, v("b"), later + 2, &w.active(later + 2, &P))
                .unwrap(),
            Some(Lane::Normal),
            "a new version gets the lane of now"
        );
        assert_eq!(s.uploads[&1].etags, v("b"));
        s.mark_failed(1, "bad".into()).unwrap();
        assert!(s.uploads.is_empty());
        assert_eq!(
            s.mark_uploaded(1, v("b"), later + 3, &w.active(later + 3, &P))
                .unwrap(),
            Some(Lane::Normal),
            "after a failure the same bytes may be reported again"
        );
        s.mark_published(1, later + 4).unwrap();
        assert!(s.uploads.is_empty());
    }

    #[test]
    fn a_redrive_keeps_the_priority_lane_after_the_window_is_gone() {
        let mut s = SessionState::new(8, 0);
        let mut w = ViewerWindows::default();
        seek(&mut w, 1, 0);
        s.mark_uploaded(1, v("a"), 1, &w.active(1, &P)).unwrap();
        s.mark_uploaded(5, v("a"), 1, &w.active(1, &P)).unwrap();
        let later = 1 + P.window_ttl_ms;
        assert_eq!(
            SessionState::lane_for(1, &w.active(later, &P)),
            Lane::Normal
        );
        assert_eq!(s.redrive_lane(1, &w.active(later, &P)), Lane::Priority);
        assert_eq!(s.redrive_lane(5, &w.active(later, &P)), Lane::Normal);
        seek(&mut w, 5, later);
        assert_eq!(
            s.redrive_lane(5, &w.active(later, &P)),
            Lane::Priority,
            "a window covers it now"
        );
    }

    #[test]
    fn assign_priority_leases_only_window_slots_nearest_first_and_skips_leased_ones() {
        let mut s = SessionState::new(20, 0);
        let mut w = ViewerWindows::default();
        assert!(
            s.assign_priority(2, 0, &P, &[]).is_empty(),
            "no window, nothing leased"
        );
        seek(&mut w, 10, 0);
        s.slots[10] = SlotState::Assigned {
            lease_expires_ms: 500,
        };
        let picks = s.assign_priority(5, 100, &P, &w.active(100, &P));
        let slots: Vec<usize> = picks.iter().map(|p| p.slot).collect();
        assert_eq!(
            slots,
            vec![11, 12],
            "window 10..13 minus the leased slot 10"
        );
        assert!(picks.iter().all(|p| p.priority));
        assert!(matches!(s.slots[11], SlotState::Assigned { .. }));
        assert!(
            matches!(s.slots[0], SlotState::Pending),
            "natural order untouched"
        );
        // the lease on slot 10 runs out: it is handed out again
        let again: Vec<usize> = s
            .assign_priority(5, 2_000, &P, &w.active(2_000, &P))
            .iter()
            .map(|p| p.slot)
            .collect();
        assert_eq!(again, vec![10, 11, 12]);
    }

    #[test]
    fn a_video_completes_only_once_its_init_segments_are_published_too() {
        let mut s = SessionState::with_inits(1, 2, 0);
        s.mark_published(0, 1).unwrap();
        assert!(s.all_slots_published() && !s.complete);
        assert!(s.mark_init_failed(0, "bad".into()));
        assert!(s.mark_init_published(1));
        assert!(!s.complete);
        assert!(s.mark_init_published(0));
        assert!(s.complete);
        assert!(!s.mark_init_published(0), "once");
        assert!(
            !s.mark_init_failed(0, "late".into()),
            "a published init stays published"
        );
        let legacy = SessionState::new(1, 0);
        let mut legacy = legacy;
        legacy.mark_published(0, 1).unwrap();
        assert!(
            legacy.complete,
            "sessions without tracked inits complete as before"
        );
    }

    #[test]
    fn a_viewer_keeping_windows_busy_cannot_starve_natural_order_forever() {
        let mut s = SessionState::new(100, 0);
        let mut w = ViewerWindows::default();
        let mut natural_at = Vec::new();
        // A viewer re-prioritizes a fresh far window before every single-slot request.
        for step in 0..40u64 {
            let now = step * 1_000;
            seek(&mut w, 50 + step as usize, now);
            let pick = s.assign(1, now, &P, &w.active(now, &P));
            if !pick[0].priority {
                natural_at.push(now);
            }
        }
        assert!(
            natural_at.len() >= 7,
            "natural order served at {natural_at:?}"
        );
        assert!(
            natural_at.windows(2).all(|w| w[1] - w[0] <= 5_000),
            "{natural_at:?}"
        );
    }

    #[test]
    fn assignment_leases_slots_and_expired_leases_come_back() {
        let mut s = SessionState::new(3, 0);
        let first: Vec<usize> = s.assign(2, 0, &P, &[]).iter().map(|p| p.slot).collect();
        assert_eq!(first, vec![0, 1]);
        let second: Vec<usize> = s.assign(5, 10, &P, &[]).iter().map(|p| p.slot).collect();
        assert_eq!(second, vec![2]);
        assert!(s.assign(5, 999, &P, &[]).is_empty());
        let again: Vec<usize> = s.assign(5, 1_010, &P, &[]).iter().map(|p| p.slot).collect();
        assert_eq!(again, vec![0, 1, 2]);
    }

    #[test]
    fn after_prioritize_next_assignments_start_at_that_slot() {
        let mut s = SessionState::new(10, 0);
        let mut w = ViewerWindows::default();
        seek(&mut w, 6, 0);
        let picks = s.assign(4, 1, &P, &w.active(1, &P));
        assert_eq!(
            picks.iter().map(|p| p.slot).collect::<Vec<_>>(),
            vec![6, 7, 8, 0]
        );
        assert!(picks[0].priority && !picks[3].priority);
    }

    #[test]
    fn uploads_inside_a_window_go_to_the_priority_lane() {
        let mut s = SessionState::new(10, 0);
        let mut w = ViewerWindows::default();
        seek(&mut w, 6, 0);
        assert_eq!(
            s.mark_uploaded(7, v("a"), 1, &w.active(1, &P)).unwrap(),
            Some(Lane::Priority)
        );
        assert_eq!(
            s.mark_uploaded(2, v("a"), 1, &w.active(1, &P)).unwrap(),
            Some(Lane::Normal)
        );
        assert_eq!(
            s.mark_uploaded(9, v("a"), 1, &w.active(1, &P)).unwrap(),
            Some(Lane::Normal)
        );
        // The window goes stale after its ttl.
        assert_eq!(
            s.mark_uploaded(8, v("a"), 20_000, &w.active(20_000, &P))
                .unwrap(),
            Some(Lane::Normal)
        );
    }

    #[test]
    fn a_windows_uploaded_unprocessed_slots_are_found_for_requeueing() {
        let mut s = SessionState::new(10, 0);
        s.mark_uploaded(4, v("a"), 0, &[]).unwrap();
        s.mark_uploaded(5, v("a"), 0, &[]).unwrap();
        s.mark_published(5, 0).unwrap();
        assert_eq!(s.uploaded_among(3..6), vec![4]);
        let mut w = ViewerWindows::default();
        seek(&mut w, 6, 0);
        s.mark_uploaded(6, v("b"), 0, &w.active(0, &P)).unwrap();
        s.mark_uploaded(7, v("c"), 0, &[]).unwrap();
        assert_eq!(
            s.normal_lane_uploads_among(3..9),
            vec![(4, v("a")), (7, v("c"))],
            "slot 6's job is on the priority lane already"
        );
    }

    #[test]
    fn publishing_every_slot_completes_and_duplicates_are_harmless() {
        let mut s = SessionState::new(2, 0);
        assert!(s.mark_published(0, 1).unwrap());
        assert!(!s.mark_published(0, 2).unwrap());
        assert!(!s.complete);
        assert!(s.mark_published(1, 3).unwrap());
        assert!(s.complete);
        assert!(!s.mark_failed(1, "late duplicate".into()).unwrap());
        assert_eq!(s.slots[1].name(), "published");
        assert_eq!(
            s.mark_uploaded(1, v("a"), 4, &[]),
            Err(StateError::AlreadyPublished(1))
        );
    }

    #[test]
    fn released_leases_are_assignable_again_at_once() {
        let mut s = SessionState::new(3, 0);
        s.assign(2, 0, &P, &[]);
        s.mark_uploaded(1, v("a"), 1, &[]).unwrap();
        assert_eq!(s.release_leases(), 1);
        let again: Vec<usize> = s.assign(3, 2, &P, &[]).iter().map(|p| p.slot).collect();
        assert_eq!(again, vec![0, 2], "the uploaded slot stays uploaded");
    }

    #[test]
    fn out_of_range_slots_are_refused() {
        let mut s = SessionState::new(2, 0);
        assert!(matches!(
            s.mark_uploaded(2, v("a"), 0, &[]),
            Err(StateError::SlotOutOfRange { .. })
        ));
        assert!(s.mark_published(2, 0).is_err());
    }

    #[test]
    fn abandonment_is_measured_from_the_last_progress() {
        let mut s = SessionState::new(2, 0);
        assert!(!s.is_abandoned(999, 1_000));
        assert!(s.is_abandoned(1_000, 1_000));
        s.assign(1, 900, &P, &[]);
        assert!(!s.is_abandoned(1_000, 1_000));
        s.mark_published(0, 1).unwrap();
        s.mark_published(1, 1).unwrap();
        assert!(
            !s.is_abandoned(u64::MAX, 1),
            "a complete video is never reaped"
        );
    }

    #[test]
    fn state_round_trips_through_json() {
        let mut s = SessionState::new(3, 5);
        s.mark_failed(1, "wrong tfdt".into()).unwrap();
        let json = serde_json::to_string(&s).unwrap();
        assert!(
            json.contains(r#""runs":[[1,"p"],[1,"f","wrong tfdt"],[1,"p"]]"#),
            "{json}"
        );
        let back: SessionState = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
    }
}
