//! Viewers' priority windows, one per viewer, kept apart from the slot state:
//! viewers write only this record, never the one the uploader and the worker
//! write. A viewer is named by the id its watch page makes (random, per tab);
//! a client without one shares the old behaviour (a hint takes over the
//! anonymous window that contains the slot).
//!
//! Bounds: at most [`SchedulePolicy::max_windows`] windows per video and
//! [`SchedulePolicy::max_windows_per_client`] per client (the caller's IP),
//! evicting the least recently refreshed first, so one client minting viewer
//! ids pushes out only its own windows; a flood from many addresses can at
//! worst evict the oldest windows, which their viewers re-open on their next
//! hint. Windows not refreshed for `window_ttl_ms` expire.

use serde::{Deserialize, Serialize};

use crate::state::SchedulePolicy;

/// Slots a viewer is about to need: `playhead_slot` and the `len - 1` after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriorityWindow {
    pub playhead_slot: usize,
    pub len: usize,
    pub updated_ms: u64,
    /// The viewer id the watch page sent; empty for anonymous hints.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub viewer: String,
    /// Who sent it (the client address when known), for the per-client cap.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub client: String,
}

impl PriorityWindow {
    pub fn contains(&self, slot: usize) -> bool {
        slot >= self.playhead_slot && slot - self.playhead_slot < self.len
    }

    /// Whether a hint of `kind` for `slot` would leave this (fresh) window as it is.
    pub fn covers(
        &self,
        slot: usize,
        kind: HintKind,
        now_ms: u64,
        policy: &SchedulePolicy,
    ) -> bool {
        let fresh =
            now_ms.saturating_sub(self.updated_ms) < ViewerWindows::refresh_after_ms(policy);
        fresh
            && match kind {
                HintKind::Seek => self.playhead_slot == slot,
                HintKind::Miss => self.contains(slot),
            }
    }
}

/// A viewer id is up to this long, of `[A-Za-z0-9_-]`; anything else is anonymous.
pub const MAX_VIEWER_ID_LEN: usize = 64;

pub fn is_valid_viewer_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_VIEWER_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// What kind of hint a viewer sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HintKind {
    /// The viewer jumped to `slot` (prioritize): its window starts there.
    Seek,
    /// The viewer's player asked for `slot` and it was not there (a segment miss):
    /// a slot already in the viewer's fresh window changes nothing.
    Miss,
}

/// What a hint did to the windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HintOutcome {
    /// Nothing to write: the viewer's window already covers it and is fresh.
    Unchanged,
    /// The window was refreshed in place (no change the uploader must hear of).
    Refreshed,
    /// A window opened or moved: the version changed.
    Moved,
}

/// A watch page that said it is open ([`ViewerWindows::watched_ms`]) counts as
/// watching for this long; the page says so again every minute.
pub const WATCHING_TTL_MS: u64 = 90_000;

