//! The in-process gate in front of viewers' hints (prioritize calls and
//! segment misses): it answers most of them without touching S3.
//!
//! - **Deduplicated**: the window each viewer last wrote is remembered; a hint
//!   that window already covers (and that is fresh) costs no read and no write.
//! - **Rate-limited** per video and per client (viewer id, and address when
//!   known) with token buckets: a hint over the limit is dropped (a miss is
//!   still held; a prioritize answers 429 with Retry-After).
//!
//! The gate is per process (a Lambda instance); what it lets through is
//! still bounded by the conditional writes on `windows.json`.

use std::collections::HashMap;
use std::sync::Mutex;

use chunkstream_domain::state::SchedulePolicy;
use chunkstream_domain::windows::{HintKind, PriorityWindow};

/// Window writes a video accepts per second (sustained) and in a burst.
pub const VIDEO_HINTS_PER_SEC: f64 = 20.0;
pub const VIDEO_HINT_BURST: f64 = 40.0;
/// Window writes one client (viewer id or address) makes per second and in a burst.
pub const CLIENT_HINTS_PER_SEC: f64 = 2.0;
pub const CLIENT_HINT_BURST: f64 = 6.0;
/// A process records "a watch page is open" for a video at most this often
/// (`POST …/watching`); the record counts for `WATCHING_TTL_MS` (90 s).
pub const WATCHING_WRITE_EVERY_MS: u64 = 30_000;
/// Entries kept before the gate forgets everything (bounded memory under a flood).
const MAX_ENTRIES: usize = 20_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at_ms: u64,
}

impl Bucket {
    fn take(entry: Option<&mut Bucket>, now_ms: u64, rate: f64, burst: f64) -> (bool, Bucket) {
        let mut b = entry.copied().unwrap_or(Bucket {
            tokens: burst,
            at_ms: now_ms,
        });
        let elapsed = now_ms.saturating_sub(b.at_ms) as f64 / 1000.0;
        b.tokens = (b.tokens + elapsed * rate).min(burst);
        b.at_ms = now_ms;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            (true, b)
        } else {
            (false, b)
        }
    }
}

#[derive(Default)]
struct Inner {
    /// (video, viewer key) → the window that viewer last wrote.
    windows: HashMap<(String, String), PriorityWindow>,
    buckets: HashMap<String, Bucket>,
    /// video → when this process last recorded that a watch page is open.
    watching: HashMap<String, u64>,
}

/// What the gate says about a hint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Already covered by the viewer's fresh window: nothing to do.
    Covered,
    /// Over the rate limit: dropped.
    Limited,
    /// Go ahead (read and maybe write `windows.json`).
    Pass,
}

/// Who sent a hint.
#[derive(Debug, Clone, Default)]
pub struct Hinter {
    /// The watch page's viewer id, or empty.
    pub viewer: String,
    /// The client's address (X-Forwarded-For's first hop), or empty.
    pub client: String,
}

impl Hinter {
    /// The key this hinter's window is remembered by.
    fn key(&self) -> String {
        if self.viewer.is_empty() {
            format!("@{}", self.client)
        } else {
            self.viewer.clone()
        }
    }
}

impl Inner {
    fn forget_all_if_full(&mut self) {
        if self.windows.len() + self.buckets.len() + self.watching.len() > MAX_ENTRIES {
            *self = Inner::default();
        }
    }
}

#[derive(Default)]
pub struct HintGate {
    inner: Mutex<Inner>,
}

impl HintGate {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Decides whether a hint needs S3 at all, taking rate-limit tokens if it does.
    pub fn check(
        &self,
        video: &str,
        who: &Hinter,
        slot: usize,
        kind: HintKind,
        now_ms: u64,
        policy: &SchedulePolicy,
    ) -> Gate {
        let mut inner = self.lock();
        inner.forget_all_if_full();
        let key = (video.to_string(), who.key());
        if inner
            .windows
            .get(&key)
            .is_some_and(|w| w.covers(slot, kind, now_ms, policy))
        {
            return Gate::Covered;
        }
        let mut limits = vec![(format!("v:{video}"), VIDEO_HINTS_PER_SEC, VIDEO_HINT_BURST)];
        if !who.viewer.is_empty() {
            limits.push((
                format!("c:{video}:{}", who.viewer),
                CLIENT_HINTS_PER_SEC,
                CLIENT_HINT_BURST,
            ));
        }
        if !who.client.is_empty() {
            limits.push((
                format!("a:{}", who.client),
                CLIENT_HINTS_PER_SEC * 4.0,
                CLIENT_HINT_BURST * 4.0,
            ));
        }
        let mut taken = Vec::with_capacity(limits.len());
        for (name, rate, burst) in limits {
            let (ok, bucket) = Bucket::take(inner.buckets.get_mut(&name), now_ms, rate, burst);
            if !ok {
                // Nothing is charged for a refused hint.
                return Gate::Limited;
            }
            taken.push((name, bucket));
        }
        inner.buckets.extend(taken);
        Gate::Pass
    }

