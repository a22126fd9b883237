//! The upload loop, with the page's semantics (web/src/lib/uploader.ts): init
//! segments first, then slots in the order the server assigns them (POST next),
//! `parallel` at a time, each slot's segments built only when it is assigned.
//!
//! Viewers' priorities arrive through the long poll (GET …/priority) kept open
//! for the whole run. When it names slots this process is not already sending,
//! they are asked for at once (POST next serves window slots first) and started
//! without waiting for a free lane; natural-order slots whose bytes have not
//! (mostly) crossed the link yet are aborted and kept — their leases and
//! presigned URLs stay valid — to be sent again after the priority ones. While
//! priority slots keep the link busy, one natural-order slot still goes every
//! 20 s so the rest of the upload never starves.
//!
//! A part whose PUTs are done is reported at once (`POST …/slots/{n}/uploaded`) when
//! it is a priority part or someone watches; while nobody does (the feed's last
//! answer said `"watched": false`, or, from older servers, carried a `wake_url`), it
//! waits in a short list that the next `POST next`
//! carries ([`ReportBatch`]: one API request and one `state.json` write less per part).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::join_all;
use futures::StreamExt;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::api::{
    retry, Api, Assignment, NextResponse, PresignedUpload, SlotReport, SlotState, StatusResponse,
};
use crate::error::{ApiError, CliError};
use crate::planner::Plan;
use crate::report::{Progress, Reporter};
use crate::report_batch::{
    report_outcome, resend_after_refusal, single_outcome, FlushReason, ReportBatch,
    END_REPORTS_WITHIN,
};
use crate::segment::build_slot;
use crate::source::Analysis;
use crate::wake::{
    AfterWake, FeedMark, FeedWait, WakeGuard, WakeOutcome, MAX_STRAY_WAKES, WAKE_TIMEOUT,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Local {
    Pending,
    Working,
    Uploaded,
    Published,
    Failed,
}

pub struct UploadOptions {
    pub parallel: usize,
    pub priority_wait: Duration,
    pub natural_every: Duration,
    pub status_every: Duration,
    /// cap on the upload rate, bytes per second, all parts together (None: the link's speed)
    pub max_rate: Option<u64>,
}

impl Default for UploadOptions {
    fn default() -> Self {
        Self {
            parallel: 3,
            priority_wait: Duration::from_secs(20),
            natural_every: Duration::from_secs(20),
            status_every: Duration::from_secs(2),
            max_rate: None,
        }
    }
}

/// A PUT that has sent more than this fraction of its bytes is not pre-empted.
const PREEMPT_MAX_SENT: f64 = 0.85;
const CHUNK: usize = 256 * 1024;
/// smaller body chunks under a rate cap, so pacing is smooth
const RATED_CHUNK: usize = 16 * 1024;

/// A serial link of `rate` bytes/s shared by all PUTs: each chunk waits for its turn.
pub struct RateLimit {
    rate: u64,
    next_free: tokio::sync::Mutex<tokio::time::Instant>,
}

impl RateLimit {
    pub fn new(rate: u64) -> Self {
        Self {
            rate: rate.max(1),
            next_free: tokio::sync::Mutex::new(tokio::time::Instant::now()),
        }
    }
    async fn take(&self, bytes: u64) {
        let until = {
            let mut next = self.next_free.lock().await;
            let start = (*next).max(tokio::time::Instant::now());
            *next = start + Duration::from_secs_f64(bytes as f64 / self.rate as f64);
            *next
        };
        tokio::time::sleep_until(until).await;
    }
}

/// how long natural-order parts wait for the lease of a part a viewer just asked for
const PRIORITY_LEASE_WAIT: Duration = Duration::from_secs(5);
/// a kept assignment is re-sent only if its URLs stay valid at least this long
const URL_MARGIN: Duration = Duration::from_secs(60);

struct Job {
    priority: bool,
    /// the starvation guard's natural slot: never pre-empted
    guarded: bool,
    cancel: CancellationToken,
    sent: Arc<AtomicU64>,
    bytes: u64,
    yielded: bool,
}

#[derive(Default)]
struct Shared {
    states: Vec<Local>,
    jobs: HashMap<usize, Job>,
    deferred: BTreeMap<usize, Assignment>,
    kept_at: HashMap<usize, Instant>,
    prio_version: Option<u64>,
    prio_slots: Vec<usize>,
    asked: HashSet<usize>,
    server_complete: bool,
    fatal: Option<CliError>,
    last_natural: Option<Instant>,
    /// when the viewers' list last changed: natural parts wait briefly for its lease
    prio_changed_at: Option<Instant>,
    /// finished parts not reported yet (nobody watches), and when to report them
    reports: ReportBatch,
    /// their leases: a refused report sends the part again with it
    unreported: HashMap<usize, Assignment>,
    /// refused reports per slot, in a row
    refusals: HashMap<usize, u32>,
}

/// Statistics of one run.
#[derive(Debug, Default, Clone, Copy)]
pub struct RunStats {
    pub parts_uploaded: usize,
    pub bytes_uploaded: u64,
    pub priority_parts: usize,
}

pub struct Uploader {
    api: Api,
    id: String,
    secret: String,
    file: Arc<File>,
    analysis: Arc<Analysis>,
    plan: Arc<Plan>,
    opts: UploadOptions,
    shared: Mutex<Shared>,
    wake: Notify,
    prio_lock: tokio::sync::Mutex<()>,
    pub progress: Arc<Progress>,
    init_done: AtomicU64,
    reporter: Reporter,
    stop: CancellationToken,
    stats: Mutex<RunStats>,
    max_rate: Option<Arc<RateLimit>>,
}

enum JobEnd {
    Done(Local),
    /// PUTs done, report kept for a later `next` call (nobody watches)
    Kept,
    /// the single route refused the report (409: the objects are not as planned)
    ReportRefused(ApiError),
    Yielded,
    /// presigned URL refused (expired?): the lease runs out and the server reassigns the slot
    Refused(String),
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn url_usable(a: &Assignment, kept_at: Option<&Instant>, ttl: Duration) -> bool {
    // the server's presigned URLs live `ttl` from when they were handed out
    kept_at.is_none_or(|t| t.elapsed() + URL_MARGIN < ttl) && !a.uploads.is_empty()
}

impl Uploader {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        api: Api,
        id: String,
        secret: String,
        file: Arc<File>,
        analysis: Arc<Analysis>,
        plan: Arc<Plan>,
        opts: UploadOptions,
        reporter: Reporter,
        stop: CancellationToken,
    ) -> Arc<Self> {
        let n = plan.slots.len();
        let progress = Arc::new(Progress::default());
        let init_bytes: u64 = analysis
            .tracks
            .iter()
            .map(|t| t.init_segment.len() as u64)
            .sum();
        progress
            .bytes_total
            .store(plan.total_bytes + init_bytes, Ordering::Relaxed);
        progress.part_count.store(n, Ordering::Relaxed);
        Arc::new(Self {
            api,
            id,
            secret,
            file,
            analysis,
            plan,
            shared: Mutex::new(Shared {
                states: vec![Local::Pending; n],
                ..Default::default()
            }),
            wake: Notify::new(),
            prio_lock: tokio::sync::Mutex::new(()),
            progress,
            init_done: AtomicU64::new(0),
            reporter,
            stop,
            stats: Mutex::new(RunStats::default()),
            max_rate: opts.max_rate.map(|r| Arc::new(RateLimit::new(r))),
            opts,
        })
    }

    pub fn stats(&self) -> RunStats {
        *lock(&self.stats)
    }

    fn recount(&self, sh: &Shared) {
        let mut done = 0u64;
        let (mut published, mut uploaded) = (0, 0);
        for (i, st) in sh.states.iter().enumerate() {
            match st {
                Local::Published => published += 1,
                Local::Uploaded => uploaded += 1,
                _ => continue,
            }
            done += self.plan.slots[i].bytes;
        }
        self.progress.bytes_done.store(
            done + self.init_done.load(Ordering::Relaxed),
            Ordering::Relaxed,
        );
        self.progress
            .parts_published
            .store(published, Ordering::Relaxed);
        self.progress
            .parts_uploaded
            .store(uploaded, Ordering::Relaxed);
        let in_flight: u64 = sh
            .jobs
            .values()
            .map(|j| j.sent.load(Ordering::Relaxed).min(j.bytes))
            .sum();
        self.progress
            .bytes_in_flight
            .store(in_flight, Ordering::Relaxed);
    }

    pub fn refresh_progress(&self) {
        let sh = lock(&self.shared);
        self.recount(&sh);
    }

    /// Server states win, except for slots this process is working on.
    pub fn apply_status(&self, s: &StatusResponse) {
        let mut sh = lock(&self.shared);
        for (i, slot) in s.slots.iter().enumerate() {
            let Some(local) = sh.states.get(i).copied() else {
                continue;
            };
            let next = match slot.state {
                SlotState::Published => Local::Published,
                _ if local == Local::Working => continue,
                SlotState::Uploaded => Local::Uploaded,
                SlotState::Assigned if local == Local::Uploaded => Local::Uploaded,
                SlotState::Failed => Local::Failed,
                SlotState::Assigned | SlotState::Pending => Local::Pending,
            };
            sh.states[i] = next;
        }
        if s.complete {
            sh.server_complete = true;
        }
        self.recount(&sh);
        drop(sh);
        self.wake.notify_one();
    }

    fn retry_note(&self) -> impl FnMut(&ApiError, u32, Duration) + '_ {
        move |e, attempt, delay| {
            self.reporter.say(
                "warning",
                &format!(
                    "Connection problem ({e}); retrying in {:.1} s (attempt {})",
                    delay.as_secs_f64(),
                    attempt + 1
                ),
            )
        }
    }

    fn body_stream(&self, data: Arc<Vec<u8>>, sent: Arc<AtomicU64>) -> reqwest::Body {
        let data = Bytes::from(data.as_ref().clone());
        let chunk = if self.opts.max_rate.is_some() {
            RATED_CHUNK
        } else {
            CHUNK
        };
        let chunks: Vec<Bytes> = (0..data.len())
            .step_by(chunk)
            .map(|a| data.slice(a..(a + chunk).min(data.len())))
            .collect();
        let progress = self.progress.clone();
        let limiter = self.max_rate.clone();
        let stream = futures::stream::iter(chunks).then(move |c| {
            let sent = sent.clone();
            let progress = progress.clone();
            let limiter = limiter.clone();
            async move {
                if let Some(l) = limiter {
                    l.take(c.len() as u64).await;
                }
                sent.fetch_add(c.len() as u64, Ordering::Relaxed);
                progress
                    .bytes_sent
                    .fetch_add(c.len() as u64, Ordering::Relaxed);
                Ok::<Bytes, std::io::Error>(c)
            }
        });
        reqwest::Body::wrap_stream(stream)
    }

    async fn put_with_retry(
        &self,
        upload: &PresignedUpload,
        data: Vec<u8>,
        sent: Arc<AtomicU64>,
    ) -> Result<(), ApiError> {
        let data = Arc::new(data);
        let len = data.len() as u64;
        // a stalled PUT is retried; a slow one (64 KiB/s or the rate cap, shared) is not
        let floor = self.opts.max_rate.map_or(64 * 1024, |r| {
            (r / self.opts.parallel.max(1) as u64).clamp(1, 64 * 1024)
        });
        let timeout = Duration::from_secs(60) + Duration::from_secs(2 * len / floor);
        retry(None, self.retry_note(), || {
            sent.store(0, Ordering::Relaxed);
            let body = self.body_stream(data.clone(), sent.clone());
            self.api.put(upload, body, timeout)
        })
        .await
    }

    /// Upload the init segments (one per track) through `uploads`.
    pub async fn upload_init(&self, uploads: &[PresignedUpload]) -> Result<(), CliError> {
        for u in uploads {
            let t = self.track_index(u)?;
            let data = self.analysis.tracks[t].init_segment.clone();
            let len = data.len() as u64;
            self.put_with_retry(u, data, Arc::new(AtomicU64::new(0)))
                .await?;
            self.init_done.fetch_add(len, Ordering::Relaxed);
        }
        self.refresh_progress();
        Ok(())
    }

    fn track_index(&self, u: &PresignedUpload) -> Result<usize, CliError> {
        if let Some(t) = u.track.filter(|&t| t < self.analysis.tracks.len()) {
            return Ok(t);
        }
        self.analysis
            .tracks
            .iter()
            .position(|t| t.input.id == u.track_id)
            .ok_or_else(|| {
                CliError::Internal(format!(
                    "server asked for an upload of unknown track {}",
                    u.track_id
                ))
            })
    }

    fn is_done(sh: &Shared, slot: usize) -> bool {
        matches!(
            sh.states.get(slot),
            Some(Local::Uploaded | Local::Published)
        )
    }

    fn priority_on_link(sh: &Shared) -> bool {
        sh.jobs
            .values()
            .any(|j| j.priority && j.sent.load(Ordering::Relaxed) < j.bytes)
    }

    /// A viewer's part is known but not yet on its way (its lease is being fetched):
    /// a natural part started now would take the link it needs. Bounded, so a slot
    /// the server never hands out cannot stall natural order.
    fn priority_waiting(sh: &Shared) -> bool {
        sh.prio_changed_at
            .is_some_and(|t| t.elapsed() < PRIORITY_LEASE_WAIT)
            && sh
                .prio_slots
                .iter()
                .any(|&s| !Self::is_done(sh, s) && !sh.jobs.contains_key(&s))
    }

    /// Start an assignment as a job (priority ones always, natural ones if a lane is free).
    fn start_job(self: &Arc<Self>, sh: &mut Shared, a: Assignment, priority: bool, guarded: bool) {
        let slot = a.slot;
        let bytes: u64 = self.plan.slots[slot].bytes;
        let cancel = self.stop.child_token();
        let sent = Arc::new(AtomicU64::new(0));
        sh.jobs.insert(
            slot,
            Job {
                priority,
                guarded,
                cancel: cancel.clone(),
                sent: sent.clone(),
                bytes,
                yielded: false,
            },
        );
        sh.states[slot] = Local::Working;
        // emitted here, under the lock, so the events' order is the order of decisions
        self.reporter.event(
            "part",
            serde_json::json!({ "slot": slot, "state": "sending", "priority": priority }),
        );
        if !priority {
            sh.last_natural = Some(Instant::now());
        }
        let me = self.clone();
        tokio::spawn(async move {
            let end = tokio::select! {
                r = me.clone().run_job(a.clone(), sent) => r,
                _ = cancel.cancelled() => Ok(JobEnd::Yielded),
            };
            me.job_ended(a, priority, end);
        });
    }

    fn job_ended(self: &Arc<Self>, a: Assignment, priority: bool, end: Result<JobEnd, CliError>) {
        let slot = a.slot;
        let mut sh = lock(&self.shared);
        let job = sh.jobs.remove(&slot);
        let yielded = job.as_ref().is_some_and(|j| j.yielded);
        match end {
            Ok(JobEnd::Done(state)) => {
                self.count_reported(&mut sh, slot, state);
                if priority {
                    lock(&self.stats).priority_parts += 1;
                }
            }
            Ok(JobEnd::Kept) => {
                // its bytes are across; counted once the server has the report
                if sh.states[slot] != Local::Published {
                    sh.states[slot] = Local::Uploaded;
                }
                sh.reports.keep(slot, Instant::now());
                sh.unreported.insert(slot, a);
            }
            Ok(JobEnd::ReportRefused(e)) => self.refused(&mut sh, slot, Some(a), e),
            Ok(JobEnd::Yielded) if yielded && !self.stop.is_cancelled() => {
                sh.states[slot] = Local::Pending;
                sh.kept_at.entry(slot).or_insert_with(Instant::now);
                sh.deferred.insert(slot, a);
            }
            Ok(JobEnd::Yielded) => sh.states[slot] = Local::Pending,
            Ok(JobEnd::Refused(why)) => {
                self.reporter.say(
                    "warning",
                    &format!("part {slot}: {why}; it will be reassigned"),
                );
                sh.states[slot] = Local::Pending;
            }
            Err(e) => {
                sh.states[slot] = Local::Pending;
                if sh.fatal.is_none() && !self.stop.is_cancelled() {
                    sh.fatal = Some(e);
                }
            }
        }
        self.recount(&sh);
        drop(sh);
        self.wake.notify_one();
        if priority {
            // the next slot a viewer needs may be waiting for its turn
            let me = self.clone();
            tokio::spawn(async move { me.apply_priority().await });
        }
    }

    async fn run_job(
        self: Arc<Self>,
        a: Assignment,
        sent: Arc<AtomicU64>,
    ) -> Result<JobEnd, CliError> {
        let slot = a.slot;
        let tracks: Vec<usize> = a
            .uploads
            .iter()
            .map(|u| self.track_index(u))
            .collect::<Result<_, _>>()?;
        let (file, analysis, plan) = (self.file.clone(), self.analysis.clone(), self.plan.clone());
        let tr = tracks.clone();
        let bodies =
            tokio::task::spawn_blocking(move || build_slot(&file, &analysis, &plan, slot, &tr))
                .await
                .map_err(|e| CliError::Internal(e.to_string()))?
                .map_err(|e| CliError::Io(e.to_string()))?;
        let per_track: Vec<Arc<AtomicU64>> =
            tracks.iter().map(|_| Arc::new(AtomicU64::new(0))).collect();
        let puts = a
            .uploads
            .iter()
            .zip(bodies)
            .zip(&per_track)
            .map(|((u, body), s)| self.put_with_retry(u, body, s.clone()));
        let watcher = {
            let per_track = per_track.clone();
            let sent = sent.clone();
            async move {
                loop {
                    sent.store(
                        per_track.iter().map(|s| s.load(Ordering::Relaxed)).sum(),
                        Ordering::Relaxed,
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        let results = tokio::select! {
            r = join_all(puts) => r,
            _ = watcher => unreachable_loop(),
        };
        sent.store(self.plan.slots[slot].bytes, Ordering::Relaxed);
        for r in results {
            match r {
                Ok(()) => {}
                Err(e) if e.status() == Some(403) => return Ok(JobEnd::Refused(e.to_string())),
                Err(e) => return Err(e.into()),
            }
        }
        let at_once = {
            let sh = lock(&self.shared);
            let priority =
                sh.jobs.get(&slot).is_some_and(|j| j.priority) || sh.prio_slots.contains(&slot);
            sh.reports.at_once(priority)
        };
        if !at_once {
            return Ok(JobEnd::Kept);
        }
        let answer = retry(None, self.retry_note(), || {
            self.api.report_uploaded(&self.id, &self.secret, slot)
        })
        .await;
        let said_ok = answer.is_ok();
        let state = match single_outcome(answer) {
            Ok(state) => state,
            Err(e) if resend_after_refusal(e.code(), 0) => return Ok(JobEnd::ReportRefused(e)),
            Err(e) => return Err(e.into()),
        };
        if said_ok {
            self.reporter.event(
                "part",
                serde_json::json!({ "slot": slot, "state": "uploaded", "batched": false }),
            );
        }
        Ok(JobEnd::Done(state))
    }

    /// A report's outcome for `slot` (kept reports: their stats and event come here).
    fn reported(
        &self,
        slot: usize,
        outcome: Result<Local, ApiError>,
        batched: bool,
        said_ok: bool,
    ) {
        let mut sh = lock(&self.shared);
        let lease = sh.unreported.remove(&slot);
        match outcome {
            Ok(state) => {
                self.count_reported(&mut sh, slot, state);
                if said_ok {
                    self.reporter.event(
                        "part",
                        serde_json::json!({ "slot": slot, "state": "uploaded", "batched": batched }),
                    );
                }
            }
            Err(e) => self.refused(&mut sh, slot, lease, e),
        }
        self.recount(&sh);
        drop(sh);
        self.wake.notify_one();
    }

    /// The server has the report of `slot`: its state (unless published already), its
    /// refusals forgotten, and it counts as uploaded.
    fn count_reported(&self, sh: &mut Shared, slot: usize, state: Local) {
        if sh.states[slot] != Local::Published {
            sh.states[slot] = state;
        }
        sh.refusals.remove(&slot);
        let mut st = lock(&self.stats);
        st.parts_uploaded += 1;
        st.bytes_uploaded += self.plan.slots[slot].bytes;
    }

    /// The server refused the report of `slot` (`e`, as the single route's 409): its
    /// objects are not there as planned. The lease stays ours: the part goes again
    /// (`lease`: its assignment), unless it was refused [`MAX_REFUSALS`] times in a row
    /// or the refusal is of another kind — then the run fails with it.
    fn refused(&self, sh: &mut Shared, slot: usize, lease: Option<Assignment>, e: ApiError) {
        let n = {
            let n = sh.refusals.entry(slot).or_default();
            *n += 1;
            *n
        };
        sh.states[slot] = Local::Pending;
        match lease {
            Some(a) if resend_after_refusal(e.code(), n) => {
                self.reporter.say(
                    "warning",
                    &format!("part {slot}: the server refused its report ({e}); sending it again"),
                );
                sh.deferred.insert(slot, a);
            }
            _ => {
                if sh.fatal.is_none() {
                    sh.fatal = Some(e.into());
                }
            }
        }
    }

    /// Reports `slots` one by one through the single route.
    async fn report_each(&self, slots: &[usize], reason: FlushReason, attempts: Option<u32>) {
        if slots.is_empty() {
            return;
        }
        self.reporter.event(
            "reports",
            serde_json::json!({ "count": slots.len(), "reason": reason.as_str(), "via": "single", "slots": slots }),
        );
        for &slot in slots {
            let answer = retry(attempts, self.retry_note(), || {
                self.api.report_uploaded(&self.id, &self.secret, slot)
            })
            .await;
            let said_ok = answer.is_ok();
            self.reported(slot, single_outcome(answer), false, said_ok);
        }
    }

    /// `POST next` for up to `max` parts, carrying the kept reports (`reason`: why they
    /// go now); what became of each is applied. A failed call keeps them for later.
    async fn next_call(
        self: &Arc<Self>,
        max: usize,
        reason: FlushReason,
        attempts: Option<u32>,
    ) -> Result<NextResponse, ApiError> {
        let taken = lock(&self.shared).reports.take();
        let slots: Vec<usize> = taken.iter().map(|&(s, _)| s).collect();
        let answer = retry(attempts, self.retry_note(), || {
            self.api.next(&self.id, &self.secret, max, &slots)
        })
        .await;
        match answer {
            Ok(r) => {
                if !slots.is_empty() {
                    self.reports_answered(&slots, reason, &r.reports).await;
                }
                Ok(r)
            }
            Err(e) if !slots.is_empty() && e.status() == Some(400) => {
                // a server that takes no reports in `next` (older): the single route from now on
                lock(&self.shared).reports.turn_off();
                self.reporter.say(
                    "warning",
                    &format!("the server refused upload reports in `next` ({e}); reporting each part on its own"),
                );
                self.report_each(&slots, reason, attempts).await;
                retry(attempts, self.retry_note(), || {
                    self.api.next(&self.id, &self.secret, max, &[])
                })
                .await
            }
            Err(e) => {
                lock(&self.shared).reports.put_back(taken);
                Err(e)
            }
        }
    }

    /// Applies a `next` answer's `reports` for the `slots` it carried.
    async fn reports_answered(&self, slots: &[usize], reason: FlushReason, reports: &[SlotReport]) {
        self.reporter.event(
            "reports",
            serde_json::json!({ "count": slots.len(), "reason": reason.as_str(), "via": "next", "slots": slots }),
        );
        let mut missing = Vec::new();
        for &slot in slots {
            match reports.iter().find(|r| r.slot == slot) {
                Some(r) => self.reported(slot, report_outcome(r), true, r.error.is_none()),
                None => missing.push(slot),
            }
        }
        if !missing.is_empty() {
            // an answer that left them out (a server that ignored the list): one by one
            self.report_each(&missing, reason, None).await;
        }
    }

    /// The run is over: what is still kept goes through the single route (no new leases).
    async fn report_the_rest(&self, reason: FlushReason) {
        let slots = lock(&self.shared).reports.take_all();
        if slots.is_empty() {
            return;
        }
        // bounded: an interrupted run must end soon even when the server is gone
        let _ = tokio::time::timeout(
            END_REPORTS_WITHIN,
            self.report_each(&slots, reason, Some(3)),
        )
        .await;
    }

    /// Natural-order slots whose bytes have not (mostly) crossed the link give it up.
    fn yield_link(sh: &mut Shared) -> Vec<usize> {
        let mut yielded = Vec::new();
        for (&slot, job) in sh.jobs.iter_mut() {
            if job.priority || job.guarded || job.yielded {
                continue;
            }
            let frac = job.sent.load(Ordering::Relaxed) as f64 / job.bytes.max(1) as f64;
            if frac < PREEMPT_MAX_SENT {
                job.yielded = true;
                job.cancel.cancel();
                yielded.push(slot);
            }
        }
        yielded
    }

    /// Start (or keep) assignments from POST next; returns how many started.
    fn take_assignments(self: &Arc<Self>, list: Vec<Assignment>) -> usize {
        let mut sh = lock(&self.shared);
        let mut started = 0;
        let mut priority_started = false;
        for a in list {
            if a.slot >= sh.states.len() {
                sh.fatal.get_or_insert(CliError::Internal(format!(
                    "server assigned slot {}, outside the plan",
                    a.slot
                )));
                continue;
            }
            if sh.jobs.contains_key(&a.slot) {
                continue;
            }
            sh.deferred.remove(&a.slot);
            sh.kept_at.insert(a.slot, Instant::now());
            let priority = a.priority || sh.prio_slots.contains(&a.slot);
            // the part a viewer waits for never shares the link with another
            // priority part: the rest of the window waits its turn (kept)
            if priority && !Self::priority_on_link(&sh) {
                self.start_job(&mut sh, a, true, false);
                priority_started = true;
                started += 1;
            } else if priority {
                sh.deferred.insert(a.slot, a);
            } else if !Self::priority_on_link(&sh)
                && !Self::priority_waiting(&sh)
                && sh.jobs.len() < self.opts.parallel
            {
                self.start_job(&mut sh, a, false, false);
                started += 1;
            } else {
                sh.deferred.insert(a.slot, a);
            }
        }
        if priority_started {
            let y = Self::yield_link(&mut sh);
            if !y.is_empty() {
                tracing_yield(&self.reporter, &y);
            }
        }
        drop(sh);
        self.wake.notify_one();
        started
    }

    fn on_priority(self: &Arc<Self>, version: Option<u64>, slots: Vec<usize>) -> bool {
        let mut sh = lock(&self.shared);
        let n = sh.states.len();
        let slots: Vec<usize> = slots.into_iter().filter(|&s| s < n).collect();
        if version == sh.prio_version && slots == sh.prio_slots {
            return false;
        }
        if version != sh.prio_version || version.is_none() {
            sh.asked.clear();
        }
        if slots != sh.prio_slots {
            sh.prio_changed_at = Some(Instant::now());
        }
        sh.prio_version = version;
        // jobs already on their way become priority ones (never yielded)
        for s in &slots {
            if let Some(j) = sh.jobs.get_mut(s) {
                j.priority = true;
            }
        }
        self.reporter.event(
            "priority",
            serde_json::json!({ "version": version, "slots": &slots }),
        );
        sh.prio_slots = slots;
        true
    }

    /// Act on the latest priority list: send kept assignments, ask for the rest.
    async fn apply_priority(self: Arc<Self>) {
        let _guard = self.prio_lock.lock().await;
        if self.stop.is_cancelled() {
            return;
        }
        let (from_deferred, ask) = {
            let mut sh = lock(&self.shared);
            let wanted: Vec<usize> = sh
                .prio_slots
                .iter()
                .copied()
                .filter(|&s| !Self::is_done(&sh, s) && !sh.jobs.contains_key(&s))
                .collect();
            let mut from_deferred = Vec::new();
            for &s in &wanted {
                if let Some(a) = sh.deferred.get(&s) {
                    if url_usable(a, sh.kept_at.get(&s), Duration::from_secs(600)) {
                        from_deferred.push(a.clone());
                    } else {
                        sh.deferred.remove(&s);
                    }
                }
            }
            let ask: Vec<usize> = wanted
                .into_iter()
                .filter(|s| !sh.deferred.contains_key(s) && !sh.asked.contains(s))
                .collect();
            for s in &ask {
                sh.asked.insert(*s);
            }
            (from_deferred, ask)
        };
        if !from_deferred.is_empty() {
            let list = from_deferred
                .into_iter()
                .map(|mut a| {
                    a.priority = true;
                    a
                })
                .collect();
            self.take_assignments(list);
        }
        if ask.is_empty() {
            return;
        }
        match self
            .next_call(ask.len().min(16), FlushReason::Next, Some(4))
            .await
        {
            Ok(r) => {
                if r.complete {
                    lock(&self.shared).server_complete = true;
                }
                self.take_assignments(r.assignments);
            }
            Err(e) => self.reporter.say(
                "warning",
                &format!("asking for the parts viewers need: {e}"),
            ),
        }
    }

    /// The priority feed: one long poll held open until the viewers' windows change —
    /// or, while nobody watches and the server hands out a `wake_url`, a GET of that
    /// URL (SQS holds it, not an API Lambda) followed by one `wait_ms=0` poll. Wake-up
    /// URLs that do not wait ([`WakeGuard`]) are given up for the run with a warning.
    /// A wake-up that ran out (SQS held it 20 s: nothing rang) is followed by another
    /// wait on the same URL without asking the API, except every
    /// [`FEED_EVERY_RUN_OUTS`]th in a row. With `--json`, a `feed` event (`mode`:
    /// `wake` | `held`, `wake_disabled`) says how it waits, whenever that changes, and one
    /// with `ran_out` (run-outs in a row) and `skipped_feed` follows each run-out.
    async fn priority_loop(self: Arc<Self>) {
        let mut failures = 0u32;
        let mut guard = WakeGuard::default();
        // the last answer's wake-up URL (none before the first answer, or after an error)
        let mut wake_url: Option<String> = None;
        let mut shown: Option<(&'static str, bool)> = None;
        // the last answer's `watched`: a page opening rings the wake-up without a new version
        let mut last_watched: Option<bool> = None;
        loop {
            if self.stop.is_cancelled() {
                return;
            }
            let before = lock(&self.shared).prio_version;
            let wait = guard.next_wait(wake_url.as_deref());
            let mode = (wait.mode(), guard.disabled());
            if shown != Some(mode) {
                shown = Some(mode);
                self.reporter.event(
                    "feed",
                    serde_json::json!({ "mode": mode.0, "wake_disabled": mode.1 }),
                );
            }
            let woke = match &wait {
                FeedWait::Wake(url) => {
                    let started = Instant::now();
                    let ok = tokio::select! {
                        r = self.api.wake(url, WAKE_TIMEOUT) => r.is_ok(),
                        _ = self.stop.cancelled() => return,
                    };
                    Some(WakeOutcome {
                        ok,
                        took: started.elapsed(),
                    })
                }
                FeedWait::Held => None,
            };
            if let Some(w) = woke {
                let next = guard.wake_ended(w);
                if w.ran_out() {
                    self.reporter.event(
                        "feed",
                        serde_json::json!({
                            "mode": mode.0, "wake_disabled": mode.1,
                            "ran_out": guard.run_outs(),
                            "skipped_feed": next == AfterWake::WaitAgain,
                        }),
                    );
                }
                if next == AfterWake::WaitAgain {
                    continue; // the same wake-up URL again
                }
            }
            wake_url = None;
            // after a wake-up: one request, answered at once
            let hold = if woke.is_some() {
                Duration::ZERO
            } else {
                self.opts.priority_wait
            };
            let r = tokio::select! {
                r = self.api.priority(&self.id, &self.secret, before, hold) => r,
                _ = self.stop.cancelled() => return,
            };
            match r {
                Ok(r) => {
                    failures = 0;
                    guard.answered();
                    let due = lock(&self.shared).reports.on_feed_answer(
                        r.watched,
                        r.wake_url.as_deref(),
                        &r.priority_slots,
                    );
                    if due {
                        self.wake.notify_one(); // someone watches: the kept reports go now
                    }
                    let mark = FeedMark {
                        version: r.version,
                        watched: r.watched,
                    };
                    let mark_before = FeedMark {
                        version: before,
                        watched: std::mem::replace(&mut last_watched, r.watched),
                    };
                    if let Some(w) = woke {
                        if guard.after_wake(w, mark_before, mark) {
                            self.reporter.say(
                                "warning",
                                &format!(
                                    "the priority feed's wake-up URL came back {MAX_STRAY_WAKES} times without waiting for news; holding the long poll for the rest of this upload"
                                ),
                            );
                        }
                    }
                    wake_url = r.wake_url;
                    if let Some(list) = r.assignments.filter(|l| !l.is_empty()) {
                        let list = list
                            .into_iter()
                            .map(|mut a| {
                                a.priority = true;
                                a
                            })
                            .collect();
                        self.on_priority(r.version, r.priority_slots.clone());
                        self.take_assignments(list);
                    }
                    if self.on_priority(r.version, r.priority_slots) {
                        tokio::spawn(self.clone().apply_priority());
                    }
                    if r.complete {
                        return;
                    }
                }
                Err(e)
                    if matches!(e.status(), Some(404 | 405))
                        && e.code() != Some("unknown_video") =>
                {
                    self.reporter.say("warning", "the server has no priority feed; viewers' priorities come with the status poll instead");
                    self.feed_gone();
                    return;
                }
                Err(e) if !e.is_transient() => {
                    self.reporter.say("warning", &format!("priority feed: {e}"));
                    self.feed_gone();
                    return;
                }
                Err(_) => {
                    failures += 1;
                    let delay = Duration::from_millis((250u64 << failures.min(6)).min(15_000));
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {},
                        _ = self.stop.cancelled() => return,
                    }
                }
            }
        }
    }

    /// Without a feed nobody can be known not to watch: parts are reported at once.
    fn feed_gone(&self) {
        if lock(&self.shared).reports.feed_gone() {
            self.wake.notify_one();
        }
    }

    async fn status_loop(self: Arc<Self>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.opts.status_every) => {},
                _ = self.stop.cancelled() => return,
            }
            if let Ok(s) = self.api.status(&self.id).await {
                self.apply_status(&s);
            }
        }
    }

    fn fatal(&self) -> Option<CliError> {
        lock(&self.shared).fatal.take()
    }

    /// Upload until the server says the video is complete.
    pub async fn run(self: Arc<Self>) -> Result<RunStats, CliError> {
        let prio = tokio::spawn(self.clone().priority_loop());
        let status = tokio::spawn(self.clone().status_loop());
        let result = self.clone().main_loop().await;
        prio.abort();
        status.abort();
        let jobs: Vec<CancellationToken> = lock(&self.shared)
            .jobs
            .values()
            .map(|j| j.cancel.clone())
            .collect();
        for c in jobs {
            c.cancel();
        }
        // never end with unreported parts: the final status counts them
        tokio::task::yield_now().await;
        let reason = match &result {
            Ok(()) => FlushReason::End,
            Err(CliError::Interrupted) => FlushReason::Interrupted,
            Err(_) => FlushReason::Failed,
        };
        self.report_the_rest(reason).await;
        let fatal = self.fatal();
        match (result, fatal) {
            (Ok(()), Some(e)) => Err(e),
            (result, _) => result.map(|()| self.stats()),
        }
    }

    async fn main_loop(self: Arc<Self>) -> Result<(), CliError> {
        lock(&self.shared).last_natural = Some(Instant::now());
        loop {
            if let Some(e) = self.fatal() {
                return Err(e);
            }
            if self.stop.is_cancelled() {
                return Err(CliError::Interrupted);
            }
            let mut started = 0;
            let mut asked = false;
            let (on_link, free, complete, guard_due) = {
                let sh = lock(&self.shared);
                let natural_running = sh.jobs.values().any(|j| !j.priority);
                let due = sh
                    .last_natural
                    .is_some_and(|t| t.elapsed() >= self.opts.natural_every)
                    && !natural_running;
                (
                    Self::priority_on_link(&sh) || Self::priority_waiting(&sh),
                    self.opts.parallel.saturating_sub(sh.jobs.len()),
                    sh.server_complete,
                    due,
                )
            };
            if on_link {
                if guard_due {
                    started += self.natural_guard().await?;
                }
            } else {
                started += self.resume_deferred();
                let free = free.saturating_sub(started);
                if free > 0 && !complete {
                    // carries the kept reports, if any
                    let r = self.next_call(free, FlushReason::Next, None).await?;
                    asked = true;
                    if r.complete {
                        lock(&self.shared).server_complete = true;
                    }
                    started += self.take_assignments(r.assignments);
                }
            }
            // kept reports that cannot wait for a lane to free up: a call of their own
            // (it leases one part, as `next` does: sent when a lane frees)
            let due = lock(&self.shared).reports.due(Instant::now());
            if let Some(reason) = due.filter(|_| !complete && !asked) {
                let r = self.next_call(1, reason, None).await?;
                if r.complete {
                    lock(&self.shared).server_complete = true;
                }
                started += self.take_assignments(r.assignments);
            }
            let (complete, idle) = {
                let sh = lock(&self.shared);
                (
                    sh.server_complete,
                    sh.jobs.is_empty() && sh.deferred.is_empty(),
                )
            };
            if complete && lock(&self.shared).jobs.is_empty() {
                lock(&self.shared).deferred.clear();
                return Ok(());
            }
            let wait = if idle && started == 0 {
                Duration::from_millis(1000)
            } else {
                Duration::from_millis(1500)
            };
            tokio::select! {
                _ = self.wake.notified() => {},
                _ = tokio::time::sleep(wait) => {},
                _ = self.stop.cancelled() => {},
            }
        }
    }

    fn resume_deferred(self: &Arc<Self>) -> usize {
        let mut sh = lock(&self.shared);
        let mut started = 0;
        let slots: Vec<usize> = sh.deferred.keys().copied().collect();
        for slot in slots {
            if Self::priority_on_link(&sh) || sh.jobs.len() >= self.opts.parallel {
                break;
            }
            if Self::priority_waiting(&sh) && !sh.prio_slots.contains(&slot) {
                continue;
            }
            let Some(a) = sh.deferred.remove(&slot) else {
                continue;
            };
            if Self::is_done(&sh, slot) || sh.jobs.contains_key(&slot) {
                continue;
            }
            if !url_usable(&a, sh.kept_at.get(&slot), Duration::from_secs(600)) {
                continue; // the lease runs out and the server hands the slot out again
            }
            let priority = sh.prio_slots.contains(&slot);
            self.start_job(&mut sh, a, priority, false);
            started += 1;
        }
        started
    }

    /// Priority slots have kept natural order off the link too long: one goes now.
    async fn natural_guard(self: &Arc<Self>) -> Result<usize, CliError> {
        {
            let mut sh = lock(&self.shared);
            let kept = sh
                .deferred
                .keys()
                .copied()
                .find(|&s| !sh.prio_slots.contains(&s));
            if let Some(slot) = kept {
                if let Some(a) = sh.deferred.remove(&slot) {
                    self.start_job(&mut sh, a, false, true);
                    return Ok(1);
                }
            }
        }
        let r = self.next_call(1, FlushReason::Next, None).await?;
        if r.complete {
            lock(&self.shared).server_complete = true;
        }
        let mut sh = lock(&self.shared);
        let mut started = 0;
        for a in r.assignments {
            if a.slot < sh.states.len() && !sh.jobs.contains_key(&a.slot) {
                let priority = a.priority || sh.prio_slots.contains(&a.slot);
                self.start_job(&mut sh, a, priority, !priority);
                started += 1;
            }
        }
        Ok(started)
    }
}

fn unreachable_loop() -> Vec<Result<(), ApiError>> {
    Vec::new()
}

fn tracing_yield(reporter: &Reporter, slots: &[usize]) {
    let list: Vec<String> = slots.iter().map(|s| s.to_string()).collect();
    reporter.event("yield", serde_json::json!({ "slots": slots }));
    if !reporter.is_json() && std::env::var_os("CHUNKSTREAM_VERBOSE").is_some() {
        reporter.say(
            "info",
            &format!(
                "yielding the link to priority parts: part(s) {} will be sent again after them",
                list.join(", ")
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-shot HTTP server answering `status` after `delay`; its address.
    async fn answer_once(status: &'static str, delay: Duration) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let mut buf = [0u8; 4096];
            let _ = sock.read(&mut buf).await;
            tokio::time::sleep(delay).await;
            let body = "<ReceiveMessageResponse/>";
            let _ = sock
                .write_all(
                    format!(
                        "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                )
                .await;
        });
        format!("http://{addr}/000000000000/feed?Action=ReceiveMessage")
    }

    #[tokio::test]
    async fn a_wake_get_is_ok_on_2xx_and_an_error_otherwise() {
        let api = Api::new("http://127.0.0.1:9").expect("client");
        let url = answer_once("200 OK", Duration::ZERO).await;
        api.wake(&url, Duration::from_secs(5)).await.expect("200");
        let url = answer_once("403 Forbidden", Duration::ZERO).await;
        let e = api
            .wake(&url, Duration::from_secs(5))
            .await
            .expect_err("403");
        assert_eq!(e.status(), Some(403));
        let url = answer_once("200 OK", Duration::from_secs(5)).await;
        let started = Instant::now();
        api.wake(&url, Duration::from_millis(300))
            .await
            .expect_err("held past its timeout");
        assert!(started.elapsed() < Duration::from_secs(3));
    }
}
