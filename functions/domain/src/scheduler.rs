//! The scheduler policy: which slots an uploader should send next.
//!
//! Priority-window slots that still need uploading come first, nearest a
//! playhead first (interleaved across viewers), then everything else in
//! natural order. Pure: no clocks, no I/O; `now_ms` is passed in.

use std::collections::HashSet;

use crate::state::{PriorityWindow, SlotState};

/// Whether `state` may be handed to an uploader at `now_ms`: never uploaded,
/// failed validation, or assigned under a lease that has run out.
pub fn is_assignable(state: &SlotState, now_ms: u64) -> bool {
    match state {
        SlotState::Pending | SlotState::Failed { .. } => true,
        SlotState::Assigned { lease_expires_ms } => *lease_expires_ms <= now_ms,
        SlotState::Uploaded { .. } | SlotState::Published { .. } => false,
    }
}

/// Slots covered by the windows, ordered nearest-to-a-playhead first; among
/// equal distances the most recently refreshed window wins. No duplicates.
pub fn window_order(windows: &[PriorityWindow], slot_count: usize) -> Vec<usize> {
    let mut ranked: Vec<(usize, std::cmp::Reverse<u64>, usize)> = Vec::new();
    for w in windows {
        for distance in 0..w.len {
            let slot = w.playhead_slot.saturating_add(distance);
            if slot < slot_count {
                ranked.push((distance, std::cmp::Reverse(w.updated_ms), slot));
            }
        }
    }
    ranked.sort();
    let mut seen = std::collections::HashSet::new();
    ranked
        .into_iter()
        .filter_map(|(_, _, slot)| seen.insert(slot).then_some(slot))
        .collect()
}

/// A slot picked for upload, and whether it was picked for a viewer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pick {
    pub slot: usize,
    pub priority: bool,
}

/// Picks up to `max` slots to upload next. With `natural_due`, at least one
/// natural-order slot is in the batch even when windows could fill it, so
/// viewers' windows never starve the rest of the upload forever.
pub fn pick_next(
    slots: &[SlotState],
    windows: &[PriorityWindow],
    now_ms: u64,
    max: usize,
    natural_due: bool,
) -> Vec<Pick> {
    let mut picks = pick_in_order(slots, windows, now_ms, max);
    if natural_due && !picks.is_empty() && picks.iter().all(|p| p.priority) {
        let in_batch: HashSet<usize> = picks.iter().map(|p| p.slot).collect();
        let windowed: HashSet<usize> = window_order(windows, slots.len()).into_iter().collect();
        let natural = slots.iter().enumerate().find(|(slot, s)| {
            !windowed.contains(slot) && !in_batch.contains(slot) && is_assignable(s, now_ms)
        });
        if let Some((slot, _)) = natural {
            if picks.len() == max {
                picks.pop();
            }
            picks.push(Pick {
                slot,
                priority: false,
            });
        }
    }
    picks
}

