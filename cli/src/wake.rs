//! The uploader's wait for viewers' news while no viewer waits for a part: a GET of the
//! priority answer's wake-up URL (an SQS receive held up to 20 s) instead of a held API
//! poll, and when to give such URLs up (stray wake-ups) or to wait again without asking
//! the API (run-outs).

use std::time::Duration;

/// The longest a wake-up GET may take: SQS holds it 20 s at most.
pub(crate) const WAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// A wake-up that came back sooner than this without news did not wait for one.
const STRAY_WAKE: Duration = Duration::from_secs(1);
/// Stray wake-ups in a row after which this run stops using wake-up URLs.
pub(crate) const MAX_STRAY_WAKES: u32 = 3;
/// A wake-up held at least this long *ran out*: SQS held it the full 20 s, nothing rang.
pub const RUN_OUT: Duration = Duration::from_millis(19_700);
/// Every this many run-outs in a row, the feed is asked anyway (a safety net, about once a
/// minute, which also refreshes the wake-up URL before it expires).
pub const FEED_EVERY_RUN_OUTS: u32 = 3;

/// How the priority loop waits for the viewers' next change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedWait {
    /// GET the answer's wake-up URL, then ask again with `wait_ms=0`
    Wake(String),
    /// hold the long poll (`priority_wait`), as without wake-up URLs
    Held,
}

impl FeedWait {
    /// the `mode` of the `feed` event
    pub fn mode(&self) -> &'static str {
        match self {
            FeedWait::Wake(_) => "wake",
            FeedWait::Held => "held",
        }
    }
}

/// How a wake-up GET went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WakeOutcome {
    /// it answered 2xx
    pub ok: bool,
    /// how long it was held
    pub took: Duration,
}

impl WakeOutcome {
    /// SQS held it the full 20 s: nothing rang (a failed GET never ran out).
    pub fn ran_out(&self) -> bool {
        self.ok && self.took >= RUN_OUT
    }
}

/// What follows a wake-up GET.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterWake {
    /// ask the feed (`wait_ms=0`), as after any wake-up that came back sooner
    AskFeed,
    /// it ran out: wait on the same wake-up URL again, without asking the API
    WaitAgain,
}

/// The priority loop's choice between a wake-up URL and the held poll, apart from the
/// network. A wake-up is *stray* when its GET failed or came back in under 1 s and the
/// answer asked for right after it has the version the loop had before it: it did not
/// wait for news (an expired or refused URL, a queue that answers at once). After
/// [`MAX_STRAY_WAKES`] in a row this run holds the poll again; a wake-up that is not
/// stray (it waited, or the version changed) ends the streak.
///
/// It also counts *run-outs* ([`WakeOutcome::ran_out`]): a wake-up that ran out is
/// followed by another wait on the same URL without a feed request, except every
/// [`FEED_EVERY_RUN_OUTS`]th in a row; any feed answer resets the count.
#[derive(Debug, Default, Clone)]
pub struct WakeGuard {
    strays: u32,
    disabled: bool,
    run_outs: u32,
}

/// What a feed answer says that a wake-up may have rung for: the windows' version and
/// whether someone watches (`None` from servers that do not say).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FeedMark {
    pub version: Option<u64>,
    pub watched: Option<bool>,
}

impl From<Option<u64>> for FeedMark {
    fn from(version: Option<u64>) -> Self {
        Self {
            version,
            watched: None,
        }
    }
}

impl WakeGuard {
    /// How to wait after an answer carrying `wake_url`.
    pub fn next_wait(&self, wake_url: Option<&str>) -> FeedWait {
        match wake_url {
            Some(url) if !self.disabled && !url.is_empty() => FeedWait::Wake(url.to_owned()),
            _ => FeedWait::Held,
        }
    }

    /// Stray: the GET failed, or came back quickly with no news — the same windows'
    /// version and the same `watched` (a page opening rings it without a new version).
    pub fn is_stray(
        wake: WakeOutcome,
        before: impl Into<FeedMark>,
        answered: impl Into<FeedMark>,
    ) -> bool {
        (!wake.ok || wake.took < STRAY_WAKE) && answered.into() == before.into()
    }

    /// Records a wake-up followed by an answer of version `answered` (the loop had
    /// `before`); `true` when this one turned wake-up URLs off for the run.
    pub fn after_wake(
        &mut self,
        wake: WakeOutcome,
        before: impl Into<FeedMark>,
        answered: impl Into<FeedMark>,
    ) -> bool {
        if self.disabled {
            return false;
        }
        if Self::is_stray(wake, before, answered) {
            self.strays += 1;
            if self.strays >= MAX_STRAY_WAKES {
                self.disabled = true;
                return true;
            }
        } else {
            self.strays = 0;
        }
        false
    }