    /// Whether this process should record now that a watch page of `video` is
    /// open: at most once per [`WATCHING_WRITE_EVERY_MS`] per video, whoever asks.
    pub fn watching_due(&self, video: &str, now_ms: u64) -> bool {
        let mut inner = self.lock();
        inner.forget_all_if_full();
        match inner.watching.get(video) {
            Some(&at) if now_ms.saturating_sub(at) < WATCHING_WRITE_EVERY_MS => false,
            _ => {
                inner.watching.insert(video.to_string(), now_ms);
                true
            }
        }
    }

    /// Forgets that a recording was made (it failed: the next call tries again).
    pub fn watching_failed(&self, video: &str) {
        self.lock().watching.remove(video);
    }

    /// Remembers the window `who` has now (as written or as found).
    pub fn remember(&self, video: &str, who: &Hinter, window: Option<PriorityWindow>) {
        let key = (video.to_string(), who.key());
        let mut inner = self.lock();
        match window {
            Some(w) => inner.windows.insert(key, w),
            None => inner.windows.remove(&key),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(viewer: &str) -> Hinter {
        Hinter {
            viewer: viewer.into(),
            client: String::new(),
        }
    }

    #[test]
    fn a_hint_inside_the_remembered_window_needs_no_s3_and_a_flood_is_limited() {
        let gate = HintGate::default();
        let p = SchedulePolicy::default();
        let a = who("a");
        assert_eq!(gate.check("v", &a, 10, HintKind::Miss, 0, &p), Gate::Pass);
        gate.remember(
            "v",
            &a,
            Some(PriorityWindow {
                playhead_slot: 10,
                len: 4,
                updated_ms: 0,
                viewer: "a".into(),
                client: String::new(),
            }),
        );
        for _ in 0..100 {
            assert_eq!(
                gate.check("v", &a, 12, HintKind::Miss, 1, &p),
                Gate::Covered
            );
        }
        // Seeks all over the place: the burst passes, then the client is limited.
        let passed = (0..50)
            .filter(|i| gate.check("v", &a, 100 + i, HintKind::Seek, 2, &p) == Gate::Pass)
            .count();
        assert_eq!(
            passed,
            CLIENT_HINT_BURST as usize - 1,
            "one went to the first miss"
        );
        assert_eq!(
            gate.check("v", &who("b"), 500, HintKind::Seek, 2, &p),
            Gate::Pass,
            "another viewer is not limited by a's flood"
        );
        assert_eq!(
            gate.check("v", &a, 600, HintKind::Seek, 2_000, &p),
            Gate::Pass,
            "tokens come back"
        );
    }

    #[test]
    fn a_process_records_an_open_watch_page_at_most_every_30_s_per_video() {
        let gate = HintGate::default();
        assert!(gate.watching_due("v", 1_000));
        assert!(!gate.watching_due("v", 1_000 + WATCHING_WRITE_EVERY_MS - 1));
        assert!(gate.watching_due("w", 1_000), "another video is apart");
        assert!(gate.watching_due("v", 1_000 + WATCHING_WRITE_EVERY_MS));
        gate.watching_failed("v");
        assert!(gate.watching_due("v", 1_000 + WATCHING_WRITE_EVERY_MS + 1));
    }

    #[test]
    fn many_viewer_ids_share_one_videos_limit() {
        let gate = HintGate::default();
        let p = SchedulePolicy::default();
        let passed = (0..200)
            .filter(|i| {
                gate.check("v", &who(&format!("id{i}")), *i, HintKind::Seek, 0, &p) == Gate::Pass
            })
            .count();
        assert_eq!(passed, VIDEO_HINT_BURST as usize);
    }
}
