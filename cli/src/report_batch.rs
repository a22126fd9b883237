//! When the uploader reports finished parts: at once (`POST …/slots/{n}/uploaded`) while
//! someone watches or for a part a viewer waits for, otherwise kept for the next
//! `POST …/next`, which carries them; and what a report's answer means.

use std::time::{Duration, Instant};

use crate::api::{SlotReport, UploadedResponse};
use crate::error::ApiError;
use crate::upload::Local;

/// Most parts kept unreported: the list goes as soon as it holds this many.
pub const MAX_PENDING_REPORTS: usize = 4;
/// The longest a finished part stays unreported.
pub const MAX_REPORT_WAIT: Duration = Duration::from_secs(30);
/// How long the end of a run may take to report what is still kept.
pub(crate) const END_REPORTS_WITHIN: Duration = Duration::from_secs(15);
/// The most parts one `next` call reports (the server's bound).
const MAX_REPORTS_PER_CALL: usize = 16;

/// Why kept reports went to the server: the `reason` of the `reports` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushReason {
    /// a `next` call the uploader made anyway (a lane was free, or it asked for parts) carried them
    Next,
    /// the list reached [`MAX_PENDING_REPORTS`]
    Full,
    /// the feed turned watched (an answer without `wake_url`, or with priority slots, or no feed)
    Watched,
    /// one of them waited [`MAX_REPORT_WAIT`]
    Waited,
    /// the run ended
    End,
    /// the run was interrupted (Ctrl-C)
    Interrupted,
    /// the run failed
    Failed,
}

impl FlushReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FlushReason::Next => "next",
            FlushReason::Full => "full",
            FlushReason::Watched => "watched",
            FlushReason::Waited => "waited",
            FlushReason::End => "end",
            FlushReason::Interrupted => "interrupted",
            FlushReason::Failed => "failed",
        }
    }
}

/// When a finished part is reported, apart from the network: at once (the single
/// route) for a priority part or while someone watches — the feed's last answer said
/// `"watched": true` (older servers: carried no `wake_url`), or had priority slots, or
/// no answer came yet; otherwise kept for the next `next` call, which goes
/// early ([`ReportBatch::due`]) when the list is full, the feed turns watched, or a
/// report has waited [`MAX_REPORT_WAIT`]. The end of the run sends what is left.
#[derive(Debug, Default, Clone)]
pub struct ReportBatch {
    /// the last feed answer carried a wake-up URL and no priority slots: nobody watches
    unwatched: bool,
    /// the server does not take reports in `next`: the single route for the rest of the run
    off: bool,
    /// finished parts not reported yet, and since when, oldest first
    pending: Vec<(usize, Instant)>,
}

impl ReportBatch {
    /// A part whose PUTs are done goes at once (single route), rather than into the list.
    pub fn at_once(&self, priority: bool) -> bool {
        priority || !self.unwatched || self.off
    }

    /// Records a feed answer; `true` when it turned watched with reports kept (they are due).
    /// `watched` is the answer's own word (newer servers); without it, an answer carrying
    /// a wake-up URL means nobody watches.
    pub fn on_feed_answer(
        &mut self,
        watched: Option<bool>,
        wake_url: Option<&str>,
        priority_slots: &[usize],
    ) -> bool {
        let nobody = match watched {
            Some(watched) => !watched,
            None => wake_url.is_some_and(|u| !u.is_empty()),
        };
        self.unwatched = nobody && priority_slots.is_empty();
        !self.unwatched && !self.pending.is_empty()
    }

    /// The feed is gone for this run (no priority feed, or it failed for good): report
    /// at once from now on; `true` when reports are kept.
    pub fn feed_gone(&mut self) -> bool {
        self.on_feed_answer(None, None, &[])
    }

    /// The server refused reports in `next` (an older one): the single route from now on.
    pub fn turn_off(&mut self) {
        self.off = true;
    }

    pub fn is_off(&self) -> bool {
        self.off
    }

    /// Keeps `slot`, finished at `now`, for a later call.
    pub fn keep(&mut self, slot: usize, now: Instant) {
        if !self.pending.iter().any(|&(s, _)| s == slot) {
            self.pending.push((slot, now));
        }
    }

    /// Whether the kept reports must go now, without waiting for the next `next` call
    /// the uploader makes anyway; why.
    pub fn due(&self, now: Instant) -> Option<FlushReason> {
        let &(_, oldest) = self.pending.first()?;
        if !self.unwatched || self.off {
            Some(FlushReason::Watched)
        } else if self.pending.len() >= MAX_PENDING_REPORTS {
            Some(FlushReason::Full)
        } else if now.saturating_duration_since(oldest) >= MAX_REPORT_WAIT {
            Some(FlushReason::Waited)
        } else {
            None
        }
    }

    /// Takes the oldest kept reports, as many as one `next` call carries.
    pub fn take(&mut self) -> Vec<(usize, Instant)> {
        let n = self.pending.len().min(MAX_REPORTS_PER_CALL);
        self.pending.drain(..n).collect()
    }