/// Every viewer's window of one video (`v/{id}/windows.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewerWindows {
    /// Bumped whenever a window opens or moves (uploaders long-poll it).
    pub version: u64,
    pub windows: Vec<PriorityWindow>,
    /// When a watch page last said it is open (0: never). Not a priority change:
    /// the version stays; the uploader's feed only watches more closely.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub watched_ms: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl ViewerWindows {
    /// Whether someone may seek soon: a live window, or a watch page open
    /// within [`WATCHING_TTL_MS`]. The priority feed re-reads quickly only then.
    pub fn watched(&self, now_ms: u64, policy: &SchedulePolicy) -> bool {
        now_ms.saturating_sub(self.watched_ms) < WATCHING_TTL_MS
            || !self.active(now_ms, policy).is_empty()
    }

    /// A fresh window is not rewritten for a hint it already covers until this
    /// share of its time to live has passed.
    fn refresh_after_ms(policy: &SchedulePolicy) -> u64 {
        policy.window_ttl_ms / 4
    }

    /// Windows refreshed within the time to live, at `now_ms`.
    pub fn active(&self, now_ms: u64, policy: &SchedulePolicy) -> Vec<PriorityWindow> {
        self.windows
            .iter()
            .filter(|w| now_ms.saturating_sub(w.updated_ms) < policy.window_ttl_ms)
            .cloned()
            .collect()
    }

    /// Whether `hint` would change nothing (so the caller need not write).
    pub fn covers(
        &self,
        viewer: &str,
        slot: usize,
        kind: HintKind,
        now_ms: u64,
        policy: &SchedulePolicy,
    ) -> bool {
        self.own(viewer, slot)
            .is_some_and(|i| self.windows[i].covers(slot, kind, now_ms, policy))
    }

    /// The window `viewer` owns; for anonymous hints, the anonymous window containing `slot`.
    pub fn own(&self, viewer: &str, slot: usize) -> Option<usize> {
        if viewer.is_empty() {
            self.windows
                .iter()
                .position(|w| w.viewer.is_empty() && w.contains(slot))
        } else {
            self.windows.iter().position(|w| w.viewer == viewer)
        }
    }

    /// Applies a viewer's hint for `slot` (already range-checked by the caller).
    pub fn hint(
        &mut self,
        viewer: &str,
        client: &str,
        slot: usize,
        kind: HintKind,
        now_ms: u64,
        policy: &SchedulePolicy,
    ) -> HintOutcome {
        if self.covers(viewer, slot, kind, now_ms, policy) {
            return HintOutcome::Unchanged;
        }
        self.windows
            .retain(|w| now_ms.saturating_sub(w.updated_ms) < policy.window_ttl_ms);
        let len = policy.window_len;
        if let Some(i) = self.own(viewer, slot) {
            let w = &mut self.windows[i];
            let keep_playhead = kind == HintKind::Miss && w.contains(slot);
            w.updated_ms = now_ms;
            w.client = client.to_string();
            if keep_playhead || w.playhead_slot == slot {
                return HintOutcome::Refreshed;
            }
            w.playhead_slot = slot;
            w.len = len;
            self.version += 1;
            return HintOutcome::Moved;
        }
        self.windows.push(PriorityWindow {
            playhead_slot: slot,
            len,
            updated_ms: now_ms,
            viewer: viewer.to_string(),
            client: client.to_string(),
        });
        self.version += 1;
        if !client.is_empty() {
            self.evict_oldest(policy.max_windows_per_client, |w| w.client == client);
        }
        self.evict_oldest(policy.max_windows, |_| true);
        HintOutcome::Moved
    }

    /// Drops the least recently refreshed windows matching `of` beyond `cap`.
    fn evict_oldest(&mut self, cap: usize, of: impl Fn(&PriorityWindow) -> bool) {
        while self.windows.iter().filter(|w| of(w)).count() > cap.max(1) {
            let Some(oldest) = self
                .windows
                .iter()
                .enumerate()
                .filter(|(_, w)| of(w))
                .min_by_key(|(_, w)| w.updated_ms)
                .map(|(i, _)| i)
            else {
                return;
            };
            self.windows.remove(oldest);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_video_is_watched_while_a_page_said_so_recently_or_a_window_is_live() {
        let policy = SchedulePolicy::default();
        let mut w = ViewerWindows::default();
        assert!(!w.watched(1_000_000, &policy), "never watched");
        w.watched_ms = 1_000_000;
        assert!(w.watched(1_000_000 + WATCHING_TTL_MS - 1, &policy));
        assert!(!w.watched(1_000_000 + WATCHING_TTL_MS, &policy));
        let now = 5_000_000;
        w.hint("v1", "", 3, HintKind::Seek, now, &policy);
        assert!(w.watched(now + policy.window_ttl_ms - 1, &policy));
        assert!(!w.watched(now + policy.window_ttl_ms.max(WATCHING_TTL_MS), &policy));
        // Old records (no field) read as never watched, and the field is left out at 0.
        let old: ViewerWindows = serde_json::from_str(r#"{"version":2,"windows":[]}"#).unwrap();
        assert_eq!(old.watched_ms, 0);
        assert!(!serde_json::to_string(&old).unwrap().contains("watched_ms"));
    }

    const P: SchedulePolicy = SchedulePolicy {
        lease_ms: 1_000,
        window_len: 3,
        window_ttl_ms: 10_000,
        max_windows: 3,
        max_windows_per_client: 2,
        natural_every_ms: 5_000,
    };

    fn playheads(w: &ViewerWindows) -> Vec<(String, usize)> {
        let mut v: Vec<_> = w
            .windows
            .iter()
            .map(|w| (w.viewer.clone(), w.playhead_slot))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_viewers_seek_replaces_its_own_window_only() {
        let mut w = ViewerWindows::default();
        assert_eq!(
            w.hint("a", "", 10, HintKind::Seek, 0, &P),
            HintOutcome::Moved
        );
        assert_eq!(
            w.hint("b", "", 11, HintKind::Seek, 1, &P),
            HintOutcome::Moved
        );
        assert_eq!(
            w.hint("a", "", 40, HintKind::Seek, 2, &P),
            HintOutcome::Moved
        );
        assert_eq!(
            playheads(&w),
            vec![("a".into(), 40), ("b".into(), 11)],
            "b's window (which contains nothing of a's) stays"
        );
        assert_eq!(w.version, 3);
    }

    #[test]
    fn a_hint_already_covered_by_a_fresh_window_changes_nothing() {
        let mut w = ViewerWindows::default();
        w.hint("a", "", 10, HintKind::Seek, 0, &P);
        let before = w.clone();
        assert!(w.covers("a", 11, HintKind::Miss, 100, &P));
        assert_eq!(
            w.hint("a", "", 12, HintKind::Miss, 100, &P),
            HintOutcome::Unchanged
        );
        assert_eq!(
            w.hint("a", "", 10, HintKind::Seek, 100, &P),
            HintOutcome::Unchanged
        );
        assert_eq!(w, before);
        assert!(
            !w.covers("a", 11, HintKind::Seek, 100, &P),
            "a seek inside the window moves the playhead"
        );
        // Past a quarter of the time to live a covered hint refreshes it (kept alive).
        assert_eq!(
            w.hint("a", "", 11, HintKind::Miss, 3_000, &P),
            HintOutcome::Refreshed
        );
        assert_eq!(w.windows[0].playhead_slot, 10);
        assert_eq!(w.windows[0].updated_ms, 3_000);
        assert_eq!(w.version, before.version);
    }

    #[test]
    fn windows_expire_and_a_flood_of_ids_from_one_client_evicts_only_its_own() {
        let mut w = ViewerWindows::default();
        w.hint("real", "10.0.0.1", 5, HintKind::Seek, 0, &P);
        for (i, id) in ["f1", "f2", "f3", "f4", "f5"].iter().enumerate() {
            w.hint(id, "10.0.0.9", 20 + i, HintKind::Seek, 1 + i as u64, &P);
        }
        assert_eq!(
            playheads(&w),
            vec![("f4".into(), 23), ("f5".into(), 24), ("real".into(), 5)],
            "the flooding client keeps its two newest windows"
        );
        // Across clients the total cap evicts the least recently refreshed.
        w.hint("real", "10.0.0.1", 5, HintKind::Miss, 2_600, &P);
        w.hint("other", "10.0.0.2", 30, HintKind::Seek, 2_700, &P);
        assert_eq!(
            playheads(&w),
            vec![("f5".into(), 24), ("other".into(), 30), ("real".into(), 5)]
        );
        assert_eq!(w.active(12_000, &P).len(), 2, "f5 is stale");
        w.hint("late", "", 1, HintKind::Seek, 12_000, &P);
        assert_eq!(
            playheads(&w),
            vec![("late".into(), 1), ("other".into(), 30), ("real".into(), 5)],
            "expired windows are dropped when the record is written"
        );
    }

    #[test]
    fn anonymous_hints_take_over_the_anonymous_window_that_contains_the_slot() {
        let mut w = ViewerWindows::default();
        w.hint("", "", 10, HintKind::Seek, 0, &P);
        w.hint("", "", 11, HintKind::Seek, 1, &P);
        assert_eq!(playheads(&w), vec![(String::new(), 11)]);
        w.hint("", "", 30, HintKind::Seek, 2, &P);
        assert_eq!(w.windows.len(), 2);
        assert!(is_valid_viewer_id("tab-1_x"));
        assert!(!is_valid_viewer_id("a/b") && !is_valid_viewer_id(""));
    }

    #[test]
    fn windows_round_trip_and_legacy_windows_are_anonymous() {
        let legacy: PriorityWindow =
            serde_json::from_str(r#"{"playhead_slot":3,"len":4,"updated_ms":9}"#).unwrap();
        assert!(legacy.viewer.is_empty());
        let mut w = ViewerWindows::default();
        w.hint("v", "c", 2, HintKind::Seek, 5, &P);
        let back: ViewerWindows =
            serde_json::from_str(&serde_json::to_string(&w).unwrap()).unwrap();
        assert_eq!(back, w);
    }
}