/// Window slots nearest a playhead first, then natural order.
fn pick_in_order(
    slots: &[SlotState],
    windows: &[PriorityWindow],
    now_ms: u64,
    max: usize,
) -> Vec<Pick> {
    let mut picks: Vec<Pick> = Vec::with_capacity(max);
    let mut taken = std::collections::HashSet::new();
    for slot in window_order(windows, slots.len()) {
        if picks.len() == max {
            return picks;
        }
        if slots.get(slot).is_some_and(|s| is_assignable(s, now_ms)) {
            taken.insert(slot);
            picks.push(Pick {
                slot,
                priority: true,
            });
        }
    }
    for (slot, state) in slots.iter().enumerate() {
        if picks.len() == max {
            break;
        }
        if !taken.contains(&slot) && is_assignable(state, now_ms) {
            picks.push(Pick {
                slot,
                priority: false,
            });
        }
    }
    picks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(n: usize) -> Vec<SlotState> {
        vec![SlotState::Pending; n]
    }

    fn window(playhead_slot: usize, len: usize, updated_ms: u64) -> PriorityWindow {
        PriorityWindow {
            playhead_slot,
            len,
            updated_ms,
            viewer: String::new(),
            client: String::new(),
        }
    }

    fn pick_next_now(
        slots: &[SlotState],
        windows: &[PriorityWindow],
        now_ms: u64,
        max: usize,
    ) -> Vec<Pick> {
        pick_next(slots, windows, now_ms, max, false)
    }

    #[test]
    fn when_natural_order_is_due_a_full_window_batch_still_carries_one_natural_slot() {
        let windows = [window(10, 4, 5)];
        let not_due = pick_next(&pending(20), &windows, 0, 3, false);
        assert_eq!(slots_of(&not_due), vec![10, 11, 12]);
        let due = pick_next(&pending(20), &windows, 0, 3, true);
        assert_eq!(slots_of(&due), vec![10, 11, 0]);
        assert!(!due[2].priority);
        // A batch that already has natural slots is left alone.
        let roomy = pick_next(&pending(20), &windows, 0, 6, true);
        assert_eq!(slots_of(&roomy), vec![10, 11, 12, 13, 0, 1]);
    }

    fn slots_of(picks: &[Pick]) -> Vec<usize> {
        picks.iter().map(|p| p.slot).collect()
    }

    #[test]
    fn without_windows_slots_go_in_natural_order() {
        let picks = pick_next_now(&pending(10), &[], 0, 3);
        assert_eq!(slots_of(&picks), vec![0, 1, 2]);
        assert!(picks.iter().all(|p| !p.priority));
    }

    #[test]
    fn a_window_is_served_before_natural_order() {
        let picks = pick_next_now(&pending(20), &[window(12, 3, 5)], 0, 5);
        assert_eq!(slots_of(&picks), vec![12, 13, 14, 0, 1]);
        assert_eq!(picks.iter().filter(|p| p.priority).count(), 3);
    }

    #[test]
    fn window_slots_already_uploaded_or_published_are_skipped() {
        let mut slots = pending(20);
        slots[12] = SlotState::Published { at_ms: 1 };
        slots[13] = SlotState::Uploaded { at_ms: 1 };
        let picks = pick_next_now(&slots, &[window(12, 4, 5)], 0, 3);
        assert_eq!(slots_of(&picks), vec![14, 15, 0]);
    }

    #[test]
    fn several_viewers_are_interleaved_nearest_to_a_playhead_first() {
        // Viewer A at 5 (older), viewer B at 15 (newer): distance 0 of both, then 1 of both...
        let windows = [window(5, 3, 100), window(15, 3, 200)];
        let picks = pick_next_now(&pending(30), &windows, 0, 6);
        assert_eq!(slots_of(&picks), vec![15, 5, 16, 6, 17, 7]);
    }

    #[test]
    fn overlapping_windows_do_not_assign_a_slot_twice() {
        let windows = [window(5, 4, 100), window(6, 4, 200)];
        let picks = pick_next_now(&pending(30), &windows, 0, 30);
        let mut sorted = slots_of(&picks);
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 30);
        assert_eq!(&slots_of(&picks)[..5], &[6, 5, 7, 8, 9]);
    }

    #[test]
    fn a_lease_blocks_reassignment_until_it_expires() {
        let mut slots = pending(3);
        slots[0] = SlotState::Assigned {
            lease_expires_ms: 1_000,
        };
        assert_eq!(slots_of(&pick_next_now(&slots, &[], 999, 3)), vec![1, 2]);
        assert_eq!(
            slots_of(&pick_next_now(&slots, &[], 1_000, 3)),
            vec![0, 1, 2]
        );
    }

    #[test]
    fn failed_slots_are_handed_out_again() {
        let mut slots = vec![SlotState::Published { at_ms: 1 }; 3];
        slots[1] = SlotState::Failed {
            reason: "bad tfdt".into(),
        };
        assert_eq!(slots_of(&pick_next_now(&slots, &[], 0, 3)), vec![1]);
    }

    #[test]
    fn windows_past_the_end_are_clipped() {
        let picks = pick_next_now(&pending(4), &[window(3, 4, 1)], 0, 10);
        assert_eq!(slots_of(&picks), vec![3, 0, 1, 2]);
    }
}