    pub fn disabled(&self) -> bool {
        self.disabled
    }

    pub fn strays(&self) -> u32 {
        self.strays
    }

    /// Records a wake-up GET that came back; whether the feed is asked next. A run-out
    /// waited (so it ends a streak of strays) and counts; anything sooner is followed by
    /// the feed request, whose answer [`WakeGuard::after_wake`] then judges.
    pub fn wake_ended(&mut self, wake: WakeOutcome) -> AfterWake {
        if !wake.ran_out() {
            self.run_outs = 0;
            return AfterWake::AskFeed;
        }
        self.strays = 0;
        self.run_outs += 1;
        if self.run_outs.is_multiple_of(FEED_EVERY_RUN_OUTS) {
            AfterWake::AskFeed
        } else {
            AfterWake::WaitAgain
        }
    }

    /// A feed answer came: the run-outs in a row start again from none.
    pub fn answered(&mut self) {
        self.run_outs = 0;
    }

    /// run-outs in a row since the last feed answer
    pub fn run_outs(&self) -> u32 {
        self.run_outs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://sqs.example/q?Action=ReceiveMessage&X-Amz-Signature=x";

    fn wake(ok: bool, ms: u64) -> WakeOutcome {
        WakeOutcome {
            ok,
            took: Duration::from_millis(ms),
        }
    }

    #[test]
    fn an_answer_with_a_wake_url_is_waited_on_through_it() {
        let g = WakeGuard::default();
        assert_eq!(g.next_wait(Some(URL)), FeedWait::Wake(URL.to_owned()));
        assert_eq!(g.next_wait(Some(URL)).mode(), "wake");
    }

    #[test]
    fn an_answer_without_a_wake_url_holds_the_poll() {
        let g = WakeGuard::default();
        assert_eq!(g.next_wait(None), FeedWait::Held);
        assert_eq!(g.next_wait(Some("")), FeedWait::Held);
        assert_eq!(g.next_wait(None).mode(), "held");
    }

    #[test]
    fn stray_means_failed_or_quick_and_no_news() {
        // failed, same version
        assert!(WakeGuard::is_stray(wake(false, 20_000), Some(3), Some(3)));
        // quick, same version
        assert!(WakeGuard::is_stray(wake(true, 200), Some(3), Some(3)));
        // it waited: the 20 s SQS hold ran out with nothing to say
        assert!(!WakeGuard::is_stray(wake(true, 20_000), Some(3), Some(3)));
        assert!(!WakeGuard::is_stray(wake(true, 1_000), Some(3), Some(3)));
        // news, however it came
        assert!(!WakeGuard::is_stray(wake(true, 200), Some(3), Some(4)));
        assert!(!WakeGuard::is_stray(wake(false, 200), Some(3), Some(4)));
        assert!(!WakeGuard::is_stray(wake(true, 200), None, Some(0)));
    }

    #[test]
    fn a_quick_wake_up_that_brought_watched_is_not_stray() {
        let before = FeedMark {
            version: Some(3),
            watched: Some(false),
        };
        let opened = FeedMark {
            version: Some(3),
            watched: Some(true),
        };
        assert!(!WakeGuard::is_stray(wake(true, 200), before, opened));
        assert!(WakeGuard::is_stray(wake(true, 200), opened, opened));
    }

    #[test]
    fn three_stray_wakes_in_a_row_turn_wake_urls_off_for_the_run() {
        let mut g = WakeGuard::default();
        assert!(!g.after_wake(wake(false, 5), Some(1), Some(1)));
        assert!(!g.after_wake(wake(true, 100), Some(1), Some(1)));
        assert_eq!(g.strays(), 2);
        assert_eq!(g.next_wait(Some(URL)), FeedWait::Wake(URL.to_owned()));
        assert!(
            g.after_wake(wake(false, 900), Some(1), Some(1)),
            "the third"
        );
        assert!(g.disabled());
        assert_eq!(g.next_wait(Some(URL)), FeedWait::Held);
        // said once: later wakes (none should happen) do not report again
        assert!(!g.after_wake(wake(false, 5), Some(1), Some(1)));
        assert_eq!(g.next_wait(Some(URL)), FeedWait::Held);
    }

    #[test]
    fn a_wake_followed_by_a_changed_version_resets_the_count() {
        let mut g = WakeGuard::default();
        g.after_wake(wake(true, 10), Some(1), Some(1));
        g.after_wake(wake(true, 10), Some(1), Some(1));
        assert_eq!(g.strays(), 2);
        // a viewer's seek rang it quickly: news, not a stray
        assert!(!g.after_wake(wake(true, 10), Some(1), Some(2)));
        assert_eq!(g.strays(), 0);
        g.after_wake(wake(true, 10), Some(2), Some(2));
        g.after_wake(wake(false, 10), Some(2), Some(2));
        assert!(!g.disabled(), "two strays since the reset");
        assert_eq!(g.next_wait(Some(URL)), FeedWait::Wake(URL.to_owned()));
        assert!(g.after_wake(wake(false, 10), Some(2), Some(2)));
    }

    #[test]
    fn a_wake_that_waited_ends_a_streak_of_strays() {
        let mut g = WakeGuard::default();
        g.after_wake(wake(false, 10), Some(1), Some(1));
        g.after_wake(wake(false, 10), Some(1), Some(1));
        g.after_wake(wake(true, 20_000), Some(1), Some(1));
        assert_eq!(g.strays(), 0);
        g.after_wake(wake(false, 10), Some(1), Some(1));
        g.after_wake(wake(false, 10), Some(1), Some(1));
        assert!(!g.disabled());
    }

    #[test]
    fn a_run_out_is_a_successful_wake_held_at_least_19_7_s() {
        assert!(wake(true, 19_700).ran_out());
        assert!(wake(true, 20_050).ran_out());
        assert!(!wake(true, 19_699).ran_out(), "something rang");
        assert!(!wake(true, 300).ran_out());
        assert!(!wake(false, 20_000).ran_out(), "a failed GET never ran out");
    }

    #[test]
    fn every_third_run_out_in_a_row_asks_the_feed_the_others_wait_again() {
        let mut g = WakeGuard::default();
        assert_eq!(g.wake_ended(wake(true, 20_000)), AfterWake::WaitAgain);
        assert_eq!(g.run_outs(), 1);
        assert_eq!(g.wake_ended(wake(true, 20_000)), AfterWake::WaitAgain);
        assert_eq!(
            g.wake_ended(wake(true, 20_000)),
            AfterWake::AskFeed,
            "the third"
        );
        assert_eq!(g.run_outs(), 3);
        // its answer starts the count again
        g.answered();
        assert_eq!(g.run_outs(), 0);
        assert_eq!(g.wake_ended(wake(true, 19_800)), AfterWake::WaitAgain);
        assert_eq!(g.wake_ended(wake(true, 19_800)), AfterWake::WaitAgain);
        // the feed request failed (no answer, no reset): still one in three
        assert_eq!(g.wake_ended(wake(true, 19_800)), AfterWake::AskFeed);
        assert_eq!(g.wake_ended(wake(true, 19_800)), AfterWake::WaitAgain);
        assert_eq!(g.wake_ended(wake(true, 19_800)), AfterWake::WaitAgain);
        assert_eq!(g.wake_ended(wake(true, 19_800)), AfterWake::AskFeed);
    }

    #[test]
    fn a_wake_that_came_back_sooner_asks_the_feed_and_ends_the_row() {
        let mut g = WakeGuard::default();
        assert_eq!(g.wake_ended(wake(true, 20_000)), AfterWake::WaitAgain);
        // a watch page opened: it rang
        assert_eq!(g.wake_ended(wake(true, 4_000)), AfterWake::AskFeed);
        assert_eq!(g.run_outs(), 0);
        // failed: the feed request, as today
        assert_eq!(g.wake_ended(wake(false, 20_000)), AfterWake::AskFeed);
        assert_eq!(g.wake_ended(wake(false, 5)), AfterWake::AskFeed);
        // a new row of run-outs
        assert_eq!(g.wake_ended(wake(true, 20_000)), AfterWake::WaitAgain);
        assert_eq!(g.wake_ended(wake(true, 20_000)), AfterWake::WaitAgain);
        assert_eq!(g.wake_ended(wake(true, 20_000)), AfterWake::AskFeed);
    }

    #[test]
    fn a_run_out_ends_a_streak_of_strays_and_the_stray_logic_stays() {
        let mut g = WakeGuard::default();
        g.after_wake(wake(false, 10), Some(1), Some(1));
        g.after_wake(wake(false, 10), Some(1), Some(1));
        assert_eq!(g.strays(), 2);
        assert_eq!(g.wake_ended(wake(true, 20_000)), AfterWake::WaitAgain);
        assert_eq!(g.strays(), 0, "it waited");
        // quick ones still go to the feed, and three strays still turn wake-ups off
        for _ in 0..2 {
            assert_eq!(g.wake_ended(wake(true, 10)), AfterWake::AskFeed);
            assert!(!g.after_wake(wake(true, 10), Some(1), Some(1)));
        }
        assert_eq!(g.wake_ended(wake(true, 10)), AfterWake::AskFeed);
        assert!(g.after_wake(wake(true, 10), Some(1), Some(1)));
        assert_eq!(g.next_wait(Some(URL)), FeedWait::Held);
    }
}