    /// Puts back reports a failed call took (before any kept since).
    pub fn put_back(&mut self, taken: Vec<(usize, Instant)>) {
        let later = std::mem::replace(&mut self.pending, taken);
        for (slot, since) in later {
            self.keep(slot, since);
        }
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Every kept part, oldest first, leaving none (the end of the run).
    pub fn take_all(&mut self) -> Vec<usize> {
        std::mem::take(&mut self.pending)
            .into_iter()
            .map(|(s, _)| s)
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    pub fn slots(&self) -> Vec<usize> {
        self.pending.iter().map(|&(s, _)| s).collect()
    }
}

/// What a `reports` entry of a `next` answer means for the slot, as the single route's
/// answer would: uploaded, or published; `already_published` is published; another
/// `error` is that route's 409 for the slot.
pub fn report_outcome(r: &SlotReport) -> Result<Local, ApiError> {
    match r.error.as_deref() {
        None if r.published => Ok(Local::Published),
        None => Ok(Local::Uploaded),
        Some("already_published") => Ok(Local::Published),
        Some(code) => Err(ApiError::Status {
            status: 409,
            code: code.to_owned(),
            message: r
                .message
                .clone()
                .unwrap_or_else(|| format!("the report of part {} was refused", r.slot)),
        }),
    }
}

/// The single route's answer for a slot: uploaded or published (a 409 `already_published`
/// too); other errors are errors.
/// Refusals whose answer is to PUT the part again with the same lease, then report again.
const RESEND_ON: &[&str] = &["upload_missing", "upload_size_mismatch"];
/// A part refused this many times in a row ends the upload (something else is wrong).
pub const MAX_REFUSALS: u32 = 3;

/// After the `n`th refusal in a row (`code`) of a part's report: send it again (the lease
/// stays the uploader's), or give up (the run fails with that refusal).
pub fn resend_after_refusal(code: Option<&str>, n: u32) -> bool {
    code.is_some_and(|c| RESEND_ON.contains(&c)) && n < MAX_REFUSALS
}

pub fn single_outcome(r: Result<UploadedResponse, ApiError>) -> Result<Local, ApiError> {
    match r {
        Ok(a) if a.published => Ok(Local::Published),
        Ok(_) => Ok(Local::Uploaded),
        Err(e) if e.code() == Some("already_published") => Ok(Local::Published),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://sqs.example/q?Action=ReceiveMessage&X-Amz-Signature=x";

    fn unwatched() -> ReportBatch {
        let mut b = ReportBatch::default();
        assert!(!b.on_feed_answer(None, Some(URL), &[]));
        b
    }

    #[test]
    fn reports_go_at_once_until_a_feed_answer_says_nobody_watches() {
        let b = ReportBatch::default();
        assert!(b.at_once(false), "no feed answer yet");
        let b = unwatched();
        assert!(!b.at_once(false), "nobody watches: kept");
        assert!(b.at_once(true), "a priority part: at once");
    }

    #[test]
    fn an_answer_without_a_wake_url_or_with_priority_slots_means_watched() {
        let mut b = unwatched();
        b.on_feed_answer(None, None, &[]);
        assert!(
            b.at_once(false),
            "no wake_url: watched (or no wake-up URLs)"
        );
        let mut b = unwatched();
        b.on_feed_answer(None, Some(""), &[]);
        assert!(b.at_once(false), "an empty wake_url is none");
        let mut b = unwatched();
        b.on_feed_answer(None, Some(URL), &[7]);
        assert!(b.at_once(false), "a viewer waits");
        // and back
        b.on_feed_answer(None, Some(URL), &[]);
        assert!(!b.at_once(false));
        // A newer server says so itself: an open page nobody seeks in still has a wake-up URL.
        let mut b = unwatched();
        b.on_feed_answer(Some(true), Some(URL), &[]);
        assert!(b.at_once(false), "watched: at once, wake-up URL or not");
        b.on_feed_answer(Some(false), Some(URL), &[]);
        assert!(!b.at_once(false), "nobody watches: kept");
        b.on_feed_answer(Some(false), None, &[]);
        assert!(!b.at_once(false), "its word stands without a wake-up URL");
        let mut b = unwatched();
        b.feed_gone();
        assert!(b.at_once(false), "no feed: nobody is known not to watch");
        let mut b = unwatched();
        b.turn_off();
        assert!(
            b.is_off() && b.at_once(false),
            "the server takes no batches"
        );
    }

    #[test]
    fn kept_reports_wait_for_the_next_call_until_four_or_thirty_seconds() {
        let t0 = Instant::now();
        let mut b = unwatched();
        assert_eq!(b.due(t0), None, "nothing kept");
        b.keep(3, t0);
        b.keep(3, t0);
        assert_eq!(b.len(), 1, "kept once");
        b.keep(4, t0);
        b.keep(6, t0 + Duration::from_secs(1));
        assert_eq!(b.due(t0 + Duration::from_secs(29)), None);
        assert_eq!(
            b.due(t0 + MAX_REPORT_WAIT),
            Some(FlushReason::Waited),
            "the oldest waited 30 s"
        );
        b.keep(5, t0 + Duration::from_secs(2));
        assert_eq!(b.due(t0 + Duration::from_secs(2)), Some(FlushReason::Full));
        assert_eq!(b.slots(), [3, 4, 6, 5]);
    }

    #[test]
    fn the_feed_turning_watched_makes_kept_reports_due() {
        let t0 = Instant::now();
        let mut b = unwatched();
        b.keep(9, t0);
        assert_eq!(b.due(t0), None);
        assert!(
            b.on_feed_answer(None, Some(URL), &[2]),
            "priority slots: due"
        );
        assert_eq!(b.due(t0), Some(FlushReason::Watched));
        let mut b = unwatched();
        b.keep(9, t0);
        assert!(b.on_feed_answer(None, None, &[]), "a watch page: due");
        assert_eq!(b.due(t0), Some(FlushReason::Watched));
        let mut b = unwatched();
        b.keep(9, t0);
        assert!(!b.on_feed_answer(None, Some(URL), &[]), "still nobody");
        assert!(b.feed_gone());
        assert_eq!(b.due(t0), Some(FlushReason::Watched));
        // nothing kept: nothing due, whoever watches
        assert!(!ReportBatch::default().on_feed_answer(None, None, &[]));
    }

    #[test]
    fn a_call_takes_at_most_sixteen_and_a_failed_one_puts_them_back_first() {
        let t0 = Instant::now();
        let mut b = unwatched();
        for s in 0..20 {
            b.keep(s, t0);
        }
        let taken = b.take();
        assert_eq!(taken.len(), 16);
        assert_eq!(taken[0].0, 0);
        assert_eq!(b.slots(), [16, 17, 18, 19]);
        b.keep(30, t0);
        b.put_back(taken);
        assert_eq!(b.len(), 21);
        assert_eq!(&b.slots()[..2], [0, 1]);
        assert_eq!(&b.slots()[16..], [16, 17, 18, 19, 30]);
        let mut b = unwatched();
        b.keep(1, t0);
        let one = b.take();
        assert!(b.is_empty() && b.due(t0 + MAX_REPORT_WAIT).is_none());
        b.put_back(one);
        assert_eq!(
            b.due(t0 + MAX_REPORT_WAIT),
            Some(FlushReason::Waited),
            "put back with its age"
        );
    }

    fn entry(slot: usize, published: bool, error: Option<&str>) -> SlotReport {
        SlotReport {
            slot,
            queue: "normal".into(),
            enqueued: error.is_none() && !published,
            published,
            error: error.map(str::to_owned),
            message: error.map(|e| format!("{e} for {slot}")),
        }
    }

    #[test]
    fn a_report_entry_means_what_the_single_routes_answer_would() {
        assert_eq!(
            report_outcome(&entry(1, false, None)).ok(),
            Some(Local::Uploaded)
        );
        assert_eq!(
            report_outcome(&entry(1, true, None)).ok(),
            Some(Local::Published)
        );
        assert_eq!(
            report_outcome(&entry(1, true, Some("already_published"))).ok(),
            Some(Local::Published)
        );
        for code in ["upload_missing", "upload_size_mismatch"] {
            let e = report_outcome(&entry(5, false, Some(code))).expect_err(code);
            assert_eq!(e.status(), Some(409), "as the single route's refusal");
            assert_eq!(e.code(), Some(code));
            assert!(e.to_string().contains("for 5"), "{e}");
        }
        // the single route itself
        let ok = UploadedResponse::default();
        assert_eq!(single_outcome(Ok(ok.clone())).ok(), Some(Local::Uploaded));
        let published = UploadedResponse {
            published: true,
            ..ok
        };
        assert_eq!(single_outcome(Ok(published)).ok(), Some(Local::Published));
        let conflict = |code: &str| ApiError::Status {
            status: 409,
            code: code.into(),
            message: "m".into(),
        };
        assert_eq!(
            single_outcome(Err(conflict("already_published"))).ok(),
            Some(Local::Published)
        );
        assert!(single_outcome(Err(conflict("upload_missing"))).is_err());
    }

    #[test]
    fn a_refused_report_sends_the_part_again_until_the_third_refusal() {
        for code in ["upload_missing", "upload_size_mismatch"] {
            assert!(resend_after_refusal(Some(code), 1));
            assert!(resend_after_refusal(Some(code), 2));
            assert!(!resend_after_refusal(Some(code), MAX_REFUSALS), "{code}");
        }
        assert!(!resend_after_refusal(Some("wrong_secret"), 1));
        assert!(!resend_after_refusal(None, 1));
    }
}
